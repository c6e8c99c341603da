#include "engine/host/disk_access.h"

#include "absl/strings/str_cat.h"
#include "engine/vm/disks.h"

namespace ferry {

std::string TranslateDatastorePath(const std::string& path, const HostFacts& source, const HostFacts& self) {
  const DatastoreFacts* src = DatastoreOf(source, path);
  if (src == nullptr) return "";
  const DatastoreFacts* mine = DatastoreByUuid(self, src->uuid);
  if (mine == nullptr) return "";
  std::string root = src->path;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::string base = mine->path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return absl::StrCat(base, path.substr(root.size()));
}

void ProbeDiskAccess(HostFacts& self, const VmSpec& vm, const HostFacts& source) {
  for (size_t i = 0; i < vm.disks.size(); ++i) {
    const DiskSpec& disk = vm.disks[i];
    if (disk.kind != DiskKind::kFile && disk.kind != DiskKind::kRdm) continue;
    std::string local = TranslateDatastorePath(disk.path, source, self);
    if (local.empty()) continue;
    DiskSpec probe;
    probe.kind = DiskKind::kFile;
    probe.path = local;
    probe.size_bytes = disk.kind == DiskKind::kFile ? disk.size_bytes : 0;
    absl::Status st = OpenDisk(probe, i);
    DiskAccessFacts access{disk.path, st.ok(), st.ok() ? "" : std::string(st.message())};
    bool replaced = false;
    for (DiskAccessFacts& existing : self.disk_access) {
      if (existing.path == disk.path) {
        existing = access;
        replaced = true;
      }
    }
    if (!replaced) self.disk_access.push_back(std::move(access));
  }
}

}  // namespace ferry
