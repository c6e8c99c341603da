// The switch-over planner: the downtime target is a ceiling, the aim is the smallest pause.
#include <gtest/gtest.h>

#include "engine/migration/convergence.h"

namespace ferry {
namespace {

constexpr uint64_t kMiB = 1 << 20;

RoundOutcome Round(uint32_t round, uint64_t dirty_mib, double expected_ms, double elapsed_s = 1) {
  RoundOutcome r;
  r.round = round;
  r.elapsed_s = elapsed_s;
  r.dirty_bytes = dirty_mib * kMiB;
  r.expected_ms = expected_ms;
  r.dirty_rate_mibps = 100;
  r.bandwidth_mibps = 400;
  return r;
}

TEST(SwitchoverPlanner, SwitchesAtOnceWhenThePauseIsUnderGoodEnough) {
  SwitchoverPlanner p(ConvergenceOptions{});
  DecisionWithReason d = p.AfterRound(Round(1, 0, 4.0));
  EXPECT_EQ(d.decision, Decision::kSwitchOver);
  EXPECT_NE(d.reason.find("4.0 ms"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("under 5 ms"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, GoodEnoughNeverExceedsTheCeiling) {
  ConvergenceOptions o;
  o.max_downtime_ms = 2;
  SwitchoverPlanner p(o);
  // 3 ms is under good_enough_ms (5) but above the 2 ms ceiling: not a switch-over.
  EXPECT_EQ(p.AfterRound(Round(1, 1, 3.0)).decision, Decision::kContinue);
}

TEST(SwitchoverPlanner, KeepsIteratingWhileTheDirtySetShrinksWithinTheCeiling) {
  SwitchoverPlanner p(ConvergenceOptions{});
  // Round 1 fits the ceiling but has nothing to compare with: one more round.
  DecisionWithReason first = p.AfterRound(Round(1, 40, 100));
  EXPECT_EQ(first.decision, Decision::kContinue) << first.reason;
  DecisionWithReason d = p.AfterRound(Round(2, 20, 50));  // halved
  EXPECT_EQ(d.decision, Decision::kContinue) << d.reason;
  EXPECT_NE(d.reason.find("down 50 % from 40.0 MiB"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("50.0 ms fits the 300 ms target"), std::string::npos) << d.reason;
  EXPECT_EQ(p.AfterRound(Round(3, 14, 35)).decision, Decision::kContinue);  // -30 %
}

TEST(SwitchoverPlanner, SwitchesWhereTheDirtySetStopsShrinking) {
  SwitchoverPlanner p(ConvergenceOptions{});
  ASSERT_EQ(p.AfterRound(Round(1, 40, 100)).decision, Decision::kContinue);
  ASSERT_EQ(p.AfterRound(Round(2, 20, 50)).decision, Decision::kContinue);
  DecisionWithReason d = p.AfterRound(Round(3, 18, 45));  // only -10 %
  EXPECT_EQ(d.decision, Decision::kSwitchOver);
  EXPECT_NE(d.reason.find("stopped shrinking"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("down 10 % from 20.0 MiB"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("45.0 ms"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, SwitchesWhenTheDirtySetGrowsWithinTheCeiling) {
  SwitchoverPlanner p(ConvergenceOptions{});
  ASSERT_EQ(p.AfterRound(Round(1, 20, 50)).decision, Decision::kContinue);
  DecisionWithReason d = p.AfterRound(Round(2, 24, 60));
  EXPECT_EQ(d.decision, Decision::kSwitchOver);
  EXPECT_NE(d.reason.find("up from 20.0 MiB"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, AShrinkOfExactlyAQuarterStillCounts) {
  SwitchoverPlanner p(ConvergenceOptions{});
  ASSERT_EQ(p.AfterRound(Round(1, 40, 100)).decision, Decision::kContinue);
  EXPECT_EQ(p.AfterRound(Round(2, 30, 75)).decision, Decision::kContinue);  // exactly -25 %
  EXPECT_TRUE(ShrankMeaningfully(40, 30));
  EXPECT_FALSE(ShrankMeaningfully(40, 31));
  EXPECT_FALSE(ShrankMeaningfully(0, 0));
}

TEST(SwitchoverPlanner, ContinuesAboveTheCeilingWithTheFiguresInTheReason) {
  SwitchoverPlanner p(ConvergenceOptions{});
  RoundOutcome r = Round(1, 200, 900);
  r.throttle_percent = 30;
  DecisionWithReason d = p.AfterRound(r);
  EXPECT_EQ(d.decision, Decision::kContinue);
  EXPECT_NE(d.reason.find("900 ms is above the 300 ms target"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("throttled 30 %"), std::string::npos) << d.reason;
  // Not shrinking does not switch over while the pause would break the ceiling.
  EXPECT_EQ(p.AfterRound(Round(2, 200, 900)).decision, Decision::kContinue);
}

TEST(SwitchoverPlanner, SwitchesOnceAShrinkingSetFallsUnderTheCeilingAndStops) {
  SwitchoverPlanner p(ConvergenceOptions{});
  ASSERT_EQ(p.AfterRound(Round(1, 200, 900)).decision, Decision::kContinue);
  ASSERT_EQ(p.AfterRound(Round(2, 100, 450)).decision, Decision::kContinue);
  ASSERT_EQ(p.AfterRound(Round(3, 50, 225)).decision, Decision::kContinue);  // under, still shrinking
  EXPECT_EQ(p.AfterRound(Round(4, 48, 216)).decision, Decision::kSwitchOver);
}

TEST(SwitchoverPlanner, GivesUpAtTheRoundLimitAboveTheCeilingByDefault) {
  ConvergenceOptions o;
  o.max_rounds = 3;
  SwitchoverPlanner p(o);
  ASSERT_EQ(p.AfterRound(Round(2, 200, 900)).decision, Decision::kContinue);
  DecisionWithReason d = p.AfterRound(Round(3, 200, 900));
  EXPECT_EQ(d.decision, Decision::kGiveUp);
  // Decide's wording, so users see one sentence for one situation.
  EXPECT_EQ(d.reason, Decide(o, 3, 1, 900, 100, 400).reason);
  EXPECT_NE(d.reason.find("did not converge after 3 rounds"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, ForcesAtTheTimeLimitWhenThePolicySaysSo) {
  ConvergenceOptions o;
  o.timeout_s = 10;
  o.policy = v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER;
  SwitchoverPlanner p(o);
  ASSERT_EQ(p.AfterRound(Round(1, 200, 900, /*elapsed_s=*/5)).decision, Decision::kContinue);
  DecisionWithReason d = p.AfterRound(Round(2, 200, 900, /*elapsed_s=*/10));
  EXPECT_EQ(d.decision, Decision::kForceSwitchOver);
  EXPECT_NE(d.reason.find("forcing switch-over"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, SwitchesAtTheLimitWhenThePauseFitsEvenIfStillShrinking) {
  ConvergenceOptions o;
  o.max_rounds = 2;
  SwitchoverPlanner p(o);
  ASSERT_EQ(p.AfterRound(Round(1, 40, 100)).decision, Decision::kContinue);
  DecisionWithReason d = p.AfterRound(Round(2, 20, 50));
  EXPECT_EQ(d.decision, Decision::kSwitchOver);
  EXPECT_NE(d.reason.find("round limit"), std::string::npos) << d.reason;
}

TEST(SwitchoverPlanner, OldDecideStillSwitchesAtTheCeiling) {
  ConvergenceOptions o;
  EXPECT_EQ(o.good_enough_ms, 5);
  EXPECT_EQ(Decide(o, 1, 1, 250, 100, 400).decision, Decision::kSwitchOver);
  EXPECT_EQ(Decide(o, 1, 1, 350, 100, 400).decision, Decision::kContinue);
}

}  // namespace
}  // namespace ferry
