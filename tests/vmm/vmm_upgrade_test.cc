// Same-host VMM upgrade (engine/agent/vmm_upgrade.h) against real ferry-vmm processes: the guest
// moves to a new process over the same memfd and keeps running with its memory and disk intact;
// an upgrade that fails at any step before the new VMM resumed leaves the old VMM running it.
#include "engine/agent/vmm_upgrade.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <gtest/gtest.h>

#include "engine/agent/vmm_launcher.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vmm/vmm_client.h"
#include "tests/vmm/upgrade_guest_specs.h"
#include "tests/vmm/vmm_test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kDiskBytes = 8 * kMiB;

using vmm_test::ProcessGone;
using vmm_test::WaitUntil;

void ExpectClean(const GuestHealth& h) {
  EXPECT_EQ(h.corruptions, 0u);
  EXPECT_EQ(h.disk_corruptions, 0u);
  EXPECT_EQ(h.disk_io_errors, 0u);
  for (const std::string& r : h.corruption_reports) ADD_FAILURE() << r;
}

class VmmUpgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-vmm-upgrade.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    binary_ = DefaultVmmBinaryPath();
    ASSERT_EQ(access(binary_.c_str(), X_OK), 0) << "ferry-vmm not found at " << binary_ << " (set FERRY_BIN_DIR)";
  }
  void TearDown() override {
    vm_.reset();
    // No ferry-vmm outlives the test: whatever the pid file names now, and every process we saw.
    std::ifstream in(dir_ + "/vm/vmm.pid");
    pid_t pid = 0;
    if (in >> pid && pid > 1) pids_.push_back(pid);
    for (pid_t p : pids_) {
      kill(p, SIGKILL);
      WaitUntil([p] { return ProcessGone(p); }, 5);
    }
    fs::remove_all(dir_, ec_);
  }

  VmSpec SyntheticSpec() { return vmm_test::UpgradeSyntheticSpec("upg"); }
  VmSpec KvmSpecWithDisk() { return vmm_test::UpgradeKvmSpecWithDisk("upg", dir_ + "/disk.raw", kDiskBytes); }

  // Launches the VM in its own ferry-vmm and runs it until the guest beats.
  RemoteVm* Run(VmSpec spec) {
    fs::create_directories(VmDir());
    spec.console_log_path = VmDir() + "/console.log";
    auto vm = LaunchVmm(spec, /*for_restore=*/false, VmDir(), binary_);
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    vm_.reset(dynamic_cast<RemoteVm*>(vm->release()));
    pids_.push_back(vm_->vmm_pid());
    EXPECT_TRUE(vm_->Start().ok());
    EXPECT_TRUE(WaitUntil([&] { return vm_->health().heartbeats > 2; }, 20)) << "no heartbeat from the guest";
    return vm_.get();
  }
  std::string VmDir() const { return dir_ + "/vm"; }
  pid_t PidFile() const {
    std::ifstream in(VmDir() + "/vmm.pid");
    pid_t pid = 0;
    in >> pid;
    return pid;
  }
  // What a restarted agent finds: lets go of `vm` (its VMM keeps running the guest) and attaches
  // to whichever VMM serves the VM's socket (a VMM serves one agent connection at a time).
  std::unique_ptr<RemoteVm> Readopt(std::unique_ptr<RemoteVm> vm) {
    vm.reset();
    auto conn = VmmConnection::Connect(VmDir() + "/vmm.sock", 1000);
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) return nullptr;
    auto adopted = RemoteVm::Attach(std::move(*conn));
    EXPECT_TRUE(adopted.ok()) << adopted.status();
    return adopted.ok() ? std::move(*adopted) : nullptr;
  }
  // The guest still runs in the old VMM, which still serves the VM's socket.
  void ExpectOldVmmRunsTheGuest(pid_t old_pid) {
    EXPECT_EQ(vm_->run_state(), VmRunState::kRunning);
    EXPECT_TRUE(vm_->failure().empty()) << vm_->failure();
    EXPECT_FALSE(ProcessGone(old_pid));
    const uint64_t beats = vm_->health().heartbeats;
    EXPECT_TRUE(WaitUntil([&] { return vm_->health().heartbeats > beats + 2; }, 20)) << "the guest stopped beating";
    EXPECT_EQ(PidFile(), old_pid);
    vm_ = Readopt(std::move(vm_));
    ASSERT_TRUE(vm_);
    EXPECT_EQ(vm_->vmm_pid(), old_pid);
    EXPECT_EQ(vm_->run_state(), VmRunState::kRunning);
    EXPECT_FALSE(fs::exists(VmDir() + "/vmm.sock.next"));
    ExpectClean(vm_->health());
  }
  // The upgrade worked: the new VMM runs the guest, the old one is gone, paths name the new one.
  void ExpectUpgraded(const VmmUpgradeResult& r, pid_t old_pid) {
    pids_.push_back(r.new_pid);
    EXPECT_EQ(r.old_pid, old_pid);
    EXPECT_NE(r.new_pid, old_pid);
    EXPECT_EQ(r.vm->vmm_pid(), r.new_pid);
    EXPECT_EQ(r.vm->run_state(), VmRunState::kRunning);
    EXPECT_TRUE(r.warning.empty()) << r.warning;
    EXPECT_TRUE(WaitUntil([&] { return ProcessGone(old_pid); }, 10)) << "the old VMM did not exit";
    EXPECT_TRUE(vm_->failure().empty()) << "a retired VMM is no failure: " << vm_->failure();
    EXPECT_EQ(PidFile(), r.new_pid);
    EXPECT_EQ(r.vm->socket_path(), VmDir() + "/vmm.sock");
    EXPECT_FALSE(fs::exists(VmDir() + "/vmm.sock.next"));
    EXPECT_GT(r.times.downtime_ns, 0);
    EXPECT_EQ(r.times.downtime_ns,
              r.times.pause_ns + r.times.save_ns + r.times.restore_ns + r.times.lock_ns + r.times.resume_ns);
  }

  std::string dir_;
  std::string binary_;
  std::unique_ptr<RemoteVm> vm_;
  std::vector<pid_t> pids_;
  std::error_code ec_;
};

