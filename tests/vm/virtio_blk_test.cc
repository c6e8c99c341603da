// The virtio-blk device driven from the host side as a driver would (no KVM needed): feature
// negotiation, reads and writes landing in the disk file, several requests in flight, flush,
// requests outside the disk, malformed chains, quiesce, and save/restore mid-stream.
#include "engine/vm/virtio/blk_device.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>

#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/page.h"
#include "engine/vm/vm_spec_proto.h"
#include "gtest/gtest.h"
#include "tests/vm/virtio_test_driver.h"

namespace ferry {
namespace {

using virtio_test::TestBlkDriver;

constexpr uint64_t kDiskBytes = 4ull << 20;
constexpr uint64_t kMemBytes = 16ull << 20;

class VirtioBlkDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ferry-virtio-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/disk.raw";
    int fd = open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kDiskBytes), 0);  // sparse
    close(fd);
    auto mem = GuestMemory::Create(kMemBytes);
    ASSERT_TRUE(mem.ok()) << mem.status();
    mem_ = std::move(*mem);
    dirty_ = DirtyBitmap(mem_->num_pages());
    ram_ = std::make_unique<GuestRamAccess>(
        *mem_, [this](uint64_t first, uint64_t count) { dirty_.SetRange(first, count); });
    dev_ = MakeDevice();
    ASSERT_NE(dev_, nullptr);
    dev_->Resume();
    driver_ = std::make_unique<TestBlkDriver>(*mem_, *dev_);
  }
  void TearDown() override {
    driver_.reset();
    dev_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<VirtioBlkDevice> MakeDevice() {
    auto dev = VirtioBlkDevice::Create(path_, 0, *ram_, [this](bool level) { irq_level_ = level; });
    EXPECT_TRUE(dev.ok()) << dev.status();
    return dev.ok() ? std::move(*dev) : nullptr;
  }

  std::string ReadFile(uint64_t offset, uint64_t bytes) {
    std::string out(bytes, '\0');
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_EQ(pread(fd, out.data(), bytes, offset), static_cast<ssize_t>(bytes));
    close(fd);
    return out;
  }
  void Fill(uint64_t gpa, uint64_t bytes, uint8_t seed) {
    for (uint64_t i = 0; i < bytes; ++i) mem_->data()[gpa + i] = static_cast<uint8_t>(seed + i * 7);
  }
  std::string Mem(uint64_t gpa, uint64_t bytes) { return std::string(reinterpret_cast<char*>(mem_->data() + gpa), bytes); }

  std::string dir_, path_;
  std::unique_ptr<GuestMemory> mem_;
  DirtyBitmap dirty_;
  std::unique_ptr<GuestRamAccess> ram_;
  std::unique_ptr<VirtioBlkDevice> dev_;
  std::unique_ptr<TestBlkDriver> driver_;
  std::atomic<bool> irq_level_{false};
};

TEST_F(VirtioBlkDeviceTest, IdentifiesAsModernBlockDevice) {
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_MAGIC), 0x74726976u);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_VERSION), 2u);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_DEVICE_ID), 2u);
  driver_->SetReg(FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_DEVICE_FEATURES), (1u << 2) | (1u << 9));
  driver_->SetReg(FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_DEVICE_FEATURES), 1u);  // VERSION_1 = bit 32
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_QUEUE_NUM_MAX), 256u);
  EXPECT_EQ(driver_->Config64(0), kDiskBytes / 512);
  EXPECT_EQ(static_cast<uint32_t>(driver_->Config64(0x0c)), 126u);  // seg_max
}

TEST_F(VirtioBlkDeviceTest, FeatureNegotiationKeepsOnlyModernSubsets) {
  EXPECT_FALSE(driver_->Negotiate(kVirtioBlkFFlush)) << "legacy driver (no VERSION_1) accepted";
  EXPECT_FALSE(driver_->Negotiate(kVirtioFVersion1 | (1ull << 28))) << "a feature never offered accepted";
  EXPECT_TRUE(driver_->Negotiate(kVirtioFVersion1));
  EXPECT_TRUE(driver_->Negotiate(kVirtioFVersion1 | kVirtioBlkFFlush | kVirtioBlkFSegMax));
  // DRIVER_OK without FEATURES_OK does not start the device.
  driver_->SetReg(FERRY_VIRTIO_MMIO_STATUS, 0);
  driver_->SetReg(FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusDriverOk);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusDriverOk, 0u);
}

