#include "tests/faultfs/passthrough_ops.h"

#include <fuse3/fuse_lowlevel.h>  // fuse_session_exited

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace ferry::faultfs {
namespace {

PassthroughContext& Ctx() { return *static_cast<PassthroughContext*>(fuse_get_context()->private_data); }

// The backing directory's name for a mount path: "/a/b" -> "a/b", "/" -> ".".
const char* Rel(const char* path) {
  if (path == nullptr || path[0] == '\0' || (path[0] == '/' && path[1] == '\0')) return ".";
  return path[0] == '/' ? path + 1 : path;
}

int Errno() { return -errno; }

// True when thread `tid` has SIGKILL pending: it is being killed (the kernel then interrupts the
// FUSE request it waits on). Other signals do not end an APD wait, as they do not end a real one.
bool BeingKilled(pid_t tid) {
  std::ifstream status(absl::StrCat("/proc/", tid, "/status"));
  std::string line;
  const uint64_t kill_bit = uint64_t{1} << (SIGKILL - 1);
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "SigPnd:") && !absl::ConsumePrefix(&rest, "ShdPnd:")) continue;
    uint64_t mask = 0;
    if (absl::SimpleHexAtoi(absl::StripAsciiWhitespace(rest), &mask) && (mask & kill_bit) != 0) return true;
  }
  return false;
}

int Admit(FsOp op, const char* path) {
  PassthroughContext& ctx = Ctx();
  FaultGate::WaitHooks hooks;
  hooks.abandon = [] { return fuse_interrupted() != 0 && BeingKilled(fuse_get_context()->pid); };
  fuse_session* session = ctx.session;
  hooks.shutting_down = [session] { return session != nullptr && fuse_session_exited(session) != 0; };
  return ctx.gate->Admit(op, path, hooks);
}

#define ADMIT(op, path)                  \
  do {                                   \
    int _rc = Admit((op), (path));       \
    if (_rc != 0) return _rc;            \
  } while (0)

// A write needs new blocks when it reaches past EOF or into a hole (what fails first on a full disk).
bool WriteAllocates(int fd, size_t size, off_t offset) {
  struct stat st;
  if (fstat(fd, &st) != 0) return true;
  off_t end = offset + static_cast<off_t>(size);
  if (end > st.st_size) return true;
  off_t hole = lseek(fd, offset, SEEK_HOLE);
  return hole < 0 || hole < end;
}

void* Init(fuse_conn_info* conn, fuse_config* cfg) {
  cfg->use_ino = 1;
  // No kernel caching of data or attributes: every read, write and stat reaches the gate, so a
  // fault switched on applies to the very next operation.
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->hard_remove = 1;  // an unlinked open file stays usable through its handle
  return fuse_get_context()->private_data;
}

