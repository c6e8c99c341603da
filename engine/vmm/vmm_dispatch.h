#pragma once
// The VMM's side of each request: one VM, built by the first `create`, driven by the rest. Knows
// no sockets (VmmServer reads and writes the frames).

#include <functional>
#include <memory>

#include "engine/base/unique_fd.h"
#include "engine/vm/vm.h"
#include "engine/vmm/vmm_lock_keeper.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

class VmmDispatcher {
 public:
  // `pass_fd` is set to a descriptor to send beside the reply (the memfd), else left at -1.
  // `received_fd` came beside the request (the guest memory of a take-over create); unused ones close.
  v1::VmmReply Handle(const v1::VmmRequest& request, int* pass_fd, UniqueFd received_fd = UniqueFd());

  bool has_vm() const { return vm_ != nullptr; }
  // The VM ran at some point: its VMM outlives an agent that goes away.
  bool ever_started() const { return ever_started_; }
  bool stop_requested() const { return stop_requested_; }
  // Retired by a VMM upgrade: the socket and pid file belong to the successor now.
  bool retired() const { return retired_; }
  // What `claim_socket` does (the server owns the socket); unset: the request is refused.
  void set_claim_socket(std::function<absl::Status()> claim) { claim_socket_ = std::move(claim); }
  // Stops the VM (a signal told the VMM to end).
  void StopVm();
  // The agent's connection dropped. A migration it left under way ends here: throttle and dirty
  // tracking off, and a guest the migration paused resumes unless its commit was marked sent
  // (then it may run on the destination and stays paused).
  void OnAgentGone();

 private:
  absl::Status Create(const v1::VmmCreate& create, UniqueFd memfd);
  absl::Status Dispatch(const v1::VmmRequest& request, v1::VmmReply& reply, int* pass_fd, UniqueFd received_fd);
  void Describe(v1::VmmReply& reply) const;

  std::unique_ptr<Vm> vm_;
  std::string console_log_path_;
  bool ever_started_ = false;
  bool stop_requested_ = false;
  bool retired_ = false;
  std::function<absl::Status()> claim_socket_;  // set by the server
  bool migration_tracking_ = false;   // dirty tracking on: an outgoing migration is under way
  bool paused_by_migration_ = false;  // paused while it was
  bool handover_committed_ = false;   // its commit is going out (handover_committed)
  VmmLockKeeper lock_;  // the VM's datastore lock, held by this process
};

}  // namespace ferry
