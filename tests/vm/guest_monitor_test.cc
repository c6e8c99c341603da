// GuestMonitor: full verification sweeps since boot or arrival, and which clock the heartbeat gap
// across a switch-over was measured on.
#include "engine/vm/guest_monitor.h"

#include "engine/base/clock.h"
#include "engine/base/clock_id.h"
#include "engine/guest/guest_abi.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

uint32_t Sweep(uint32_t worker, uint32_t count) { return (worker << 24) | count; }

TEST(GuestMonitorTest, FullSweepNeedsEveryWorker) {
  GuestMonitor m;
  m.OnBooted(0);
  m.OnBooted(1);
  m.OnHeartbeat(1);
  m.OnSweep(Sweep(0, 1));
  m.OnSweep(Sweep(0, 2));
  EXPECT_EQ(m.health().full_sweeps, 0u) << "worker 1 has not checked its slice yet";
  EXPECT_EQ(m.health().first_full_sweep_ns, 0);
  m.OnSweep(Sweep(1, 1));
  GuestHealth h = m.health();
  EXPECT_EQ(h.full_sweeps, 1u);
  EXPECT_GE(h.first_full_sweep_ns, h.arrival_ns);
  EXPECT_GT(h.arrival_ns, 0);
}

TEST(GuestMonitorTest, SweepUnderWayAtArrivalDoesNotCount) {
  GuestMonitor src;
  src.OnBooted(0);
  src.OnHeartbeat(1);
  src.OnSweep(Sweep(0, 1));
  GuestMonitor dst;
  dst.Restore(src.Save());
  dst.OnHeartbeat(2);
  dst.OnSweep(Sweep(0, 2));  // ends the sweep that began on the source
  EXPECT_EQ(dst.health().full_sweeps, 0u);
  dst.OnSweep(Sweep(0, 3));
  EXPECT_EQ(dst.health().full_sweeps, 1u);
  EXPECT_EQ(dst.health().vcpus_booted, 1u);
}

TEST(GuestMonitorTest, SweepFromAnUnknownWorkerIsIgnored) {
  GuestMonitor m;
  m.OnBooted(0);
  m.OnSweep(Sweep(FERRY_MAX_VCPUS + 3, 1));
  EXPECT_EQ(m.health().full_sweeps, 0u);
}

TEST(GuestMonitorTest, GapAcrossSwitchoverOnlyOnTheSameClock) {
  if (MonotonicClockId().empty()) GTEST_SKIP() << "no /proc/sys/kernel/random/boot_id on this kernel";
  GuestMonitor src;
  src.OnHeartbeat(1);
  v1::StatusDeviceState saved = src.Save();
  EXPECT_EQ(saved.last_heartbeat_clock_id(), MonotonicClockId());

  GuestMonitor same;
  same.Restore(saved);
  same.OnHeartbeat(2);
  GuestHealth h = same.health();
  EXPECT_FALSE(h.arrived_from_other_clock);
  EXPECT_GT(h.max_heartbeat_gap_ns, 0) << "the gap from the source's last stamp is measured";

  // The same stamp from another boot (another host) must not be subtracted from this clock's.
  saved.set_last_heartbeat_clock_id("00000000-0000-0000-0000-000000000000");
  saved.set_last_heartbeat_host_ns(MonotonicNanos() - 3'600'000'000'000);  // "an hour ago" elsewhere
  GuestMonitor other;
  other.Restore(saved);
  other.OnHeartbeat(2);
  other.OnHeartbeat(3);
  h = other.health();
  EXPECT_TRUE(h.arrived_from_other_clock);
  EXPECT_LT(h.max_heartbeat_gap_ns, 1'000'000'000) << "a gap was taken across two clocks";
  EXPECT_EQ(h.heartbeats, 3u) << "the counts still continue";
}

TEST(GuestMonitorTest, DiskLinesFillTheDiskCounters) {
  GuestMonitor m;
  EXPECT_EQ(m.health().disk_blocks_written, 0u);
  m.OnConsoleLine("disk written=120 verified=250 sweeps=2 flushes=3 corruptions=0 errors=1");
  GuestHealth h = m.health();
  EXPECT_EQ(h.disk_blocks_written, 120u);
  EXPECT_EQ(h.disk_blocks_verified, 250u);
  EXPECT_EQ(h.disk_sweeps, 2u);
  EXPECT_EQ(h.disk_flushes, 3u);
  EXPECT_EQ(h.disk_io_errors, 1u);
  EXPECT_EQ(h.disk_corruptions, 0u);
  // A garbled line changes nothing.
  m.OnConsoleLine("disk written=999 verified=x sweeps=2 flushes=3 corruptions=0 errors=1");
  m.OnConsoleLine("disk written=999");
  EXPECT_EQ(m.health().disk_blocks_written, 120u);

  // A corruption line counts at once and is kept; the guest's next total does not count it twice.
  const std::string bad = "CORRUPTION block=7 expected=0x0000000300000007 got=0x0 word=0 gen=3 disk=0";
  m.OnConsoleLine(bad);
  h = m.health();
  EXPECT_EQ(h.disk_corruptions, 1u);
  EXPECT_EQ(h.corruptions, 0u) << "memory corruptions are the status port's";
  ASSERT_EQ(h.corruption_reports.size(), 1u);
  EXPECT_EQ(h.corruption_reports[0], bad);
  m.OnConsoleLine("disk written=130 verified=260 sweeps=2 flushes=3 corruptions=1 errors=1");
  EXPECT_EQ(m.health().disk_corruptions, 1u);
  m.OnConsoleLine("disk written=140 verified=270 sweeps=2 flushes=4 corruptions=3 errors=1");
  EXPECT_EQ(m.health().disk_corruptions, 3u);
}

TEST(GuestMonitorTest, DiskCorruptionLineDoesNotReplaceAPageReport) {
  GuestMonitor m;
  m.OnCorruption(5);
  m.OnConsoleLine("CORRUPTION block=9 expected=0x1 got=0x2 word=0 gen=1 disk=0");
  GuestHealth h = m.health();
  ASSERT_EQ(h.corruption_reports.size(), 2u);
  EXPECT_EQ(h.corruption_reports[0], "CORRUPTION page=5");
  EXPECT_EQ(h.corruptions, 1u);
  EXPECT_EQ(h.disk_corruptions, 1u);
}

}  // namespace
}  // namespace ferry
