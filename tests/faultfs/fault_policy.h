#pragma once
// What ferry-faultfs does to each file-system operation: the mode it is in (healthy, apd, pdl,
// enospc, readonly, slow), optionally scoped to paths under a prefix, and the control command text
// that sets it. Pure values and functions: no FUSE, no threads (fault_gate.h applies them).

#include <cerrno>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry::faultfs {

// The errno a PDL returns. ENODEV ("No such device"): the device behind the datastore is gone. EIO
// would be the other candidate, but a transient path failure returns EIO too, so a caller could
// not tell "retry later" from "gone for good"; ENODEV leaves no doubt (docs/faultfs.md).
inline constexpr int kDeviceGoneErrno = ENODEV;

enum class FaultMode {
  kHealthy = 1,
  kApd,       // all paths down: every operation blocks until the mode changes
  kPdl,       // permanent device loss: every operation fails with kDeviceGoneErrno
  kEnospc,    // operations that need new blocks fail with ENOSPC
  kReadOnly,  // every modification fails with EROFS
  kSlow,      // every operation is delayed by slow_ms, then proceeds
};

struct FaultPolicy {
  FaultMode mode = FaultMode::kHealthy;
  int64_t slow_ms = 0;
  // Only paths equal to or under this prefix ("/vm1") are affected; "" or "/" means every path.
  std::string path_prefix;
};

// What an operation is, as far as faults are concerned.
enum class FsOp {
  kLookup,    // getattr, access, readlink, statfs: metadata reads
  kReadDir,   // opendir, readdir
  kOpen,      // open for reading
  kOpenWrite, // open for writing (O_WRONLY/O_RDWR/O_TRUNC)
  kRead,
  kWrite,     // a write into blocks the file already has
  kAllocate,  // anything that needs new blocks: create, mkdir, mknod, symlink, fallocate, a write past EOF or into a hole
  kModify,    // unlink, rmdir, rename, link, truncate, chmod, chown, utimens
  kSync,      // fsync, fdatasync, fsyncdir
};

enum class Verdict { kProceed = 1, kBlock, kFail, kDelay };

struct FaultAction {
  Verdict verdict = Verdict::kProceed;
  int error = 0;         // for kFail: a positive errno
  int64_t delay_ms = 0;  // for kDelay
};

// The action for `op` on `path` (mount-relative, starting with '/') under `policy`.
FaultAction Decide(const FaultPolicy& policy, FsOp op, absl::string_view path);

// True when `path` is `prefix` or lies under it (whole components: "/vm1" covers "/vm1/disk" but
// not "/vm10").
bool PathInScope(absl::string_view prefix, absl::string_view path);

// Parses a control command: "healthy", "apd", "pdl", "enospc", "readonly", "slow MS", each
// optionally followed by "path=/PREFIX". Errors name the bad word.
absl::StatusOr<FaultPolicy> ParsePolicy(absl::string_view command);

// The canonical text of a policy ("slow 20 path=/vm1"), which ParsePolicy accepts back.
std::string DescribePolicy(const FaultPolicy& policy);

absl::string_view ModeName(FaultMode mode);

}  // namespace ferry::faultfs
