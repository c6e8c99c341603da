#include "engine/agent/storage_migration_out.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/remote_vm.h"
#include "engine/vm/micro_vm.h"

namespace ferry {

absl::Status PrepareStorageMigration(const VmOwnership& ownership, const std::string& name,
                                     const std::string& to_datastore, Vm& vm, SourceConfig& config) {
  std::optional<DatastoreVm> home = ownership.Find(name);
  if (!home) {
    return absl::FailedPreconditionError(absl::StrCat(
        "vm ", name, " is not defined on a datastore here: only a datastore VM (vm create --datastore) can move "
        "to another datastore"));
  }
  bool has_file_disk = false;
  for (const DiskSpec& d : vm.spec().disks) has_file_disk |= d.kind == DiskKind::kFile;
  if (!has_file_disk) return absl::FailedPreconditionError(absl::StrCat("vm ", name, " has no disk to move"));
  config.storage_datastore = to_datastore;
  config.disk_write_log = [&vm](uint32_t disk, DirtyBitmap& out) {
    // The VM in its own VMM process reports over its socket; an in-process microVM directly.
    if (auto* remote = dynamic_cast<RemoteVm*>(&vm)) return remote->CollectDiskWrites(disk, out);
    return CollectDiskWrites(vm, disk, out);
  };
  // Mirror mode: the VMM holds write completions until their cut was acknowledged.
  auto* remote = dynamic_cast<RemoteVm*>(&vm);
  config.disk_mirror.start = [&vm, remote]() { return remote ? remote->StartDiskMirror() : StartDiskMirror(vm); };
  config.disk_mirror.step = [&vm, remote](uint32_t disk, uint64_t release_through, uint32_t wait_ms,
                                          DirtyBitmap& out) -> absl::StatusOr<uint64_t> {
    if (remote) return remote->DiskMirrorStep(disk, release_through, wait_ms, out);
    return DiskMirrorStep(vm, disk, release_through, std::chrono::milliseconds(wait_ms), out);
  };
  config.disk_mirror.end = [&vm, remote]() { return remote ? remote->EndDiskMirror() : EndDiskMirror(vm); };
  return absl::OkStatus();
}

absl::Status RemoveSourceDirectory(VmOwnership& ownership, const std::string& name, const std::string& agent) {
  std::optional<DatastoreVm> home = ownership.Find(name);
  if (!home) return absl::NotFoundError(absl::StrCat("vm ", name, " has no directory held here"));
  ownership.Release(name);  // the VM stopped here; DeleteDatastoreVm takes the lock again to remove it
  absl::Status st = DeleteDatastoreVm(*home, ThisProcessAsHolder(agent));
  if (st.ok()) spdlog::info("event=storage_migration_out_removed vm={} dir={}", name, home->dir);
  return st;
}

}  // namespace ferry
