#include "engine/agent/link_history.h"

#include <gtest/gtest.h>

namespace ferry {
namespace {

v1::MigrationStats Stats(double mib_s, uint64_t bytes = 1ull << 30) {
  v1::MigrationStats s;
  s.set_throughput_mib_s(mib_s);
  s.set_bytes_transferred(bytes);
  return s;
}

TEST(LinkHistory, UnknownDestinationHasNoFigure) {
  LinkHistory h;
  EXPECT_FALSE(h.Get("b:7000").has_value());
}

TEST(LinkHistory, MedianOfTheLastFivePerDestination) {
  LinkHistory h;
  for (double v : {100.0, 900.0, 400.0}) EXPECT_TRUE(h.Record("b:7000", {}, Stats(v)));
  EXPECT_TRUE(h.Record("c:7000", {}, Stats(50)));
  auto b = h.Get("b:7000");
  ASSERT_TRUE(b.has_value());
  EXPECT_DOUBLE_EQ(b->mib_s, 400);
  EXPECT_EQ(b->measurements, 3u);
  for (double v : {500.0, 600.0, 700.0}) h.Record("b:7000", {}, Stats(v));  // 100 drops out
  b = h.Get("b:7000");
  EXPECT_EQ(b->measurements, LinkHistory::kKept);
  EXPECT_DOUBLE_EQ(b->mib_s, 600);  // of 900 400 500 600 700
  EXPECT_DOUBLE_EQ(h.Get("c:7000")->mib_s, 50);
}

TEST(LinkHistory, CappedTinyOrEmptyMigrationsAreNotRecorded) {
  LinkHistory h;
  v1::MigrationOptions capped;
  capped.set_max_bandwidth_mibps(100);
  EXPECT_FALSE(h.Record("b:7000", capped, Stats(100)));           // it measured the cap
  EXPECT_FALSE(h.Record("b:7000", {}, Stats(900, 1 << 20)));      // mostly setup latency
  EXPECT_FALSE(h.Record("b:7000", {}, Stats(0)));
  EXPECT_FALSE(h.Get("b:7000").has_value());
}

}  // namespace
}  // namespace ferry
