#include "engine/net/announce_schedule.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

using std::chrono::milliseconds;
using Ms = std::vector<milliseconds>;

TEST(AnnounceSchedule, QemuDefaultsSendAt0_50_200_450_800) {
  const AnnounceSchedule s;
  ASSERT_TRUE(s.Validate().ok());
  EXPECT_EQ(s.Gaps(), (Ms{milliseconds(50), milliseconds(150), milliseconds(250),
                          milliseconds(350)}));
  EXPECT_EQ(s.Offsets(), (Ms{milliseconds(0), milliseconds(50), milliseconds(200),
                             milliseconds(450), milliseconds(800)}));
}

TEST(AnnounceSchedule, GapsStopGrowingAtMax) {
  AnnounceSchedule s;
  s.rounds = 8;
  EXPECT_EQ(s.Gaps(), (Ms{milliseconds(50), milliseconds(150), milliseconds(250),
                          milliseconds(350), milliseconds(450), milliseconds(550),
                          milliseconds(550)}));
}

TEST(AnnounceSchedule, OneRoundIsOneImmediateFrameAndZeroRoundsIsNone) {
  AnnounceSchedule s;
  s.rounds = 1;
  EXPECT_EQ(s.Offsets(), (Ms{milliseconds(0)}));
  s.rounds = 0;
  EXPECT_TRUE(s.Offsets().empty());
}

TEST(AnnounceSchedule, RejectsMaxBelowInitial) {
  AnnounceSchedule s;
  s.max = milliseconds(10);
  const absl::Status st = s.Validate();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("max delay 10 ms is below initial delay 50 ms"),
            absl::string_view::npos)
      << st;
}

TEST(AnnounceSchedule, RejectsNegativeDurationsAndTooManyRounds) {
  AnnounceSchedule s;
  s.step = milliseconds(-1);
  EXPECT_NE(s.Validate().message().find("step -1 ms is negative"), absl::string_view::npos);
  s = AnnounceSchedule{};
  s.initial = milliseconds(-5);
  EXPECT_NE(s.Validate().message().find("initial delay -5 ms"), absl::string_view::npos);
  s = AnnounceSchedule{};
  s.rounds = 5000;
  EXPECT_NE(s.Validate().message().find("5000 rounds"), absl::string_view::npos);
}

}  // namespace
}  // namespace ferry
