// The workload core on plain host memory: content, verification, pacing, heartbeats, grammar.
#include "engine/guest/workload.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ferry {
namespace {

constexpr uint64_t kTicksPerMs = 1'000'000;

struct Recorder {
  std::vector<std::string> lines;
  std::string raw;
  std::vector<uint32_t> corruption_pages;
  std::vector<uint32_t> booted;
  uint64_t heartbeats = 0;
  static void Console(void* ctx, const char* text, int is_line) {
    auto* r = static_cast<Recorder*>(ctx);
    if (is_line) r->lines.push_back(text);
    r->raw += text;
  }
  static void Status(void* ctx, uint32_t port, uint32_t value) {
    auto* r = static_cast<Recorder*>(ctx);
    if (port == FERRY_STATUS_CORRUPTION) r->corruption_pages.push_back(value);
    if (port == FERRY_STATUS_HEARTBEAT) ++r->heartbeats;
    if (port == FERRY_STATUS_BOOTED) r->booted.push_back(value);
  }
  fw_env env() { return fw_env{this, &Console, &Status}; }
};

class Region {
 public:
  explicit Region(const fw_config& c) : bytes_(fw_region_bytes(&c)) {
    mem_ = static_cast<uint8_t*>(std::aligned_alloc(4096, bytes_));
    std::fill(mem_, mem_ + bytes_, 0);
  }
  ~Region() { std::free(mem_); }
  void* ws() { return mem_; }
  fw_state* state() { return reinterpret_cast<fw_state*>(mem_); }

