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

absl::Status OpenDisks(const VmSpec& vm) {
  for (size_t i = 0; i < vm.disks.size(); ++i) RETURN_IF_ERROR(OpenDisk(vm.disks[i], i));
  return absl::OkStatus();
}

}  // namespace ferry
