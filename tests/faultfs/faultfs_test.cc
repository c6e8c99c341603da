// ferry-faultfs over a real FUSE mount: each mode as plain file operations see it, recovery when it
// is set back to healthy, and teardown that never leaves a hung mount. Skips without /dev/fuse,
// fusermount3 or root.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <liburing.h>

#include "tests/faultfs/faultfs_fixture.h"

namespace ferry::faultfs {
namespace {

// 0 on success, else the errno the call failed with.
int WriteFileAt(const std::string& path, const std::string& data, int flags = O_WRONLY | O_CREAT | O_TRUNC) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) err = errno;
  if (err == 0 && fsync(fd) != 0) err = errno;
  close(fd);
  return err;
}

std::string ReadFileAt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int ErrnoOf(int rc) { return rc < 0 ? errno : 0; }

class FaultFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    absl::StatusOr<std::unique_ptr<FaultFsMount>> started = FaultFsMount::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    fs_ = std::move(*started);
    ASSERT_EQ(WriteFileAt(fs_->MountPath("before"), "written before the fault"), 0);
  }
  void TearDown() override {
    if (fs_ != nullptr) {
      EXPECT_TRUE(fs_->Stop().ok());
    }
  }
  void ExpectRecovered() {
    ASSERT_TRUE(fs_->SetMode("healthy").ok());
    EXPECT_EQ(ReadFileAt(fs_->MountPath("before")), "written before the fault");
    EXPECT_EQ(WriteFileAt(fs_->MountPath("after"), "after"), 0);
    EXPECT_EQ(ReadFileAt(fs_->BackingPath("after")), "after");
  }
  std::string Path(const char* name) { return fs_->MountPath(name); }

  std::unique_ptr<FaultFsMount> fs_;
};

using FaultFsHealthy = FaultFsTest;
using FaultFsApd = FaultFsTest;
using FaultFsPdl = FaultFsTest;
using FaultFsEnospc = FaultFsTest;
using FaultFsReadOnly = FaultFsTest;
using FaultFsSlow = FaultFsTest;
using FaultFsScope = FaultFsTest;
using FaultFsLocks = FaultFsTest;
using FaultFsTeardown = FaultFsTest;

TEST_F(FaultFsHealthy, PassesEveryOperationThroughToTheBackingDirectory) {
  ASSERT_EQ(mkdir(Path("vm1").c_str(), 0755), 0);
  int fd = open(Path("vm1/disk").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(fd, "abcdef", 6, 0), 6);
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0) << strerror(errno);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  char buf[6];
  ASSERT_EQ(pread(fd, buf, 6, 0), 6);
  EXPECT_EQ(std::string(buf, 6), "abcdef");
  close(fd);

  struct stat st;
  ASSERT_EQ(stat(Path("vm1/disk").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(rename(Path("vm1/disk").c_str(), Path("vm1/disk.raw").c_str()), 0);
  std::set<std::string> names;
  DIR* dir = opendir(Path("vm1").c_str());
  ASSERT_NE(dir, nullptr);
  while (dirent* e = readdir(dir)) names.insert(e->d_name);
  closedir(dir);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "disk.raw"}));
  struct statvfs vfs;
  EXPECT_EQ(statvfs(fs_->mount_dir().c_str(), &vfs), 0);
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("vm1/disk.raw")).substr(0, 6), "abcdef");
  ASSERT_EQ(unlink(Path("vm1/disk.raw").c_str()), 0);
  ASSERT_EQ(rmdir(Path("vm1").c_str()), 0);
  EXPECT_NE(access(fs_->BackingPath("vm1").c_str(), F_OK), 0);
}

TEST_F(FaultFsApd, BlockedOperationsFinishWhenTheApdClears) {
  int fd = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  std::atomic<int> write_result{-2}, create_result{-2}, stat_result{-2};
  std::thread writer([&] {
    int rc = static_cast<int>(pwrite(fd, "DURING", 6, 0));
    write_result = rc == 6 && fsync(fd) == 0 ? 0 : errno;
  });
  std::thread creator([&] { create_result = WriteFileAt(Path("created-in-apd"), "new"); });
  std::thread stater([&] {
    struct stat st;
    stat_result = ErrnoOf(stat(Path("before").c_str(), &st));
  });
  ASSERT_TRUE(fs_->WaitForBlocked(3).ok());
  // Blocked, not failed: nothing reached the backing directory and nobody got an answer.
  EXPECT_EQ(write_result.load(), -2);
  EXPECT_EQ(create_result.load(), -2);
  EXPECT_EQ(stat_result.load(), -2);
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("before")), "written before the fault");
  EXPECT_NE(access(fs_->BackingPath("created-in-apd").c_str(), F_OK), 0);

  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  writer.join();
  creator.join();
  stater.join();
  close(fd);
  EXPECT_EQ(write_result.load(), 0);
  EXPECT_EQ(create_result.load(), 0);
  EXPECT_EQ(stat_result.load(), 0);
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("before")), "DURINGn before the fault");
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("created-in-apd")), "new");
  absl::StatusOr<FaultFsStatus> status = fs_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->blocked, 0);
}

