// The precheck's dirty-rate sample: measures a running guest, always switches tracking off, and
// never touches a VM that is migrating.
#include <gtest/gtest.h>

#include "engine/agent/migration_precheck.h"
#include "engine/memory/dirty_bitmap.h"

namespace ferry {
namespace {

VmSpec Spec() {
  VmSpec s;
  s.name = "sampled";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 32ull << 20;
  s.workload.working_set_bytes = 8ull << 20;
  s.workload.dirty_rate_mibps = 40;
  return s;
}

// Tracking is off: the synthetic tracker refuses to collect.
bool TrackingOff(Vm& vm) {
  DirtyBitmap b(vm.memory().num_pages());
  return !vm.CollectDirtyPages(b).ok();
}

TEST(DirtyRateSample, MeasuresARunningGuestAndSwitchesTrackingOff) {
  auto vm = CreateVmForBoot(Spec());
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  std::optional<DirtyRateSample> s = SampleDirtyRate(**vm);
  ASSERT_TRUE(s.has_value());
  EXPECT_GE(s->window_ms, 200);
  EXPECT_GT(s->dirtied_bytes, 0u);
  EXPECT_GT(s->mib_s, 0);
  EXPECT_LT(s->mib_s, 400) << "the guest writes 40 MiB/s";
  EXPECT_TRUE(TrackingOff(**vm));
  EXPECT_TRUE((*vm)->Stop().ok());
}

TEST(DirtyRateSample, SkipsAVmThatIsNotRunning) {
  auto vm = CreateVmForBoot(Spec());
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_FALSE(SampleDirtyRate(**vm).has_value());
  EXPECT_TRUE(TrackingOff(**vm));
}

TEST(DirtyRateSample, NeverTouchesAMigratingVmAndReleasesAnIdleOne) {
  VmRegistry vms;
  ASSERT_TRUE(vms.Reserve("sampled").ok());
  auto vm = CreateVmForBoot(Spec());
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->Start().ok());
  Vm& v = **vm;
  ASSERT_TRUE(vms.Adopt("sampled", std::move(*vm), {}).ok());

  ASSERT_TRUE(vms.BeginMigrationOut("sampled", "mig-1").ok());
  ASSERT_TRUE(v.EnableDirtyTracking().ok());  // the migration's own tracking
  EXPECT_FALSE(SampleIdleVmDirtyRate(vms, "sampled").has_value());
  EXPECT_EQ(vms.Find("sampled")->outgoing_migration, "mig-1");
  DirtyBitmap b(v.memory().num_pages());
  EXPECT_TRUE(v.CollectDirtyPages(b).ok()) << "the sample switched the migration's tracking off";
  ASSERT_TRUE(v.DisableDirtyTracking().ok());
  vms.EndMigrationOut("sampled", false);

  std::optional<DirtyRateSample> s = SampleIdleVmDirtyRate(vms, "sampled");
  EXPECT_TRUE(s.has_value());
  EXPECT_TRUE(vms.Find("sampled")->outgoing_migration.empty());
  EXPECT_TRUE(vms.BeginMigrationOut("sampled", "mig-2").ok()) << "the sample left the VM held";
  EXPECT_TRUE(TrackingOff(v));
  EXPECT_FALSE(SampleIdleVmDirtyRate(vms, "nope").has_value());
  EXPECT_TRUE(v.Stop().ok());
}

}  // namespace
}  // namespace ferry
