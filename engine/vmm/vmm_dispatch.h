#pragma once
// The VMM's side of each request: one VM, built by the first `create`, driven by the rest. Knows
// no sockets (VmmServer reads and writes the frames).

#include <memory>

#include "engine/vm/vm.h"
#include "engine/vmm/vmm_lock_keeper.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

class VmmDispatcher {
 public:
  // `pass_fd` is set to a descriptor to send beside the reply (the memfd), else left at -1.
  v1::VmmReply Handle(const v1::VmmRequest& request, int* pass_fd);

  bool has_vm() const { return vm_ != nullptr; }
  // The VM ran at some point: its VMM outlives an agent that goes away.
  bool ever_started() const { return ever_started_; }
  bool stop_requested() const { return stop_requested_; }
  // Stops the VM (a signal told the VMM to end).
  void StopVm();

 private:
  absl::Status Create(const v1::VmmCreate& create);
  absl::Status Dispatch(const v1::VmmRequest& request, v1::VmmReply& reply, int* pass_fd);
  void Describe(v1::VmmReply& reply) const;

  std::unique_ptr<Vm> vm_;
  std::string console_log_path_;
  bool ever_started_ = false;
  bool stop_requested_ = false;
  VmmLockKeeper lock_;  // the VM's datastore lock, held by this process
};

}  // namespace ferry
