#include "engine/storage/datastore_vm.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/storage/datastore.h"
#include "engine/storage/vm_config.h"
#include "engine/vm/disks.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/vm/vm_name.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

absl::Status CreateSparseDisk(const std::string& path, uint64_t bytes) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError(absl::StrCat("cannot create disk ", path));
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return ErrnoError(absl::StrCat("cannot size disk ", path, " to ", bytes, " bytes"));
  }
  return absl::OkStatus();
}

// Removes the directory a create made unless the create finished.
class CreatedDirectory {
 public:
  explicit CreatedDirectory(std::string dir) : dir_(std::move(dir)) {}
  ~CreatedDirectory() {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Keep() { dir_.clear(); }

 private:
  std::string dir_;
};

}  // namespace

std::string DatastoreVm::lock_path() const { return (fs::path(dir) / kVmLockFile).string(); }

absl::StatusOr<DatastoreVm> CreateDatastoreVm(const DatastoreFacts& ds, VmSpec spec,
                                              const std::vector<uint64_t>& disk_bytes) {
  RETURN_IF_ERROR(ValidateVmName(spec.name));
  for (const DiskSpec& d : spec.disks) {
    if (d.kind == DiskKind::kFile) {
      return absl::InvalidArgumentError(absl::StrCat("vm ", spec.name, ": file disk ", d.path,
                                                     " lies outside the VM directory; on a datastore a VM's disks "
                                                     "are made with --disk SIZE"));
    }
  }
  uint64_t needed = kVmDirectoryOverheadBytes;
  for (uint64_t b : disk_bytes) {
    if (b == 0 || b % 512 != 0) {
      return absl::InvalidArgumentError(absl::StrCat("vm ", spec.name, ": disk size ", b,
                                                     " is not a positive multiple of 512 bytes"));
    }
    needed += b;
  }
  VmSpec written = spec;  // disk paths relative, as vm.yaml holds them
  for (size_t i = 0; i < disk_bytes.size(); ++i) {
    written.disks.push_back(DiskSpec{DiskKind::kFile, absl::StrCat("disk", i, ".raw"), "", disk_bytes[i]});
  }
  RETURN_IF_ERROR(CheckDiskWorkload(written));  // before anything is written
  const std::string dir = (fs::path(ds.path) / spec.name).string();
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("vm ", spec.name, ": ", dir, " already exists on datastore ",
                                                 ds.name, " (vm register adds an existing VM directory)"));
  }
  RETURN_IF_ERROR(CheckDatastoreWritable(ds, needed));
  if (mkdir(dir.c_str(), 0755) != 0) return ErrnoError(absl::StrCat("cannot create ", dir));
  CreatedDirectory made(dir);
  for (size_t i = 0; i < disk_bytes.size(); ++i) {
    const DiskSpec& disk = written.disks[spec.disks.size() + i];
    RETURN_IF_ERROR(CreateSparseDisk((fs::path(dir) / disk.path).string(), disk.size_bytes));
  }
  RETURN_IF_ERROR(WriteVmConfig(dir, written));
  {
    UniqueFd lock(open((fs::path(dir) / kVmLockFile).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    if (!lock.valid()) return ErrnoError(absl::StrCat("cannot create ", dir, "/", kVmLockFile));
  }
  ASSIGN_OR_RETURN(DatastoreVm vm, OpenDatastoreVm(ds, dir));
  made.Keep();
  return vm;
}

absl::StatusOr<DatastoreVm> OpenDatastoreVm(const DatastoreFacts& ds, const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return ErrnoError(absl::StrCat("no VM directory ", dir));
  if (!S_ISDIR(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
  ASSIGN_OR_RETURN(VmSpec spec, LoadVmConfig(dir));
  for (size_t i = 0; i < spec.disks.size(); ++i) {
    if (absl::Status opened = OpenDisk(spec.disks[i], i); !opened.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("vm ", spec.name, " (", dir, "): ", opened.message()));
    }
  }
  return DatastoreVm{ds.name, dir, std::move(spec)};
}

absl::StatusOr<std::vector<std::string>> ListDatastoreVms(const DatastoreFacts& ds) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(ds.path, ec)) {
    std::error_code ignored;
    if (e.is_directory(ignored) && fs::exists(e.path() / kVmConfigFile, ignored)) {
      names.push_back(e.path().filename().string());
    }
  }
  if (ec) return absl::FailedPreconditionError(absl::StrCat("datastore ", ds.name, ": cannot list ", ds.path, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<DatastoreVm> FindDatastoreVm(const HostFacts& host, const std::string& name) {
  RETURN_IF_ERROR(ValidateVmName(name));
  const DatastoreFacts* found = nullptr;
  for (const DatastoreFacts& ds : host.datastores) {
    std::error_code ec;
    if (!fs::exists(fs::path(ds.path) / name / kVmConfigFile, ec)) continue;
    if (found) {
      return absl::FailedPreconditionError(absl::StrCat("vm ", name, " is defined on two datastores, ", found->name,
                                                        " and ", ds.name, "; register one by its path"));
    }
    found = &ds;
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no VM named '", name, "' on this host's datastores"));
  return OpenDatastoreVm(*found, (fs::path(found->path) / name).string());
}

absl::StatusOr<DatastoreFacts> DatastoreHoldingVmDirectory(const HostFacts& host, const std::string& dir) {
  const fs::path wanted = fs::path(dir).lexically_normal();
  const fs::path parent = (wanted.has_filename() ? wanted : wanted.parent_path()).parent_path();
  for (const DatastoreFacts& ds : host.datastores) {
    std::error_code ec;
    if (fs::equivalent(parent, ds.path, ec)) return ds;
  }
  return absl::NotFoundError(
      absl::StrCat(dir, " is not a VM directory directly on one of host ", host.name, "'s datastores"));
}

absl::Status DeleteDatastoreVm(const DatastoreVm& vm, const VmLockHolder& me) {
  // Held while deleting: nobody can start the VM meanwhile; closing it after unlink is harmless.
  ASSIGN_OR_RETURN(VmLock lock, VmLock::Acquire(vm.lock_path(), vm.spec.name, me));
  std::error_code ec;
  fs::remove_all(vm.dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", vm.dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace ferry
