// CONVERGENCE_FORECAST: one test per branch of ForecastConvergence.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/precheck/convergence_forecast.h"
#include "engine/precheck/finding_proto.h"

namespace ferry {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A 4 GiB guest rewriting 1 GiB at 800 MiB/s over a link measured at 400 MiB/s.
ConvergenceForecastInput Busy() {
  ConvergenceForecastInput in;
  in.dirty_rate_mib_s = 800;
  in.sample_ms = 200;
  in.memory_bytes = 4ull << 30;
  in.working_set_bytes = 1ull << 30;
  in.link_mib_s = 400;
  in.link_source = LinkSource::kMeasured;
  in.link_measurements = 3;
  in.destination = "esx-b:7000";
  in.max_downtime_ms = 300;
  return in;
}

TEST(ConvergenceForecast, GuestOutrunningTheLinkGetsAWarningWithTheFigures) {
  std::optional<Finding> f = ForecastConvergence(Busy());
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->code, FindingCode::kConvergenceForecast);
  EXPECT_EQ(f->severity, Severity::kWarning);
  EXPECT_STREQ(FindingCodeName(f->code), "CONVERGENCE_FORECAST");
  EXPECT_THAT(f->message,
              AllOf(HasSubstr("dirties 800 MiB/s (sampled over 200 ms)"),
                    HasSubstr("the link to esx-b:7000 carried 400 MiB/s (measured by 3 earlier migrations there)"),
                    // 1 - 0.75 * 400/800 = 62.5 %: the controller gets there in steps 20, 30, ... 70.
                    HasSubstr("slow the guest by up to ~70 % (it needs 63 %"),
                    // round 1: 4096 MiB / 400 MiB/s; then 6 rounds of 1 GiB / 400 MiB/s and a tail.
                    HasSubstr("round 1 alone takes ~10 s for 4096 MiB"), HasSubstr("for ~19 s after round 1"),
                    HasSubstr("~29 s in all"),
                    // What the operator can do instead.
                    HasSubstr("--max-downtime 2560 switches over without slowing the guest (a ~2.6 s pause)"),
                    HasSubstr("or use a link of at least 1067 MiB/s (which converges unaided)"),
                    HasSubstr("--no-auto-converge avoids it too"), HasSubstr("--policy force")));
}

TEST(ConvergenceForecast, GuestComfortablyBelowTheLinkHasNoFinding) {
  ConvergenceForecastInput in = Busy();
  in.dirty_rate_mib_s = 300;  // 3/4 of the link: every round shrinks by a quarter
  EXPECT_FALSE(ForecastConvergence(in).has_value());
  in.dirty_rate_mib_s = 301;
  EXPECT_TRUE(ForecastConvergence(in).has_value());
}

TEST(ConvergenceForecast, WorkingSetThatCrossesWithinTheCeilingHasNoFinding) {
  ConvergenceForecastInput in = Busy();
  in.working_set_bytes = 64ull << 20;  // 160 ms at 400 MiB/s: the pause fits, nothing is throttled
  EXPECT_FALSE(ForecastConvergence(in).has_value());
}

TEST(ConvergenceForecast, FollowingTheMaxDowntimeAdviceRemovesTheFinding) {
  ConvergenceForecastInput in = Busy();
  in.max_downtime_ms = 2560;
  EXPECT_FALSE(ForecastConvergence(in).has_value());
}

TEST(ConvergenceForecast, MissingFiguresGiveNoFinding) {
  ConvergenceForecastInput in = Busy();
  in.link_mib_s = 0;
  EXPECT_FALSE(ForecastConvergence(in).has_value());
  in = Busy();
  in.dirty_rate_mib_s = 0;
  EXPECT_FALSE(ForecastConvergence(in).has_value());
  in = Busy();
  in.memory_bytes = 0;
  EXPECT_FALSE(ForecastConvergence(in).has_value());
}

TEST(ConvergenceForecast, UnknownWorkingSetMeansAllMemory) {
  ConvergenceForecastInput in = Busy();
  in.working_set_bytes = 0;
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->message, HasSubstr("--max-downtime 10240 "));
}

TEST(ConvergenceForecast, NominalLinkSaysSo) {
  ConvergenceForecastInput in = Busy();
  in.link_source = LinkSource::kNominal;
  in.link_mib_s = 119;  // 1000 Mbit/s
  in.nominal_mbps = 1000;
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->message, AllOf(HasSubstr("is nominally 119 MiB/s (the slower migration interface's 1000 Mbit/s; "
                                          "no migration there has been measured yet)"),
                                Not(HasSubstr("measured by"))));
}

TEST(ConvergenceForecast, BandwidthCapSaysSo) {
  ConvergenceForecastInput in = Busy();
  in.link_source = LinkSource::kBandwidthCap;
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->message, HasSubstr("--max-bandwidth caps the copy at 400 MiB/s"));
}

TEST(ConvergenceForecast, SlightlyTooBusyGuestNeedsOnlyTheFirstStep) {
  ConvergenceForecastInput in = Busy();
  in.dirty_rate_mib_s = 320;  // needs 1 - 300/320 = 6.25 %
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->message, HasSubstr("slow the guest by up to ~20 % (it needs 7 %"));
}

TEST(ConvergenceForecast, WithoutAutoConvergeItWarnsOfNoConvergence) {
  ConvergenceForecastInput in = Busy();
  in.auto_converge = false;
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->severity, Severity::kWarning);
  EXPECT_THAT(f->message, AllOf(HasSubstr("Auto-converge is off (--no-auto-converge), so expect no convergence"),
                                HasSubstr("with --policy force pauses the guest ~2.6 s"),
                                HasSubstr("allow auto-converge (it would slow the guest by ~63 % or more)"),
                                HasSubstr("--max-downtime 2560"), Not(HasSubstr("Expect auto-converge"))));
}

TEST(ConvergenceForecast, GuestBeyondTheDeepestThrottleWarnsOfNoConvergence) {
  ConvergenceForecastInput in = Busy();
  in.dirty_rate_mib_s = 60000;  // would need 99.5 %
  std::optional<Finding> f = ForecastConvergence(in);
  ASSERT_TRUE(f.has_value());
  EXPECT_THAT(f->message, AllOf(HasSubstr("Even auto-converge's deepest throttle (99 %)"),
                                HasSubstr("it would need 99.5 %"), HasSubstr("migrate when the guest is quieter")));
}

TEST(ConvergenceForecast, CodeCrossesTheWire) {
  std::optional<Finding> f = ForecastConvergence(Busy());
  ASSERT_TRUE(f.has_value());
  v1::Finding p = FindingToProto(*f);
  EXPECT_EQ(p.code(), v1::FINDING_CODE_CONVERGENCE_FORECAST);
  auto back = FindingFromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *f);
  EXPECT_EQ(*FindingCodeFromName("CONVERGENCE_FORECAST"), FindingCode::kConvergenceForecast);
}

}  // namespace
}  // namespace ferry
