// The virtio-blk device inside the KVM microVM: a hand-assembled guest sets the device up through
// MMIO exits at the disk's window, publishes two prepared requests one after the other, polls the
// used ring (no interrupts) and shuts down. The disk file, the guest's read buffer, the VMM's dirty
// report and a save/restore in the middle are checked from the host.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"
#include "engine/vm/micro_vm.h"
#include "engine/vm/virtio/blk_request.h"
#include "engine/vm/virtio/mmio_transport.h"
#include "gtest/gtest.h"
#include "tests/kvm/kvm_available.h"
#include "tests/vm/tiny_guest.h"

namespace ferry {
namespace {

constexpr uint32_t kDesc = 0x200000, kAvail = 0x201000, kUsed = 0x202000, kHeaders = 0x203000;
constexpr uint32_t kStatus = 0x204000, kOutData = 0x210000, kInData = 0x220000;
constexpr uint32_t kGoOn = 0x205000;  // the guest waits for 1 here before its second request
constexpr uint32_t kQueueSize = 8;
constexpr uint64_t kDiskBytes = 1ull << 20;
constexpr uint32_t kMmio = static_cast<uint32_t>(FERRY_GPA_VIRTIO_MMIO_BASE);

void MovDword(std::vector<uint8_t>& c, uint32_t gpa, uint32_t value) {
  c.insert(c.end(), {0xC7, 0x05});  // mov dword [disp32], imm32
  tiny_guest::Put32(c, gpa);
  tiny_guest::Put32(c, value);
}

void SpinUntilDword(std::vector<uint8_t>& c, uint32_t gpa, uint32_t value) {
  c.insert(c.end(), {0x81, 0x3D});  // cmp dword [disp32], imm32
  tiny_guest::Put32(c, gpa);
  tiny_guest::Put32(c, value);
  c.insert(c.end(), {0x75, 0xF4});  // jne back to the cmp
}

// The driver's side, as virtio 1.1 3.1.1 orders it, then two requests one at a time; before the
// second it waits for the host to set kGoOn (so a test can move it in between).
std::vector<uint8_t> DriverGuest() {
  std::vector<uint8_t> c;
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_DRIVER_FEATURES, 1);  // VERSION_1
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_SEL, 0);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_NUM, kQueueSize);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_DESC_LOW, kDesc);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_DRIVER_LOW, kAvail);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_DEVICE_LOW, kUsed);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_READY, 1);
  MovDword(c, kMmio + FERRY_VIRTIO_MMIO_STATUS,
           kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk | kVirtioStatusDriverOk);
  for (uint32_t n = 1; n <= 2; ++n) {
    if (n == 2) SpinUntilDword(c, kGoOn, 1);
    MovDword(c, kAvail, n << 16);  // flags 0, idx n
    MovDword(c, kMmio + FERRY_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    SpinUntilDword(c, kUsed, n << 16);
  }
  tiny_guest::AppendShutdown(c);
  return c;
}

void PutDesc(uint8_t* mem, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  uint8_t* d = mem + kDesc + 16ull * i;
  std::memcpy(d, &addr, 8);
  std::memcpy(d + 8, &len, 4);
  std::memcpy(d + 12, &flags, 2);
  std::memcpy(d + 14, &next, 2);
}

// Request 0 writes 4 KiB of pattern at sector 8; request 1 reads sector 0 (the host's pattern).
void PrepareRings(uint8_t* mem) {
  const uint32_t out_header[4] = {kVirtioBlkTypeOut, 0, 8, 0};
  const uint32_t in_header[4] = {kVirtioBlkTypeIn, 0, 0, 0};
  std::memcpy(mem + kHeaders, out_header, 16);
  std::memcpy(mem + kHeaders + 16, in_header, 16);
  for (uint32_t i = 0; i < 4096; ++i) mem[kOutData + i] = static_cast<uint8_t>(i * 13 + 1);
  mem[kStatus] = mem[kStatus + 1] = 0xee;
  PutDesc(mem, 0, kHeaders, 16, 1, 1);
  PutDesc(mem, 1, kOutData, 4096, 1, 2);
  PutDesc(mem, 2, kStatus, 1, 2, 0);
  PutDesc(mem, 3, kHeaders + 16, 16, 1, 4);
  PutDesc(mem, 4, kInData, 4096, 1 | 2, 5);
  PutDesc(mem, 5, kStatus + 1, 1, 2, 0);
  const uint16_t ring[2] = {0, 3};
  std::memcpy(mem + kAvail + 4, ring, 4);
}