TEST_F(VirtioBlkDeviceTest, WritesLandInTheFileAndReadsComeBack) {
  ASSERT_TRUE(driver_->Init());
  const uint64_t out = TestBlkDriver::kDataGpa, in = TestBlkDriver::kDataGpa + 0x10000;
  Fill(out, 8192, 3);
  uint16_t w = driver_->Post(kVirtioBlkTypeOut, 10, {{out, 4096}, {out + 4096, 4096}});
  driver_->Notify();
  auto used = driver_->WaitUsed(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, w);
  EXPECT_EQ(used[0].len, 1u);
  EXPECT_EQ(driver_->StatusOf(w), kVirtioBlkStatusOk);
  EXPECT_TRUE(ReadFile(10 * 512, 8192) == Mem(out, 8192));

  dev_->Quiesce();  // its report of the used ring's page is done before the test clears it
  dirty_.ClearAll();
  dev_->Resume();
  uint16_t r = driver_->Post(kVirtioBlkTypeIn, 10, {{in, 8192}});
  driver_->Notify();
  used = driver_->WaitUsed(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].len, 8192u + 1);
  EXPECT_EQ(driver_->StatusOf(r), kVirtioBlkStatusOk);
  EXPECT_TRUE(Mem(in, 8192) == Mem(out, 8192));
  // The device reports a page after writing it (a report before could be collected, and the page
  // sent, before the write): quiesced, every report of what it took has been made.
  dev_->Quiesce();
  // Every page the device wrote is reported dirty: read data, status byte, used ring.
  EXPECT_TRUE(dirty_.Test(in >> kPageShift));
  EXPECT_TRUE(dirty_.Test((in + 8191) >> kPageShift));
  EXPECT_TRUE(dirty_.Test(TestBlkDriver::kStatusGpa >> kPageShift));
  EXPECT_TRUE(dirty_.Test(TestBlkDriver::kUsedGpa >> kPageShift));
  EXPECT_FALSE(dirty_.Test(out >> kPageShift)) << "a page the device only read was reported dirty";
  EXPECT_TRUE(irq_level_.load());
  driver_->SetReg(FERRY_VIRTIO_MMIO_INTERRUPT_ACK, driver_->Reg(FERRY_VIRTIO_MMIO_INTERRUPT_STATUS));
  EXPECT_FALSE(irq_level_.load());
}

TEST_F(VirtioBlkDeviceTest, SeveralRequestsInFlightAllComplete) {
  ASSERT_TRUE(driver_->Init());
  constexpr int kRequests = 16;
  for (int i = 0; i < kRequests; ++i) {
    Fill(TestBlkDriver::kDataGpa + i * 4096ull, 4096, static_cast<uint8_t>(i));
    driver_->Post(kVirtioBlkTypeOut, 8ull * i, {{TestBlkDriver::kDataGpa + i * 4096ull, 4096}});
  }
  driver_->Notify();
  auto used = driver_->WaitUsed(kRequests);
  ASSERT_EQ(used.size(), static_cast<size_t>(kRequests));
  for (const auto& u : used) EXPECT_EQ(driver_->StatusOf(static_cast<uint16_t>(u.id)), kVirtioBlkStatusOk);
  EXPECT_GT(dev_->counters().max_in_flight, 1u);
  EXPECT_TRUE(ReadFile(0, kRequests * 4096ull) == Mem(TestBlkDriver::kDataGpa, kRequests * 4096ull));
}

TEST_F(VirtioBlkDeviceTest, FlushCompletesAfterTheWritesBeforeIt) {
  ASSERT_TRUE(driver_->Init());
  std::vector<uint16_t> writes;
  for (int i = 0; i < 8; ++i) {
    writes.push_back(driver_->Post(kVirtioBlkTypeOut, 64ull * i, {{TestBlkDriver::kDataGpa, 32768}}));
  }
  uint16_t flush = driver_->Post(kVirtioBlkTypeFlush, 0, {});
  driver_->Notify();
  auto used = driver_->WaitUsed(9);
  ASSERT_EQ(used.size(), 9u);
  EXPECT_EQ(used.back().id, flush) << "the flush was published before a write taken before it";
  EXPECT_EQ(driver_->StatusOf(flush), kVirtioBlkStatusOk);
  EXPECT_EQ(dev_->counters().flushes, 1u);
}

