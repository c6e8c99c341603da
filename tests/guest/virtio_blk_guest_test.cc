// The built-in guest on the microVM's virtio-blk disk: it writes and verifies blocks of a sparse
// disk file with no corruption (checked from the host too), reports a block the host corrupts in
// the file while it runs, continues on the same disk after a snapshot and restore (and catches a
// block that went back to zeros meanwhile: a lost write), and names a missing disk at boot.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/base/clock.h"
#include "engine/guest/guest_abi.h"
#include "engine/state/snapshot.h"
#include "engine/vm/multiboot_loader.h"
#include "engine/vm/vm.h"
#include "tests/kvm/kvm_available.h"

namespace ferry {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kDiskBytes = 16ull << 20;
constexpr uint64_t kDiskWs = 4ull << 20;

GuestHealth WaitFor(Vm& vm, int64_t timeout_ms, const std::function<bool(const GuestHealth&)>& done) {
  Stopwatch sw;
  GuestHealth h = vm.health();
  while (!done(h) && sw.ElapsedMillis() < timeout_ms && !h.shut_down && vm.run_state() != VmRunState::kStopped) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    h = vm.health();
  }
  return h;
}

class VirtioBlkGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_SKIP_WITHOUT_KVM();
    ASSERT_TRUE(std::filesystem::exists(DefaultGuestImagePath()))
        << "guest image " << DefaultGuestImagePath() << " missing: build ferry_guest";
    char tmpl[] = "/tmp/ferry-gdisk-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    disk_path_ = dir_ + "/disk0.raw";
    int fd = open(disk_path_.c_str(), O_CREAT | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kDiskBytes), 0);  // sparse: reads as zeros
    close(fd);
  }
  void TearDown() override {
    if (vm_) (void)vm_->Stop();
    vm_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  VmSpec Spec(bool with_disk, uint32_t vcpus = 1) {
    VmSpec spec;
    spec.name = "gdisk";
    spec.memory_bytes = 32ull << 20;
    spec.vcpus = vcpus;
    spec.workload.working_set_bytes = 1ull << 20;
    spec.workload.dirty_rate_mibps = 4;
    spec.workload.disk_working_set_bytes = kDiskWs;
    spec.workload.disk_rate_mibps = 2;  // 512 blocks a second: a sweep of 4 MiB every 2 s
    spec.image_path = DefaultGuestImagePath();
    spec.console_log_path = dir_ + "/console.log";
    if (with_disk) spec.disks.push_back({DiskKind::kFile, disk_path_, "", kDiskBytes});
    return spec;
  }

  void Boot(bool with_disk, uint32_t vcpus = 1) {
    auto vm = CreateVmForBoot(Spec(with_disk, vcpus));
    ASSERT_TRUE(vm.ok()) << vm.status();
    vm_ = std::move(*vm);
    ASSERT_TRUE(vm_->Start().ok());
  }

  std::string Console() {
    std::ifstream in(dir_ + "/console.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::vector<uint64_t> ReadBlock(uint64_t b) {
    std::vector<uint64_t> words(kBlock / 8);
    int fd = open(disk_path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, words.data(), kBlock, static_cast<off_t>(b * kBlock)), static_cast<ssize_t>(kBlock));
    close(fd);
    return words;
  }

  // A block of the disk working set the guest has written (its tag names it), or kDiskWs / kBlock.
  uint64_t WrittenBlock(uint64_t from) {
    for (uint64_t b = from; b < kDiskWs / kBlock; ++b) {
      uint64_t tag = ReadBlock(b)[0];
      if (tag != 0 && (tag & 0xffffffff) == b) return b;
    }
    return kDiskWs / kBlock;
  }

  std::string dir_, disk_path_;
  std::unique_ptr<Vm> vm_;
};

