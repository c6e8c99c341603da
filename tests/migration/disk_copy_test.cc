// A storage migration's disk copy (engine/migration/disk_copy.h): the source's bulk copy and
// iterations reproduce the disk file on the destination byte for byte, holes are never sent, and
// the destination checks every message before it writes any of it.

#include "engine/migration/disk_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Keeps what the source sends, in order (the control stream's role).
class RecordingChannel : public MigrationChannel {
 public:
  absl::Status Send(const v1::PeerMessage& msg) override {
    sent.push_back(msg);
    return absl::OkStatus();
  }
  absl::Status Receive(v1::PeerReply&) override { return absl::UnavailableError("no replies here"); }
  void CloseSend() override {}
  void Abort() override {}
  const char* name() const override { return "recording"; }
  bool encrypted() const override { return false; }
  std::vector<v1::PeerMessage> sent;
};

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAt(const fs::path& p, uint64_t offset, const std::string& bytes) {
  int fd = open(p.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)), static_cast<ssize_t>(bytes.size()));
  close(fd);
}

class StorageMigrationDiskCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("ferry-disk-copy-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    src_ = dir_ / "src.raw";
    dst_ = dir_ / "dst.raw";
    fs::resize_file(Make(src_), kBytes);
    fs::resize_file(Make(dst_), kBytes);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static fs::path Make(const fs::path& p) {
    std::ofstream(p).close();
    return p;
  }
  VmSpec SpecOf(const fs::path& disk) {
    VmSpec s;
    s.name = "vm1";
    s.disks.push_back(DiskSpec{DiskKind::kFile, disk.string(), "", kBytes});
    return s;
  }
  // The device's write log as the test sets it.
  DiskWriteLog Log() {
    return [this](uint32_t disk, DirtyBitmap& out) -> absl::Status {
      if (disk != 0) return absl::InvalidArgumentError("one disk");
      out.Or(written_);
      written_.ClearAll();
      return absl::OkStatus();
    };
  }
  void Apply(DiskCopyReceiver& r, const RecordingChannel& ch) {
    for (const v1::PeerMessage& m : ch.sent) {
      ASSERT_TRUE(m.has_disk_blocks());
      ASSERT_TRUE(r.Apply(m.disk_blocks()).ok());
    }
  }

  static constexpr uint64_t kBytes = 8ull << 20;  // 2048 blocks
  fs::path dir_, src_, dst_;
  DirtyBitmap written_{kBytes / kDiskBlockBytes};
};

TEST_F(StorageMigrationDiskCopy, BulkThenIterationsReproduceTheDiskAndNeverSendHoles) {
  std::mt19937_64 rng(7);
  std::string block(kDiskBlockBytes, '\0');
  for (char& c : block) c = static_cast<char>(rng());
  WriteAt(src_, 5 * kDiskBlockBytes, block);      // data
  WriteAt(src_, 1500 * kDiskBlockBytes, block + block);
  written_.Set(9);  // logged before the bulk copy: forgotten by it (the bulk reads the file)

  auto source = DiskCopySource::Open(SpecOf(src_), Log());
  ASSERT_TRUE(source.ok()) << source.status();
  auto receiver = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes});
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  RecordingChannel bulk;
  DiskCopyCounters c;
  ASSERT_TRUE((*source)->SendBulk(bulk, c).ok());
  EXPECT_LE(c.blocks, 64u) << "only the file's data extents are read, not its 2048 blocks";
  EXPECT_GE(c.data_bytes, 3 * kDiskBlockBytes);
  ASSERT_FALSE(bulk.sent.empty());
  EXPECT_EQ(bulk.sent[0].disk_blocks().round(), 1u);
  Apply(**receiver, bulk);
  EXPECT_EQ(ReadAll(src_), ReadAll(dst_));

  // The guest writes while the copy runs: a new block, a rewritten one, one that becomes zero.
  WriteAt(src_, 700 * kDiskBlockBytes, block);
  WriteAt(src_, 5 * kDiskBlockBytes, std::string(kDiskBlockBytes, 'x'));
  WriteAt(src_, 1501 * kDiskBlockBytes, std::string(kDiskBlockBytes, '\0'));
  written_.Set(700);
  written_.Set(5);
  written_.Set(1501);
  ASSERT_TRUE((*source)->CollectWrites().ok());
  EXPECT_EQ((*source)->pending_blocks(), 3u);
  RecordingChannel iteration;
  DiskCopyCounters c2;
  ASSERT_TRUE((*source)->SendPending(iteration, 2, /*final=*/true, c2).ok());
  EXPECT_EQ(c2.blocks, 3u);
  EXPECT_EQ(c2.zero_blocks, 1u);
  EXPECT_EQ((*source)->pending_blocks(), 0u);
  ASSERT_EQ(iteration.sent.size(), 1u);
  EXPECT_TRUE(iteration.sent[0].disk_blocks().final());
  Apply(**receiver, iteration);
  EXPECT_EQ(ReadAll(src_), ReadAll(dst_));
}

