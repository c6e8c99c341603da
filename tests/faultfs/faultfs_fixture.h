#pragma once
// FaultFsMount: a running ferry-faultfs for a test. Start() makes a temp directory with a backing
// dir and a mount point, starts the binary and returns once the mount is live; SetMode() switches
// faults; Stop() (also run by the destructor) releases blocked operations, unmounts and reaps the
// process, ending with `fusermount3 -u -z` and SIGKILL so no hung mount outlives the test. The
// daemon runs with --exit-with-parent: if the thread that called Start() ends (a crashed test), it
// unmounts and exits by itself. So call Start() from a thread that outlives the mount.

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ferry::faultfs {

struct FaultFsStatus {
  std::string mode;  // "healthy", "apd path=/vm1", "slow 20", ...
  int64_t blocked = 0;
  int64_t failed = 0;
  int64_t delayed = 0;
};

class FaultFsMount {
 public:
  // Why this host cannot run ferry-faultfs ("no /dev/fuse", "fusermount3 not installed", "not root",
  // "ferry-faultfs not built"), or "" when it can. Tests GTEST_SKIP() with it.
  static std::string UnavailableReason();

  // The binary: $FERRY_BIN_DIR/ferry-faultfs, else the one beside the running test binary.
  static std::string BinaryPath();

  static absl::StatusOr<std::unique_ptr<FaultFsMount>> Start(absl::string_view initial_mode = "healthy");
  struct Options {
    std::string initial_mode = "healthy";
    // Serve an existing directory (another mount's backing_dir(): a second "host" with its own path
    // to the same datastore); Stop() leaves it in place. Empty: a fresh temp dir.
    std::string backing_dir;
    bool shared_locks = false;  // ferry-faultfs --shared-locks (docs/faultfs.md "Locks")
  };
  static absl::StatusOr<std::unique_ptr<FaultFsMount>> Start(const Options& options);

  ~FaultFsMount();
  FaultFsMount(const FaultFsMount&) = delete;
  FaultFsMount& operator=(const FaultFsMount&) = delete;

  const std::string& backing_dir() const { return backing_dir_; }
  const std::string& mount_dir() const { return mount_dir_; }
  const std::string& control_path() const { return control_path_; }
  // mount_dir() + "/" + relative
  std::string MountPath(absl::string_view relative) const;
  std::string BackingPath(absl::string_view relative) const;

  // "apd", "pdl path=/vm1", "slow 20", "healthy" ...
  absl::Status SetMode(absl::string_view mode);
  absl::StatusOr<FaultFsStatus> Status();
  // Waits until at least `count` operations are blocked in an APD.
  absl::Status WaitForBlocked(int64_t count, absl::Duration timeout = absl::Seconds(10));
  // Waits until no operation is blocked (released ones have left the file system).
  absl::Status WaitForNoneBlocked(absl::Duration timeout = absl::Seconds(10));

  // Idempotent; the first error met (the mount is still torn down as far as possible).
  absl::Status Stop();

 private:
  FaultFsMount() = default;

  std::string work_dir_, backing_dir_, mount_dir_, control_path_, log_path_;
  pid_t pid_ = -1;
  bool stopped_ = false;
};

// True when `path` is a mount point listed in /proc/self/mountinfo.
bool IsMountPoint(const std::string& path);

}  // namespace ferry::faultfs
