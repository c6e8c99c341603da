#include "engine/kvm/cpu_features.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/kvm/kvm_system.h"

namespace ferry {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

kvm_cpuid_entry2 Leaf(uint32_t fn, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

TEST(CpuFeatures, TableUsesLibvirtNamesAndPositions) {
  const CpuFeature* f = FindCpuFeature("sse4.1");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->leaf, 1u);
  EXPECT_EQ(f->reg, CpuidReg::kEcx);
  EXPECT_EQ(f->bit, 19);
  const CpuFeature* avx2 = FindCpuFeature("avx2");
  ASSERT_NE(avx2, nullptr);
  EXPECT_EQ(avx2->leaf, 7u);
  EXPECT_EQ(avx2->reg, CpuidReg::kEbx);
  EXPECT_EQ(avx2->bit, 5);
  for (const char* name : {"sse4.2", "avx", "ssse3", "popcnt", "aes", "bmi1", "bmi2", "fma", "movbe",
                           "xsave", "f16c", "rdrand", "lahf_lm", "lm"}) {
    EXPECT_NE(FindCpuFeature(name), nullptr) << name;
  }
  EXPECT_EQ(FindCpuFeature("sse4_1"), nullptr);
}

TEST(CpuFeatures, FeaturesOfReadsSetBits) {
  std::vector<kvm_cpuid_entry2> entries = {Leaf(1, (1u << 19) | (1u << 23), 1u << 0)};
  EXPECT_EQ(FeaturesOf(entries), (std::vector<std::string>{"fpu", "popcnt", "sse4.1"}));
}

TEST(CpuFeatures, RestrictClearsEverythingNotAllowed) {
  std::vector<kvm_cpuid_entry2> entries = {Leaf(1, (1u << 19) | (1u << 20) | (1u << 23), 1u)};
  ASSERT_TRUE(RestrictCpuid(entries, {"fpu", "sse4.2"}).ok());
  EXPECT_EQ(FeaturesOf(entries), (std::vector<std::string>{"fpu", "sse4.2"}));
  EXPECT_EQ(entries[0].ecx, 1u << 20);
}

TEST(CpuFeatures, RestrictRejectsUnknownNameAndNamesIt) {
  std::vector<kvm_cpuid_entry2> entries = {Leaf(1, 1u << 19, 0)};
  absl::Status st = RestrictCpuid(entries, {"sse4.1", "sse9"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("sse9"));
  EXPECT_EQ(entries[0].ecx, 1u << 19) << "a failed restrict must not change the entries";
}

TEST(CpuFeatures, HostCpuidHasVendorAndLongMode) {
  std::vector<kvm_cpuid_entry2> host = HostCpuid();
  std::string vendor = CpuVendorOf(host);
  EXPECT_EQ(vendor.size(), 12u) << vendor;
  EXPECT_THAT(FeaturesOf(host), Contains("lm"));
  EXPECT_THAT(FeaturesOf(host), Contains("sse2"));
}

TEST(CpuFeatures, KvmSupportedReportsTheHostVendorAndBaseFeatures) {
  std::string why;
  if (!KvmUsable(&why)) GTEST_SKIP() << "needs /dev/kvm: " << why;
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> kvm = KvmSupportedCpuid();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  std::vector<std::string> features = FeaturesOf(*kvm);
  EXPECT_THAT(features, Contains("lm"));
  EXPECT_THAT(features, Contains("sse2"));
  EXPECT_EQ(CpuVendorOf(*kvm), CpuVendorOf(HostCpuid()));
}

}  // namespace
}  // namespace ferry
