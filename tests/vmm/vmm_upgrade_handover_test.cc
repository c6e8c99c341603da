// What a same-host VMM upgrade hands over instead of reopening or releasing (engine/agent/
// vmm_upgrade.h): the datastore lock's open file description, so the lock never has no holder nor
// two, and the file disks' descriptors, which the new VMM checks against the paths its VM's
// config names. Against real ferry-vmm processes; the KVM cases skip without /dev/kvm.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/agent/vmm_upgrade.h"
#include "engine/storage/vm_lock.h"
#include "engine/vm/disks.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vmm/vmm_client.h"
#include "tests/vmm/upgrade_guest_specs.h"
#include "tests/vmm/vmm_test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using vmm_test::ProcessGone;
using vmm_test::WaitUntil;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kDiskBytes = 8 * kMiB;

// The descriptors of `pid` open on `path`.
std::vector<int> FdsOn(pid_t pid, const std::string& path) {
  std::vector<int> fds;
  std::error_code ec;
  const std::string want = fs::weakly_canonical(path, ec).string();
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code link_ec;
    if (fs::read_symlink(e.path(), link_ec).string() == want) fds.push_back(std::stoi(e.path().filename().string()));
  }
  return fds;
}

// Every descriptor `b` has on `path` is one of `a`'s open file descriptions (passed, not reopened).
// Empty when so; otherwise what differs. Nothing to check (empty) where kcmp is unavailable.
std::string SharedDescriptions(pid_t a, pid_t b, const std::string& path) {
  const std::vector<int> in_a = FdsOn(a, path), in_b = FdsOn(b, path);
  if (in_b.empty()) return "the new VMM has no descriptor on " + path;
  for (int fb : in_b) {
    bool shared = false;
    for (int fa : in_a) {
      const long r = syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
      if (r < 0 && errno == ENOSYS) return "";
      shared = shared || r == 0;
    }
    if (!shared) return "the new VMM's descriptor " + std::to_string(fb) + " on " + path + " was opened anew";
  }
  return "";
}

class VmmUpgradeHandover : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-upg-ho.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    binary_ = DefaultVmmBinaryPath();
    ASSERT_EQ(access(binary_.c_str(), X_OK), 0) << "ferry-vmm not found at " << binary_ << " (set FERRY_BIN_DIR)";
    fs::create_directories(VmDir());
  }
  void TearDown() override {
    StopContender();
    vm_.reset();
    for (pid_t p : pids_) {
      kill(p, SIGKILL);
      WaitUntil([p] { return ProcessGone(p); }, 5);
    }
    fs::remove_all(dir_, ec_);
  }

  // The VM directory of a datastore VM (<ds>/web1) and its VMM's directory (vmm-host-a).
  std::string VmDir() const { return dir_ + "/web1"; }
  std::string VmmDir() const { return DatastoreVmmDirectory(VmDir(), "host-a"); }
  std::string LockPath() const { return VmDir() + "/vm.lock"; }
  std::string DiskPath() const { return VmDir() + "/disk0.raw"; }

  VmSpec SyntheticSpec() const { return vmm_test::UpgradeSyntheticSpec("web1"); }
  VmSpec KvmSpecWithDisk() { return vmm_test::UpgradeKvmSpecWithDisk("web1", DiskPath(), kDiskBytes); }
  static void MakeDisk(const std::string& path, uint64_t bytes) {
    int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    close(fd);
  }

  // The VM in its own ferry-vmm holding its lock, running until the guest beats.
  RemoteVm* Run(VmSpec spec) {
    fs::create_directories(VmmDir());
    spec.console_log_path = VmDir() + "/console.log";
    auto vm = LaunchVmm(spec, /*for_restore=*/false, VmmDir(), binary_, {LockPath(), "host-a"});
    EXPECT_TRUE(vm.ok()) << vm.status();
    if (!vm.ok()) return nullptr;
    vm_.reset(dynamic_cast<RemoteVm*>(vm->release()));
    pids_.push_back(vm_->vmm_pid());
    EXPECT_TRUE(vm_->Start().ok());
    EXPECT_TRUE(WaitUntil([&] { return vm_->health().heartbeats > 2; }, 30)) << "no heartbeat from the guest";
    return vm_.get();
  }

  // Another owner, trying all along to take the lock through descriptions of its own, and reading
  // who the record names.
  void StartContender() {
    contender_ = std::thread([this] {
      while (!stop_contender_) {
        auto taken = VmLock::Acquire(LockPath(), "web1", VmLockHolder{"thief", 1, "", 0});
        ++attempts_;
        if (taken.ok()) ++taken_;
        auto holder = VmLock::CurrentHolder(LockPath());
        std::lock_guard lock(mu_);
        if (!holder.ok() || !holder->has_value()) {
          ++seen_free_;
        } else {
          named_.insert((*holder)->pid);
        }
      }
    });
  }
  void StopContender() {
    stop_contender_ = true;
    if (contender_.joinable()) contender_.join();
  }
  std::optional<VmLockHolder> Holder() {
    auto h = VmLock::CurrentHolder(LockPath());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }

  std::string dir_;
  std::string binary_;
  std::unique_ptr<RemoteVm> vm_;
  std::vector<pid_t> pids_;
  std::error_code ec_;
  std::thread contender_;
  std::atomic<bool> stop_contender_{false};
  std::atomic<uint64_t> attempts_{0}, taken_{0};
  std::mutex mu_;
  uint64_t seen_free_ = 0;
  std::set<int64_t> named_;
};