int GetAttr(const char* path, struct stat* st, fuse_file_info* fi) {
  ADMIT(FsOp::kLookup, path);
  int rc = fi != nullptr ? fstat(static_cast<int>(fi->fh), st)
                         : fstatat(Ctx().backing_fd, Rel(path), st, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : Errno();
}

int ReadLink(const char* path, char* buf, size_t size) {
  ADMIT(FsOp::kLookup, path);
  ssize_t n = readlinkat(Ctx().backing_fd, Rel(path), buf, size - 1);
  if (n < 0) return Errno();
  buf[n] = '\0';
  return 0;
}

int MkNod(const char* path, mode_t mode, dev_t rdev) {
  ADMIT(FsOp::kAllocate, path);
  return mknodat(Ctx().backing_fd, Rel(path), mode, rdev) == 0 ? 0 : Errno();
}

int MkDir(const char* path, mode_t mode) {
  ADMIT(FsOp::kAllocate, path);
  return mkdirat(Ctx().backing_fd, Rel(path), mode) == 0 ? 0 : Errno();
}

int Unlink(const char* path) {
  ADMIT(FsOp::kModify, path);
  return unlinkat(Ctx().backing_fd, Rel(path), 0) == 0 ? 0 : Errno();
}

int RmDir(const char* path) {
  ADMIT(FsOp::kModify, path);
  return unlinkat(Ctx().backing_fd, Rel(path), AT_REMOVEDIR) == 0 ? 0 : Errno();
}

int SymLink(const char* target, const char* path) {
  ADMIT(FsOp::kAllocate, path);
  return symlinkat(target, Ctx().backing_fd, Rel(path)) == 0 ? 0 : Errno();
}

int Rename(const char* from, const char* to, unsigned int flags) {
  ADMIT(FsOp::kModify, from);
  ADMIT(FsOp::kModify, to);
  int bfd = Ctx().backing_fd;
  return renameat2(bfd, Rel(from), bfd, Rel(to), flags) == 0 ? 0 : Errno();
}

int Link(const char* from, const char* to) {
  ADMIT(FsOp::kModify, to);
  int bfd = Ctx().backing_fd;
  return linkat(bfd, Rel(from), bfd, Rel(to), 0) == 0 ? 0 : Errno();
}

int ChMod(const char* path, mode_t mode, fuse_file_info* fi) {
  ADMIT(FsOp::kModify, path);
  int rc = fi != nullptr ? fchmod(static_cast<int>(fi->fh), mode) : fchmodat(Ctx().backing_fd, Rel(path), mode, 0);
  return rc == 0 ? 0 : Errno();
}

int ChOwn(const char* path, uid_t uid, gid_t gid, fuse_file_info* fi) {
  ADMIT(FsOp::kModify, path);
  int rc = fi != nullptr ? fchown(static_cast<int>(fi->fh), uid, gid)
                         : fchownat(Ctx().backing_fd, Rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : Errno();
}

int Truncate(const char* path, off_t size, fuse_file_info* fi) {
  ADMIT(FsOp::kModify, path);
  if (fi != nullptr) return ftruncate(static_cast<int>(fi->fh), size) == 0 ? 0 : Errno();
  int fd = openat(Ctx().backing_fd, Rel(path), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno();
  int rc = ftruncate(fd, size) == 0 ? 0 : Errno();
  close(fd);
  return rc;
}

// The backing file is opened without O_DIRECT: libfuse's buffers are not aligned for it, and the
// kernel already sends every read and write here (direct_io).
int BackingFlags(int flags) { return (flags & ~(O_DIRECT | O_NOCTTY)) | O_CLOEXEC; }

int Open(const char* path, fuse_file_info* fi) {
  bool writes = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC) != 0;
  ADMIT(writes ? FsOp::kOpenWrite : FsOp::kOpen, path);
  int fd = openat(Ctx().backing_fd, Rel(path), BackingFlags(fi->flags) & ~(O_CREAT | O_EXCL));
  if (fd < 0) return Errno();
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}

int Create(const char* path, mode_t mode, fuse_file_info* fi) {
  ADMIT(FsOp::kAllocate, path);
  int fd = openat(Ctx().backing_fd, Rel(path), BackingFlags(fi->flags) | O_CREAT, mode);
  if (fd < 0) return Errno();
  fi->fh = static_cast<uint64_t>(fd);
  return 0;
}

int Read(const char* path, char* buf, size_t size, off_t offset, fuse_file_info* fi) {
  ADMIT(FsOp::kRead, path);
  ssize_t n = pread(static_cast<int>(fi->fh), buf, size, offset);
  return n < 0 ? Errno() : static_cast<int>(n);
}

int Write(const char* path, const char* buf, size_t size, off_t offset, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  ADMIT(WriteAllocates(fd, size, offset) ? FsOp::kAllocate : FsOp::kWrite, path);
  ssize_t n = pwrite(fd, buf, size, offset);
  return n < 0 ? Errno() : static_cast<int>(n);
}

int StatFs(const char* path, struct statvfs* st) {
  ADMIT(FsOp::kLookup, path);
  return fstatvfs(Ctx().backing_fd, st) == 0 ? 0 : Errno();
}

// libfuse follows every flush with an unlock of the closing owner's locks (POSIX close semantics).
// The locks here are OFD locks on the backing description, which live until its release, so that
// one unlock is skipped (Lock() reads this flag on the same worker thread).
thread_local bool t_unlock_after_flush = false;

// close() never waits or fails: with direct_io there is no cached data for it to write, and a
// process killed during an APD must be able to close its files and exit (the kernel waits for a
// FUSE flush uninterruptibly), so a VMM powered off under an APD goes away and drops its locks.
int Flush(const char* path, fuse_file_info* fi) {
  t_unlock_after_flush = true;
  return 0;
}

// --shared-locks: byte-range locks become OFD locks on this open's backing description, so they
// exclude locks taken through other mounts of the same backing directory and on the backing files
// directly (two test "hosts" sharing a datastore), and end when the description is released (FUSE
// sends that release asynchronously, after close() has returned).
int Lock(const char* path, fuse_file_info* fi, int cmd, struct flock* lock) {
  bool after_flush = std::exchange(t_unlock_after_flush, false);
  if (after_flush && cmd == F_SETLK && lock->l_type == F_UNLCK) return 0;
  ADMIT(FsOp::kLookup, path);
  int ofd_cmd = cmd == F_GETLK ? F_OFD_GETLK : cmd == F_SETLKW ? F_OFD_SETLKW : F_OFD_SETLK;
  lock->l_pid = 0;  // required by the OFD commands
  return fcntl(static_cast<int>(fi->fh), ofd_cmd, lock) == 0 ? 0 : Errno();
}

int Release(const char* path, fuse_file_info* fi) {
  close(static_cast<int>(fi->fh));
  return 0;
}

int FSync(const char* path, int datasync, fuse_file_info* fi) {
  ADMIT(FsOp::kSync, path);
  int fd = static_cast<int>(fi->fh);
  return (datasync != 0 ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : Errno();
}

DIR* Dir(fuse_file_info* fi) { return reinterpret_cast<DIR*>(static_cast<uintptr_t>(fi->fh)); }

int OpenDir(const char* path, fuse_file_info* fi) {
  ADMIT(FsOp::kReadDir, path);
  int fd = openat(Ctx().backing_fd, Rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno();
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    int err = Errno();
    close(fd);
    return err;
  }
  fi->fh = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(dir));
  return 0;
}

int ReadDir(const char* path, void* buf, fuse_fill_dir_t fill, off_t offset, fuse_file_info* fi,
            fuse_readdir_flags flags) {
  ADMIT(FsOp::kReadDir, path);
  DIR* dir = Dir(fi);
  rewinddir(dir);  // offset 0 mode: libfuse asks once and keeps the whole listing
  while (dirent* entry = readdir(dir)) {
    struct stat st {};
    st.st_ino = entry->d_ino;
    st.st_mode = static_cast<mode_t>(DTTOIF(entry->d_type));
    if (fill(buf, entry->d_name, &st, 0, static_cast<fuse_fill_dir_flags>(0)) != 0) break;
  }
  return 0;
}

int ReleaseDir(const char* path, fuse_file_info* fi) {
  closedir(Dir(fi));
  return 0;
}

int FSyncDir(const char* path, int datasync, fuse_file_info* fi) {
  ADMIT(FsOp::kSync, path);
  return fsync(dirfd(Dir(fi))) == 0 ? 0 : Errno();
}

int UTimeNs(const char* path, const timespec tv[2], fuse_file_info* fi) {
  ADMIT(FsOp::kModify, path);
  int rc = fi != nullptr ? futimens(static_cast<int>(fi->fh), tv)
                         : utimensat(Ctx().backing_fd, Rel(path), tv, AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : Errno();
}

int FAllocate(const char* path, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  ADMIT((mode & FALLOC_FL_PUNCH_HOLE) != 0 ? FsOp::kModify : FsOp::kAllocate, path);
  return fallocate(static_cast<int>(fi->fh), mode, offset, length) == 0 ? 0 : Errno();
}

off_t LSeek(const char* path, off_t offset, int whence, fuse_file_info* fi) {
  ADMIT(FsOp::kLookup, path);
  off_t pos = lseek(static_cast<int>(fi->fh), offset, whence);
  return pos < 0 ? Errno() : pos;
}

}  // namespace

fuse_operations PassthroughOperations(bool shared_locks) {
  fuse_operations ops{};
  ops.init = Init;
  ops.getattr = GetAttr;
  ops.readlink = ReadLink;
  ops.mknod = MkNod;
  ops.mkdir = MkDir;
  ops.unlink = Unlink;
  ops.rmdir = RmDir;
  ops.symlink = SymLink;
  ops.rename = Rename;
  ops.link = Link;
  ops.chmod = ChMod;
  ops.chown = ChOwn;
  ops.truncate = Truncate;
  ops.open = Open;
  ops.create = Create;
  ops.read = Read;
  ops.write = Write;
  ops.statfs = StatFs;
  ops.flush = Flush;
  ops.release = Release;
  ops.fsync = FSync;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.releasedir = ReleaseDir;
  ops.fsyncdir = FSyncDir;
  ops.utimens = UTimeNs;
  ops.fallocate = FAllocate;
  ops.lseek = LSeek;
  if (shared_locks) ops.lock = Lock;
  // No flock: the kernel keeps flock() locks itself, per mount (docs/faultfs.md).
  return ops;
}

}  // namespace ferry::faultfs