TEST_F(VirtioBlkDeviceTest, RequestOutsideTheDiskIsIoErrAndLeavesTheFileUntouched) {
  ASSERT_TRUE(driver_->Init());
  Fill(TestBlkDriver::kDataGpa, 8192, 9);
  const std::string before = ReadFile(kDiskBytes - 8192, 8192);
  const uint64_t sectors = kDiskBytes / 512;
  std::vector<uint16_t> heads = {
      driver_->Post(kVirtioBlkTypeOut, sectors - 1, {{TestBlkDriver::kDataGpa, 1024}}),  // crosses the end
      driver_->Post(kVirtioBlkTypeOut, sectors, {{TestBlkDriver::kDataGpa, 512}}),       // just past it
      driver_->Post(kVirtioBlkTypeOut, ~0ull / 256, {{TestBlkDriver::kDataGpa, 512}}),   // offset would wrap
      driver_->Post(kVirtioBlkTypeIn, sectors, {{TestBlkDriver::kDataGpa + 8192, 512}}),
      driver_->Post(kVirtioBlkTypeOut, 0, {{TestBlkDriver::kDataGpa, 100}}),  // not whole sectors
  };
  driver_->Notify();
  ASSERT_EQ(driver_->WaitUsed(heads.size()).size(), heads.size());
  for (uint16_t h : heads) EXPECT_EQ(driver_->StatusOf(h), kVirtioBlkStatusIoErr) << "head " << h;
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kDiskBytes);
  EXPECT_TRUE(ReadFile(kDiskBytes - 8192, 8192) == before);
  EXPECT_TRUE(ReadFile(0, 512) == std::string(512, '\0'));
  // The queue goes on.
  uint16_t ok = driver_->Post(kVirtioBlkTypeOut, sectors - 2, {{TestBlkDriver::kDataGpa, 1024}});
  driver_->Notify();
  ASSERT_EQ(driver_->WaitUsed(1).size(), static_cast<size_t>(1));
  EXPECT_EQ(driver_->StatusOf(ok), kVirtioBlkStatusOk);
}

TEST_F(VirtioBlkDeviceTest, GetIdAnswersAndUnknownTypesAreUnsupported) {
  ASSERT_TRUE(driver_->Init());
  uint16_t id = driver_->Post(kVirtioBlkTypeGetId, 0, {{TestBlkDriver::kDataGpa, 20}});
  uint16_t odd = driver_->Post(77, 0, {{TestBlkDriver::kDataGpa + 512, 512}});
  driver_->Notify();
  ASSERT_EQ(driver_->WaitUsed(2).size(), static_cast<size_t>(2));
  EXPECT_EQ(driver_->StatusOf(id), kVirtioBlkStatusOk);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(driver_->Data(TestBlkDriver::kDataGpa))), "ferry-disk-0");
  EXPECT_EQ(driver_->StatusOf(odd), kVirtioBlkStatusUnsupported);
}

TEST_F(VirtioBlkDeviceTest, DataBufferOutsideGuestRamIsIoErr) {
  ASSERT_TRUE(driver_->Init());
  uint16_t outside = driver_->Post(kVirtioBlkTypeIn, 0, {{FERRY_GPA_VIRTIO_MMIO_BASE, 512}});
  uint16_t straddles = driver_->Post(kVirtioBlkTypeIn, 0, {{kMemBytes - 512, 1024}});
  uint16_t wrong_way = driver_->Post(kVirtioBlkTypeOut, 0, {{TestBlkDriver::kDataGpa, 512}});
  // Make the OUT's data buffer device-writable: the wrong direction.
  uint8_t* flags = mem_->data() + TestBlkDriver::kDescGpa + 16ull * (wrong_way + 1) + 12;
  *flags |= 2;
  driver_->Notify();
  ASSERT_EQ(driver_->WaitUsed(3).size(), static_cast<size_t>(3));
  EXPECT_EQ(driver_->StatusOf(outside), kVirtioBlkStatusIoErr);
  EXPECT_EQ(driver_->StatusOf(straddles), kVirtioBlkStatusIoErr);
  EXPECT_EQ(driver_->StatusOf(wrong_way), kVirtioBlkStatusIoErr);
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset, 0u);
}

