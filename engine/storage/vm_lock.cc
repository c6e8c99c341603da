#include "engine/storage/vm_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "engine/base/clock_id.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr size_t kMaxRecordBytes = 4096;

struct flock WholeFile(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // to the end, whatever the size
  fl.l_pid = 0;  // must be 0 for OFD locks
  return fl;
}

// The record: "key: value" lines (a small YAML mapping).
std::string FormatRecord(const VmLockHolder& h) {
  return absl::StrCat("agent: ", h.agent, "\npid: ", h.pid, "\nboot_id: ", h.boot_id, "\nsince_unix_s: ",
                      h.since_unix_s, "\n");
}

VmLockHolder ParseRecord(const std::string& text) {
  VmLockHolder h;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(": ", 1));
    if (kv.first == "agent") h.agent = std::string(kv.second);
    if (kv.first == "pid") (void)absl::SimpleAtoi(kv.second, &h.pid);
    if (kv.first == "boot_id") h.boot_id = std::string(kv.second);
    if (kv.first == "since_unix_s") (void)absl::SimpleAtoi(kv.second, &h.since_unix_s);
  }
  return h;
}

absl::StatusOr<std::string> ReadRecord(int fd, const std::string& path) {
  std::string text(kMaxRecordBytes, '\0');
  ssize_t n = pread(fd, text.data(), text.size(), 0);
  if (n < 0) return ErrnoError(absl::StrCat("cannot read ", path));
  text.resize(static_cast<size_t>(n));
  return text;
}

// Whether some open file description holds a lock conflicting with a whole-file write lock.
absl::StatusOr<bool> HeldByAnyone(int fd, const std::string& path) {
  struct flock fl = WholeFile(F_WRLCK);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return ErrnoError(absl::StrCat("cannot query the lock on ", path));
  return fl.l_type != F_UNLCK;
}

}  // namespace

std::string DescribeHolder(const VmLockHolder& h) {
  if (h.agent.empty() && h.pid == 0) return "an unknown holder (it has not written its record yet)";
  std::string boot = h.boot_id.substr(0, 8);
  std::string since = h.since_unix_s
                          ? absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(h.since_unix_s),
                                             absl::UTCTimeZone())
                          : "an unknown time";
  return absl::StrCat("agent ", h.agent.empty() ? "?" : h.agent, " (pid ", h.pid,
                      boot.empty() ? "" : absl::StrCat(", boot ", boot), ") since ", since);
}

absl::Status LockedBy(const std::string& vm_name, const VmLockHolder& holder, const std::string& lock_path) {
  return absl::FailedPreconditionError(absl::StrCat("vm ", vm_name, " is locked by ", DescribeHolder(holder),
                                                    "; it is running there (", lock_path, ")"));
}

VmLockHolder ThisProcessAsHolder(const std::string& agent) {
  return VmLockHolder{agent, static_cast<int64_t>(getpid()), MonotonicClockId(),
                      static_cast<int64_t>(time(nullptr))};
}

absl::StatusOr<VmLock> VmLock::Acquire(const std::string& lock_path, const std::string& vm_name, VmLockHolder me) {
  UniqueFd fd(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    const int err = errno;
    if (err == EROFS) {
      return absl::FailedPreconditionError(absl::StrCat("cannot lock vm ", vm_name, ": ", lock_path,
                                                        " is on a read-only datastore"));
    }
    return ErrnoError(absl::StrCat("cannot open the lock file ", lock_path), err);
  }
  struct flock fl = WholeFile(F_WRLCK);
  if (fcntl(fd.get(), F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    if (err != EAGAIN && err != EACCES) return ErrnoError(absl::StrCat("cannot lock ", lock_path), err);
    auto text = ReadRecord(fd.get(), lock_path);
    VmLockHolder holder = text.ok() ? ParseRecord(*text) : VmLockHolder{};
    return LockedBy(vm_name, holder, lock_path);
  }
  // Ours now: replace whatever stale record an earlier holder left.
  const std::string record = FormatRecord(me);
  if (ftruncate(fd.get(), 0) != 0 ||
      pwrite(fd.get(), record.data(), record.size(), 0) != static_cast<ssize_t>(record.size())) {
    return ErrnoError(absl::StrCat("cannot write the holder record into ", lock_path));
  }
  (void)fdatasync(fd.get());
  return VmLock(lock_path, std::move(fd), std::move(me));
}

absl::StatusOr<VmLock> VmLock::AdoptHeld(const std::string& lock_path, const std::string& vm_name, UniqueFd fd) {
  const std::string what = absl::StrCat("the lock of vm ", vm_name, " handed over (", lock_path, ")");
  struct stat handed {}, named {};
  if (!fd.valid() || fstat(fd.get(), &handed) != 0) return ErrnoError(absl::StrCat(what, ": not an open file"));
  if (stat(lock_path.c_str(), &named) != 0) return ErrnoError(absl::StrCat(what, ": cannot stat the lock file"));
  if (!S_ISREG(handed.st_mode) || handed.st_dev != named.st_dev || handed.st_ino != named.st_ino) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the descriptor is another file than the lock file"));
  }
  if ((fcntl(fd.get(), F_GETFL) & O_ACCMODE) != O_RDWR) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the descriptor is not open read-write"));
  }
  // Held by this description: no other description's lock conflicts with it, yet one opened now
  // finds the file locked.
  ASSIGN_OR_RETURN(bool held_by_others, HeldByAnyone(fd.get(), lock_path));
  UniqueFd probe(open(lock_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!probe.valid()) return ErrnoError(absl::StrCat(what, ": cannot open the lock file"));
  ASSIGN_OR_RETURN(bool held_at_all, HeldByAnyone(probe.get(), lock_path));
  if (held_by_others || !held_at_all) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, held_by_others ? ": another description holds the lock" : ": the descriptor holds no lock"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadRecord(fd.get(), lock_path));
  return VmLock(lock_path, std::move(fd), ParseRecord(text));
}

absl::Status VmLock::Restamp(VmLockHolder me) {
  ASSIGN_OR_RETURN(std::string old_text, ReadRecord(fd_.get(), path_));
  const VmLockHolder old = ParseRecord(old_text);
  std::string record = FormatRecord(me);
  if (old.agent == me.agent && old.pid == me.pid && old.boot_id == me.boot_id && old.since_unix_s == me.since_unix_s) {
    holder_ = std::move(me);
    return absl::OkStatus();
  }
  // Padded with empty lines to the old record's length: one pwrite replaces it whole, no truncate.
  if (record.size() < old_text.size()) record.append(old_text.size() - record.size(), '\n');
  if (pwrite(fd_.get(), record.data(), record.size(), 0) != static_cast<ssize_t>(record.size())) {
    return ErrnoError(absl::StrCat("cannot write the holder record into ", path_));
  }
  holder_ = std::move(me);
  return absl::OkStatus();
}

void VmLock::SyncRecord() const { (void)fdatasync(fd_.get()); }

absl::StatusOr<std::optional<VmLockHolder>> VmLock::CurrentHolder(const std::string& lock_path) {
  UniqueFd fd(open(lock_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<VmLockHolder>();
    return ErrnoError(absl::StrCat("cannot open the lock file ", lock_path));
  }
  ASSIGN_OR_RETURN(bool held, HeldByAnyone(fd.get(), lock_path));
  if (!held) return std::optional<VmLockHolder>();
  ASSIGN_OR_RETURN(std::string text, ReadRecord(fd.get(), lock_path));
  return std::optional<VmLockHolder>(ParseRecord(text));
}

}  // namespace ferry
