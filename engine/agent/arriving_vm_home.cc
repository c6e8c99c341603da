#include "engine/agent/arriving_vm_home.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/agent/host_facts_source.h"
#include "engine/agent/remote_vm.h"
#include "engine/base/status.h"
#include "engine/storage/vm_config.h"

namespace ferry {

absl::Status ArrivingVmHome::Locate(const AgentConfig& config, const v1::VmHome& home, VmSpec& spec) {
  ASSIGN_OR_RETURN(HostFacts host, AgentHostFacts(config));
  const DatastoreFacts* ds = DatastoreByUuid(host, home.datastore_uuid());
  if (!ds) {
    return absl::FailedPreconditionError(absl::StrCat("vm ", spec.name, " lives on datastore ", home.datastore_uuid(),
                                                      ", which host ", host.name, " does not mount"));
  }
  if (home.directory() != spec.name) {
    return absl::InvalidArgumentError(
        absl::StrCat("vm ", spec.name, "'s directory is named '", home.directory(), "', not after the VM"));
  }
  ASSIGN_OR_RETURN(DatastoreVm vm, OpenDatastoreVm(*ds, (std::filesystem::path(ds->path) / spec.name).string()));
  spec.disks = vm.spec.disks;  // this host's paths to the same files
  spec.console_log_path = vm.spec.console_log_path;
  vm_ = std::move(vm);
  return absl::OkStatus();
}

VmmLockRequest ArrivingVmHome::LockRequest(const std::string& agent) const {
  if (!vm_) return {};
  return {vm_->lock_path(), agent};
}

absl::Status ArrivingVmHome::TakeLock(const std::string& agent) {
  if (!vm_) return absl::FailedPreconditionError("the VM's directory was not located on this host");
  if (auto* remote = dynamic_cast<RemoteVm*>(arriving_vm_)) return remote->TakeLock();
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(vm_->lock_path(), vm_->spec.name, ThisProcessAsHolder(agent)));
  lock_.emplace(std::move(lock));
  return absl::OkStatus();
}

void ArrivingVmHome::HandTo(VmOwnership& ownership) {
  if (!vm_) return;
  if (dynamic_cast<RemoteVm*>(arriving_vm_)) {
    ownership.Put(*vm_);  // its VMM holds the lock
  } else if (lock_) {
    ownership.Put(*vm_, std::move(*lock_));
    lock_.reset();
  }
}

}  // namespace ferry