// A chain with no usable status byte stops the queue; a reset brings the device back.
void ExpectNeedsResetThenRecovers(TestBlkDriver& d, uint16_t head) {
  d.PublishAvail(head);
  d.Notify();
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(d.Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset) && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_NE(d.Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset, 0u);
  EXPECT_EQ(d.UsedIdx(), 0u);
  ASSERT_TRUE(d.Init());
  uint16_t ok = d.Post(kVirtioBlkTypeIn, 0, {{TestBlkDriver::kDataGpa, 512}});
  d.Notify();
  ASSERT_EQ(d.WaitUsed(1).size(), static_cast<size_t>(1));
  EXPECT_EQ(d.StatusOf(ok), kVirtioBlkStatusOk);
}

TEST_F(VirtioBlkDeviceTest, DescriptorLoopNeedsReset) {
  ASSERT_TRUE(driver_->Init());
  driver_->WriteDesc(0, TestBlkDriver::kHeaderGpa, 16, 1, 1);
  driver_->WriteDesc(1, TestBlkDriver::kDataGpa, 512, 1 | 2, 0);  // back to 0: a loop
  ExpectNeedsResetThenRecovers(*driver_, 0);
}

TEST_F(VirtioBlkDeviceTest, DescriptorIndexBeyondTheQueueNeedsReset) {
  ASSERT_TRUE(driver_->Init());
  driver_->WriteDesc(0, TestBlkDriver::kHeaderGpa, 16, 1, 300);
  ExpectNeedsResetThenRecovers(*driver_, 0);
}

TEST_F(VirtioBlkDeviceTest, IndirectDescriptorNeedsReset) {
  ASSERT_TRUE(driver_->Init());
  driver_->WriteDesc(0, TestBlkDriver::kDataGpa, 64, 4, 0);
  ExpectNeedsResetThenRecovers(*driver_, 0);
}

TEST_F(VirtioBlkDeviceTest, ReadOnlyStatusNeedsReset) {
  ASSERT_TRUE(driver_->Init());
  driver_->WriteDesc(0, TestBlkDriver::kHeaderGpa, 16, 1, 1);
  driver_->WriteDesc(1, TestBlkDriver::kStatusGpa, 1, 0, 0);  // status the device may not write
  ExpectNeedsResetThenRecovers(*driver_, 0);
}

TEST_F(VirtioBlkDeviceTest, StatusOutsideGuestRamNeedsReset) {
  ASSERT_TRUE(driver_->Init());
  driver_->WriteDesc(0, TestBlkDriver::kHeaderGpa, 16, 1, 1);
  driver_->WriteDesc(1, kMemBytes + 4096, 1, 2, 0);
  ExpectNeedsResetThenRecovers(*driver_, 0);
}

TEST_F(VirtioBlkDeviceTest, RingsOutsideGuestRamNeedReset) {
  ASSERT_TRUE(driver_->Init(/*desc=*/kMemBytes - 64, TestBlkDriver::kAvailGpa, TestBlkDriver::kUsedGpa));
  EXPECT_NE(driver_->Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset, 0u);
  ASSERT_TRUE(driver_->Init(TestBlkDriver::kDescGpa, TestBlkDriver::kAvailGpa, /*used=*/0xFFFFFFFFFFFFF000ull));
  EXPECT_NE(driver_->Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset, 0u);
  ASSERT_TRUE(driver_->Init());
  EXPECT_EQ(driver_->Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusNeedsReset, 0u);
}