class VmmUpgradeLock : public VmmUpgradeHandover {};

TEST_F(VmmUpgradeLock, NeverFreeNeverTwoHoldersAndTheRecordNamesTheNewVmm) {
  RemoteVm* vm = Run(SyntheticSpec());
  ASSERT_TRUE(vm);
  const pid_t first = vm->vmm_pid();
  ASSERT_EQ(Holder()->pid, first);
  StartContender();
  std::set<int64_t> vmms = {first};
  std::string not_shared;
  VmmUpgradeHooks hooks;
  pid_t old_pid = first;
  hooks.before_resume = [&](pid_t new_vmm) {
    pids_.push_back(new_vmm);
    not_shared += SharedDescriptions(old_pid, new_vmm, LockPath());
  };
  // Two upgrades in a row: the second one from an upgraded VMM.
  for (int i = 0; i < 2; ++i) {
    auto r = UpgradeVmm(*vm_, binary_, "host-a", hooks);
    ASSERT_TRUE(r.ok()) << r.status();
    vmms.insert(r->new_pid);
    EXPECT_TRUE(WaitUntil([&] { return ProcessGone(old_pid); }, 10)) << "the old VMM did not exit";
    std::optional<VmLockHolder> holder = Holder();
    ASSERT_TRUE(holder.has_value()) << "nobody holds the lock after the upgrade";
    EXPECT_EQ(holder->pid, r->new_pid) << "the record does not name the new VMM";
    EXPECT_EQ(holder->agent, "host-a");
    vm_ = std::move(r->vm);
    old_pid = vm_->vmm_pid();
  }
  EXPECT_TRUE(not_shared.empty()) << not_shared;
  // Let the contender run against the upgraded VMM a little too.
  const uint64_t at = attempts_;
  WaitUntil([&] { return attempts_ > at + 20; }, 5);
  StopContender();
  EXPECT_GT(attempts_.load(), 20u);
  EXPECT_EQ(taken_.load(), 0u) << "another owner took the lock during an upgrade";
  {
    std::lock_guard lock(mu_);
    EXPECT_EQ(seen_free_, 0u) << "the lock was free for a moment";
    for (int64_t pid : named_) EXPECT_TRUE(vmms.count(pid)) << "the record named pid " << pid << ", not a VMM of web1";
  }
  EXPECT_EQ(vm_->run_state(), VmRunState::kRunning);

  // The new VMM is the only holder: killed, it frees the lock.
  const pid_t last = vm_->vmm_pid();
  ASSERT_EQ(kill(last, SIGKILL), 0);
  EXPECT_TRUE(WaitUntil([&] { return !Holder().has_value(); }, 10)) << "a killed VMM still holds the lock";
  auto taken = VmLock::Acquire(LockPath(), "web1", ThisProcessAsHolder("test"));
  EXPECT_TRUE(taken.ok()) << taken.status();
}

