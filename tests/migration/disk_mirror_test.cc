// A storage migration's mirror mode (engine/migration/disk_mirror.h) against a stand-in for the
// VMM's held completions: when the VMM may show a write complete, the destination's file already
// has it; a destination that stops answering fails the mirror, and End releases what it held.

#include "engine/migration/disk_mirror.h"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr uint64_t kBytes = 4ull << 20;  // 1024 blocks

std::string ReadBlock(const fs::path& p, uint64_t block) {
  std::string out(kDiskBlockBytes, '\0');
  int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(pread(fd, out.data(), out.size(), static_cast<off_t>(block * kDiskBlockBytes)),
            static_cast<ssize_t>(out.size()));
  close(fd);
  return out;
}

void WriteBlock(const fs::path& p, uint64_t block, char fill) {
  std::string data(kDiskBlockBytes, fill);
  int fd = open(p.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), static_cast<off_t>(block * kDiskBlockBytes)),
            static_cast<ssize_t>(data.size()));
  close(fd);
}

// The destination in-process: applies DiskBlocks to its file and acknowledges a marked cut, as
// MigrationReceiver does; `answer` false: it takes the blocks but never answers.
class ReceivingChannel : public MigrationChannel {
 public:
  explicit ReceivingChannel(DiskCopyReceiver& receiver) : receiver_(receiver) {}
  absl::Status Send(const v1::PeerMessage& msg) override {
    std::lock_guard lock(mu_);
    if (aborted_) return absl::UnavailableError("link broken");
    absl::Status st = receiver_.Apply(msg.disk_blocks());
    if (!st.ok()) return st;
    if (msg.disk_blocks().mirror_cut() != 0 && answer) {
      v1::PeerReply r;
      r.mutable_disk_mirror_ack()->set_disk(msg.disk_blocks().disk());
      r.mutable_disk_mirror_ack()->set_cut(msg.disk_blocks().mirror_cut());
      replies_.push_back(r);
      cv_.notify_all();
    }
    return absl::OkStatus();
  }
  absl::Status Receive(v1::PeerReply& reply) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return aborted_ || !replies_.empty(); });
    if (replies_.empty()) return absl::UnavailableError("link broken");
    reply = replies_.front();
    replies_.pop_front();
    return absl::OkStatus();
  }
  void CloseSend() override {}
  void Abort() override {
    std::lock_guard lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }
  const char* name() const override { return "in-process"; }
  bool encrypted() const override { return false; }
  std::atomic<bool> answer{true};

 private:
  DiskCopyReceiver& receiver_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::PeerReply> replies_;
  bool aborted_ = false;
};

// The VMM's side: a write log and held completions, as VirtioBlkDevice and MicroVm keep them.
class HeldWrites {
 public:
  // The guest writes `block`; returns once the VMM shows the write complete (false: never within 10 s).
  bool Write(const fs::path& src, uint64_t block, char fill) {
    WriteBlock(src, block, fill);
    std::unique_lock lock(mu_);
    log_.Set(block);
    const uint64_t id = ++next_id_;
    held_.push_back({id, 0});
    cv_.notify_all();
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] {
      return std::none_of(held_.begin(), held_.end(), [&](const Held& h) { return h.id == id; });
    });
  }
  DiskMirrorHooks Hooks() {
    DiskMirrorHooks h;
    h.start = [] { return absl::OkStatus(); };
    h.step = [this](uint32_t, uint64_t release_through, uint32_t wait_ms, DirtyBitmap& out) -> absl::StatusOr<uint64_t> {
      std::unique_lock lock(mu_);
      Release(release_through);
      cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                   [&] { return std::any_of(held_.begin(), held_.end(), [](const Held& x) { return x.cut == 0; }); });
      const uint64_t cut = ++last_cut_;
      for (Held& x : held_) {
        if (x.cut == 0) x.cut = cut;
      }
      out.Or(log_);
      log_.ClearAll();
      return cut;
    };
    h.end = [this] {
      std::lock_guard lock(mu_);
      ++ended;
      Release(UINT64_MAX);
      return absl::OkStatus();
    };
    return h;
  }
  size_t held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  std::atomic<int> ended{0};

 private:
  struct Held {
    uint64_t id, cut;
  };
  void Release(uint64_t through) {
    std::erase_if(held_, [&](const Held& h) { return through == UINT64_MAX || (h.cut != 0 && h.cut <= through); });
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  DirtyBitmap log_{kBytes / kDiskBlockBytes};
  std::vector<Held> held_;
  uint64_t next_id_ = 0, last_cut_ = 0;
};

