#pragma once
// Test helpers for announcing into a private network namespace: nothing these tests send can
// reach the host's real networks.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/net/rarp_frame.h"

namespace ferry {

// Moves the calling thread into a fresh anonymous network namespace and back on destruction.
// The namespace (and any veth created in it) disappears once nothing refers to it any more, so
// it is cleaned up even when a test fails half-way. Threads and processes started meanwhile
// from this thread inherit it.
class ScopedNetns {
 public:
  // FailedPrecondition (test should skip) when namespaces cannot be created here.
  static absl::StatusOr<std::unique_ptr<ScopedNetns>> Enter();
  ~ScopedNetns();

 private:
  explicit ScopedNetns(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;
};

// Runs iproute2's `ip` with `args`; its stderr goes into the error.
absl::Status RunIp(const std::vector<std::string>& args);
// Creates veth pair a<->b and brings both up, then waits until both are running (carrier on,
// queueing discipline attached) so the first frame is not dropped by a link still coming up.
absl::Status CreateVethPair(const std::string& a, const std::string& b);

struct CapturedFrame {
  std::vector<uint8_t> bytes;
  int64_t monotonic_ns;  // when recvfrom returned
};

// An AF_PACKET socket bound to one interface, receiving only ethertype 0x8035.
class RarpCapture {
 public:
  static absl::StatusOr<RarpCapture> Open(const std::string& interface);
  // Reads incoming frames until `count` have arrived or `timeout_ms` has passed, then keeps
  // listening for `linger_ms` more to catch extra frames that should not be there.
  std::vector<CapturedFrame> Read(size_t count, int timeout_ms, int linger_ms);

 private:
  explicit RarpCapture(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace ferry
