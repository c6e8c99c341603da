// The built-in guest's own virtio-blk driver and disk workload moved by pre-copy on KVM: the
// device's writes into guest RAM reach the destination through the VM's dirty report. (Its plain
// run, snapshot restore and negative controls are VirtioBlkGuest, tests/guest/virtio_blk_guest_test.cc.)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vm/vm.h"
#include "gtest/gtest.h"
#include "tests/kvm/kvm_available.h"

namespace ferry {
namespace {

constexpr uint64_t kDiskBytes = 8ull << 20;

class VirtioBlkBuiltInGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_SKIP_WITHOUT_KVM();
    ASSERT_TRUE(std::filesystem::exists(DefaultGuestImagePath())) << "build ferry_guest";
    char tmpl[] = "/tmp/ferry-virtio-guest-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/disk.raw";
    int fd = open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kDiskBytes), 0);
    close(fd);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  VmSpec Spec() {
    VmSpec spec;
    spec.name = "disk-guest";
    spec.memory_bytes = 32ull << 20;
    spec.vcpus = 1;
    spec.workload.working_set_bytes = 1ull << 20;
    spec.workload.dirty_rate_mibps = 10;
    spec.workload.disk_working_set_bytes = 2ull << 20;
    spec.workload.disk_rate_mibps = 4;
    spec.image_path = DefaultGuestImagePath();
    spec.disks.push_back(DiskSpec{DiskKind::kFile, path_, "", kDiskBytes});
    return spec;
  }
  // Waits (bounded: a hang fails, a slow host only waits) until `done` holds or the VM stops.
  static GuestHealth WaitFor(Vm& vm, const std::function<bool(const GuestHealth&)>& done) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    GuestHealth h = vm.health();
    while (!done(h) && std::chrono::steady_clock::now() < end && vm.run_state() != VmRunState::kStopped) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      h = vm.health();
    }
    return h;
  }
  static void ExpectClean(const GuestHealth& h) {
    EXPECT_EQ(h.disk_corruptions, 0u);
    EXPECT_EQ(h.disk_io_errors, 0u);
    EXPECT_EQ(h.corruptions, 0u);
    for (const std::string& r : h.corruption_reports) ADD_FAILURE() << r;
  }

  std::string dir_, path_;
};

// Pre-copy as the migration engine does it: memory copied while the guest runs, then only the
// pages the dirty log reports, then the last ones paused. The device's own writes into guest RAM
// (read data, status bytes, used ring) never reach KVM's log: unless the VM reports them itself,
// the destination's guest finds stale blocks or a stale used ring.
TEST_F(VirtioBlkBuiltInGuest, DeviceWritesReachTheDestinationThroughTheDirtyLog) {
  auto src = CreateVmForBoot(Spec());
  ASSERT_TRUE(src.ok()) << src.status();
  Vm& s = **src;
  ASSERT_TRUE(s.Start().ok());
  GuestHealth h = WaitFor(s, [](const GuestHealth& g) { return g.disk_blocks_verified > 64; });
  ASSERT_GT(h.disk_blocks_verified, 64u);
  auto dst = CreateVmForRestore(Spec());
  ASSERT_TRUE(dst.ok()) << dst.status();
  Vm& d = **dst;
  auto copy = [&](const DirtyBitmap& pages) {
    pages.ForEachRun([&](uint64_t first, uint64_t count) {
      std::memcpy(d.memory().page(first), s.memory().page(first), count * kPageSize);
    });
  };
  DirtyBitmap dirty(s.memory().num_pages());
  ASSERT_TRUE(s.EnableDirtyTracking().ok());
  ASSERT_TRUE(s.CollectDirtyPages(dirty).ok());
  dirty.SetAll();
  copy(dirty);  // round 1: everything, while the guest and its disk run
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    dirty.ClearAll();
    ASSERT_TRUE(s.CollectDirtyPages(dirty).ok());
    copy(dirty);
  }
  ASSERT_TRUE(s.Pause().ok());
  dirty.ClearAll();
  ASSERT_TRUE(s.CollectDirtyPages(dirty).ok());
  copy(dirty);
  auto state = s.SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  GuestHealth at_save = s.health();
  ExpectClean(at_save);
  ASSERT_TRUE(s.Stop().ok());
  src->reset();
  ASSERT_TRUE(d.RestoreState(*state).ok());
  ASSERT_TRUE(d.Start().ok());
  h = WaitFor(d, [&](const GuestHealth& g) {
    return g.disk_sweeps >= at_save.disk_sweeps + 2 && g.disk_blocks_written > at_save.disk_blocks_written;
  });
  EXPECT_GE(h.disk_sweeps, at_save.disk_sweeps + 2) << "no full sweep over the disk after the move";
  EXPECT_GT(h.disk_blocks_written, at_save.disk_blocks_written) << "the disk workload stalled after the move";
  ExpectClean(h);
  ASSERT_TRUE(d.Stop().ok());
}

}  // namespace
}  // namespace ferry
