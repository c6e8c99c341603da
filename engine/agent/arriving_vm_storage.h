#pragma once
// The destination's side of a storage migration ("change both host and datastore",
// docs/storage_migration.md): the VM's new directory on one of this host's datastores, with
// sparse disks of the source's sizes, its lock taken just before the VM resumes here (by the VM's
// VMM process, or by the agent with --in-process-vms) and handed to VmOwnership once it runs. A migration that does not end with the VM running here removes the
// directory it made, and only that.

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

class ArrivingVmStorage {
 public:
  ArrivingVmStorage() = default;
  ArrivingVmStorage(const ArrivingVmStorage&) = delete;
  ArrivingVmStorage& operator=(const ArrivingVmStorage&) = delete;
  ~ArrivingVmStorage() { RemoveUnlessKept(); }

  // Makes <datastore>/<name>/ on this host's datastore `target.datastore()` (vm.yaml, one sparse
  // disk per size, the lock file) and points `spec`'s file disks and console log at it. Refused
  // before anything is written when the datastore is unknown here, read-only or short of space, or
  // the directory exists.
  absl::Status Create(const AgentConfig& config, const v1::StorageTarget& target, VmSpec& spec);
  // The lock the arriving VM's VMM is to hold (taken by TakeLock, not at its creation).
  VmmLockRequest LockRequest(const std::string& agent) const;
  // The VM being received; its VMM process, if it has one, takes the lock.
  void RunsIn(Vm* vm) { arriving_vm_ = vm; }
  // Takes the new directory's lock: in the VM's VMM process, or as this agent for an in-agent VM.
  absl::Status TakeLock(const std::string& agent);
  // The VM runs here: its directory stays, its lock belongs to `ownership`.
  void HandTo(VmOwnership& ownership);
  // The commit did not take effect: let go of the lock (the directory goes at RemoveUnlessKept).
  void Drop() { lock_.reset(); }
  // The VM did not arrive: removes the directory Create made.
  void RemoveUnlessKept();
  bool created() const { return vm_.has_value(); }

 private:
  std::optional<DatastoreVm> vm_;
  std::optional<VmLock> lock_;  // an in-agent VM's lock
  Vm* arriving_vm_ = nullptr;
  bool kept_ = false;
};

}  // namespace ferry
