#include "engine/vmm/vmm_lock_keeper.h"

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

absl::Status VmmLockKeeper::Take() {
  if (!configured() || held()) return absl::OkStatus();
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
