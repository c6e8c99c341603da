#include "engine/storage/datastore.h"

#include <sys/statvfs.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

std::string Mib(uint64_t bytes) { return absl::StrCat((bytes + kMiB - 1) / kMiB, " MiB"); }

}  // namespace

absl::StatusOr<DatastoreFacts> DatastoreByName(const HostFacts& host, const std::string& name) {
  std::string known;
  for (const DatastoreFacts& ds : host.datastores) {
    if (ds.name == name) return ds;
    absl::StrAppend(&known, known.empty() ? "" : ", ", ds.name);
  }
  return absl::NotFoundError(absl::StrCat("no datastore named '", name, "' on host ", host.name,
                                          known.empty() ? " (it has none)" : absl::StrCat(" (it has: ", known, ")")));
}

absl::StatusOr<DatastoreSpace> MeasureDatastoreSpace(const DatastoreFacts& ds) {
  struct statvfs fs {};
  if (statvfs(ds.path.c_str(), &fs) != 0) {
    return ErrnoError(absl::StrCat("datastore ", ds.name, ": cannot examine ", ds.path));
  }
  return DatastoreSpace{static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize, (fs.f_flag & ST_RDONLY) != 0};
}

absl::Status CheckDatastoreWritable(const DatastoreFacts& ds, uint64_t needed_bytes) {
  struct statvfs fs {};
  if (statvfs(ds.path.c_str(), &fs) != 0) {
    return ErrnoError(absl::StrCat("datastore ", ds.name, ": cannot examine ", ds.path));
  }
  if (fs.f_flag & ST_RDONLY) {
    return absl::FailedPreconditionError(
        absl::StrCat("datastore ", ds.name, " (", ds.path, ") is mounted read-only on this host"));
  }
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (needed_bytes > free_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("datastore ", ds.name, " (", ds.path, ") has ", Mib(free_bytes),
                                                     " free; the VM needs ", Mib(needed_bytes)));
  }
  return absl::OkStatus();
}

}  // namespace ferry
