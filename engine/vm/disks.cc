#include "engine/vm/disks.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/vm/vm_spec_file.h"

namespace ferry {
namespace {

// Opens `path` read-only (what a reader needs; the VMM reopens read-write when it does I/O) and
// returns its size.
absl::StatusOr<uint64_t> OpenAndSize(const std::string& path, const std::string& what, bool want_block) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat(what, ": cannot open ", path));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoError(absl::StrCat(what, ": stat ", path));
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return ErrnoError(absl::StrCat(what, ": BLKGETSIZE64 ", path));
    return bytes;
  }
  if (want_block) return absl::FailedPreconditionError(absl::StrCat(what, ": ", path, " is not a block device"));
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(what, ": ", path, " is not a regular file"));
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

absl::Status OpenDisk(const DiskSpec& disk, size_t index) {
  std::string what = absl::StrCat("disk ", index, " (", DiskKindName(disk.kind), ")");
  switch (disk.kind) {
    case DiskKind::kFile: {
      ASSIGN_OR_RETURN(uint64_t size, OpenAndSize(disk.path, what, false));
      if (disk.size_bytes != 0 && size != disk.size_bytes) {
        return absl::FailedPreconditionError(absl::StrCat(what, ": ", disk.path, " is ", size,
                                                          " bytes, the spec says ", disk.size_bytes));
      }
      return absl::OkStatus();
    }
    case DiskKind::kRdm: {
      RETURN_IF_ERROR(OpenAndSize(disk.device, what, true).status());
      return OpenAndSize(disk.path, absl::StrCat(what, " mapping file"), false).status();
    }
    case DiskKind::kCdrom:
    case DiskKind::kFloppy:
      if (disk.path.empty()) return absl::OkStatus();  // empty drive
      return OpenAndSize(disk.path, what, false).status();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ": unknown disk kind"));
}

absl::Status CheckHandedOverDisks(const VmSpec& vm, std::span<const UniqueFd> fds) {
  size_t file_disks = 0;
  for (const DiskSpec& d : vm.disks) file_disks += d.kind == DiskKind::kFile;
  if (fds.size() != file_disks) {
    return absl::InvalidArgumentError(absl::StrCat("take-over: ", fds.size(), " disk descriptors handed over, vm ",
                                                   vm.name, " has ", file_disks, " file disks"));
  }
  size_t index = 0;
  for (const DiskSpec& disk : vm.disks) {
    if (disk.kind != DiskKind::kFile) continue;
    const int fd = fds[index].get();
    const std::string what = absl::StrCat("take-over: disk ", index++, " (", disk.path, ")");
    struct stat handed {}, named {};
    if (fd < 0 || fstat(fd, &handed) != 0) return ErrnoError(absl::StrCat(what, ": the handed descriptor is not open"));
    if (!S_ISREG(handed.st_mode) && !S_ISBLK(handed.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the handed descriptor is not a regular file or block device"));
    }
    if (stat(disk.path.c_str(), &named) != 0) return ErrnoError(absl::StrCat(what, ": stat"));
    if (handed.st_dev != named.st_dev || handed.st_ino != named.st_ino) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the handed descriptor is another file (device ",
                                                     handed.st_dev, ", inode ", handed.st_ino, ") than the path names (device ",
                                                     named.st_dev, ", inode ", named.st_ino, ")"));
    }
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the handed descriptor is not open read-write"));
    }
    if (S_ISREG(handed.st_mode) && disk.size_bytes != 0 && static_cast<uint64_t>(handed.st_size) != disk.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the handed file is ", handed.st_size,
                                                     " bytes, the spec says ", disk.size_bytes));
    }
  }
  return absl::OkStatus();
}

absl::Status OpenDisks(const VmSpec& vm) {
  for (size_t i = 0; i < vm.disks.size(); ++i) RETURN_IF_ERROR(OpenDisk(vm.disks[i], i));
  return absl::OkStatus();
}

}  // namespace ferry
