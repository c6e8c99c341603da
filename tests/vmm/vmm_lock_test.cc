// The VM lock held by the VMM process itself (docs/vmm_process.md "The VM lock"), against real
// ferry-vmm processes (synthetic backend): a boot takes it before the VM is built, a second VMM is
// refused naming the holder, a killed VMM frees it, and release_lock / take_lock pass it between
// two VMMs with never two holders and never a resumed VM without the lock.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/storage/vm_lock.h"
#include "engine/vmm/vmm_client.h"
#include "tests/vmm/vmm_test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using vmm_test::ProcessGone;
using vmm_test::WaitUntil;

class DatastoreLockVmm : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-vmm-lock.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    binary_ = DefaultVmmBinaryPath();
    ASSERT_EQ(access(binary_.c_str(), X_OK), 0) << "ferry-vmm not found at " << binary_ << " (set FERRY_BIN_DIR)";
    fs::create_directories(dir_ + "/web1");
  }
  void TearDown() override {
    for (const auto& e : fs::directory_iterator(dir_ + "/web1", ec_)) {
      std::ifstream in(e.path() / "vmm.pid");
      pid_t pid = 0;
      if (in >> pid && pid > 1 && kill(pid, SIGKILL) == 0) {
        WaitUntil([pid] { return ProcessGone(pid); }, 5);
      }
    }
    fs::remove_all(dir_, ec_);
  }
  std::string LockPath() const { return dir_ + "/web1/vm.lock"; }
  // A VMM for web1 in its own directory (as two hosts' VMMs of one datastore VM are).
  absl::StatusOr<std::unique_ptr<Vm>> Launch(const std::string& agent, bool for_restore) {
    VmSpec s;
    s.name = "web1";
    s.backend = Backend::kSynthetic;
    s.memory_bytes = 16ull << 20;
    s.workload.working_set_bytes = 2ull << 20;
    s.workload.dirty_rate_mibps = 20;
    s.console_log_path = dir_ + "/web1/console.log";
    const std::string vmm_dir = DatastoreVmmDirectory(dir_ + "/web1", agent);
    fs::create_directories(vmm_dir);
    return LaunchVmm(s, for_restore, vmm_dir, binary_, {LockPath(), agent});
  }
  std::optional<VmLockHolder> Holder() {
    auto h = VmLock::CurrentHolder(LockPath());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }
  static RemoteVm& Remote(std::unique_ptr<Vm>& vm) { return dynamic_cast<RemoteVm&>(*vm); }

  std::string dir_;
  std::string binary_;
  std::error_code ec_;
};

TEST_F(DatastoreLockVmm, TheVmmHoldsTheLockAndASecondBootIsRefusedNamingIt) {
  auto a = Launch("host-a", false);
  ASSERT_TRUE(a.ok()) << a.status();
  const pid_t a_pid = Remote(*a).vmm_pid();
  std::optional<VmLockHolder> holder = Holder();
  ASSERT_TRUE(holder.has_value()) << "the VMM took no lock at boot";
  EXPECT_EQ(holder->agent, "host-a");
  EXPECT_EQ(holder->pid, a_pid) << "the lock is the VMM's, not the test's (agent's) process";
  EXPECT_EQ(Remote(*a).lock_path(), LockPath());

  auto b = Launch("host-b", false);
  ASSERT_FALSE(b.ok()) << "two VMMs run web1";
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr("vm web1 is locked by agent host-a (pid " + std::to_string(a_pid)));
  EXPECT_EQ(Holder()->pid, a_pid);

  // The VMM itself refuses too (asked directly, past the launcher's early look at the lock).
  const std::string socket = dir_ + "/web1/raw.sock";
  const pid_t raw = fork();
  ASSERT_GE(raw, 0);
  if (raw == 0) {
    execl(binary_.c_str(), binary_.c_str(), "--socket", socket.c_str(), "--create-timeout-ms", "5000", nullptr);
    _exit(127);
  }
  absl::StatusOr<VmmConnection> conn = absl::UnavailableError("not yet");
  WaitUntil([&] { return (conn = VmmConnection::Connect(socket, 500)).ok(); }, 10);
  ASSERT_TRUE(conn.ok()) << conn.status();
  v1::VmmRequest create;
  create.mutable_create()->mutable_spec()->set_name("web1");
  create.mutable_create()->mutable_spec()->set_memory_bytes(16ull << 20);
  create.mutable_create()->mutable_spec()->set_backend(v1::BACKEND_KIND_SYNTHETIC);
  create.mutable_create()->mutable_spec()->set_vcpus(1);
  create.mutable_create()->set_mode(v1::VMM_START_MODE_BOOT);
  create.mutable_create()->mutable_lock()->set_path(LockPath());
  create.mutable_create()->mutable_lock()->set_agent("host-c");
  auto refused = conn->Call(create, 10'000);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("locked by agent host-a (pid " + std::to_string(a_pid)));
  *conn = VmmConnection::Closed();
  kill(raw, SIGKILL);
  waitpid(raw, nullptr, 0);
  EXPECT_EQ(Holder()->pid, a_pid);
  ASSERT_TRUE((*a)->Start().ok());
}

