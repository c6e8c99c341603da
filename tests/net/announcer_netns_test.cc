// The announcer on real interfaces: a veth pair in a private network namespace, frames sent
// into one end and captured with AF_PACKET on the other.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>

#include "engine/base/clock.h"
#include "engine/net/announcer.h"
#include "tests/net/netns_fixture.h"

namespace ferry {
namespace {

// Allowed deviation of a frame's gap from the schedule. Timers here are ~0.1 ms accurate, but
// shared CI machines stall threads for tens of milliseconds.
constexpr double kToleranceMs = 30;

const MacAddress kMacA({0x52, 0x54, 0x00, 0x00, 0x0a, 0x01});
const MacAddress kMacB({0x52, 0x54, 0x00, 0x00, 0x0b, 0x02});

class AnnouncerNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ns = ScopedNetns::Enter();
    if (!ns.ok()) GTEST_SKIP() << ns.status().message();
    netns_ = std::move(*ns);
    const absl::Status probe = RunIp({"link", "show", "lo"});
    if (!probe.ok()) GTEST_SKIP() << "iproute2 `ip` not usable here: " << probe.message();
  }
  void TearDown() override { netns_.reset(); }  // leaves (and so frees) the namespace

  std::unique_ptr<ScopedNetns> netns_;
};

MacAddress SourceMac(const CapturedFrame& f) {
  std::array<uint8_t, 6> b{};
  if (f.bytes.size() >= 12) std::copy(f.bytes.begin() + 6, f.bytes.begin() + 12, b.begin());
  return MacAddress(b);
}

// Groups captured frames by source MAC.
std::map<std::string, std::vector<CapturedFrame>> BySource(const std::vector<CapturedFrame>& all) {
  std::map<std::string, std::vector<CapturedFrame>> out;
  for (const CapturedFrame& f : all) out[SourceMac(f).ToString()].push_back(f);
  return out;
}

using Offsets = std::vector<std::chrono::milliseconds>;
// QEMU's default schedule, written out rather than computed, so a wrong computation fails here.
const Offsets kQemuOffsets = {std::chrono::milliseconds(0), std::chrono::milliseconds(50),
                              std::chrono::milliseconds(200), std::chrono::milliseconds(450),
                              std::chrono::milliseconds(800)};

// Returns the largest deviation of a frame's arrival from its scheduled offset, in ms.
double ExpectFramesOnSchedule(const std::vector<CapturedFrame>& frames, const MacAddress& mac,
                              const Offsets& offsets) {
  double worst_ms = 0;
  const RarpFrame want = BuildRarpFrame(mac);
  EXPECT_EQ(frames.size(), offsets.size()) << mac.ToString();
  if (frames.size() != offsets.size()) return worst_ms;
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].bytes, std::vector<uint8_t>(want.begin(), want.end()))
        << mac.ToString() << " frame " << i;
    const double at_ms = NanosToMillis(frames[i].monotonic_ns - frames[0].monotonic_ns);
    worst_ms = std::max(worst_ms, std::abs(at_ms - static_cast<double>(offsets[i].count())));
    EXPECT_NEAR(at_ms, static_cast<double>(offsets[i].count()), kToleranceMs)
        << mac.ToString() << " frame " << i << " arrived at +" << at_ms << " ms";
    if (i > 0) {
      const double gap_ms = NanosToMillis(frames[i].monotonic_ns - frames[i - 1].monotonic_ns);
      EXPECT_NEAR(gap_ms, static_cast<double>((offsets[i] - offsets[i - 1]).count()), kToleranceMs)
          << mac.ToString() << " gap before frame " << i;
    }
  }
  return worst_ms;
}

TEST_F(AnnouncerNetns, TwoMacsOnOneInterfaceGetFiveFramesEachOnQemuSchedule) {
  ASSERT_EQ(CreateVethPair("fan0", "fan0p"), absl::OkStatus());
  auto capture = RarpCapture::Open("fan0p");
  ASSERT_TRUE(capture.ok()) << capture.status();
  const AnnounceSchedule schedule;  // QEMU defaults: 0, 50, 200, 450, 800 ms

  const int64_t before = MonotonicNanos();
  auto a = Announcer::Start({{kMacA, "fan0"}, {kMacB, "fan0"}}, schedule);
  const double start_ms = NanosToMillis(MonotonicNanos() - before);
  ASSERT_TRUE(a.ok()) << a.status();
  // Start() must not sit through the schedule (that would delay the VM's resume).
  EXPECT_FALSE((*a)->Snapshot().done);
  EXPECT_LT(start_ms, 50.0);

  const auto frames = capture->Read(10, 3000, 300);
  const AnnounceResult r = (*a)->Wait();
  EXPECT_EQ(r.frames_sent, 10u);
  EXPECT_EQ(r.frames_failed, 0u);
  EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
  EXPECT_FALSE(r.cancelled);

  double worst_ms = 0;
  const auto by_source = BySource(frames);
  EXPECT_EQ(frames.size(), 10u);
  EXPECT_EQ(by_source.size(), 2u);
  for (const MacAddress& mac : {kMacA, kMacB}) {
    auto it = by_source.find(mac.ToString());
    ASSERT_NE(it, by_source.end()) << "no frame from " << mac.ToString();
    worst_ms = std::max(worst_ms, ExpectFramesOnSchedule(it->second, mac, kQemuOffsets));
  }
  std::cout << "captured " << frames.size() << " frames; worst deviation from schedule "
            << worst_ms << " ms (tolerance " << kToleranceMs << " ms)\n";

  // The announcer's own record: one event per frame, at the scheduled offsets from Start().
  ASSERT_EQ(r.events.size(), 10u);
  const Offsets& offsets = kQemuOffsets;
  for (const AnnounceEvent& e : r.events) {
    ASSERT_TRUE(e.sent) << e.warning;
    EXPECT_EQ(e.interface, "fan0");
    EXPECT_NEAR(NanosToMillis(e.monotonic_ns - r.start_ns),
                static_cast<double>(offsets[e.round].count()), kToleranceMs)
        << e.mac.ToString() << " round " << e.round;
  }
}

