// The VMM's disk backend (UringBlockFile, io_uring) on a ferry-faultfs datastore: what a running
// VM's virtio-blk device sees in an APD (requests stay in flight, then complete) and a PDL (they
// complete with -ENODEV, which the device reports to the guest as an I/O error).

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "engine/vm/virtio/uring_block_file.h"
#include "tests/faultfs/faultfs_fixture.h"

namespace ferry::faultfs {
namespace {

constexpr size_t kBlock = 4096;

class FaultFsDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    absl::StatusOr<std::unique_ptr<FaultFsMount>> started = FaultFsMount::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    fs_ = std::move(*started);
    ASSERT_TRUE(std::ofstream(fs_->BackingPath("disk.raw")).good());
    ASSERT_EQ(truncate(fs_->BackingPath("disk.raw").c_str(), 64 * kBlock), 0);
    absl::StatusOr<std::unique_ptr<UringBlockFile>> disk = UringBlockFile::Open(fs_->MountPath("disk.raw"), 8);
    ASSERT_TRUE(disk.ok()) << disk.status();
    disk_ = std::move(*disk);
  }
  void TearDown() override {
    disk_.reset();
    if (fs_ != nullptr) {
      EXPECT_TRUE(fs_->Stop().ok());
    }
  }

  // Waits for the completions of `tags` and returns tag -> result.
  std::map<uint64_t, int32_t> Complete(std::initializer_list<uint64_t> tags) {
    std::map<uint64_t, int32_t> results;
    while (results.size() < tags.size()) {
      disk_->WaitForWork();
      disk_->Reap([&](uint64_t tag, int32_t result) { results[tag] = result; });
    }
    return results;
  }

  std::string BackingBlock(size_t index) {
    std::ifstream in(fs_->BackingPath("disk.raw"), std::ios::binary);
    std::string block(kBlock, '\0');
    in.seekg(static_cast<std::streamoff>(index * kBlock));
    in.read(block.data(), kBlock);
    return block;
  }

  std::unique_ptr<FaultFsMount> fs_;
  std::unique_ptr<UringBlockFile> disk_;
};

TEST_F(FaultFsDisk, WritesAndAFlushInFlightDuringAnApdCompleteWhenItClears) {
  std::string before(kBlock, 'b');
  iovec iov0{before.data(), kBlock};
  ASSERT_TRUE(disk_->QueueWrite(1, &iov0, 1, 0));
  ASSERT_TRUE(disk_->Submit().ok());
  EXPECT_EQ(Complete({1})[1], static_cast<int32_t>(kBlock));

  ASSERT_TRUE(fs_->SetMode("apd").ok());
  std::string during(kBlock, 'd');
  iovec iov1{during.data(), kBlock};
  ASSERT_TRUE(disk_->QueueWrite(2, &iov1, 1, kBlock));
  ASSERT_TRUE(disk_->QueueFlush(3));
  ASSERT_TRUE(disk_->Submit().ok());
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  int completed = 0;
  disk_->Reap([&](uint64_t, int32_t) { ++completed; });
  EXPECT_EQ(completed, 0) << "a request completed during the APD";
  EXPECT_EQ(BackingBlock(1), std::string(kBlock, '\0'));

  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  std::map<uint64_t, int32_t> results = Complete({2, 3});
  EXPECT_EQ(results[2], static_cast<int32_t>(kBlock));
  EXPECT_EQ(results[3], 0);
  EXPECT_EQ(BackingBlock(0), before);
  EXPECT_EQ(BackingBlock(1), during);
}

TEST_F(FaultFsDisk, RequestsDuringAPdlFailWithNoSuchDeviceAndEarlierDataSurvives) {
  std::string before(kBlock, 'b');
  iovec iov0{before.data(), kBlock};
  ASSERT_TRUE(disk_->QueueWrite(1, &iov0, 1, 0));
  ASSERT_TRUE(disk_->Submit().ok());
  ASSERT_EQ(Complete({1})[1], static_cast<int32_t>(kBlock));

  ASSERT_TRUE(fs_->SetMode("pdl").ok());
  std::string read_back(kBlock, '\0');
  iovec read_iov{read_back.data(), kBlock};
  std::string lost(kBlock, 'x');
  iovec write_iov{lost.data(), kBlock};
  ASSERT_TRUE(disk_->QueueRead(2, &read_iov, 1, 0));
  ASSERT_TRUE(disk_->QueueWrite(3, &write_iov, 1, kBlock));
  ASSERT_TRUE(disk_->QueueFlush(4));
  ASSERT_TRUE(disk_->Submit().ok());
  std::map<uint64_t, int32_t> results = Complete({2, 3, 4});
  EXPECT_EQ(results[2], -ENODEV);
  EXPECT_EQ(results[3], -ENODEV);
  EXPECT_EQ(results[4], -ENODEV);

  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  ASSERT_TRUE(disk_->QueueRead(5, &read_iov, 1, 0));
  ASSERT_TRUE(disk_->Submit().ok());
  EXPECT_EQ(Complete({5})[5], static_cast<int32_t>(kBlock));
  EXPECT_EQ(read_back, before);
  EXPECT_EQ(BackingBlock(1), std::string(kBlock, '\0')) << "a write failed by the PDL reached the disk";
}

}  // namespace
}  // namespace ferry::faultfs
