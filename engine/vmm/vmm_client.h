#pragma once
// The agent's end of one VMM socket: connect, then one request and its reply at a time, each
// bounded by a timeout (docs/vmm_process.md). Not thread-safe: RemoteVm serializes calls.

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

class VmmConnection {
 public:
  // Refused quickly when nothing listens (a VMM that is gone).
  static absl::StatusOr<VmmConnection> Connect(const std::string& socket_path, int timeout_ms);

  // Sends `request` (version and seq filled in) and reads its reply. A reply whose status is an
  // error is returned as that error. `received_fd` gets a descriptor sent beside the reply;
  // `pass_fd` (if >= 0) rides beside the request (a take-over create's guest memory).
  absl::StatusOr<v1::VmmReply> Call(v1::VmmRequest request, int timeout_ms, UniqueFd* received_fd = nullptr,
                                    int pass_fd = -1);
  // The same with any number of descriptors each way: `pass_fds` beside the request (in order),
  // every one beside the reply into `received_fds` (a VMM upgrade's disks and lock).
  absl::StatusOr<v1::VmmReply> CallWithFds(v1::VmmRequest request, int timeout_ms, std::span<const int> pass_fds,
                                           std::vector<UniqueFd>* received_fds);

  // A connection to nothing (what a RemoteVm holds once it let go of its VMM).
  static VmmConnection Closed() { return VmmConnection(UniqueFd(), ""); }

  int fd() const { return fd_.get(); }
  const std::string& socket_path() const { return socket_path_; }

 private:
  VmmConnection(UniqueFd fd, std::string path) : fd_(std::move(fd)), socket_path_(std::move(path)) {}

  UniqueFd fd_;
  std::string socket_path_;
  uint64_t next_seq_ = 1;
  bool broken_ = false;  // a timed-out or garbled exchange: replies may be out of step
};

}  // namespace ferry