TEST_F(AnnouncerNetns, EachMacGoesOutOnlyOnItsOwnInterface) {
  ASSERT_EQ(CreateVethPair("fpg1", "fpg1p"), absl::OkStatus());
  ASSERT_EQ(CreateVethPair("fpg2", "fpg2p"), absl::OkStatus());
  auto cap1 = RarpCapture::Open("fpg1p");
  auto cap2 = RarpCapture::Open("fpg2p");
  ASSERT_TRUE(cap1.ok()) << cap1.status();
  ASSERT_TRUE(cap2.ok()) << cap2.status();
  AnnounceSchedule quick;
  quick.rounds = 3;  // 0, 50, 200 ms
  auto a = Announcer::Start({{kMacA, "fpg1"}, {kMacB, "fpg2"}}, quick);
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  EXPECT_EQ(r.frames_sent, 6u);
  // Both captures buffered their frames while we waited.
  const auto on1 = cap1->Read(3, 500, 50);
  const auto on2 = cap2->Read(3, 500, 50);
  ASSERT_EQ(on1.size(), 3u);
  ASSERT_EQ(on2.size(), 3u);
  for (const auto& f : on1) EXPECT_EQ(SourceMac(f), kMacA);
  for (const auto& f : on2) EXPECT_EQ(SourceMac(f), kMacB);
}

TEST_F(AnnouncerNetns, InterfaceThatIsDownIsOneWarningAndFiveFailedFrames) {
  // Created but never brought up.
  ASSERT_EQ(RunIp({"link", "add", "name", "fdn0", "type", "veth", "peer", "name", "fdn0p"}),
            absl::OkStatus());
  AnnounceSchedule fast;
  fast.initial = fast.step = fast.max = std::chrono::milliseconds(1);
  auto a = Announcer::Start({{kMacA, "fdn0"}}, fast);
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  EXPECT_EQ(r.frames_sent, 0u);
  EXPECT_EQ(r.frames_failed, 5u);
  ASSERT_EQ(r.warnings.size(), 1u);  // the same error five times is one problem
  EXPECT_EQ(r.warnings[0], "announce 52:54:00:00:0a:01 on fdn0: sendto: Network is down");
  EXPECT_EQ(r.events.size(), 5u);
}

TEST_F(AnnouncerNetns, CancelStopsTheRemainingRounds) {
  ASSERT_EQ(CreateVethPair("fcx0", "fcx0p"), absl::OkStatus());
  auto capture = RarpCapture::Open("fcx0p");
  ASSERT_TRUE(capture.ok()) << capture.status();
  auto a = Announcer::Start({{kMacA, "fcx0"}}, AnnounceSchedule{});
  ASSERT_TRUE(a.ok());
  const auto first = capture->Read(1, 1000, 0);  // frame 0; frame 1 is due 50 ms later
  ASSERT_EQ(first.size(), 1u);
  (*a)->Cancel();
  const AnnounceResult r = (*a)->Wait();
  EXPECT_TRUE(r.cancelled);
  EXPECT_GE(r.frames_sent, 1u);
  EXPECT_LT(r.frames_sent, 5u);
  EXPECT_EQ(r.frames_failed, 0u);
  EXPECT_LT(NanosToMillis(r.end_ns - r.start_ns), 400.0);
  // Nothing arrives after the cancel beyond what the announcer says it sent.
  const auto rest = capture->Read(5, 300, 0);
  EXPECT_EQ(first.size() + rest.size(), r.frames_sent);
}

TEST_F(AnnouncerNetns, DestroyingTheAnnouncerCancelsAndJoinsPromptly) {
  ASSERT_EQ(CreateVethPair("fds0", "fds0p"), absl::OkStatus());
  const int64_t before = MonotonicNanos();
  {
    auto a = Announcer::Start({{kMacA, "fds0"}}, AnnounceSchedule{});
    ASSERT_TRUE(a.ok());
  }
  EXPECT_LT(NanosToMillis(MonotonicNanos() - before), 200.0);
}

}  // namespace
}  // namespace ferry
