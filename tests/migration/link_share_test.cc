// The host-wide weighted share of the link among concurrent senders (engine/migration/link_share.h).
#include "engine/migration/link_share.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "engine/base/clock.h"

namespace ferry {
namespace {

constexpr uint64_t kFrame = 256 << 10;

struct FakeClock {
  int64_t now = 1'000'000'000;
  std::function<int64_t()> fn() {
    return [this] { return now; };
  }
};

LinkShare::Options FakeOptions(FakeClock& clock) {
  LinkShare::Options o;
  o.window_bytes = 1 << 20;
  o.idle_ns = 50'000'000;
  o.clock = clock.fn();
  return o;
}

// Sends frames round-robin, as fast as the share lets each member; returns bytes per member.
std::pair<uint64_t, uint64_t> Contend(LinkShare& share, uint64_t a, uint64_t b, int frames) {
  uint64_t sent_a = 0, sent_b = 0;
  for (int i = 0; i < frames; ++i) {
    bool moved = false;
    if (share.MaySend(a)) {
      share.Charge(a, kFrame);
      sent_a += kFrame;
      moved = true;
    }
    if (share.MaySend(b)) {
      share.Charge(b, kFrame);
      sent_b += kFrame;
      moved = true;
    }
    EXPECT_TRUE(moved) << "one of two busy members may always send";
  }
  return {sent_a, sent_b};
}

TEST(LinkShare, BusyMembersMoveBytesInTheRatioOfTheirWeights) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t high = share.Join(3);
  uint64_t standard = share.Join(1);
  auto [h, s] = Contend(share, high, standard, 4000);
  ASSERT_GT(s, 0u);
  EXPECT_NEAR(static_cast<double>(h) / static_cast<double>(s), 3.0, 0.05);
}

TEST(LinkShare, BytesAddUpByTagAcrossRoundsUntilForgotten) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  for (int round = 0; round < 3; ++round) {
    uint64_t m = share.Join(1, "mig-1");
    share.Charge(m, kFrame);
    share.Leave(m);
  }
  EXPECT_EQ(share.BytesOf("mig-1"), 3 * kFrame);
  EXPECT_EQ(share.BytesOf("mig-2"), 0u);
  share.Forget("mig-1");
  EXPECT_EQ(share.BytesOf("mig-1"), 0u);
}

TEST(LinkShare, EqualWeightsShareEqually) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t a = share.Join(1);
  uint64_t b = share.Join(1);
  auto [x, y] = Contend(share, a, b, 2000);
  EXPECT_NEAR(static_cast<double>(x) / static_cast<double>(y), 1.0, 0.02);
}

TEST(LinkShare, ALoneMemberIsNeverHeldBack) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t a = share.Join(1);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(share.MaySend(a));
    share.Charge(a, kFrame);
  }
}

TEST(LinkShare, AMemberAheadWaitsForTheBusyOneBehind) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t a = share.Join(1);
  uint64_t b = share.Join(1);
  for (int i = 0; i < 4; ++i) share.Charge(a, kFrame);  // a window ahead of b
  EXPECT_FALSE(share.MaySend(a));
  EXPECT_TRUE(share.MaySend(b));
  share.Charge(b, kFrame);
  EXPECT_TRUE(share.MaySend(a));
}

TEST(LinkShare, AnIdleMemberHoldsNobodyBackAndGetsNoCreditForItsIdleness) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t a = share.Join(1);
  uint64_t b = share.Join(1);
  for (int i = 0; i < 4; ++i) share.Charge(a, kFrame);
  ASSERT_FALSE(share.MaySend(a));
  clock.now += 60'000'000;  // b said nothing for longer than idle_ns (between rounds, say)
  ASSERT_TRUE(share.MaySend(a));
  for (int i = 0; i < 100; ++i) share.Charge(a, kFrame);
  // b comes back: it starts level with a, not 100 frames behind (a is not stalled for 100 frames).
  share.Charge(b, kFrame);
  int a_frames_before_blocked = 0;
  while (share.MaySend(a) && a_frames_before_blocked < 100) {
    share.Charge(a, kFrame);
    ++a_frames_before_blocked;
  }
  EXPECT_LT(a_frames_before_blocked, 10);
}

TEST(LinkShare, ALateJoinerStartsLevelWithTheBusyMembers) {
  FakeClock clock;
  LinkShare share(FakeOptions(clock));
  uint64_t a = share.Join(1);
  for (int i = 0; i < 100; ++i) share.Charge(a, kFrame);
  uint64_t b = share.Join(1);
  // Level start: a is not held back for the 100 frames b never asked for.
  EXPECT_TRUE(share.MaySend(a));
  auto [x, y] = Contend(share, a, b, 200);
  EXPECT_NEAR(static_cast<double>(x) / static_cast<double>(y), 1.0, 0.05);
}

TEST(LinkShare, LeavingReleasesAWaiter) {
  LinkShare::Options o;
  o.window_bytes = kFrame;
  o.idle_ns = 10'000'000'000;  // nobody goes idle during the test
  LinkShare share(o);
  uint64_t a = share.Join(1);
  uint64_t b = share.Join(1);
  share.Charge(a, 2 * kFrame);
  std::atomic<bool> done{false};
  std::thread t([&] {
    share.Acquire(a, kFrame);
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load()) << "a is ahead of busy b by more than the window";
  share.Leave(b);
  t.join();
  EXPECT_TRUE(done.load());
}

// Real threads pushing frames as fast as they can: the ratio holds without a fake clock.
TEST(LinkShare, ThreadsSendingFlatOutGetTheirWeightedShare) {
  LinkShare share;
  uint64_t high = share.Join(3);
  uint64_t standard = share.Join(1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes_high{0}, bytes_standard{0};
  auto sender = [&](uint64_t member, std::atomic<uint64_t>& bytes) {
    while (!stop.load()) {
      share.Acquire(member, 64 << 10);
      bytes += 64 << 10;
    }
  };
  std::thread th(sender, high, std::ref(bytes_high));
  std::thread ts(sender, standard, std::ref(bytes_standard));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  th.join();
  ts.join();
  ASSERT_GT(bytes_standard.load(), 0u);
  double ratio = static_cast<double>(bytes_high.load()) / static_cast<double>(bytes_standard.load());
  EXPECT_GT(ratio, 2.0) << "high " << bytes_high << " standard " << bytes_standard;
  EXPECT_LT(ratio, 4.5) << "high " << bytes_high << " standard " << bytes_standard;
}

}  // namespace
}  // namespace ferry
