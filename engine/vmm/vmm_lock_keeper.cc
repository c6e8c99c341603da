#include "engine/vmm/vmm_lock_keeper.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {

absl::Status VmmLockKeeper::Configure(const v1::VmmLock& lock, const std::string& vm_name) {
  if (lock.path().empty()) return absl::InvalidArgumentError("create: the VM's lock has an empty path");
  path_ = lock.path();
  agent_ = lock.agent();
  vm_name_ = vm_name;
  return absl::OkStatus();
}

absl::Status VmmLockKeeper::Adopt(UniqueFd fd) {
  if (!configured()) return absl::FailedPreconditionError("create: a lock descriptor came without the lock's path");
  if (held()) return absl::FailedPreconditionError(absl::StrCat("vm ", vm_name_, ": this VMM holds its lock already"));
  ASSIGN_OR_RETURN(VmLock lock, VmLock::AdoptHeld(path_, vm_name_, std::move(fd)));
  spdlog::info("event=vmm_lock_adopted vm={} path={} record_pid={}", vm_name_, path_, lock.holder().pid);
  lock_.emplace(std::move(lock));
  return absl::OkStatus();
}

absl::Status VmmLockKeeper::Take() {
  if (!configured()) return absl::OkStatus();
  if (held()) {
    // Our own record again (an upgrade's successor that named itself died), or our first (adopted).
    const bool ours = lock_->holder().pid == static_cast<int64_t>(getpid());
    VmLockHolder me = ours ? lock_->holder() : ThisProcessAsHolder(agent_);
    RETURN_IF_ERROR(lock_->Restamp(std::move(me)));
    if (!ours) spdlog::info("event=vmm_lock_restamped vm={} path={} pid={}", vm_name_, path_, getpid());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(path_, vm_name_, ThisProcessAsHolder(agent_)));
  lock_.emplace(std::move(lock));
  spdlog::info("event=vmm_lock_taken vm={} path={}", vm_name_, path_);
  return absl::OkStatus();
}

void VmmLockKeeper::Release() {
  if (!lock_) return;
  lock_.reset();
  spdlog::info("event=vmm_lock_released vm={} path={}", vm_name_, path_);
}

absl::Status VmmLockKeeper::RequireHeldToRun() const {
  if (!configured() || held()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("vm ", vm_name_, " does not hold its lock (", path_,
                                                    "); it does not run without it"));
}

}  // namespace ferry
