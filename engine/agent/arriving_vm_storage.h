#pragma once
// The destination's side of a storage migration ("change both host and datastore",
// docs/storage_migration.md): the VM's new directory on one of this host's datastores, with
// sparse disks of the source's sizes, its lock taken just before the VM resumes here and handed
// to VmOwnership once it runs. A migration that does not end with the VM running here removes the
// directory it made, and only that.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/agent/agent_config.h"
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
  // Takes the new directory's lock as this agent.
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
  std::optional<VmLock> lock_;
  bool kept_ = false;
};

}  // namespace ferry
