// The guest's disk workload on the host, against an in-memory disk (a test double of the dw_disk
// seam, not a virtio device): block content, verification, lost and torn writes, I/O errors,
// pacing, and the command-line grammar it shares with the memory workload.
#include "engine/guest/disk_workload.h"

#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

constexpr uint64_t kTicksPerMs = 1'000'000;

struct Console {
  std::vector<std::string> lines;
  static void Line(void* ctx, const char* text, int is_line) {
    if (is_line) static_cast<Console*>(ctx)->lines.push_back(text);
  }
  static void Status(void*, uint32_t, uint32_t) {}
  fw_env env() { return fw_env{this, &Line, &Status}; }
  std::vector<std::string> Starting(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& l : lines)
      if (l.rfind(prefix, 0) == 0) out.push_back(l);
    return out;
  }
};

// Requests run when the workload takes their completion, newest first, so completions come back
// out of order as they may from a device with several requests in flight.
class MemoryDisk {
 public:
  MemoryDisk(uint64_t blocks, uint32_t slots)
      : store_(blocks * DW_BLOCK_WORDS, 0), buffers_(slots, std::vector<uint64_t>(DW_BLOCK_WORDS)) {
    disk_ = dw_disk{this, slots, 1, blocks, &Buffer, &Submit, &Kick, &Complete};
  }
  const dw_disk* disk() const { return &disk_; }
  uint64_t* block(uint64_t b) { return &store_[b * DW_BLOCK_WORDS]; }
  // The next write to `b` is acknowledged but never reaches the store.
  void DropNextWriteTo(uint64_t b) { drop_.insert(b); }
  void FailNextRequest() { fail_next_ = true; }
  uint64_t flushes = 0, kicks = 0, max_inflight = 0;
  std::set<uint64_t> written;

 private:
  struct Request {
    uint32_t slot, type;
    uint64_t block;
  };
  static MemoryDisk* Self(void* ctx) { return static_cast<MemoryDisk*>(ctx); }
  static uint64_t* Buffer(void* ctx, uint32_t slot) { return Self(ctx)->buffers_[slot].data(); }
  static void Submit(void* ctx, uint32_t slot, uint32_t type, uint64_t block) {
    Self(ctx)->queued_.push_back({slot, type, block});
  }
  static void Kick(void* ctx) {
    MemoryDisk* d = Self(ctx);
    ++d->kicks;
    for (const Request& r : d->queued_) d->device_.push_back(r);
    d->queued_.clear();
    d->max_inflight = std::max<uint64_t>(d->max_inflight, d->device_.size());
  }
  static int Complete(void* ctx, uint32_t* slot, uint32_t* status) {
    MemoryDisk* d = Self(ctx);
    if (d->device_.empty()) return 0;
    Request r = d->device_.back();
    d->device_.pop_back();
    *slot = r.slot;
    *status = FERRY_VIRTIO_BLK_S_OK;
    if (d->fail_next_) {
      d->fail_next_ = false;
      *status = FERRY_VIRTIO_BLK_S_IOERR;
      return 1;
    }
    uint64_t* data = d->buffers_[r.slot].data();
    if (r.type == FERRY_VIRTIO_BLK_T_OUT) {
      d->written.insert(r.block);
      if (!d->drop_.erase(r.block)) std::memcpy(d->block(r.block), data, DW_BLOCK_BYTES);
    } else if (r.type == FERRY_VIRTIO_BLK_T_IN) {
      std::memcpy(data, d->block(r.block), DW_BLOCK_BYTES);
    } else if (r.type == FERRY_VIRTIO_BLK_T_FLUSH) {
      ++d->flushes;
    }
    return 1;
  }

  std::vector<uint64_t> store_;
  std::vector<std::vector<uint64_t>> buffers_;
  std::deque<Request> queued_, device_;
  std::set<uint64_t> drop_;
  bool fail_next_ = false;
  dw_disk disk_;
};

dw_config Config(const char* cmdline) {
  dw_config c;
  dw_config_defaults(&c);
  char err[160];
  EXPECT_EQ(dw_parse_cmdline(cmdline, &c, err, sizeof(err)), 0) << err;
  return c;
}

class DiskRun {
 public:
  DiskRun(const char* cmdline, uint64_t disk_blocks, uint32_t slots = 4)
      : cfg_(Config(cmdline)), disk_(disk_blocks, slots), bytes_(dw_region_bytes(&cfg_)) {
    region_ = std::aligned_alloc(4096, bytes_);
    std::memset(region_, 0xa5, bytes_);  // dw_init must not rely on zeroed memory
    dw_init(region_, &cfg_, disk_.disk(), kTicksPerMs, 0);
  }
  ~DiskRun() { std::free(region_); }
  // Steps every `step_ns` of virtual time up to `until_ns`.
  void RunUntil(uint64_t until_ns, uint64_t step_ns = 100'000) {
    fw_env env = console.env();
    for (; now_ <= until_ns; now_ += step_ns) dw_step(region_, disk_.disk(), now_, &env);
  }
  dw_state* state() { return static_cast<dw_state*>(region_); }
  uint32_t gen(uint64_t b) { return dw_gen_table(region_)[b]; }
  MemoryDisk& disk() { return disk_; }
  Console console;