TEST_F(VirtioBlkGuest, WritesAndVerifiesItsDiskWithoutCorruption) {
  Boot(true);
  GuestHealth h = WaitFor(*vm_, 30000, [](const GuestHealth& h) { return h.disk_sweeps >= 1; });
  ASSERT_GE(h.disk_sweeps, 1u) << "no full disk sweep; console:\n" << Console();
  EXPECT_GT(h.disk_blocks_written, 0u);
  EXPECT_GT(h.disk_blocks_verified, kDiskWs / kBlock);
  EXPECT_EQ(h.disk_corruptions, 0u) << Console();
  EXPECT_EQ(h.disk_io_errors, 0u) << Console();
  EXPECT_EQ(h.corruptions, 0u) << Console();
  EXPECT_GE(h.disk_flushes, 1u) << "the device offers FLUSH and the guest flushes once a second";
  EXPECT_NE(Console().find("ferry-guest: disk 0 at 0x00000000d0000000 irq 5: 16 MiB"), std::string::npos) << Console();
  ASSERT_TRUE(vm_->Pause().ok());
  // From the host: every block is zeros (never written) or exactly some generation of itself, and
  // nothing beyond the disk working set was touched.
  uint64_t written = 0;
  for (uint64_t b = 0; b < kDiskBytes / kBlock; ++b) {
    std::vector<uint64_t> w = ReadBlock(b);
    if (w[0] == 0) {
      for (uint64_t i = 1; i < w.size(); ++i) ASSERT_EQ(w[i], 0u) << "block " << b << " word " << i;
      continue;
    }
    ASSERT_LT(b, kDiskWs / kBlock) << "the guest wrote outside its disk working set";
    uint32_t gen = static_cast<uint32_t>(w[0] >> 32);
    for (uint32_t i = 0; i < w.size(); ++i) ASSERT_EQ(w[i], ferry_block_word(b, gen, i)) << "block " << b << " word " << i;
    ++written;
  }
  EXPECT_GT(written, 0u);
}

TEST_F(VirtioBlkGuest, BlockCorruptedInTheFileIsReportedByTheGuest) {
  Boot(true, /*vcpus=*/2);  // the disk workload runs on the last worker, vCPU 1
  GuestHealth h = WaitFor(*vm_, 30000, [](const GuestHealth& h) { return h.disk_blocks_written >= 64; });
  ASSERT_GE(h.disk_blocks_written, 64u) << Console();
  ASSERT_EQ(h.disk_corruptions, 0u) << Console();
  // A write of the guest's may land over the corruption before it reads the block back (it has
  // just checked it): then the next written block is tried.
  std::string want;
  uint64_t victim = 0;
  for (int attempt = 0; attempt < 3 && h.disk_corruptions == 0; ++attempt) {
    victim = WrittenBlock(victim + (attempt ? 1 : 0));
    ASSERT_LT(victim, kDiskWs / kBlock) << "no written block in the file";
    const uint64_t garbage[4] = {0x6261646261646261, 1, 2, 3};
    int fd = open(disk_path_.c_str(), O_WRONLY);
    ASSERT_EQ(pwrite(fd, garbage, sizeof(garbage), static_cast<off_t>(victim * kBlock + 64)),
              static_cast<ssize_t>(sizeof(garbage)));
    close(fd);
    want = "CORRUPTION block=" + std::to_string(victim) + " ";
    // A sweep takes 2 s; the check before a write may find it sooner.
    h = WaitFor(*vm_, 10000, [](const GuestHealth& h) { return h.disk_corruptions > 0; });
  }
  ASSERT_GE(h.disk_corruptions, 1u) << Console();
  ASSERT_FALSE(h.corruption_reports.empty());
  EXPECT_EQ(h.corruption_reports[0].rfind(want, 0), 0u) << h.corruption_reports[0];
  EXPECT_NE(h.corruption_reports[0].find(" word=8 "), std::string::npos) << h.corruption_reports[0];
  EXPECT_EQ(h.corruptions, 0u) << "memory stayed intact";
}