TEST_F(VmmUpgradeLock, NewVmmKilledAfterNamingItselfLeavesTheLockAndRecordWithTheOldOne) {
  RemoteVm* vm = Run(SyntheticSpec());
  ASSERT_TRUE(vm);
  const pid_t old_pid = vm->vmm_pid();
  StartContender();
  pid_t named = -1;
  VmmUpgradeHooks hooks;
  hooks.before_resume = [&](pid_t new_vmm) {
    pids_.push_back(new_vmm);
    named = Holder() ? static_cast<pid_t>(Holder()->pid) : -1;
    kill(new_vmm, SIGKILL);
    WaitUntil([new_vmm] { return ProcessGone(new_vmm); }, 5);
  };
  auto r = UpgradeVmm(*vm_, binary_, "host-a", hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("keeps running in its VMM (pid " + std::to_string(old_pid)));
  EXPECT_NE(named, old_pid) << "the new VMM had not named itself before its resume";
  StopContender();
  EXPECT_EQ(taken_.load(), 0u) << "another owner took the lock while the upgrade failed";
  EXPECT_EQ(seen_free_, 0u) << "the lock was free for a moment";
  ASSERT_TRUE(Holder().has_value());
  EXPECT_EQ(Holder()->pid, old_pid) << "the record still names the killed VMM";
  EXPECT_EQ(vm_->run_state(), VmRunState::kRunning);
  const uint64_t beats = vm_->health().heartbeats;
  EXPECT_TRUE(WaitUntil([&] { return vm_->health().heartbeats > beats + 2; }, 20)) << "the guest stopped beating";
}

class VmmUpgradeDisks : public VmmUpgradeHandover {};

// A datastore VM (lock and disk in its directory) whose KVM guest writes and verifies its disk
// across the upgrade: the new VMM runs the disk over the old VMM's own descriptions.
TEST_F(VmmUpgradeDisks, DatastoreVmKeepsWritingItsDiskOverTheHandedDescriptor) {
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/kvm: the guest's disk workload is the oracle";
  RemoteVm* vm = Run(KvmSpecWithDisk());
  ASSERT_TRUE(vm);
  ASSERT_TRUE(WaitUntil([&] { return vm->health().disk_blocks_written > 0; }, 60)) << "no disk writes";
  const pid_t old_pid = vm->vmm_pid();
  std::string not_shared;
  VmmUpgradeHooks hooks;
  hooks.before_resume = [&](pid_t new_vmm) {
    pids_.push_back(new_vmm);
    not_shared = SharedDescriptions(old_pid, new_vmm, DiskPath()) + SharedDescriptions(old_pid, new_vmm, LockPath());
  };
  auto r = UpgradeVmm(*vm_, binary_, "host-a", hooks);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(not_shared.empty()) << not_shared;
  EXPECT_TRUE(r->warning.empty()) << r->warning;
  ASSERT_TRUE(Holder().has_value());
  EXPECT_EQ(Holder()->pid, r->new_pid);
  vm_ = std::move(r->vm);
  const GuestHealth at = vm_->health();
  EXPECT_TRUE(WaitUntil(
      [&] {
        const GuestHealth h = vm_->health();
        return h.disk_sweeps > at.disk_sweeps + 1 && h.disk_blocks_written > at.disk_blocks_written;
      },
      90))
      << "the guest did not go on writing and verifying its disk in the new VMM";
  const GuestHealth h = vm_->health();
  EXPECT_EQ(h.disk_corruptions, 0u);
  EXPECT_EQ(h.corruptions, 0u);
  EXPECT_EQ(h.disk_io_errors, 0u);
  for (const std::string& report : h.corruption_reports) ADD_FAILURE() << report;
}