 private:
  dw_config cfg_;
  MemoryDisk disk_;
  uint64_t bytes_;
  void* region_;
  uint64_t now_ = 0;
};

TEST(DiskWorkloadTest, BlockContentNamesItsBlockAndGeneration) {
  std::vector<uint64_t> b(DW_BLOCK_WORDS);
  uint64_t expected, got;
  uint32_t word;
  dw_fill_block(b.data(), 77, 3);
  EXPECT_EQ(b[0], ferry_block_tag(77, 3));
  EXPECT_EQ(b[0], (3ull << 32) | 77);
  EXPECT_EQ(dw_check_block(b.data(), 77, 3, &expected, &got, &word), 1);
  // Another generation of the same block: a lost write. Caught at the tag.
  EXPECT_EQ(dw_check_block(b.data(), 77, 4, &expected, &got, &word), 0);
  EXPECT_EQ(word, 0u);
  EXPECT_EQ(expected, ferry_block_tag(77, 4));
  EXPECT_EQ(got, ferry_block_tag(77, 3));
  // Not written since boot: any generation of this block is fine, another block's content is not.
  EXPECT_EQ(dw_check_block(b.data(), 77, 0, &expected, &got, &word), 1);
  EXPECT_EQ(dw_check_block(b.data(), 78, 0, &expected, &got, &word), 0);
  // A torn block: right tag, wrong tail.
  b[300] ^= 1;
  EXPECT_EQ(dw_check_block(b.data(), 77, 0, &expected, &got, &word), 0);
  EXPECT_EQ(word, 300u);
  EXPECT_EQ(dw_check_block(b.data(), 77, 3, &expected, &got, &word), 0);
  EXPECT_EQ(word, 300u);
  // A fresh sparse disk reads as zeros; zeros with one stray byte do not pass.
  std::vector<uint64_t> zero(DW_BLOCK_WORDS, 0);
  EXPECT_EQ(dw_check_block(zero.data(), 5, 0, &expected, &got, &word), 1);
  zero[511] = 0x100;
  EXPECT_EQ(dw_check_block(zero.data(), 5, 0, &expected, &got, &word), 0);
  EXPECT_EQ(word, 511u);
  // Words differ from the memory workload's page words, so a page landing on the disk is caught.
  EXPECT_NE(ferry_block_word(77, 3, 5), ferry_page_word(77, 3, 5));
}

TEST(DiskWorkloadTest, WritesAndVerifiesWithoutCorruption) {
  DiskRun run("disk_ws=1 disk_rate=0", 512);
  run.RunUntil(1'100 * kTicksPerMs, 1'000'000);
  dw_state* st = run.state();
  EXPECT_EQ(st->corruptions, 0u) << testing::PrintToString(run.console.lines);
  EXPECT_GT(st->blocks_written, 1000u);
  EXPECT_GT(st->blocks_verified, 1000u);
  EXPECT_GE(st->sweeps, 3u);
  EXPECT_GE(run.disk().flushes, 1u);
  EXPECT_LE(run.disk().max_inflight, 4u);
  // Every block's recorded generation is what the disk holds; blocks beyond disk_ws are never touched.
  uint64_t expected, got;
  uint32_t word;
  for (uint64_t b = 0; b < 256; ++b) {
    ASSERT_EQ(dw_check_block(run.disk().block(b), b, run.gen(b), &expected, &got, &word), 1) << "block " << b;
  }
  EXPECT_EQ(*run.disk().written.rbegin(), 255u);
  auto reports = run.console.Starting("disk written=");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find(" verified="), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find(" corruptions=0 errors=0"), std::string::npos) << reports[0];
}

TEST(DiskWorkloadTest, CorruptedBlockIsReported) {
  DiskRun run("disk_ws=1 disk_rate=0", 256);
  run.RunUntil(50 * kTicksPerMs, 1'000'000);
  uint64_t victim = 0;
  while (run.gen(victim) == 0) ++victim;  // a block the guest wrote
  run.disk().block(victim)[9] ^= 0xff;
  run.RunUntil(400 * kTicksPerMs, 1'000'000);
  auto lines = run.console.Starting("CORRUPTION block=");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0].rfind("CORRUPTION block=" + std::to_string(victim) + " expected=", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(" word=9 "), std::string::npos) << lines[0];
  EXPECT_GE(run.state()->corruptions, 1u);
}