TEST_F(FaultFsApd, AnApdThatTurnsIntoPdlFailsTheBlockedOperations) {
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  std::atomic<int> result{-2};
  std::thread reader([&] {
    struct stat st;
    result = ErrnoOf(stat(Path("before").c_str(), &st));
  });
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  ASSERT_TRUE(fs_->SetMode("pdl").ok());
  reader.join();
  EXPECT_EQ(result.load(), ENODEV);
  ExpectRecovered();
}

// The VMM's disks use io_uring: a write submitted during an APD stays in flight (no completion)
// and completes with its full length once the APD clears.
TEST_F(FaultFsApd, AnIoUringWriteStaysInFlightUntilTheApdClears) {
  int fd = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  io_uring ring;
  ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  static const char kData[] = "URING";
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_write(sqe, fd, kData, 5, 0);
  ASSERT_EQ(io_uring_submit(&ring), 1);
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  io_uring_cqe* cqe = nullptr;
  EXPECT_EQ(io_uring_peek_cqe(&ring, &cqe), -EAGAIN) << "a write completed during the APD";
  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  ASSERT_EQ(io_uring_wait_cqe(&ring, &cqe), 0);
  EXPECT_EQ(cqe->res, 5);
  io_uring_cqe_seen(&ring, cqe);
  io_uring_queue_exit(&ring);
  close(fd);
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("before")), "URINGen before the fault");
}

TEST_F(FaultFsPdl, EveryOperationFailsWithNoSuchDevice) {
  int fd = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(fs_->SetMode("pdl").ok());
  char buf[8];
  EXPECT_EQ(ErrnoOf(static_cast<int>(pread(fd, buf, sizeof buf, 0))), ENODEV);
  EXPECT_EQ(ErrnoOf(static_cast<int>(pwrite(fd, "x", 1, 0))), ENODEV);
  EXPECT_EQ(ErrnoOf(fsync(fd)), ENODEV);
  EXPECT_EQ(ErrnoOf(open(Path("before").c_str(), O_RDONLY)), ENODEV);
  EXPECT_EQ(WriteFileAt(Path("new"), "x"), ENODEV);
  EXPECT_EQ(ErrnoOf(rename(Path("before").c_str(), Path("moved").c_str())), ENODEV);
  struct stat st;
  EXPECT_EQ(ErrnoOf(stat(Path("before").c_str(), &st)), ENODEV);
  close(fd);
  absl::StatusOr<FaultFsStatus> status = fs_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->mode, "pdl");
  EXPECT_GT(status->failed, 0);
  ExpectRecovered();
}

TEST_F(FaultFsEnospc, OnlyOperationsThatNeedNewBlocksFail) {
  int fd = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(fs_->SetMode("enospc").ok());
  EXPECT_EQ(pwrite(fd, "WRITTEN", 7, 0), 7) << "an overwrite of allocated blocks needs no space";
  EXPECT_EQ(ErrnoOf(static_cast<int>(pwrite(fd, "more", 4, 1 << 20))), ENOSPC);
  EXPECT_EQ(ErrnoOf(fallocate(fd, 0, 0, 1 << 20)), ENOSPC);
  EXPECT_EQ(fsync(fd), 0);
  close(fd);
  EXPECT_EQ(WriteFileAt(Path("new"), "x"), ENOSPC);
  EXPECT_EQ(ErrnoOf(mkdir(Path("dir").c_str(), 0755)), ENOSPC);
  EXPECT_EQ(ReadFileAt(Path("before")), "WRITTEN before the fault");
  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  EXPECT_EQ(WriteFileAt(Path("after"), "after"), 0);
  EXPECT_EQ(ReadFileAt(fs_->BackingPath("after")), "after");
}