// The new VMM checks each handed disk against its config's path and refuses anything else by
// name, before it builds a VM (so without KVM too).
TEST_F(VmmUpgradeDisks, HandedDescriptorsAreCheckedAgainstTheConfig) {
  VmSpec spec;
  spec.name = "web1";
  MakeDisk(DiskPath(), kDiskBytes);
  const std::string other = VmDir() + "/other.raw";
  MakeDisk(other, kDiskBytes);
  spec.disks.push_back(DiskSpec{DiskKind::kFile, DiskPath(), "", kDiskBytes});
  auto handed = [](const std::string& path, int flags) {
    std::vector<UniqueFd> fds;
    fds.emplace_back(open(path.c_str(), flags | O_CLOEXEC));
    return fds;
  };
  EXPECT_TRUE(CheckHandedOverDisks(spec, handed(DiskPath(), O_RDWR)).ok());

  absl::Status st = CheckHandedOverDisks(spec, handed(other, O_RDWR));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("disk 0 (" + DiskPath() + "): the handed descriptor is another file"));
  st = CheckHandedOverDisks(spec, handed(DiskPath(), O_RDONLY));
  EXPECT_THAT(st.message(), HasSubstr("not open read-write"));
  st = CheckHandedOverDisks(spec, handed(VmDir(), O_RDONLY | O_DIRECTORY));
  EXPECT_THAT(st.message(), HasSubstr("not a regular file or block device"));
  st = CheckHandedOverDisks(spec, {});
  EXPECT_THAT(st.message(), HasSubstr("0 disk descriptors handed over, vm web1 has 1 file disks"));
  // The path names another file now (replaced behind the VM's back): not the VM's disk any more.
  std::vector<UniqueFd> before = handed(DiskPath(), O_RDWR);
  fs::rename(other, DiskPath());
  st = CheckHandedOverDisks(spec, before);
  EXPECT_THAT(st.message(), HasSubstr("another file"));
  // A disk of another size than the config says.
  spec.disks[0].size_bytes = kDiskBytes * 2;
  st = CheckHandedOverDisks(spec, handed(DiskPath(), O_RDWR));
  EXPECT_THAT(st.message(), HasSubstr("the handed file is " + std::to_string(kDiskBytes) + " bytes, the spec says"));
}

// Through a real take-over ferry-vmm: a create whose disk descriptor is not the config's disk is
// refused with that error; one with too few descriptors, or none for the disk, naming what it needs.
TEST_F(VmmUpgradeDisks, TakeOverVmmRefusesAWrongDiskDescriptor) {
  MakeDisk(DiskPath(), kDiskBytes);
  const std::string other = VmDir() + "/other.raw";
  MakeDisk(other, kDiskBytes);
  fs::create_directories(VmmDir());
  auto pid = SpawnVmm(binary_, VmmDir(), "web1", {"--take-over", "--create-timeout-ms", "20000"});
  ASSERT_TRUE(pid.ok()) << pid.status();
  pids_.push_back(*pid);
  auto conn = WaitForVmmSocket(VmmDir() + "/vmm.sock.next", *pid, VmmDir() + "/vmm.log");
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto memory = GuestMemory::Create(32 * kMiB);
  ASSERT_TRUE(memory.ok()) << memory.status();
  v1::VmmRequest create;
  v1::VmmCreate* c = create.mutable_create();
  c->mutable_spec()->set_name("web1");
  c->mutable_spec()->set_memory_bytes(32 * kMiB);
  c->mutable_spec()->set_vcpus(1);
  c->mutable_spec()->set_backend(v1::BACKEND_KIND_KVM);
  v1::DiskSpec* d = c->mutable_spec()->add_disks();
  d->set_kind(v1::DISK_KIND_FILE);
  d->set_path(DiskPath());
  d->set_size_bytes(kDiskBytes);
  c->set_mode(v1::VMM_START_MODE_TAKE_OVER);
  UniqueFd wrong(open(other.c_str(), O_RDWR | O_CLOEXEC));
  const int fds[] = {(*memory)->fd(), wrong.get()};
  c->set_handed_disks(1);
  auto refused = conn->CallWithFds(create, 20'000, std::span<const int>(fds, 1), nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("take-over needs 2 descriptors beside the request"));
  c->set_handed_disks(0);
  refused = conn->CallWithFds(create, 20'000, std::span<const int>(fds, 1), nullptr);
  EXPECT_THAT(refused.status().message(), HasSubstr("0 disk descriptors handed over, vm web1 has 1 file disks"));
  c->set_handed_disks(1);
  refused = conn->CallWithFds(create, 20'000, fds, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_THAT(refused.status().message(),
              HasSubstr("disk 0 (" + DiskPath() + "): the handed descriptor is another file"));
}

}  // namespace
}  // namespace ferry
