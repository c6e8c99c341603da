#pragma once
// ferry-faultfs's control channel: a Unix stream socket (mode 0600) taking one line per request
// and answering one line. Requests:
//   set MODE [ARG] [path=/PREFIX]   -> "ok MODE ..."            (MODE as in fault_policy.h)
//   get                             -> "ok MODE ... blocked=N failed=N delayed=N"
// A bad request gets "error <what is wrong>". docs/faultfs.md has the details.

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/base/unique_fd.h"
#include "tests/faultfs/fault_gate.h"

namespace ferry::faultfs {

// The reply to one request line (without its newline), applied to `gate`.
std::string HandleControlRequest(FaultGate& gate, absl::string_view request);

class ControlServer {
 public:
  // Binds `socket_path` (replacing a stale socket file) and serves requests on a thread.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(const std::string& socket_path, FaultGate& gate);
  ~ControlServer();

 private:
  ControlServer(std::string path, UniqueFd listen_fd, UniqueFd stop_fd, FaultGate& gate);
  void Serve();

  std::string path_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // an eventfd that ends Serve()
  FaultGate& gate_;
  std::thread thread_;
};

// Sends one request and returns the reply line: OK for "ok ...", the reply's text as an error for
// "error ...", Unavailable when nobody answers within `timeout`.
absl::StatusOr<std::string> SendControlRequest(const std::string& socket_path, absl::string_view request,
                                               absl::Duration timeout = absl::Seconds(5));

}  // namespace ferry::faultfs