class StorageMigrationDiskMirror : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("ferry-disk-mirror-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    src_ = dir_ / "src.raw";
    dst_ = dir_ / "dst.raw";
    std::ofstream(src_).close();
    std::ofstream(dst_).close();
    fs::resize_file(src_, kBytes);
    fs::resize_file(dst_, kBytes);
  }
  void TearDown() override { fs::remove_all(dir_); }
  VmSpec SpecOf(const fs::path& disk) {
    VmSpec s;
    s.name = "vm1";
    s.disks.push_back(DiskSpec{DiskKind::kFile, disk.string(), "", kBytes});
    return s;
  }
  fs::path dir_, src_, dst_;
};

TEST_F(StorageMigrationDiskMirror, AWriteCompletesOnlyOnceTheDestinationHasIt) {
  HeldWrites vmm;
  auto source = DiskCopySource::Open(SpecOf(src_), [](uint32_t, DirtyBitmap&) { return absl::OkStatus(); });
  ASSERT_TRUE(source.ok()) << source.status();
  auto receiver = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes});
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  ReceivingChannel channel(**receiver);
  DiskMirror mirror(**source, channel, vmm.Hooks(), std::chrono::milliseconds(10000));
  ASSERT_TRUE(mirror.Start().ok());
  for (uint64_t i = 0; i < 40; ++i) {
    const uint64_t block = (i * 37) % 1024;
    const char fill = static_cast<char>('a' + i % 26);
    ASSERT_TRUE(vmm.Write(src_, block, fill)) << "write " << i << " never completed";
    // The synchronous promise: once the guest sees it complete, the destination has written it.
    EXPECT_EQ(ReadBlock(dst_, block), std::string(kDiskBlockBytes, fill)) << "write " << i;
  }
  ASSERT_TRUE(mirror.Stop().ok());
  EXPECT_GE(mirror.counters().cuts, 40u);
  EXPECT_GE(mirror.counters().copy.blocks, 40u);
  ASSERT_TRUE(mirror.End().ok());
  EXPECT_EQ(vmm.ended.load(), 1);
}

TEST_F(StorageMigrationDiskMirror, ADestinationThatNeverAnswersFailsTheMirrorAndEndReleasesTheWrite) {
  HeldWrites vmm;
  auto source = DiskCopySource::Open(SpecOf(src_), [](uint32_t, DirtyBitmap&) { return absl::OkStatus(); });
  ASSERT_TRUE(source.ok()) << source.status();
  auto receiver = DiskCopyReceiver::Open(SpecOf(dst_), {kBytes});
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  ReceivingChannel channel(**receiver);
  channel.answer = false;
  DiskMirror mirror(**source, channel, vmm.Hooks(), std::chrono::milliseconds(300));
  ASSERT_TRUE(mirror.Start().ok());
  std::thread guest([&] { (void)vmm.Write(src_, 3, 'z'); });
  for (int i = 0; i < 500 && !mirror.failed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(mirror.failed()) << "an unanswered cut did not fail the mirror";
  EXPECT_EQ(vmm.held(), 1u) << "the write completed without the destination's acknowledgement";
  absl::Status st = mirror.Stop();
  EXPECT_TRUE(absl::IsDeadlineExceeded(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("did not acknowledge mirrored disk writes"));
  ASSERT_TRUE(mirror.End().ok());  // the rollback: the guest's write is on its own disk
  guest.join();
  EXPECT_EQ(vmm.held(), 0u);
  EXPECT_EQ(ReadBlock(src_, 3), std::string(kDiskBlockBytes, 'z'));
}

}  // namespace
}  // namespace ferry
