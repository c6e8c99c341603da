#pragma once
// ferry-vmm's socket: listens at DIR/vmm.sock, serves one agent connection at a time with a
// VmmDispatcher, and decides when the process ends (docs/vmm_process.md "Lifecycle").

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/vmm/vmm_dispatch.h"

namespace ferry {

struct VmmServerOptions {
  std::string socket_path;
  std::string pid_file;  // "" = none
  int create_timeout_ms = 30'000;  // no create by then: exit
  // A VMM upgrade's new VMM: listens at socket_path + kTakeOverSocketSuffix (the old VMM still
  // serves socket_path) and moves there, writing the pid file, on `claim_socket`.
  bool take_over = false;
};

inline constexpr char kTakeOverSocketSuffix[] = ".next";

class VmmServer {
 public:
  // Binds the socket (refused if a live VMM already serves it; a stale one is replaced) and
  // writes the pid file.
  static absl::StatusOr<std::unique_ptr<VmmServer>> Listen(VmmServerOptions options);
  // Removes the socket and pid file.
  ~VmmServer();

  // Serves until stopped by request, by `terminate` (a signal: the VM is stopped too), by the hang-up
  // of the agent of a VM that never started, or by no create in time. Returns why it ended.
  std::string Run(const std::atomic<bool>& terminate);

 private:
  explicit VmmServer(VmmServerOptions options, UniqueFd listener, std::string bound_path)
      : options_(std::move(options)), listener_(std::move(listener)), bound_path_(std::move(bound_path)) {}
  // claim_socket: the take-over socket becomes the VM's socket, the pid file names this process.
  absl::Status ClaimSocket();
  // One connection until it hangs up, breaks the protocol, or a stop.
  void Serve(int conn, const std::atomic<bool>& terminate);

  VmmServerOptions options_;
  UniqueFd listener_;
  std::string bound_path_;  // where the socket is now
  bool pid_file_written_ = false;
  VmmDispatcher dispatcher_;
};

}  // namespace ferry