void LetGuestGoOn(Vm& vm) {
  const uint32_t one = 1;
  std::memcpy(vm.memory().data() + kGoOn, &one, 4);
}

class VirtioBlkMicroVm : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-virtio-kvm-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/disk.raw";
    int fd = open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kDiskBytes), 0);
    pattern_.resize(4096);
    for (size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<char>(i * 7 + 3);
    ASSERT_EQ(pwrite(fd, pattern_.data(), pattern_.size(), 0), 4096);
    close(fd);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  VmSpec Spec() {
    VmSpec spec;
    spec.name = "virtio-tiny";
    spec.memory_bytes = 16ull << 20;
    spec.vcpus = 1;
    spec.workload.working_set_bytes = 1ull << 20;
    spec.disks.push_back(DiskSpec{DiskKind::kFile, path_, "", 0});
    return spec;
  }
  std::string FileAt(uint64_t offset, size_t bytes) {
    std::string out(bytes, '\0');
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(pread(fd, out.data(), bytes, offset), static_cast<ssize_t>(bytes));
    close(fd);
    return out;
  }
  static bool WaitShutDown(Vm& vm) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!vm.health().shut_down && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return vm.health().shut_down;
  }
  void ExpectRequestsDone(Vm& vm) {
    const uint8_t* mem = vm.memory().data();
    EXPECT_EQ(mem[kStatus], kVirtioBlkStatusOk);
    EXPECT_EQ(mem[kStatus + 1], kVirtioBlkStatusOk);
    EXPECT_TRUE(FileAt(8 * 512, 4096) == std::string(reinterpret_cast<const char*>(mem + kOutData), 4096));
    EXPECT_TRUE(std::string(reinterpret_cast<const char*>(mem + kInData), 4096) == pattern_);
  }

  std::string dir_, path_, pattern_;
};

TEST_F(VirtioBlkMicroVm, GuestDrivesTheDiskThroughMmioExits) {
  FERRY_SKIP_WITHOUT_KVM();
  auto vm = CreateMicroVmWithCode(Spec(), tiny_guest::kLoadGpa, DriverGuest());
  ASSERT_TRUE(vm.ok()) << vm.status();
  PrepareRings((*vm)->memory().data());
  LetGuestGoOn(**vm);
  ASSERT_TRUE((*vm)->EnableDirtyTracking().ok());
  DirtyBitmap dirty((*vm)->memory().num_pages());
  ASSERT_TRUE((*vm)->CollectDirtyPages(dirty).ok());
  dirty.ClearAll();
  ASSERT_TRUE((*vm)->Start().ok());
  ASSERT_TRUE(WaitShutDown(**vm)) << "the guest never saw both requests complete";
  ASSERT_TRUE((*vm)->Stop().ok());
  ExpectRequestsDone(**vm);
  ASSERT_TRUE((*vm)->CollectDirtyPages(dirty).ok());
  // The guest never writes its read buffer or the used ring: only the device does.
  EXPECT_TRUE(dirty.Test(kInData >> kPageShift)) << "the device's read data was not reported dirty";
  EXPECT_TRUE(dirty.Test(kUsed >> kPageShift)) << "the used ring was not reported dirty";
  // The disk blocks it wrote, for a storage migration: sector 8 is block 1; block 0 was only read.
  DirtyBitmap blocks(kDiskBytes / kDiskWriteBlockBytes);
  ASSERT_TRUE(CollectDiskWrites(**vm, 0, blocks).ok());
  EXPECT_EQ(blocks.Count(), 1u);
  EXPECT_TRUE(blocks.Test(1));
  DirtyBitmap again(kDiskBytes / kDiskWriteBlockBytes);
  ASSERT_TRUE(CollectDiskWrites(**vm, 0, again).ok());
  EXPECT_TRUE(again.Empty()) << "collecting did not forget";
  EXPECT_FALSE(CollectDiskWrites(**vm, 1, again).ok()) << "a disk the VM does not have";
}

