#include "engine/agent/vm_ownership.h"

#include <filesystem>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/base/status.h"
#include "engine/host/datastore_id.h"

namespace ferry {

void VmOwnership::Put(DatastoreVm vm, std::optional<VmLock> agent_lock) {
  std::lock_guard guard(mu_);
  const std::string name = vm.spec.name;
  lost_.erase(name);
  owned_.erase(name);
  owned_.emplace(name, Owned{std::move(vm), std::move(agent_lock)});
}

absl::Status VmOwnership::TakeInAgent(const DatastoreVm& vm, const std::string& agent) {
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(vm.lock_path(), vm.spec.name, ThisProcessAsHolder(agent)));
  Put(vm, std::move(lock));
  return absl::OkStatus();
}

void VmOwnership::Release(const std::string& name) {
  std::lock_guard guard(mu_);
  owned_.erase(name);
}

absl::Status VmOwnership::ReleaseForCommit(const std::string& name, Vm& vm) {
  if (auto* remote = dynamic_cast<RemoteVm*>(&vm)) return remote->ReleaseLock();
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it != owned_.end()) it->second.agent_lock.reset();
  return absl::OkStatus();
}

absl::Status VmOwnership::RetakeAfterCommit(const std::string& name, Vm& vm, const std::string& agent) {
  if (auto* remote = dynamic_cast<RemoteVm*>(&vm)) return remote->TakeLock();
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it == owned_.end()) return absl::NotFoundError(absl::StrCat("this agent never held the lock of vm ", name));
  if (it->second.agent_lock) return absl::OkStatus();
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(it->second.vm.lock_path(), name, ThisProcessAsHolder(agent)));
  it->second.agent_lock.emplace(std::move(lock));
  return absl::OkStatus();
}

std::optional<DatastoreVm> VmOwnership::Find(const std::string& name) const {
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it == owned_.end()) return std::nullopt;
  return it->second.vm;
}

absl::StatusOr<std::optional<VmLockHolder>> VmOwnership::Holder(const std::string& name) const {
  std::optional<DatastoreVm> vm = Find(name);
  if (!vm) return std::optional<VmLockHolder>();
  return VmLock::CurrentHolder(vm->lock_path());
}

void VmOwnership::NoteLost(const std::string& name, const std::string& reason) {
  std::lock_guard guard(mu_);
  lost_[name] = reason;
}

std::string VmOwnership::LostReason(const std::string& name) const {
  std::lock_guard guard(mu_);
  auto it = lost_.find(name);
  return it == lost_.end() ? "" : it->second;
}

absl::StatusOr<v1::VmHome> HomeOf(const DatastoreVm& vm) {
  const std::filesystem::path dir(vm.dir);
  ASSIGN_OR_RETURN(DatastoreIdentity id,
                   IdentifyDatastore(dir.parent_path().string(), DatastoreIdPolicy::kReadOnly));
  if (id.uuid.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("datastore ", vm.datastore, " has no identity file yet"));
  }
  v1::VmHome home;
  home.set_datastore_uuid(id.uuid);
  home.set_directory(dir.filename().string());
  return home;
}

absl::Status PrepareLockHandover(VmOwnership& ownership, const std::string& name, Vm& vm, const std::string& agent,
                                 SourceConfig& config) {
  std::optional<DatastoreVm> home = ownership.Find(name);
  if (!home) return absl::OkStatus();  // not defined on a datastore: no lock to pass
  ASSIGN_OR_RETURN(config.home, HomeOf(*home));
  config.release_ownership = [&ownership, &vm, name] {
    // A holder that cannot let go keeps the lock: the destination then refuses the commit and the
    // VM resumes here. Never two holders either way.
    if (absl::Status st = ownership.ReleaseForCommit(name, vm); !st.ok()) {
      spdlog::error("event=vm_lock_release_failed vm={} error=\"{}\"", name, std::string(st.message()));
    }
  };
  config.retake_ownership = [&ownership, &vm, name, agent] { return ownership.RetakeAfterCommit(name, vm, agent); };
  return absl::OkStatus();
}

}  // namespace ferry