TEST_F(VmmUpgrade, SyntheticGuestMovesToTheNewProcessOverTheSameMemory) {
  RemoteVm* vm = Run(SyntheticSpec());
  ASSERT_TRUE(vm);
  const pid_t old_pid = vm->vmm_pid();
  auto r = UpgradeVmm(*vm, binary_, "test-agent");
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectUpgraded(*r, old_pid);
  // The new VMM's guest goes on from the same memory: its own re-checks find every page right.
  const GuestHealth before = r->vm->health();
  EXPECT_TRUE(WaitUntil([&] { return r->vm->health().full_sweeps > 0; }, 30)) << "no full verifying sweep";
  EXPECT_GT(r->vm->health().heartbeats, before.heartbeats);
  ExpectClean(r->vm->health());
  // A restarted agent finds the new VMM at the VM's socket, running the guest.
  vm_ = Readopt(std::move(r->vm));
  ASSERT_TRUE(vm_);
  EXPECT_EQ(vm_->vmm_pid(), r->new_pid);
  EXPECT_EQ(vm_->run_state(), VmRunState::kRunning);
  ASSERT_TRUE(vm_->Stop().ok());
  EXPECT_TRUE(WaitUntil([&] { return ProcessGone(r->new_pid); }, 10));
}

TEST_F(VmmUpgrade, KvmGuestKeepsBeatingWithItsMemoryAndDiskIntact) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/kvm";
  RemoteVm* vm = Run(KvmSpecWithDisk());
  ASSERT_TRUE(vm);
  // The disk workload is under way before the switch, so requests are in flight across it.
  ASSERT_TRUE(WaitUntil([&] { return vm->health().disk_blocks_written > 0; }, 30)) << "no disk writes";
  const pid_t old_pid = vm->vmm_pid();
  auto r = UpgradeVmm(*vm, binary_, "test-agent");
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectUpgraded(*r, old_pid);
  const GuestHealth at = r->vm->health();
  // Verifying sweeps over memory and disk that began in the new VMM, with nothing wrong.
  EXPECT_TRUE(WaitUntil(
      [&] {
        GuestHealth h = r->vm->health();
        return h.full_sweeps > 0 && h.disk_sweeps > at.disk_sweeps + 1 && h.disk_blocks_verified > at.disk_blocks_verified;
      },
      60))
      << "no verifying sweeps after the upgrade";
  EXPECT_GT(r->vm->health().heartbeats, at.heartbeats);
  ExpectClean(r->vm->health());
  // A second upgrade from the upgraded VMM works the same way.
  vm_ = std::move(r->vm);
  auto again = UpgradeVmm(*vm_, binary_, "test-agent");
  ASSERT_TRUE(again.ok()) << again.status();
  ExpectUpgraded(*again, r->new_pid);
  const uint64_t beats = again->vm->health().heartbeats;
  EXPECT_TRUE(WaitUntil([&] { return again->vm->health().heartbeats > beats + 2; }, 20));
  ExpectClean(again->vm->health());
  vm_ = std::move(again->vm);
}

TEST_F(VmmUpgrade, NewVmmKilledBeforeResumeLeavesTheOldOneRunningTheGuest) {
  RemoteVm* vm = Run(SyntheticSpec());
  ASSERT_TRUE(vm);
  const pid_t old_pid = vm->vmm_pid();
  pid_t killed = -1;
  VmmUpgradeHooks hooks;
  hooks.before_resume = [&](pid_t new_vmm) {
    killed = new_vmm;
    kill(new_vmm, SIGKILL);
  };
  auto r = UpgradeVmm(*vm_, binary_, "test-agent", hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("resume the guest in the new VMM"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("keeps running in its VMM"), std::string::npos) << r.status();
  ASSERT_GT(killed, 0);
  pids_.push_back(killed);
  EXPECT_TRUE(ProcessGone(killed));
  ExpectOldVmmRunsTheGuest(old_pid);
}

TEST_F(VmmUpgrade, FailureBeforeThePauseLeavesTheGuestUntouched) {
  RemoteVm* vm = Run(SyntheticSpec());
  ASSERT_TRUE(vm);
  const pid_t old_pid = vm->vmm_pid();
  // A VMM binary that exits at once.
  auto r = UpgradeVmm(*vm_, "/bin/false", "test-agent");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("new VMM"), std::string::npos) << r.status();
  ExpectOldVmmRunsTheGuest(old_pid);
  // One that does not exist.
  r = UpgradeVmm(*vm_, dir_ + "/no-such-vmm", "test-agent");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no-such-vmm"), std::string::npos) << r.status();
  // A new VMM that dies before the switch: found out when it cannot load the state.
  VmmUpgradeHooks hooks;
  hooks.before_pause = [&](pid_t new_vmm) {
    pids_.push_back(new_vmm);
    kill(new_vmm, SIGKILL);
  };
  r = UpgradeVmm(*vm_, binary_, "test-agent", hooks);
  ASSERT_FALSE(r.ok());
  ExpectOldVmmRunsTheGuest(old_pid);
  // A paused VM is refused.
  ASSERT_TRUE(vm_->Pause().ok());
  r = UpgradeVmm(*vm_, binary_, "test-agent");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  ASSERT_TRUE(vm_->Resume().ok());
}

}  // namespace
}  // namespace ferry