TEST_F(VirtioBlkGuest, RestoredGuestContinuesOnItsDiskWithoutCorruption) {
  Boot(true);
  GuestHealth h = WaitFor(*vm_, 30000, [](const GuestHealth& h) { return h.disk_blocks_written >= 64; });
  ASSERT_GE(h.disk_blocks_written, 64u) << Console();
  ASSERT_TRUE(vm_->Pause().ok());
  const std::string snap = dir_ + "/snap";
  ASSERT_TRUE(std::filesystem::create_directory(snap));
  auto stats = SaveSnapshot(*vm_, snap);
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_TRUE(vm_->Stop().ok());
  vm_.reset();
  // The VM's own spec: a snapshot's spec file does not list disks (engine/state/snapshot.cc).
  auto vm = CreateVmForRestore(Spec(true));
  ASSERT_TRUE(vm.ok()) << vm.status();
  vm_ = std::move(*vm);
  absl::Status restored = RestoreSnapshot(snap, *vm_);
  ASSERT_TRUE(restored.ok()) << restored;
  ASSERT_TRUE(vm_->Start().ok());
  // Two more sweeps: the guest re-read every block of its disk working set after the restore.
  GuestHealth after = WaitFor(*vm_, 40000, [](const GuestHealth& h) { return h.disk_sweeps >= 1; });
  const uint64_t sweeps = after.disk_sweeps;
  after = WaitFor(*vm_, 40000, [&](const GuestHealth& h) { return h.disk_sweeps >= sweeps + 2; });
  ASSERT_GE(after.disk_sweeps, sweeps + 2) << Console();
  EXPECT_GT(after.disk_blocks_written, h.disk_blocks_written) << "the counts travel with the guest";
  EXPECT_EQ(after.disk_corruptions, 0u) << Console();
  EXPECT_EQ(after.disk_io_errors, 0u) << Console();
  EXPECT_EQ(after.corruptions, 0u) << Console();
}

TEST_F(VirtioBlkGuest, BlockLostAcrossARestoreIsReported) {
  Boot(true);
  GuestHealth h = WaitFor(*vm_, 30000, [](const GuestHealth& h) { return h.disk_blocks_written >= 64; });
  ASSERT_GE(h.disk_blocks_written, 64u) << Console();
  ASSERT_TRUE(vm_->Pause().ok());
  const std::string snap = dir_ + "/snap";
  ASSERT_TRUE(std::filesystem::create_directory(snap));
  ASSERT_TRUE(SaveSnapshot(*vm_, snap).ok());
  ASSERT_TRUE(vm_->Stop().ok());
  vm_.reset();
  // The copy "lost" the written blocks: they are back to what a sparse disk reads, zeros. Every
  // written block, not one: a write the guest had made available but the device had not taken
  // yet at the pause is taken after the restore and rewrites its block, so one chosen block may
  // come back by itself (the device is right to do so); the others cannot.
  std::set<uint64_t> lost;
  for (uint64_t b = WrittenBlock(0); b < kDiskWs / kBlock; b = WrittenBlock(b + 1)) lost.insert(b);
  ASSERT_GE(lost.size(), 2u);
  {
    std::vector<uint8_t> zeros(kBlock, 0);
    int fd = open(disk_path_.c_str(), O_WRONLY);
    for (uint64_t b : lost)
      ASSERT_EQ(pwrite(fd, zeros.data(), kBlock, static_cast<off_t>(b * kBlock)), static_cast<ssize_t>(kBlock));
    close(fd);
  }
  // The VM's own spec: a snapshot's spec file does not list disks (engine/state/snapshot.cc).
  auto vm = CreateVmForRestore(Spec(true));
  ASSERT_TRUE(vm.ok()) << vm.status();
  vm_ = std::move(*vm);
  absl::Status restored = RestoreSnapshot(snap, *vm_);
  ASSERT_TRUE(restored.ok()) << restored;
  ASSERT_TRUE(vm_->Start().ok());
  GuestHealth after = WaitFor(*vm_, 30000, [](const GuestHealth& h) { return h.disk_corruptions > 0; });
  ASSERT_GE(after.disk_corruptions, 1u) << Console();
  ASSERT_FALSE(after.corruption_reports.empty());
  const std::string& report = after.corruption_reports[0];
  ASSERT_EQ(report.rfind("CORRUPTION block=", 0), 0u) << report;
  const uint64_t reported = std::stoull(report.substr(std::string("CORRUPTION block=").size()));
  EXPECT_TRUE(lost.count(reported)) << report << ": not a block the copy lost";
  EXPECT_NE(after.corruption_reports[0].find(" got=0x0000000000000000 word=0 "), std::string::npos)
      << after.corruption_reports[0];
}

TEST_F(VirtioBlkGuest, GuestWithoutADiskSaysSoAndStops) {
  Boot(false);
  GuestHealth h = WaitFor(*vm_, 20000, [](const GuestHealth& h) { return h.shut_down; });
  ASSERT_TRUE(h.shut_down) << Console();
  EXPECT_EQ(h.exit_code, 1);
  EXPECT_NE(Console().find("ferry-guest: disk_ws=4 MiB but the guest has no disk"), std::string::npos) << Console();
}

}  // namespace
}  // namespace ferry
