// `migrate host cpu-baseline`'s choice: the newest named model or x86-64 level inside what every
// host has, never a 32-bit model for 64-bit hosts, with what each host gives up.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/host/cpu_model.h"

namespace ferry {
namespace {

using ::testing::Contains;
using ::testing::IsEmpty;
using ::testing::Not;

HostFacts Host(const std::string& name, std::vector<std::string> features, const std::string& vendor = "") {
  HostFacts h;
  h.name = name;
  h.cpu_vendor = vendor;
  std::sort(features.begin(), features.end());
  h.cpu_features = std::move(features);
  return h;
}

// What this machine's nested KVM (kvm_pvm) offers a guest: 64-bit, but no SSE3 and later, so no
// 64-bit libvirt model fits, while the 32-bit pentium3 does.
const std::vector<std::string> kNestedPvmFeatures = {
    "3dnowprefetch", "apic", "arat", "clflush", "clflushopt", "clwb", "cmov", "cx16", "cx8", "de", "fpu",
    "fxsr", "fxsr_opt", "lahf_lm", "lm", "mca", "mce", "mmx", "mmxext", "msr", "mtrr", "nx", "pae",
    "pat", "pge", "pse", "pse36", "sep", "sse", "sse2", "syscall", "tsc", "vme", "x2apic"};

TEST(CpuBaseline, SixtyFourBitHostsNeverGetAModelWithoutLongMode) {
  absl::StatusOr<CpuBaseline> b = BaselineCpu({Host("esx-a", kNestedPvmFeatures), Host("esx-b", kNestedPvmFeatures)});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(b->model, "pentium3");
  ASSERT_FALSE(b->model.empty());
  EXPECT_THAT(*ExpandCpuModel(b->model), Contains("lm")) << b->model;
  EXPECT_EQ(b->model, "x86-64-v1") << "the only 64-bit model inside this set";
}

TEST(CpuBaseline, PicksTheNewestModelEveryHostSupports) {
  std::vector<std::string> skylake = *ExpandCpuModel("Skylake-Client-noTSX-IBRS");
  std::vector<std::string> haswell = *ExpandCpuModel("Haswell-noTSX");
  absl::StatusOr<CpuBaseline> b = BaselineCpu({Host("new", skylake), Host("old", haswell)});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->model, "Haswell-noTSX");
}

TEST(CpuBaseline, SaysWhatEachHostWouldLose) {
  std::vector<std::string> skylake = *ExpandCpuModel("Skylake-Client-noTSX-IBRS");
  std::vector<std::string> haswell = *ExpandCpuModel("Haswell-noTSX");
  absl::StatusOr<CpuBaseline> b = BaselineCpu({Host("new", skylake), Host("old", haswell)});
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->hosts.size(), 2u);
  EXPECT_EQ(b->hosts[0].name, "new");
  EXPECT_THAT(b->hosts[0].loses, Contains("adx")) << "Skylake has ADX, Haswell does not";
  EXPECT_THAT(b->hosts[0].loses, Not(Contains("avx2")));
  EXPECT_EQ(b->hosts[1].name, "old");
  EXPECT_THAT(b->hosts[1].loses, IsEmpty()) << "the model is all Haswell has";
}

TEST(CpuBaseline, HostsWithoutAVendorDoNotDiffer) {
  absl::StatusOr<CpuBaseline> none = BaselineCpu({Host("a", kNestedPvmFeatures), Host("b", kNestedPvmFeatures)});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->vendor, "");
  EXPECT_FALSE(none->vendors_differ);
  absl::StatusOr<CpuBaseline> one =
      BaselineCpu({Host("a", kNestedPvmFeatures, "AuthenticAMD"), Host("b", kNestedPvmFeatures)});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->vendor, "AuthenticAMD") << "the only vendor given";
  EXPECT_FALSE(one->vendors_differ);
  absl::StatusOr<CpuBaseline> two = BaselineCpu(
      {Host("a", kNestedPvmFeatures, "AuthenticAMD"), Host("b", kNestedPvmFeatures, "GenuineIntel")});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->vendor, "");
  EXPECT_TRUE(two->vendors_differ);
}

TEST(CpuBaseline, ThirtyTwoBitHostsMayGetAThirtyTwoBitModel) {
  std::vector<std::string> p3 = *ExpandCpuModel("pentium3");
  absl::StatusOr<CpuBaseline> b = BaselineCpu({Host("old-a", p3), Host("old-b", p3)});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->model, "pentium3");
}

}  // namespace
}  // namespace ferry
