// GuestHealth crosses the agent-VMM socket whole: the guest's disk workload figures included.
#include "engine/vmm/vmm_convert.h"

#include "gtest/gtest.h"

namespace ferry {
namespace {

TEST(VmmConvert, GuestHealthKeepsTheDiskFigures) {
  GuestHealth h;
  h.heartbeats = 7;
  h.disk_blocks_written = 11;
  h.disk_blocks_verified = 22;
  h.disk_sweeps = 3;
  h.disk_flushes = 4;
  h.disk_io_errors = 5;
  h.disk_corruptions = 6;
  h.corruption_reports = {"CORRUPTION block=9 expected=0x1 got=0x2 word=0 gen=1 disk=0"};
  GuestHealth back = GuestHealthFromVmm(GuestHealthToVmm(h));
  EXPECT_EQ(back.heartbeats, 7u);
  EXPECT_EQ(back.disk_blocks_written, 11u);
  EXPECT_EQ(back.disk_blocks_verified, 22u);
  EXPECT_EQ(back.disk_sweeps, 3u);
  EXPECT_EQ(back.disk_flushes, 4u);
  EXPECT_EQ(back.disk_io_errors, 5u);
  EXPECT_EQ(back.disk_corruptions, 6u);
  EXPECT_EQ(back.corruption_reports, h.corruption_reports);
}

}  // namespace
}  // namespace ferry