 private:
  uint64_t bytes_;
  uint8_t* mem_;
};

fw_config Config(const char* cmdline) {
  fw_config c;
  fw_config_defaults(&c);
  char err[160];
  EXPECT_EQ(fw_parse_cmdline(cmdline, &c, err, sizeof(err)), 0) << err;
  return c;
}

TEST(WorkloadTest, WrittenPagesVerify) {
  fw_config c = Config("ws=1 rate=0 pattern=sequential ncpu=2");
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  for (uint64_t t = 0; t < 200; ++t) {
    fw_step(r.ws(), 0, t * 10'000, &env);
    fw_step(r.ws(), 1, t * 10'000, &env);
  }
  EXPECT_EQ(rec.booted, (std::vector<uint32_t>{0, 1}));
  EXPECT_TRUE(rec.corruption_pages.empty()) << rec.raw;
  EXPECT_GE(r.state()->w[0].pages_written + r.state()->w[1].pages_written, 256u * 2);
  uint64_t expected, got;
  uint32_t word;
  for (uint64_t p = 0; p < c.ws_pages; ++p) {
    ASSERT_NE(fw_gen_table(r.ws())[p], 0u) << "page " << p << " never written";
    ASSERT_EQ(fw_check_page(r.ws(), p, &expected, &got, &word), 1) << "page " << p;
    ASSERT_EQ(fw_page(r.ws(), p)[7], ferry_page_word(p, fw_gen_table(r.ws())[p], 7));
  }
}

TEST(WorkloadTest, AlteredPageIsReportedWithPageExpectedAndGot) {
  fw_config c = Config("ws=1 rate=0 pattern=sequential");
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  for (int i = 0; i < 32; ++i) fw_step(r.ws(), 0, 0, &env);  // 512 writes: every page twice
  ASSERT_TRUE(rec.corruption_pages.empty());
  const uint64_t page = 77;
  uint32_t gen = fw_gen_table(r.ws())[page];
  uint64_t want = ferry_page_word(page, gen, 3);
  fw_page(r.ws(), page)[3] ^= 0x100;
  EXPECT_EQ(fw_verify_page(r.ws(), 0, page, &env), 0);
  ASSERT_EQ(rec.corruption_pages, std::vector<uint32_t>{page});
  ASSERT_EQ(rec.lines.size(), 1u);
  char buf[200];
  snprintf(buf, sizeof(buf), "CORRUPTION page=77 expected=0x%016llx got=0x%016llx word=3",
           static_cast<unsigned long long>(want), static_cast<unsigned long long>(want ^ 0x100));
  EXPECT_EQ(rec.lines[0].rfind(buf, 0), 0u) << rec.lines[0];
  EXPECT_EQ(r.state()->w[0].corruptions, 1u);
  // The next write of that page checks it first and reports it too.
  fw_write_page(r.ws(), 0, page, &env);
  EXPECT_EQ(rec.corruption_pages.size(), 2u);
  EXPECT_EQ(fw_verify_page(r.ws(), 0, page, &env), 1);  // rewritten: good again
}

TEST(WorkloadTest, BackgroundSweepFindsAlteredPageNobodyWrites) {
  fw_config c = Config("ws=1 rate=0.001 pattern=sequential");  // ~one write per 4 s
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  fw_gen_table(r.ws())[200] = 5;  // claims a generation the page does not hold
  for (uint64_t ms = 1; ms <= 40; ++ms) fw_step(r.ws(), 0, ms * kTicksPerMs, &env);
  ASSERT_EQ(rec.corruption_pages, std::vector<uint32_t>{200});
  EXPECT_NE(rec.lines.back().find("got=0x0000000000000000"), std::string::npos) << rec.lines.back();
}

TEST(WorkloadTest, PacesWritesToTheRate) {
  fw_config c = Config("ws=4 rate=4 pattern=random");  // 4 MiB/s = 1024 pages/s
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  for (uint64_t us = 0; us <= 1'000'000; us += 50) fw_step(r.ws(), 0, us * 1000, &env);
  EXPECT_NEAR(static_cast<double>(r.state()->w[0].pages_written), 1024.0, 10.0);
  EXPECT_TRUE(rec.corruption_pages.empty());
}

TEST(WorkloadTest, MakesUpAShortPreemptionButNotALongPause) {
  fw_config c = Config("ws=4 rate=4 pattern=sequential");  // 1024 pages/s: one per ~0.98 ms
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  fw_step(r.ws(), 0, 0, &env);
  uint64_t before = r.state()->w[0].pages_written;
  // The host ran something else for FW_MAX_BACKLOG_MS (2 ms): the missed writes follow.
  for (int i = 0; i < 4; ++i) fw_step(r.ws(), 0, FW_MAX_BACKLOG_MS * kTicksPerMs, &env);
  EXPECT_EQ(r.state()->w[0].pages_written - before, uint64_t{FW_MAX_BACKLOG_MS});
  // 6 ms (a throttle's sleep): only FW_MAX_BACKLOG_MS worth is made up, the rest is lost.
  before = r.state()->w[0].pages_written;
  for (int i = 0; i < 4; ++i) fw_step(r.ws(), 0, (FW_MAX_BACKLOG_MS + 6) * kTicksPerMs, &env);
  EXPECT_GE(r.state()->w[0].pages_written - before, uint64_t{FW_MAX_BACKLOG_MS});      // 2 ms worth,
  EXPECT_LE(r.state()->w[0].pages_written - before, uint64_t{FW_MAX_BACKLOG_MS} + 1);  // not 6
  // A 60 s pause: no more than FW_MAX_BACKLOG_MS worth of writes.
  before = r.state()->w[0].pages_written;
  for (int i = 0; i < 4; ++i) fw_step(r.ws(), 0, 60'000 * kTicksPerMs, &env);
  EXPECT_LE(r.state()->w[0].pages_written - before, FW_MAX_BACKLOG_MS * 1024u / 1000u + 1u);
  EXPECT_TRUE(rec.corruption_pages.empty());
}

TEST(WorkloadTest, HeartbeatsEveryMillisecondAndHbLineEverySecond) {
  fw_config c = Config("ws=1 rate=1 tick_ms=250");
  Region r(c);
  Recorder rec;
  fw_env env = rec.env();
  fw_init(r.ws(), &c, kTicksPerMs, 0);
  for (uint64_t us = 0; us <= 2'000'000; us += 100) fw_step(r.ws(), 0, us * 1000, &env);
  EXPECT_NEAR(static_cast<double>(rec.heartbeats), 2000.0, 2.0);
  // 1 MiB/s = 256 pages a second, reported on each hb line.
  EXPECT_EQ(rec.lines, (std::vector<std::string>{"hb 1 w=256", "hb 2 w=256"}));
  EXPECT_EQ(std::count(rec.raw.begin(), rec.raw.end(), '.'), 8);
  // A clock jump (a long pause) gives one heartbeat, not a burst.
  uint64_t before = rec.heartbeats;
  fw_step(r.ws(), 0, 60'000 * kTicksPerMs, &env);
  EXPECT_EQ(rec.heartbeats, before + 1);
}

TEST(WorkloadTest, CommandLineGrammar) {
  fw_config c = Config("/boot/ferry-guest.elf ws=32 rate=0.5 pattern=hotcold seed=42 tick_ms=100 ncpu=4 tsc_khz=2000000");
  EXPECT_EQ(c.ws_pages, 32u * 256);
  EXPECT_EQ(c.rate_bytes_per_s, 512u * 1024);
  EXPECT_EQ(c.pattern, static_cast<uint32_t>(FW_PATTERN_HOTCOLD));
  EXPECT_EQ(c.seed, 42u);
  EXPECT_EQ(c.tick_ms, 100u);
  EXPECT_EQ(c.ncpu, 4u);
  EXPECT_EQ(c.tsc_khz, 2000000u);
  EXPECT_EQ(Config("rate=1e+06").rate_bytes_per_s, 1000000ull << 20);
  EXPECT_EQ(Config("rate=0").rate_bytes_per_s, 0u);
  fw_config d = Config("");
  EXPECT_EQ(d.ws_pages, 64u * 256);
  EXPECT_EQ(d.rate_bytes_per_s, 50u << 20);
  EXPECT_EQ(d.pattern, static_cast<uint32_t>(FW_PATTERN_RANDOM));
  EXPECT_EQ(d.ncpu, 1u);
  for (const char* bad : {"ws=0", "ws=abc", "rate=fast", "pattern=zigzag", "ncpu=9", "colour=blue", "seed=-1"}) {
    fw_config x;
    fw_config_defaults(&x);
    char err[160];
    EXPECT_EQ(fw_parse_cmdline(bad, &x, err, sizeof(err)), -1) << bad;
    EXPECT_NE(std::string(err).find(std::string(bad)), std::string::npos) << err;
  }
}

}  // namespace
}  // namespace ferry
