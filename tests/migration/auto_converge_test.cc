// Auto-converge's controller: throttle only a guest that outruns the link, grow while rounds do
// not shrink, drop back when they do.
#include "engine/migration/auto_converge.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A round that left `dirty_mib` dirty with the given expected pause; the guest dirties faster
// than the link unless told otherwise.
RoundOutcome Round(uint32_t round, uint64_t dirty_mib, double expected_ms, double dirty_rate = 500,
                   double bandwidth = 100) {
  RoundOutcome r;
  r.round = round;
  r.dirty_bytes = dirty_mib * kMiB;
  r.expected_ms = expected_ms;
  r.dirty_rate_mibps = dirty_rate;
  r.bandwidth_mibps = bandwidth;
  return r;
}

TEST(AutoConverge, StartsAtTheInitialPercentWhenRoundOneOutrunsTheLink) {
  AutoConverge ac(AutoConvergeOptions{});
  EXPECT_EQ(ac.AfterRound(Round(1, 100, 1000)), 20u);
  EXPECT_EQ(ac.percent(), 20u);
}

TEST(AutoConverge, LeavesAGuestAloneWhoseFirstRoundTheLinkOutpaces) {
  AutoConverge ac(AutoConvergeOptions{});
  EXPECT_EQ(ac.AfterRound(Round(1, 100, 1000, /*dirty_rate=*/50, /*bandwidth=*/100)), 0u);
}

TEST(AutoConverge, NeverThrottlesWhileThePauseFitsTheCeiling) {
  AutoConverge ac(AutoConvergeOptions{});
  EXPECT_EQ(ac.AfterRound(Round(1, 10, 200)), 0u);  // dirties faster than the link, but fits
  EXPECT_EQ(ac.AfterRound(Round(2, 10, 200)), 0u);  // not shrinking, still fits
  EXPECT_EQ(ac.max_percent_used(), 0u);
}

TEST(AutoConverge, StartsWhenRoundsStopShrinkingAboveTheCeiling) {
  AutoConverge ac(AutoConvergeOptions{});
  EXPECT_EQ(ac.AfterRound(Round(1, 400, 4000, 50, 100)), 0u);
  EXPECT_EQ(ac.AfterRound(Round(2, 200, 2000)), 0u);  // halved: converging on its own
  EXPECT_EQ(ac.AfterRound(Round(3, 180, 1800)), 20u);  // -10 %: not meaningfully
}

TEST(AutoConverge, GrowsStepByStepWhileRoundsDoNotShrinkUpToTheMaximum) {
  AutoConvergeOptions o;
  o.max_percent = 45;
  AutoConverge ac(o);
  EXPECT_EQ(ac.AfterRound(Round(1, 100, 1000)), 20u);
  EXPECT_EQ(ac.AfterRound(Round(2, 100, 1000)), 30u);
  EXPECT_EQ(ac.AfterRound(Round(3, 110, 1100)), 40u);
  EXPECT_EQ(ac.AfterRound(Round(4, 100, 1000)), 45u);
  EXPECT_EQ(ac.AfterRound(Round(5, 100, 1000)), 45u);
  EXPECT_EQ(ac.max_percent_used(), 45u);
}

TEST(AutoConverge, DropsBackAStepWhenARoundShrinks) {
  AutoConverge ac(AutoConvergeOptions{});
  ASSERT_EQ(ac.AfterRound(Round(1, 100, 1000)), 20u);
  ASSERT_EQ(ac.AfterRound(Round(2, 100, 1000)), 30u);
  ASSERT_EQ(ac.AfterRound(Round(3, 100, 1000)), 40u);
  EXPECT_EQ(ac.AfterRound(Round(4, 50, 500)), 40u);   // shrank by half, still above the ceiling: hold
  EXPECT_EQ(ac.AfterRound(Round(5, 50, 500)), 50u);   // stalled again above the ceiling
  EXPECT_EQ(ac.AfterRound(Round(6, 20, 200)), 40u);   // shrank and fits: ease off
  EXPECT_EQ(ac.AfterRound(Round(7, 10, 100)), 30u);
  EXPECT_EQ(ac.AfterRound(Round(8, 5, 50)), 20u);
  EXPECT_EQ(ac.AfterRound(Round(9, 2, 20)), 10u);
  EXPECT_EQ(ac.AfterRound(Round(10, 1, 10)), 0u);
  EXPECT_EQ(ac.max_percent_used(), 50u);
}

TEST(AutoConverge, HoldsWhenAStalledRoundFitsTheCeiling) {
  AutoConverge ac(AutoConvergeOptions{});
  ASSERT_EQ(ac.AfterRound(Round(1, 100, 1000)), 20u);
  ASSERT_EQ(ac.AfterRound(Round(2, 100, 1000)), 30u);
  EXPECT_EQ(ac.AfterRound(Round(3, 95, 250)), 30u);  // not shrinking, but under 300 ms
}

TEST(AutoConverge, UsesTheConfiguredCeiling) {
  AutoConvergeOptions o;
  o.max_downtime_ms = 100;
  AutoConverge ac(o);
  EXPECT_EQ(ac.AfterRound(Round(1, 10, 200)), 20u);
}

TEST(AutoConverge, DisabledNeverThrottles) {
  AutoConvergeOptions o;
  o.enabled = false;
  AutoConverge ac(o);
  for (uint32_t round = 1; round <= 5; ++round) EXPECT_EQ(ac.AfterRound(Round(round, 100, 1000)), 0u);
  EXPECT_EQ(ac.max_percent_used(), 0u);
}

TEST(AutoConverge, NeverGoesAbove99EvenIfConfiguredTo) {
  AutoConvergeOptions o;
  o.initial_percent = 150;
  o.max_percent = 200;
  AutoConverge ac(o);
  EXPECT_EQ(ac.AfterRound(Round(1, 100, 1000)), 99u);
  EXPECT_EQ(ac.AfterRound(Round(2, 100, 1000)), 99u);
}

TEST(AutoConverge, OptionsFollowTheMigrationOptions) {
  v1::MigrationOptions m;
  EXPECT_TRUE(AutoConvergeOptionsFrom(m).enabled);
  EXPECT_EQ(AutoConvergeOptionsFrom(m).max_downtime_ms, 300);
  m.set_no_auto_converge(true);
  m.set_max_downtime_ms(50);
  EXPECT_FALSE(AutoConvergeOptionsFrom(m).enabled);
  EXPECT_EQ(AutoConvergeOptionsFrom(m).max_downtime_ms, 50);
}

}  // namespace
}  // namespace ferry
