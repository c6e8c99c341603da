#pragma once
// The datastore VMs this agent runs, and a view of their locks (docs/datastores.md, "The lock is
// the owner"). The lock itself is held by whatever runs the VM: its VMM process (the default: the
// lock lives and dies with that process), or this agent for a VM it runs in-process
// (--in-process-vms). Who holds a lock is read from its lock file, never assumed. During a
// migration out the lock is let go just before commit and taken back if the commit does not take
// effect, by the same holder.

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "engine/migration/precopy_source.h"
#include "engine/storage/datastore_vm.h"
#include "engine/storage/vm_lock.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class VmOwnership {
 public:
  // A datastore VM runs here. `agent_lock` is its lock when this agent holds it itself (an
  // in-process VM); empty when the VM's VMM process holds it.
  void Put(DatastoreVm vm, std::optional<VmLock> agent_lock = std::nullopt);
  // An in-process VM: takes `vm`'s lock in this agent as `agent` (refused naming the holder) and Puts it.
  absl::Status TakeInAgent(const DatastoreVm& vm, const std::string& agent);
  // The VM stopped or left: forgets it (closing a lock this agent held).
  void Release(const std::string& name);
  // Commit of a migration out of `name`, running here as `vm`: its holder lets the lock go.
  absl::Status ReleaseForCommit(const std::string& name, Vm& vm);
  // The commit did not take effect: its holder takes the lock back (refused naming the new holder).
  absl::Status RetakeAfterCommit(const std::string& name, Vm& vm, const std::string& agent);

  std::optional<DatastoreVm> Find(const std::string& name) const;
  // Who holds `name`'s lock now, as its lock file says (nullopt: nobody, or not a datastore VM here).
  absl::StatusOr<std::optional<VmLockHolder>> Holder(const std::string& name) const;

  // A datastore VM whose VMM process was found dead when this agent started: why. Listed with
  // its powered-off entry until it runs again.
  void NoteLost(const std::string& name, const std::string& reason);
  std::string LostReason(const std::string& name) const;

 private:
  struct Owned {
    DatastoreVm vm;
    std::optional<VmLock> agent_lock;  // an in-process VM's; empty between release and retake
  };
  mutable std::mutex mu_;
  std::map<std::string, Owned> owned_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> lost_ ABSL_GUARDED_BY(mu_);
};

// Where `vm` lives, as a migration tells the destination (the datastore's uuid and the directory).
absl::StatusOr<v1::VmHome> HomeOf(const DatastoreVm& vm);

// A migration out of `name` (running here as `vm`): when it is a datastore VM, sets config's home
// and the hooks that let its lock go just before commit and take it back if the commit does not
// take effect.
absl::Status PrepareLockHandover(VmOwnership& ownership, const std::string& name, Vm& vm, const std::string& agent,
                                 SourceConfig& config);

}  // namespace ferry