TEST_F(DatastoreLockVmm, AKilledVmmFreesTheLockAndTheVmStartsAgain) {
  auto a = Launch("host-a", false);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Start().ok());
  ASSERT_EQ(kill(Remote(*a).vmm_pid(), SIGKILL), 0);
  EXPECT_TRUE(WaitUntil([&] { return !Holder().has_value(); }, 10)) << "a dead VMM still holds the lock";
  a->reset();
  auto b = Launch("host-b", false);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(Holder()->agent, "host-b");
}

// The handover at a migration's (or an upgrade's) commit, driven as the agents drive it.
TEST_F(DatastoreLockVmm, ReleaseAndTakePassTheLockWithNeverTwoHoldersNorARunWithoutIt) {
  auto source = Launch("host-a", false);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->Start().ok());
  const pid_t source_pid = Remote(*source).vmm_pid();
  auto dest = Launch("host-b", /*for_restore=*/true);
  ASSERT_TRUE(dest.ok()) << dest.status() << ": a restore waits for take_lock, it is not refused at create";
  const pid_t dest_pid = Remote(*dest).vmm_pid();
  EXPECT_EQ(Holder()->pid, source_pid);
  absl::Status early = (*dest)->Start();
  EXPECT_EQ(early.code(), absl::StatusCode::kFailedPrecondition) << "a VM ran without its lock";
  EXPECT_THAT(early.message(), HasSubstr("does not hold its lock"));

  EXPECT_EQ(Remote(*source).ReleaseLock().code(), absl::StatusCode::kFailedPrecondition) << "released while running";
  ASSERT_TRUE((*source)->Pause().ok());
  ASSERT_TRUE(Remote(*source).ReleaseLock().ok());
  EXPECT_FALSE(Holder().has_value());
  EXPECT_EQ((*source)->Resume().code(), absl::StatusCode::kFailedPrecondition) << "resumed without its lock";

  ASSERT_TRUE(Remote(*dest).TakeLock().ok());
  EXPECT_EQ(Holder()->pid, dest_pid);
  absl::Status back = Remote(*source).TakeLock();
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition) << "two holders";
  EXPECT_THAT(back.message(), HasSubstr("locked by agent host-b (pid " + std::to_string(dest_pid)));

  // The destination gives up (its commit failed): its stop frees the lock before it replies, so
  // the source takes it back at once and resumes.
  ASSERT_TRUE((*dest)->Stop().ok());
  ASSERT_TRUE(Remote(*source).TakeLock().ok());
  EXPECT_EQ(Holder()->pid, source_pid);
  ASSERT_TRUE((*source)->Resume().ok());
  EXPECT_EQ((*source)->run_state(), VmRunState::kRunning);
}

}  // namespace
}  // namespace ferry