TEST(DiskWorkloadTest, CorruptionOfABlockNeverWrittenIsReported) {
  DiskRun run("disk_ws=1 disk_rate=1", 256);  // slow: most blocks stay unwritten
  run.disk().block(200)[0] = 0xdeadbeef;
  run.RunUntil(1'100 * kTicksPerMs, 1'000'000);
  EXPECT_FALSE(run.console.Starting("CORRUPTION block=200 ").empty()) << testing::PrintToString(run.console.lines);
}

TEST(DiskWorkloadTest, LostWriteIsReported) {
  DiskRun run("disk_ws=1 disk_rate=0", 256);
  run.RunUntil(20 * kTicksPerMs, 1'000'000);
  uint64_t victim = 0;
  while (run.gen(victim) == 0) ++victim;
  for (uint64_t b = 0; b < 256; ++b) run.disk().DropNextWriteTo(b);  // the next write of each block is lost
  run.RunUntil(400 * kTicksPerMs, 1'000'000);
  EXPECT_FALSE(run.console.Starting("CORRUPTION block=").empty());
}

TEST(DiskWorkloadTest, IoErrorIsCountedAndNamed) {
  DiskRun run("disk_ws=1 disk_rate=0", 256);
  run.RunUntil(5 * kTicksPerMs, 1'000'000);
  run.disk().FailNextRequest();
  run.RunUntil(1'100 * kTicksPerMs, 1'000'000);
  EXPECT_EQ(run.state()->io_errors, 1u);
  auto errors = run.console.Starting("DISK ERROR op=");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(" status=1"), std::string::npos) << errors[0];
  EXPECT_EQ(run.state()->corruptions, 0u) << testing::PrintToString(run.console.lines);
  EXPECT_NE(run.console.Starting("disk written=").back().find(" errors=1"), std::string::npos);
}

TEST(DiskWorkloadTest, PacesWritesAndReadsToTheRate) {
  DiskRun run("disk_ws=4 disk_rate=2", 1024);  // 2 MiB/s = 512 blocks a second
  run.RunUntil(1'900 * kTicksPerMs);
  dw_state* st = run.state();
  // Each write first reads its block back; the sweep reads at the same rate.
  EXPECT_GE(st->blocks_written, 960u);
  EXPECT_LE(st->blocks_written, 980u);
  EXPECT_GE(st->blocks_verified, 2 * 960u);
  EXPECT_LE(st->blocks_verified, 2 * 980u);
  EXPECT_EQ(st->sweeps, 0u);  // 1024 blocks at 512 a second: the first sweep ends at 2 s
  run.RunUntil(2'100 * kTicksPerMs);
  EXPECT_EQ(st->sweeps, 1u);
}

TEST(DiskWorkloadTest, CommandLineGrammar) {
  dw_config c = Config(
      "/boot/ferry-guest.elf ws=32 rate=1 disk_ws=64 disk_rate=0.5 virtio_mmio.device=4K@0xd0000000:5 "
      "virtio_mmio.device=4096@0xD0001000:6");
  EXPECT_EQ(c.ws_blocks, 64u << 8);
  EXPECT_EQ(c.rate_bytes_per_s, 512u << 10);
  ASSERT_EQ(c.ndevices, 2u);
  EXPECT_EQ(c.devices[0].base, FERRY_GPA_VIRTIO_MMIO_BASE);
  EXPECT_EQ(c.devices[0].size, 4096u);
  EXPECT_EQ(c.devices[0].irq, 5u);
  EXPECT_EQ(c.devices[1].base, FERRY_GPA_VIRTIO_MMIO_BASE + FERRY_VIRTIO_MMIO_STRIDE);
  EXPECT_EQ(c.devices[1].irq, 6u);

  dw_config none = Config("ws=8 rate=2");
  EXPECT_EQ(none.ws_blocks, 0u);  // absent: no disk I/O
  EXPECT_EQ(none.ndevices, 0u);
  EXPECT_EQ(Config("disk_ws=0").ws_blocks, 0u);

  for (const char* bad : {"disk_ws=x", "disk_ws=-1", "disk_rate=fast", "virtio_mmio.device=4K",
                          "virtio_mmio.device=4K@0xd0000000", "virtio_mmio.device=4K@0xzz:5",
                          "virtio_mmio.device=0@0xd0000000:5", "virtio_mmio.device=4K@0xd0000000:999"}) {
    dw_config x;
    dw_config_defaults(&x);
    char err[160];
    EXPECT_EQ(dw_parse_cmdline(bad, &x, err, sizeof(err)), -1) << bad;
    EXPECT_NE(std::string(err).find(std::string(bad)), std::string::npos) << err;
  }
  std::string nine;
  for (int i = 0; i < 17; ++i) nine += " virtio_mmio.device=4K@0xd0000000:5";
  dw_config x;
  dw_config_defaults(&x);
  char err[160];
  EXPECT_EQ(dw_parse_cmdline(nine.c_str(), &x, err, sizeof(err)), -1);
  EXPECT_NE(std::string(err).find("more than 16"), std::string::npos) << err;

  // The memory workload's parser leaves the disk options to this one, and still refuses typos.
  fw_config f;
  fw_config_defaults(&f);
  EXPECT_EQ(fw_parse_cmdline("ws=8 disk_ws=4 disk_rate=1 virtio_mmio.device=4K@0xd0000000:5", &f, err, sizeof(err)), 0)
      << err;
  EXPECT_EQ(f.ws_pages, 8u << 8);
  EXPECT_EQ(fw_parse_cmdline("disk_wss=4", &f, err, sizeof(err)), -1);
}

}  // namespace
}  // namespace ferry
