#include "engine/agent/vm_ownership.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/host/datastore_id.h"

namespace ferry {

absl::Status VmOwnership::Take(const DatastoreVm& vm, const std::string& agent) {
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(vm.lock_path(), vm.spec.name, ThisProcessAsHolder(agent)));
  Put(vm, std::move(lock));
  return absl::OkStatus();
}

void VmOwnership::Put(DatastoreVm vm, VmLock lock) {
  std::lock_guard guard(mu_);
  const std::string name = vm.spec.name;
  owned_.erase(name);
  owned_.emplace(name, Owned{std::move(vm), std::move(lock)});
}

void VmOwnership::Release(const std::string& name) {
  std::lock_guard guard(mu_);
  owned_.erase(name);
}

void VmOwnership::ReleaseForCommit(const std::string& name) {
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it != owned_.end()) it->second.lock.reset();
}

absl::Status VmOwnership::RetakeAfterCommit(const std::string& name, const std::string& agent) {
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it == owned_.end()) return absl::NotFoundError(absl::StrCat("this agent never held the lock of vm ", name));
  if (it->second.lock) return absl::OkStatus();
  ASSIGN_OR_RETURN(VmLock lock,
                   VmLock::Acquire(it->second.vm.lock_path(), name, ThisProcessAsHolder(agent)));
  it->second.lock.emplace(std::move(lock));
  return absl::OkStatus();
}

std::optional<DatastoreVm> VmOwnership::Find(const std::string& name) const {
  std::lock_guard guard(mu_);
  auto it = owned_.find(name);
  if (it == owned_.end()) return std::nullopt;
  return it->second.vm;
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

absl::Status PrepareLockHandover(VmOwnership& ownership, const std::string& name, const std::string& agent,
                                 SourceConfig& config) {
  std::optional<DatastoreVm> vm = ownership.Find(name);
  if (!vm) return absl::OkStatus();  // not defined on a datastore: no lock to pass
  ASSIGN_OR_RETURN(config.home, HomeOf(*vm));
  config.release_ownership = [&ownership, name] { ownership.ReleaseForCommit(name); };
  config.retake_ownership = [&ownership, name, agent] { return ownership.RetakeAfterCommit(name, agent); };
  return absl::OkStatus();
}

}  // namespace ferry
