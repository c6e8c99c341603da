// Announcer failure handling in the host's own namespace. None of these cases can put a frame
// on a host network: the interface is missing, the MAC is refused, or the socket cannot open.
#include "engine/net/announcer.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

#include "engine/base/clock.h"

namespace ferry {
namespace {

const MacAddress kMac({0x52, 0x54, 0x00, 0x12, 0x34, 0x56});

bool Contains(const std::string& s, absl::string_view part) {
  return s.find(std::string(part)) != std::string::npos;
}

TEST(Announcer, MissingInterfaceIsAWarningForEveryRound) {
  std::vector<AnnounceEvent> seen;
  auto a = Announcer::Start({{kMac, "ferry-nosuch0"}}, AnnounceSchedule{},
                            [&](const AnnounceEvent& e) { seen.push_back(e); });
  ASSERT_TRUE(a.ok()) << a.status();
  const AnnounceResult r = (*a)->Wait();
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.frames_sent, 0u);
  EXPECT_EQ(r.frames_failed, 5u);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0],
            "announce 52:54:00:12:34:56 on ferry-nosuch0: interface \"ferry-nosuch0\" does not "
            "exist in this network namespace");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].round, -1);
  EXPECT_FALSE(r.events[0].sent);
  ASSERT_EQ(seen.size(), 1u);  // the callback saw the same event
  EXPECT_EQ(seen[0].warning, r.warnings[0]);
  // Nothing to wait for: no schedule is slept through for a target that cannot send.
  EXPECT_LT(NanosToMillis(r.end_ns - r.start_ns), 100.0);
}

TEST(Announcer, OneWarningPerTargetOnTheSameMissingInterface) {
  const MacAddress other({0x52, 0x54, 0x00, 0x12, 0x34, 0x57});
  auto a = Announcer::Start({{kMac, "ferry-nosuch0"}, {other, "ferry-nosuch0"}},
                            AnnounceSchedule{});
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  EXPECT_EQ(r.frames_failed, 10u);
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_TRUE(Contains(r.warnings[1], "52:54:00:12:34:57")) << r.warnings[1];
}

TEST(Announcer, OverlongInterfaceNameIsAWarning) {
  auto a = Announcer::Start({{kMac, "an-interface-name-too-long"}}, AnnounceSchedule{});
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_TRUE(Contains(r.warnings[0], "is longer than 15 characters")) << r.warnings[0];
}

TEST(Announcer, RefusesMulticastAndZeroMacs) {
  auto a = Announcer::Start({{MacAddress({0x01, 0, 0x5e, 0, 0, 1}), "lo"}, {MacAddress(), "lo"}},
                            AnnounceSchedule{});
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  EXPECT_EQ(r.frames_sent, 0u);
  EXPECT_EQ(r.frames_failed, 10u);
  ASSERT_EQ(r.warnings.size(), 2u);
  EXPECT_TRUE(Contains(r.warnings[0], "01:00:5e:00:00:01 is not a unicast NIC address"));
  EXPECT_TRUE(Contains(r.warnings[1], "00:00:00:00:00:00 is not a unicast NIC address"));
}

TEST(Announcer, InvalidScheduleIsRefusedAtStart) {
  AnnounceSchedule s;
  s.max = std::chrono::milliseconds(1);
  auto a = Announcer::Start({{kMac, "lo"}}, s);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Announcer, NoTargetsFinishesAtOnce) {
  auto a = Announcer::Start({}, AnnounceSchedule{});
  ASSERT_TRUE(a.ok());
  const AnnounceResult r = (*a)->Wait();
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.frames_sent + r.frames_failed, 0u);
}

// Capabilities are per thread on Linux: a thread that drops CAP_NET_RAW from its effective set
// sees exactly what an unprivileged agent would.
TEST(Announcer, WithoutCapNetRawIsAWarningNamingTheCapability) {
  AnnounceResult r;
  std::string setup_error;
  std::thread t([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) {
      setup_error = "capget failed";
      return;
    }
    data[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
    if (::syscall(SYS_capset, &header, data) != 0) {
      setup_error = "capset failed";
      return;
    }
    // Resolving "lo" would work; the socket is what needs the capability.
    auto a = Announcer::Start({{kMac, "lo"}}, AnnounceSchedule{});
    if (!a.ok()) {
      setup_error = std::string(a.status().message());
      return;
    }
    r = (*a)->Wait();
  });
  t.join();
  ASSERT_TRUE(setup_error.empty()) << setup_error;
  EXPECT_EQ(r.frames_sent, 0u);
  EXPECT_EQ(r.frames_failed, 5u);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_TRUE(Contains(r.warnings[0], "needs CAP_NET_RAW")) << r.warnings[0];
}

}  // namespace
}  // namespace ferry