TEST_F(FaultFsReadOnly, EveryModificationFailsWithReadOnly) {
  ASSERT_TRUE(fs_->SetMode("readonly").ok());
  EXPECT_EQ(ReadFileAt(Path("before")), "written before the fault");
  EXPECT_EQ(ErrnoOf(open(Path("before").c_str(), O_RDWR)), EROFS);
  EXPECT_EQ(WriteFileAt(Path("new"), "x"), EROFS);
  EXPECT_EQ(ErrnoOf(rename(Path("before").c_str(), Path("moved").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(unlink(Path("before").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(truncate(Path("before").c_str(), 0)), EROFS);
  EXPECT_EQ(ErrnoOf(mkdir(Path("dir").c_str(), 0755)), EROFS);
  ExpectRecovered();
}

TEST_F(FaultFsSlow, OperationsAreDelayedButCorrect) {
  ASSERT_TRUE(fs_->SetMode("slow 5").ok());
  EXPECT_EQ(WriteFileAt(Path("slow"), "slow data"), 0);
  EXPECT_EQ(ReadFileAt(Path("slow")), "slow data");
  absl::StatusOr<FaultFsStatus> status = fs_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->mode, "slow 5");
  EXPECT_GT(status->delayed, 0);
  ExpectRecovered();
}

TEST_F(FaultFsScope, OnlyPathsUnderThePrefixFail) {
  ASSERT_EQ(mkdir(Path("vm1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(Path("vm10").c_str(), 0755), 0);
  ASSERT_TRUE(fs_->SetMode("pdl path=/vm1").ok());
  EXPECT_EQ(WriteFileAt(Path("vm1/disk"), "x"), ENODEV);
  EXPECT_EQ(WriteFileAt(Path("vm10/disk"), "x"), 0);
  EXPECT_EQ(ReadFileAt(Path("before")), "written before the fault");
  ExpectRecovered();
  EXPECT_EQ(WriteFileAt(Path("vm1/disk"), "x"), 0);
}

// By default the kernel keeps locks per mount: they exclude each other through this mount (one
// host) with exact OFD semantics, and a lock on the backing file directly is not seen.
TEST_F(FaultFsLocks, ByDefaultOfdLocksExcludeEachOtherThroughTheMountOnly) {
  int a = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  int b = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);
  int backing = open(fs_->BackingPath("before").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_GE(backing, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(a, F_OFD_SETLK, &lock), 0);
  EXPECT_EQ(ErrnoOf(fcntl(b, F_OFD_SETLK, &lock)), EAGAIN);
  EXPECT_EQ(fcntl(backing, F_OFD_SETLK, &lock), 0) << "the backing file does not see the mount's lock";
  close(a);
  EXPECT_EQ(fcntl(b, F_OFD_SETLK, &lock), 0) << "closing the holder's description releases the lock";
  close(b);
  close(backing);
}

// With --shared-locks they are OFD locks on the backing files: they exclude each other through this
// mount, through a second mount of the same backing directory (another "host") and on the backing
// file itself; closing a dup of the holder keeps the lock; the release after the last close reaches
// the daemon asynchronously, so the lock is free shortly after close() returns.
TEST(FaultFsSharedLocks, OfdLocksAreSharedWithOtherMountsAndTheBackingFile) {
  if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) {
    GTEST_SKIP() << reason;
  }
  FaultFsMount::Options options;
  options.shared_locks = true;
  absl::StatusOr<std::unique_ptr<FaultFsMount>> host_a = FaultFsMount::Start(options);
  ASSERT_TRUE(host_a.ok()) << host_a.status();
  options.backing_dir = (*host_a)->backing_dir();
  absl::StatusOr<std::unique_ptr<FaultFsMount>> host_b = FaultFsMount::Start(options);
  ASSERT_TRUE(host_b.ok()) << host_b.status();
  ASSERT_EQ(WriteFileAt((*host_a)->MountPath("vm.lock"), "lock"), 0);
  int a = open((*host_a)->MountPath("vm.lock").c_str(), O_RDWR | O_CLOEXEC);
  int a2 = open((*host_a)->MountPath("vm.lock").c_str(), O_RDWR | O_CLOEXEC);
  int b = open((*host_b)->MountPath("vm.lock").c_str(), O_RDWR | O_CLOEXEC);
  int backing = open((*host_a)->BackingPath("vm.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(a2, 0);
  ASSERT_GE(b, 0);
  ASSERT_GE(backing, 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(a, F_OFD_SETLK, &lock), 0) << strerror(errno);
  EXPECT_EQ(ErrnoOf(fcntl(a2, F_OFD_SETLK, &lock)), EAGAIN);
  EXPECT_EQ(ErrnoOf(fcntl(b, F_OFD_SETLK, &lock)), EAGAIN);
  EXPECT_EQ(ErrnoOf(fcntl(backing, F_OFD_SETLK, &lock)), EAGAIN);
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(b, F_OFD_GETLK, &probe), 0);
  EXPECT_EQ(probe.l_type, F_WRLCK) << "F_OFD_GETLK through the other mount does not see the lock";

  close(dup(a));  // a flush of the holder's description, not its release
  EXPECT_EQ(ErrnoOf(fcntl(backing, F_OFD_SETLK, &lock)), EAGAIN);
  close(a);
  int rc = -1;
  for (int i = 0; i < 500 && (rc = fcntl(b, F_OFD_SETLK, &lock)) != 0; ++i) usleep(10'000);
  EXPECT_EQ(rc, 0) << "the lock stayed held after its description was closed";
  EXPECT_EQ(ErrnoOf(fcntl(backing, F_OFD_SETLK, &lock)), EAGAIN) << "host b's lock is not seen";
  close(a2);
  close(b);
  close(backing);
  EXPECT_TRUE((*host_b)->Stop().ok());
  EXPECT_TRUE((*host_a)->Stop().ok());
}

TEST_F(FaultFsTeardown, StopDuringAnApdReleasesTheBlockedWriteAndUnmounts) {
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  std::atomic<int> result{-2};
  std::thread writer([&] { result = WriteFileAt(Path("late"), "late data"); });
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  std::string mount_dir = fs_->mount_dir();
  EXPECT_TRUE(fs_->Stop().ok());
  writer.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_FALSE(IsMountPoint(mount_dir));
}

// A caller killed while blocked in an APD dies (as with a killable NFS wait) instead of staying in
// D state, closing its files on the way out; a VMM powered off under an APD must be able to go away.
TEST_F(FaultFsTeardown, AProcessKilledInAnApdExits) {
  int fd = open(Path("before").c_str(), O_RDWR | O_CLOEXEC);  // open before the APD, as a VMM's disk
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ssize_t n = pwrite(fd, "x", 1, 0);  // blocks; then exit closes fd (a FUSE flush)
    _exit(n == 1 ? 0 : 1);
  }
  close(fd);
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  for (int i = 0; i < 500 && waitpid(child, &status, WNOHANG) == 0; ++i) usleep(20'000);
  bool exited = waitpid(child, &status, WNOHANG) < 0 || WIFSIGNALED(status);
  if (!exited) {
    ASSERT_TRUE(fs_->SetMode("healthy").ok());  // let it go before failing
    waitpid(child, &status, 0);
  }
  EXPECT_TRUE(exited) << "the killed process stayed blocked";
  EXPECT_TRUE(fs_->WaitForNoneBlocked().ok());
  absl::StatusOr<FaultFsStatus> st = fs_->Status();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->blocked, 0);
}

// A test process that dies without Stop() (a crash, an abort) leaves no mount behind: the daemon
// notices its parent is gone, releases what it blocked and unmounts.
TEST(FaultFsOrphan, ADaemonWhoseTestProcessDiedUnmountsByItself) {
  if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) {
    GTEST_SKIP() << reason;
  }
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    absl::StatusOr<std::unique_ptr<FaultFsMount>> fs = FaultFsMount::Start("apd");
    std::string mount_dir = fs.ok() ? (*fs)->mount_dir() : "";
    if (write(pipe_fds[1], mount_dir.data(), mount_dir.size()) < 0) _exit(1);
    close(pipe_fds[1]);
    raise(SIGKILL);  // dies with the mount in an APD, without Stop()
  }
  close(pipe_fds[1]);
  char buf[4096];
  ssize_t n = read(pipe_fds[0], buf, sizeof buf);
  close(pipe_fds[0]);
  int status;
  waitpid(child, &status, 0);
  ASSERT_GT(n, 0) << "the child could not start ferry-faultfs";
  std::string mount_dir(buf, static_cast<size_t>(n));
  // Up to 30 s: under TSan on a loaded host the daemon's SIGTERM and unmount take seconds.
  for (int i = 0; i < 1500 && IsMountPoint(mount_dir); ++i) usleep(20'000);
  bool gone = !IsMountPoint(mount_dir);
  if (!gone) {
    std::string cmd = "fusermount3 -u -z " + mount_dir;
    EXPECT_EQ(system(cmd.c_str()), 0);
  }
  EXPECT_TRUE(gone) << "the orphaned mount " << mount_dir << " stayed";
  std::string work_dir = mount_dir.substr(0, mount_dir.rfind('/'));
  std::string rm = "rm -rf " + work_dir;
  EXPECT_EQ(system(rm.c_str()), 0);
}

}  // namespace
}  // namespace ferry::faultfs
