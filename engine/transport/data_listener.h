#pragma once
// The agent's data port: one TCP listener for every incoming migration's data connections. Each
// accepted connection gets a fresh challenge, must prove within a few seconds that it belongs
// to a registered migration (data_handshake.h), and is then handed to that migration's
// IncomingSession. A connection without a valid proof is answered one verdict byte and closed
// before any page is read.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/transport/data_receiver.h"

namespace ferry {

class DataListener {
 public:
  // host: an address to bind ("127.0.0.1", "0.0.0.0", "::"); port 0 picks one.
  static absl::StatusOr<std::unique_ptr<DataListener>> Start(const std::string& host, uint16_t port);
  ~DataListener();

  uint16_t port() const { return port_; }
  // Expects the data connections of one migration, receiving into `mem`. The handle unregisters
  // the migration (no further connection is accepted for it) and closes its connections when
  // destroyed.
  std::unique_ptr<IncomingPages> Expect(IncomingOptions options, GuestMemory& mem);
  void Register(std::shared_ptr<IncomingSession> session);
  void Unregister(const std::string& migration_id);
  uint64_t refused() const { return refused_.load(); }

 private:
  DataListener() = default;
  void AcceptLoop();
  void Handshake(UniqueFd fd);

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // eventfd: stops the accept loop
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<IncomingSession>> sessions_;
  std::vector<std::thread> handshakes_;
  std::atomic<int> handshakes_running_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace ferry
