#include "engine/storage/vm_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

VmLockHolder Holder(const std::string& agent, int64_t pid) { return VmLockHolder{agent, pid, "5f1cboot", 1796268000}; }

TEST(DatastoreLock, SecondTakerInTheSameProcessIsRefusedNamingTheHolder) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("vm.lock");
  absl::StatusOr<VmLock> first = VmLock::Acquire(path, "web1", Holder("host-a", 1234));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<VmLock> second = VmLock::Acquire(path, "web1", Holder("host-b", 99));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("vm web1 is locked by agent host-a (pid 1234"));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("since 2026-"));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("it is running there"));
}

TEST(DatastoreLock, CurrentHolderIsTheRecordOfAHeldLockOnly) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("vm.lock");
  EXPECT_FALSE(VmLock::CurrentHolder(path)->has_value()) << "no file: no holder";
  {
    absl::StatusOr<VmLock> lock = VmLock::Acquire(path, "web1", Holder("host-a", 1234));
    ASSERT_TRUE(lock.ok()) << lock.status();
    absl::StatusOr<std::optional<VmLockHolder>> h = VmLock::CurrentHolder(path);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->has_value());
    EXPECT_EQ((*h)->agent, "host-a");
    EXPECT_EQ((*h)->pid, 1234);
  }
  // Released by closing; the record stays in the file but names nobody.
  EXPECT_FALSE(VmLock::CurrentHolder(path)->has_value());
  EXPECT_TRUE(VmLock::Acquire(path, "web1", Holder("host-b", 7)).ok());
}

TEST(DatastoreLock, AStaleRecordIsReplacedByTheNextHolder) {
  testing::TempDir tmp;
  const std::string path = tmp.Write("vm.lock", "agent: crashed-host\npid: 42\nboot_id: old\nsince_unix_s: 1\n");
  EXPECT_FALSE(VmLock::CurrentHolder(path)->has_value());
  absl::StatusOr<VmLock> lock = VmLock::Acquire(path, "web1", ThisProcessAsHolder("host-c"));
  ASSERT_TRUE(lock.ok()) << lock.status();
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("agent: host-c"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("crashed-host")));
  EXPECT_THAT(text, HasSubstr("pid: " + std::to_string(getpid())));
}

// Another process (what a second agent sharing the datastore is) holds it; when that process dies,
// the kernel releases the lock with it.
TEST(DatastoreLock, AnotherProcessHoldsItUntilItDies) {
  testing::TempDir tmp;
  const std::string path = tmp.Sub("vm.lock");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    absl::StatusOr<VmLock> lock = VmLock::Acquire(path, "web1", ThisProcessAsHolder("host-b"));
    char ok = lock.ok() ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  close(ready[0]);
  ASSERT_EQ(ok, 'y');
  absl::StatusOr<VmLock> refused = VmLock::Acquire(path, "web1", ThisProcessAsHolder("host-a"));
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("locked by agent host-b (pid " + std::to_string(child)));
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  absl::StatusOr<VmLock> taken = VmLock::Acquire(path, "web1", ThisProcessAsHolder("host-a"));
  EXPECT_TRUE(taken.ok()) << taken.status();
}

TEST(DatastoreLock, AMissingVmDirectoryIsAnErrorNamingTheFile) {
  testing::TempDir tmp;
  absl::StatusOr<VmLock> lock = VmLock::Acquire(tmp.Sub("gone/vm.lock"), "web1", ThisProcessAsHolder("a"));
  ASSERT_FALSE(lock.ok());
  EXPECT_THAT(std::string(lock.status().message()), HasSubstr("gone/vm.lock"));
}

}  // namespace
}  // namespace ferry
