#pragma once
// The destination's side of the datastore lock's handover for one incoming migration
// (docs/datastores.md): the VM directory found on this host's mount of the same datastore, its lock
// taken just before the VM resumes here (by the VM's VMM process, or by this agent for an
// in-process VM), and the VM handed to VmOwnership once it runs.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/agent/agent_config.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/agent/vm_ownership.h"
#include "engine/storage/datastore_vm.h"
#include "engine/storage/vm_lock.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class ArrivingVmHome {
 public:
  // Finds `home` on this host (the datastore with that uuid) and points `spec`'s disks and console
  // log at this host's copy of the directory. Error when this host does not see the datastore or
  // the directory there is unusable.
  absl::Status Locate(const AgentConfig& config, const v1::VmHome& home, VmSpec& spec);
  // The lock the VM's VMM will hold (taken only at commit); empty before Locate.
  VmmLockRequest LockRequest(const std::string& agent) const;
  // The VM created to receive it (owned by the migration's receiver until it runs here).
  void RunsIn(Vm* vm) { arriving_vm_ = vm; }
  // Takes the lock: the VM's VMM process takes it, or this agent (as `agent`) for an in-process
  // VM; refused naming the holder.
  absl::Status TakeLock(const std::string& agent);
  // The VM runs here: the lock now belongs to `ownership`.
  void HandTo(VmOwnership& ownership);
  // The commit did not take effect: let go of the lock at once, so the source can take it back.
  void Drop() { lock_.reset(); }
  bool located() const { return vm_.has_value(); }

 private:
  std::optional<DatastoreVm> vm_;
  std::optional<VmLock> lock_;  // an in-process VM's, held by this agent
  Vm* arriving_vm_ = nullptr;
};

}  // namespace ferry