TEST_F(VirtioBlkDeviceTest, QuiesceReturnsWithEveryTakenRequestPublished) {
  ASSERT_TRUE(driver_->Init());
  constexpr int kRequests = 48;
  for (int i = 0; i < kRequests; ++i) driver_->Post(kVirtioBlkTypeOut, 8ull * i, {{TestBlkDriver::kDataGpa, 4096}});
  driver_->Notify();
  dev_->Quiesce();
  auto saved = dev_->Save();
  ASSERT_TRUE(saved.ok()) << saved.status();
  // Whatever the device took is in the used ring now; nothing is half done.
  EXPECT_EQ(saved->next_used_index(), saved->next_avail_index());
  EXPECT_EQ(driver_->UsedIdx(), saved->next_used_index());
  // Quiesced: a notify takes nothing more.
  const uint16_t used_before = driver_->UsedIdx();
  driver_->Post(kVirtioBlkTypeOut, 0, {{TestBlkDriver::kDataGpa, 512}});
  driver_->Notify();
  auto again = dev_->Save();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->next_avail_index(), saved->next_avail_index());
  EXPECT_EQ(driver_->UsedIdx(), used_before);
  dev_->Resume();
  EXPECT_FALSE(dev_->Save().ok()) << "saved a running device";
  ASSERT_EQ(driver_->WaitUsed(kRequests + 1).size(), static_cast<size_t>(kRequests + 1));
}

TEST_F(VirtioBlkDeviceTest, SaveRestoreMidStreamContinuesOnAFreshDevice) {
  ASSERT_TRUE(driver_->Init());
  for (int i = 0; i < 20; ++i) {
    Fill(TestBlkDriver::kDataGpa + i * 4096ull, 4096, static_cast<uint8_t>(40 + i));
    driver_->Post(kVirtioBlkTypeOut, 8ull * i, {{TestBlkDriver::kDataGpa + i * 4096ull, 4096}});
  }
  driver_->Notify();
  dev_->Quiesce();
  const uint16_t published = driver_->UsedIdx();
  // More requests wait in the available ring across the switch-over, never notified here.
  for (int i = 20; i < 30; ++i) {
    Fill(TestBlkDriver::kDataGpa + i * 4096ull, 4096, static_cast<uint8_t>(40 + i));
    driver_->Post(kVirtioBlkTypeOut, 8ull * i, {{TestBlkDriver::kDataGpa + i * 4096ull, 4096}});
  }
  auto saved = dev_->Save();
  ASSERT_TRUE(saved.ok()) << saved.status();
  dev_.reset();  // the source's device is gone; guest memory (migrated) stays

  auto dest = MakeDevice();
  ASSERT_NE(dest, nullptr);
  ASSERT_TRUE(dest->Restore(*saved).ok());
  TestBlkDriver driver(*mem_, *dest);
  driver.ContinueFrom(*driver_);
  dest->Resume();  // takes what was left in the ring without a notify
  auto used = driver.WaitUsed(30);
  ASSERT_EQ(used.size(), 30u);
  EXPECT_EQ(driver.UsedIdx(), 30u);
  EXPECT_LE(published, 20u);
  for (const auto& u : used) EXPECT_EQ(driver.StatusOf(static_cast<uint16_t>(u.id)), kVirtioBlkStatusOk);
  EXPECT_TRUE(ReadFile(0, 30 * 4096ull) == Mem(TestBlkDriver::kDataGpa, 30 * 4096ull));
  // And it keeps serving new requests.
  uint16_t r = driver.Post(kVirtioBlkTypeIn, 0, {{TestBlkDriver::kDataGpa + 0x80000, 4096}});
  driver.Notify();
  ASSERT_EQ(driver.WaitUsed(1).size(), static_cast<size_t>(1));
  EXPECT_EQ(driver.StatusOf(r), kVirtioBlkStatusOk);
  EXPECT_TRUE(Mem(TestBlkDriver::kDataGpa + 0x80000, 4096) == Mem(TestBlkDriver::kDataGpa, 4096));
  dest->Quiesce();
}