TEST_F(StorageMigrationDiskCopy, ALostIterationLeavesTheDestinationStale) {
  // What the negative control relies on: a block left out of an iteration keeps its old copy.
  WriteAt(src_, 0, std::string(kDiskBlockBytes, 'a'));
  auto source = DiskCopySource::Open(SpecOf(src_), Log());
  auto receiver = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes});
  ASSERT_TRUE(source.ok() && receiver.ok());
  RecordingChannel bulk;
  DiskCopyCounters c;
  ASSERT_TRUE((*source)->SendBulk(bulk, c).ok());
  Apply(**receiver, bulk);
  WriteAt(src_, 0, std::string(kDiskBlockBytes, 'b'));  // written, but the log never hears of it
  ASSERT_TRUE((*source)->CollectWrites().ok());
  EXPECT_EQ((*source)->pending_blocks(), 0u);
  EXPECT_NE(ReadAll(src_), ReadAll(dst_));
}

TEST_F(StorageMigrationDiskCopy, MessagesCarryAtMostOneMiB) {
  std::string big(4ull << 20, 'z');
  WriteAt(src_, 0, big);
  auto source = DiskCopySource::Open(SpecOf(src_), Log());
  ASSERT_TRUE(source.ok());
  RecordingChannel bulk;
  DiskCopyCounters c;
  ASSERT_TRUE((*source)->SendBulk(bulk, c).ok());
  EXPECT_EQ(bulk.sent.size(), 4u);
  for (const auto& m : bulk.sent) {
    uint64_t data = 0;
    for (const auto& r : m.disk_blocks().runs()) data += r.data().size();
    EXPECT_LE(data, kMaxDiskBlocksPerMessage * kDiskBlockBytes);
  }
}

TEST_F(StorageMigrationDiskCopy, ReceiverRefusesBadMessagesBeforeWritingAnything) {
  auto receiver = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes});
  ASSERT_TRUE(receiver.ok());
  const std::string before = ReadAll(dst_);
  auto message = [](uint32_t disk, uint64_t first, uint32_t count, size_t data) {
    v1::DiskBlocks b;
    b.set_disk(disk);
    b.set_round(1);
    // A good run first: nothing of a message is written when a later run is bad.
    auto* ok = b.add_runs();
    ok->set_first_page(0);
    ok->set_count(1);
    ok->set_data(std::string(kDiskBlockBytes, 'q'));
    auto* r = b.add_runs();
    r->set_first_page(first);
    r->set_count(count);
    r->set_data(std::string(data, 'q'));
    return b;
  };
  absl::Status outside = (*receiver)->Apply(message(0, 2047, 2, 2 * kDiskBlockBytes));
  EXPECT_TRUE(absl::IsOutOfRange(outside)) << outside;
  EXPECT_THAT(outside.message(), HasSubstr("outside disk 0"));
  absl::Status wrapping = (*receiver)->Apply(message(0, ~0ull - 1, 4, 4 * kDiskBlockBytes));
  EXPECT_TRUE(absl::IsOutOfRange(wrapping)) << wrapping;
  absl::Status short_data = (*receiver)->Apply(message(0, 10, 2, kDiskBlockBytes));
  EXPECT_TRUE(absl::IsInvalidArgument(short_data)) << short_data;
  absl::Status empty_run = (*receiver)->Apply(message(0, 10, 0, 0));
  EXPECT_TRUE(absl::IsInvalidArgument(empty_run)) << empty_run;
  absl::Status no_disk = (*receiver)->Apply(message(1, 0, 1, kDiskBlockBytes));
  EXPECT_THAT(no_disk.message(), HasSubstr("disk 1"));
  EXPECT_EQ(ReadAll(dst_), before) << "a refused message wrote nothing";
  EXPECT_EQ(fs::file_size(dst_), kBytes);

  auto wrong_size = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes * 2});
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_THAT(wrong_size.status().message(), HasSubstr("the source's has"));
}

}  // namespace
}  // namespace ferry
