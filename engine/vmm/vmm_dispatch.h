#pragma once
// The VMM's side of each request: one VM, built by the first `create`, driven by the rest. Knows
// no sockets (VmmServer reads and writes the frames).

#include <functional>
#include <memory>
#include <vector>

#include "engine/base/unique_fd.h"
#include "engine/vm/vm.h"
#include "engine/vmm/vmm_lock_keeper.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

class VmmDispatcher {
 public:
  // `pass_fds` gets the descriptors to send beside the reply (the memfd; an upgrade's disks and
  // lock), else stays empty. `received_fds` came beside the request (a take-over create's memfd,
  // disks and lock); unused ones close.
  v1::VmmReply Handle(const v1::VmmRequest& request, std::vector<int>* pass_fds,
                      std::vector<UniqueFd> received_fds = {});

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
  absl::Status Create(const v1::VmmCreate& create, std::vector<UniqueFd> fds);
  absl::Status Dispatch(const v1::VmmRequest& request, v1::VmmReply& reply, std::vector<int>* pass_fds,
                        std::vector<UniqueFd> received_fds);
  // hand_over_files: this VMM's file disks and lock, for its successor (an upgrade).
  absl::Status HandOverFiles(v1::VmmReply& reply, std::vector<int>* pass_fds);
  // A storage migration's synchronous disk mirror (VmmRequest.disk_mirror).
  absl::Status DiskMirror(const v1::VmmDiskMirror& m, v1::VmmReply& reply);
  // handover_committed / handover: marks the commit as going out (`mark` says where to).
  absl::Status MarkHandover(const v1::VmmHandover& mark);
  void Describe(v1::VmmReply& reply) const;

  std::unique_ptr<Vm> vm_;
  std::string console_log_path_;
  std::string arriving_migration_;  // a restore's migration (VmmCreate.arriving_migration)
  bool ever_started_ = false;
  bool stop_requested_ = false;
  bool retired_ = false;
  std::function<absl::Status()> claim_socket_;  // set by the server
  bool migration_tracking_ = false;   // dirty tracking on: an outgoing migration is under way
  bool paused_by_migration_ = false;  // paused while it was
  bool handover_committed_ = false;   // its commit is going out (handover_committed / handover)
  v1::VmmHandover handover_;          // where to: described while the guest waits paused for a successor
  VmmLockKeeper lock_;  // the VM's datastore lock, held by this process
};

}  // namespace ferry