TEST_F(VirtioBlkDeviceTest, RestoreRefusesADiskOfAnotherSizeAndBadState) {
  ASSERT_TRUE(driver_->Init());
  dev_->Quiesce();
  auto saved = dev_->Save();
  ASSERT_TRUE(saved.ok());
  dev_.reset();
  auto dest = MakeDevice();
  ASSERT_NE(dest, nullptr);
  v1::VirtioBlkState bigger = *saved;
  bigger.set_capacity_sectors(saved->capacity_sectors() * 2);
  absl::Status st = dest->Restore(bigger);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("sectors"), std::string::npos) << st;
  v1::VirtioBlkState bad_ring = *saved;
  bad_ring.set_queue_desc(kMemBytes);
  st = dest->Restore(bad_ring);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("descriptor ring"), std::string::npos) << st;
  v1::VirtioBlkState big_queue = *saved;
  big_queue.set_queue_num(4096);
  EXPECT_FALSE(dest->Restore(big_queue).ok());
  EXPECT_TRUE(dest->Restore(*saved).ok());
}

// Pages of `path` in this host's page cache (mincore over a read-only mapping).
uint64_t CachedPages(const std::string& path, uint64_t bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  void* map = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return 0;
  std::vector<unsigned char> vec((bytes + kPageSize - 1) / kPageSize);
  uint64_t cached = 0;
  if (mincore(map, bytes, vec.data()) == 0) {
    for (unsigned char v : vec) cached += v & 1;
  }
  munmap(map, bytes);
  return cached;
}

TEST_F(VirtioBlkDeviceTest, RestoreKeepsTheCacheOfADiskThisHostFilledAndDropsItOtherwise) {
  ASSERT_TRUE(driver_->Init());
  dev_->Quiesce();
  auto saved = dev_->Save();
  ASSERT_TRUE(saved.ok()) << saved.status();
  driver_.reset();
  dev_.reset();
  // The disk's content, written (and written back, so clean pages) through this host's cache.
  const uint64_t kFilled = 1ull << 20;
  const std::string content(kFilled, 'c');
  int fd = open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, content.data(), kFilled, 0), static_cast<ssize_t>(kFilled));
  ASSERT_EQ(fdatasync(fd), 0);
  close(fd);
  const uint64_t pages = kFilled / kPageSize;
  ASSERT_GE(CachedPages(path_, kFilled), pages);

  // A storage migration's destination filled it: the cache is coherent and stays.
  auto coherent = VirtioBlkDevice::Create(path_, 0, *ram_, nullptr, nullptr, VirtioBlkDevice::HostCache::kCoherent);
  ASSERT_TRUE(coherent.ok()) << coherent.status();
  ASSERT_TRUE((*coherent)->Restore(*saved).ok());
  EXPECT_EQ(CachedPages(path_, kFilled), pages) << "Restore dropped the cache of a disk this host filled";
  coherent->reset();

  // A shared datastore's disk (the default): another host may have written it, the cache goes.
  auto shared = VirtioBlkDevice::Create(path_, 0, *ram_, nullptr);
  ASSERT_TRUE(shared.ok()) << shared.status();
  ASSERT_TRUE((*shared)->Restore(*saved).ok());
  EXPECT_LT(CachedPages(path_, kFilled), pages) << "Restore kept a possibly stale cache";
  EXPECT_TRUE(ReadFile(0, kFilled) == content);
}

TEST(VirtioBlkSpec, FilledByThisHostReachesTheVmmProcess) {
  VmSpec s;
  s.name = "filled";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 256ull << 20;
  s.disks.push_back(DiskSpec{DiskKind::kFile, "/d/disk0.raw", "", 4096, true});
  s.disks.push_back(DiskSpec{DiskKind::kFile, "/d/disk1.raw", "", 4096, false});
  auto back = VmSpecFromProto(VmSpecToProto(s));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->disks.size(), 2u);
  EXPECT_TRUE(back->disks[0].filled_by_this_host);
  EXPECT_FALSE(back->disks[1].filled_by_this_host);
}

