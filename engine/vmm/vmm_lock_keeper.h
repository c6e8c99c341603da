#pragma once
// The VM's datastore lock as its VMM process holds it (docs/vmm_process.md "The VM lock"): the
// process that runs the VM is the one that holds the lock, so the lock dies with it. The keeper
// also enforces the rule the lock exists for: a VM with a lock file never runs without its lock.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/storage/vm_lock.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

class VmmLockKeeper {
 public:
  // Remembers the lock of VM `vm_name` from a create; takes nothing yet. An empty path is refused.
  absl::Status Configure(const v1::VmmLock& lock, const std::string& vm_name);
  // A same-host VMM upgrade's new VMM: the lock as the old VMM holds it, its description handed
  // over (VmLock::AdoptHeld). Held from now on; the record names the old VMM until Take().
  absl::Status Adopt(UniqueFd fd);
  // Takes the lock as this process (holder record: the agent's name, this pid, boot id, now);
  // refused naming the holder. When it is held already (taken, or adopted), makes the record name
  // this process if it names another. Ok when no lock was configured.
  absl::Status Take();
  // The record reaches the datastore (an upgrade's Take renames it in the pause, unsynced).
  void SyncRecord() const {
    if (lock_) lock_->SyncRecord();
  }
  // Lets the lock go (closes its description); nothing when not held.
  void Release();
  // Ok when the VM may run: it has no lock file, or this process holds its lock.
  absl::Status RequireHeldToRun() const;

  bool configured() const { return !path_.empty(); }
  bool held() const { return lock_.has_value(); }
  const std::string& path() const { return path_; }
  // The description holding the lock, -1 when not held (what a VMM upgrade hands over).
  int fd() const { return lock_ ? lock_->fd() : -1; }

 private:
  std::string path_;
  std::string agent_;
  std::string vm_name_;
  std::optional<VmLock> lock_;
};

}  // namespace ferry
