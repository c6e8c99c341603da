#pragma once
// The datastore VMs this agent runs and the lock it holds for each (docs/datastores.md, "The lock
// is the owner"). A VM here holds its lock from start to stop; during a migration out the lock is
// let go just before commit and retaken if the commit does not take effect.

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "engine/storage/datastore_vm.h"
#include "engine/migration/precopy_source.h"
#include "engine/storage/vm_lock.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class VmOwnership {
 public:
  // Takes `vm`'s lock for agent `agent` (this process; refused naming the holder) and remembers both.
  absl::Status Take(const DatastoreVm& vm, const std::string& agent);
  // Remembers a lock taken elsewhere (an arriving VM's).
  void Put(DatastoreVm vm, VmLock lock);
  // The VM stopped or left: closes its lock and forgets it.
  void Release(const std::string& name);
  // Commit of a migration out: closes the lock, keeps the VM's directory for RetakeAfterCommit.
  void ReleaseForCommit(const std::string& name);
  absl::Status RetakeAfterCommit(const std::string& name, const std::string& agent);

  std::optional<DatastoreVm> Find(const std::string& name) const;

 private:
  struct Owned {
    DatastoreVm vm;
    std::optional<VmLock> lock;  // empty between ReleaseForCommit and RetakeAfterCommit
  };
  mutable std::mutex mu_;
  std::map<std::string, Owned> owned_ ABSL_GUARDED_BY(mu_);
};

// Where `vm` lives, as a migration tells the destination (the datastore's uuid and the directory).
absl::StatusOr<v1::VmHome> HomeOf(const DatastoreVm& vm);

// A migration out of `name`: when it is a datastore VM held here, sets config's home and the hooks
// that let its lock go just before commit and take it back if the commit does not take effect.
absl::Status PrepareLockHandover(VmOwnership& ownership, const std::string& name, const std::string& agent,
                                 SourceConfig& config);

}  // namespace ferry
