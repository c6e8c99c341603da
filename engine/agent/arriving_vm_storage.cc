#include "engine/agent/arriving_vm_storage.h"

#include <filesystem>
#include <system_error>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/host_facts_source.h"
#include "engine/agent/remote_vm.h"
#include "engine/base/status.h"
#include "engine/storage/datastore.h"

namespace ferry {

absl::Status ArrivingVmStorage::Create(const AgentConfig& config, const v1::StorageTarget& target, VmSpec& spec) {
  if (vm_) return absl::FailedPreconditionError("the VM's new directory was already made");
  ASSIGN_OR_RETURN(HostFacts host, AgentHostFacts(config));
  auto ds = DatastoreByName(host, target.datastore());
  if (!ds.ok()) {
    return absl::Status(ds.status().code(), absl::StrCat("storage migration of vm ", spec.name, " to datastore '",
                                                         target.datastore(), "': ", ds.status().message()));
  }
  VmSpec without_files = spec;  // the new directory gets new disks; media and RDMs keep their paths
  std::erase_if(without_files.disks, [](const DiskSpec& d) { return d.kind == DiskKind::kFile; });
  std::vector<uint64_t> sizes(target.disk_bytes().begin(), target.disk_bytes().end());
  auto made = CreateDatastoreVm(*ds, without_files, sizes);
  if (!made.ok()) {
    return absl::Status(made.status().code(), absl::StrCat("storage migration of vm ", spec.name, " to datastore '",
                                                           target.datastore(), "': ", made.status().message()));
  }
  spec.disks = made->spec.disks;
  // This host writes their content (DiskCopyReceiver): its page cache of them stays coherent.
  for (DiskSpec& d : spec.disks) d.filled_by_this_host = d.kind == DiskKind::kFile;
  spec.console_log_path = made->spec.console_log_path;
  spdlog::info("event=storage_migration_in_directory vm={} datastore={} dir={} disks={}", spec.name, made->datastore,
               made->dir, sizes.size());
  vm_ = std::move(*made);
  return absl::OkStatus();
}

VmmLockRequest ArrivingVmStorage::LockRequest(const std::string& agent) const {
  if (!vm_) return {};
  return {vm_->lock_path(), agent};
}

absl::Status ArrivingVmStorage::TakeLock(const std::string& agent) {
  if (!vm_) return absl::FailedPreconditionError("the VM's new directory was not made");
  if (auto* remote = dynamic_cast<RemoteVm*>(arriving_vm_)) return remote->TakeLock();
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(vm_->lock_path(), vm_->spec.name, ThisProcessAsHolder(agent)));
  lock_.emplace(std::move(lock));
  return absl::OkStatus();
}

void ArrivingVmStorage::HandTo(VmOwnership& ownership) {
  if (!vm_) return;
  if (dynamic_cast<RemoteVm*>(arriving_vm_)) {
    ownership.Put(*vm_);  // its VMM holds the lock
    kept_ = true;
    return;
  }
  if (!lock_) return;
  ownership.Put(*vm_, std::move(*lock_));
  lock_.reset();
  kept_ = true;
}

void ArrivingVmStorage::RemoveUnlessKept() {
  if (!vm_ || kept_) return;
  lock_.reset();
  std::error_code ec;
  std::filesystem::remove_all(vm_->dir, ec);
  if (ec) {
    spdlog::warn("event=storage_migration_in_cleanup_failed dir={} error=\"{}\"", vm_->dir, ec.message());
  } else {
    spdlog::info("event=storage_migration_in_removed dir={} (the VM did not arrive)", vm_->dir);
  }
  vm_.reset();
}

}  // namespace ferry