TEST_F(VirtioBlkMicroVm, SavedStateCarriesTheDiskAcrossARestore) {
  FERRY_SKIP_WITHOUT_KVM();
  auto src = CreateMicroVmWithCode(Spec(), tiny_guest::kLoadGpa, DriverGuest());
  ASSERT_TRUE(src.ok()) << src.status();
  PrepareRings((*src)->memory().data());
  ASSERT_TRUE((*src)->Start().ok());
  // Moved between its two requests: the first complete, the second not yet made.
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((*src)->memory().data()[kStatus] == 0xee && std::chrono::steady_clock::now() < end) {
    std::this_thread::yield();
  }
  ASSERT_TRUE((*src)->Pause().ok());
  auto state = (*src)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->disks_size(), 1);
  EXPECT_EQ(state->disks(0).capacity_sectors(), kDiskBytes / 512);
  EXPECT_EQ(state->disks(0).next_avail_index(), state->disks(0).next_used_index()) << "a request was in flight";
  ASSERT_TRUE((*src)->Stop().ok());

  auto dst = CreateMicroVm(Spec(), /*for_restore=*/true);
  ASSERT_TRUE(dst.ok()) << dst.status();
  std::memcpy((*dst)->memory().data(), (*src)->memory().data(), (*src)->memory().size());
  src->reset();
  ASSERT_TRUE((*dst)->RestoreState(*state).ok());
  EXPECT_EQ(state->disks(0).next_used_index(), 1u);
  LetGuestGoOn(**dst);
  ASSERT_TRUE((*dst)->Start().ok());
  ASSERT_TRUE(WaitShutDown(**dst)) << "the restored guest never saw both requests complete";
  ASSERT_TRUE((*dst)->Stop().ok());
  ExpectRequestsDone(**dst);
}

TEST_F(VirtioBlkMicroVm, RestoreRefusesStateWithoutTheDisk) {
  FERRY_SKIP_WITHOUT_KVM();
  VmSpec no_disk = Spec();
  no_disk.disks.clear();
  auto src = CreateMicroVmWithCode(no_disk, tiny_guest::kLoadGpa, DriverGuest());
  ASSERT_TRUE(src.ok()) << src.status();
  ASSERT_TRUE((*src)->Start().ok());
  ASSERT_TRUE((*src)->Pause().ok());
  auto state = (*src)->SaveState();
  ASSERT_TRUE(state.ok());
  ASSERT_TRUE((*src)->Stop().ok());
  auto dst = CreateMicroVm(Spec(), /*for_restore=*/true);
  ASSERT_TRUE(dst.ok()) << dst.status();
  absl::Status st = (*dst)->RestoreState(*state);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("virtio disks"), std::string::npos) << st;
}

TEST_F(VirtioBlkMicroVm, MissingDiskFileFailsCreationNamingIt) {
  FERRY_SKIP_WITHOUT_KVM();
  VmSpec spec = Spec();
  spec.disks[0].path = dir_ + "/missing.raw";
  auto vm = CreateMicroVmWithCode(spec, tiny_guest::kLoadGpa, DriverGuest());
  ASSERT_FALSE(vm.ok());
  EXPECT_NE(vm.status().message().find("missing.raw"), std::string::npos) << vm.status();
}

}  // namespace
}  // namespace ferry