TEST_F(VirtioBlkDeviceTest, EveryWriteIsReportedForStorageMigrationAndNothingElse) {
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  driver_.reset();
  dev_.reset();
  auto dev = VirtioBlkDevice::Create(path_, 0, *ram_, nullptr, [&](uint64_t offset, uint64_t bytes) {
    std::lock_guard lock(mu);
    writes.emplace_back(offset, bytes);
  });
  ASSERT_TRUE(dev.ok()) << dev.status();
  dev_ = std::move(*dev);
  dev_->Resume();
  driver_ = std::make_unique<TestBlkDriver>(*mem_, *dev_);
  ASSERT_TRUE(driver_->Init());
  driver_->Post(kVirtioBlkTypeOut, 3, {{TestBlkDriver::kDataGpa, 1024}, {TestBlkDriver::kDataGpa + 4096, 512}});
  driver_->Post(kVirtioBlkTypeIn, 0, {{TestBlkDriver::kDataGpa + 8192, 4096}});
  driver_->Post(kVirtioBlkTypeOut, kDiskBytes / 512, {{TestBlkDriver::kDataGpa, 512}});  // outside: IOERR
  driver_->Post(kVirtioBlkTypeFlush, 0, {});
  driver_->Notify();
  ASSERT_EQ(driver_->WaitUsed(4).size(), static_cast<size_t>(4));
  std::lock_guard lock(mu);
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].first, 3u * 512);
  EXPECT_EQ(writes[0].second, 1536u);
}

// A storage migration's mirror mode: a write's completion waits until the cut that holds it is
// released (its blocks are on the destination); reads and flushes are not held; the device can
// quiesce with completions held but not save them; EndMirror publishes what is left.
TEST_F(VirtioBlkDeviceTest, MirrorHoldsAWriteCompletionUntilItsCutIsReleased) {
  std::atomic<int> logged{0};
  driver_.reset();
  dev_.reset();
  auto dev = VirtioBlkDevice::Create(path_, 0, *ram_, nullptr, [&](uint64_t, uint64_t) { ++logged; });
  ASSERT_TRUE(dev.ok()) << dev.status();
  dev_ = std::move(*dev);
  dev_->Resume();
  driver_ = std::make_unique<TestBlkDriver>(*mem_, *dev_);
  ASSERT_TRUE(driver_->Init());
  dev_->StartMirror();
  Fill(TestBlkDriver::kDataGpa, 4096, 9);
  const uint16_t write = driver_->Post(kVirtioBlkTypeOut, 8, {{TestBlkDriver::kDataGpa, 4096}});
  const uint16_t read = driver_->Post(kVirtioBlkTypeIn, 0, {{TestBlkDriver::kDataGpa + 8192, 512}});
  driver_->Notify();
  std::vector<virtio_test::UsedElem> used = driver_->WaitUsed(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, read) << "only the read completes while the write waits for the mirror";
  // The write is on the disk and in the log already; only its completion waits.
  int collected_at_cut = -1;
  const uint64_t cut = dev_->CutMirror(std::chrono::milliseconds(5000), [&] { collected_at_cut = logged.load(); });
  EXPECT_EQ(collected_at_cut, 1) << "the cut collects the log with the write it holds";
  EXPECT_EQ(ReadFile(8 * 512, 4096), Mem(TestBlkDriver::kDataGpa, 4096));
  dev_->ReleaseMirrored(cut - 1);  // publishes synchronously: an earlier cut releases nothing of this one
  EXPECT_EQ(driver_->UsedIdx(), 1);
  dev_->ReleaseMirrored(cut);
  used = driver_->WaitUsed(1);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, write);
  EXPECT_EQ(driver_->StatusOf(write), kVirtioBlkStatusOk);

  // Held at a pause: the device quiesces, refuses to save, and EndMirror publishes.
  driver_->Post(kVirtioBlkTypeOut, 16, {{TestBlkDriver::kDataGpa, 4096}});
  driver_->Notify();
  for (int i = 0; i < 1000 && dev_->counters().mirror_held < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(dev_->counters().mirror_held, 2u);
  dev_->Quiesce();
  EXPECT_FALSE(dev_->Save().ok()) << "saved a device whose guest never saw a write complete";
  dev_->EndMirror();
  ASSERT_EQ(driver_->WaitUsed(1).size(), 1u);
  EXPECT_TRUE(dev_->Save().ok());
}

TEST(VirtioBlkCreate, MissingDiskFileIsAClearError) {
  auto mem = GuestMemory::Create(8ull << 20);
  ASSERT_TRUE(mem.ok());
  GuestRamAccess ram(**mem, nullptr);
  auto dev = VirtioBlkDevice::Create("/nonexistent/ferry/disk.raw", 0, ram, nullptr);
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find("/nonexistent/ferry/disk.raw"), std::string::npos) << dev.status();
}

}  // namespace
}  // namespace ferry
