#include "engine/host/cpu_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/kvm/cpu_features.h"

namespace ferry {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(CpuModel, LibvirtModelExpandsThroughTheCpuMap) {
  absl::StatusOr<std::vector<std::string>> nehalem = ExpandCpuModel("Nehalem");
  ASSERT_TRUE(nehalem.ok()) << nehalem.status();
  EXPECT_THAT(*nehalem, Contains("sse4.1"));
  EXPECT_THAT(*nehalem, Contains("popcnt"));
  EXPECT_THAT(*nehalem, Not(Contains("avx")));
  absl::StatusOr<std::vector<std::string>> haswell = ExpandCpuModel("Haswell-noTSX");
  ASSERT_TRUE(haswell.ok()) << haswell.status();
  EXPECT_THAT(*haswell, Contains("avx2"));
  EXPECT_THAT(*haswell, Not(Contains("hle")));
}

TEST(CpuModel, EveryModelExpandsToCpuidFeaturesOnly) {
  absl::StatusOr<std::vector<std::string>> models = KnownCpuModels();
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_THAT(*models, Contains("x86-64-v3"));
  for (const std::string& m : *models) {
    absl::StatusOr<std::vector<std::string>> fs = ExpandCpuModel(m);
    ASSERT_TRUE(fs.ok()) << m << ": " << fs.status();
    EXPECT_THAT(*fs, Contains("fpu")) << m;
    for (const std::string& f : *fs) EXPECT_NE(FindCpuFeature(f), nullptr) << m << " has " << f;
  }
  absl::StatusOr<std::vector<std::string>> cooperlake = ExpandCpuModel("Cooperlake");
  ASSERT_TRUE(cooperlake.ok());
  EXPECT_THAT(*cooperlake, Contains("avx512f"));
  EXPECT_THAT(*cooperlake, Not(Contains("ibrs-all"))) << "an MSR bit, not CPUID";
}

TEST(CpuModel, PsAbiLevelsNest) {
  auto v2 = ExpandCpuModel("x86-64-v2");
  auto v3 = ExpandCpuModel("x86-64-v3");
  auto v4 = ExpandCpuModel("x86-64-v4");
  ASSERT_TRUE(v2.ok() && v3.ok() && v4.ok());
  EXPECT_THAT(*v2, Contains("sse4.2"));
  EXPECT_THAT(*v2, Not(Contains("avx2")));
  EXPECT_THAT(*v3, Contains("sse4.2"));
  EXPECT_THAT(*v3, Contains("avx2"));
  EXPECT_THAT(*v4, Contains("avx512f"));
  EXPECT_LT(v2->size(), v3->size());
  EXPECT_LT(v3->size(), v4->size());
}

TEST(CpuModel, UnknownModelIsNotFoundAndNamed) {
  absl::StatusOr<std::vector<std::string>> fs = ExpandCpuModel("Pentium9000");
  EXPECT_EQ(fs.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(fs.status().message()), HasSubstr("Pentium9000"));
}

TEST(CpuModel, ResolveVmCpuMergesModelAndFeaturesAndNamesTheField) {
  VmSpec vm;
  vm.cpu.model = "Nehalem";
  vm.cpu.features = {"avx"};
  ASSERT_TRUE(ResolveVmCpu(vm, "vm.yaml").ok());
  EXPECT_THAT(vm.cpu.features, Contains("avx"));
  EXPECT_THAT(vm.cpu.features, Contains("sse4.2"));

  VmSpec bad;
  bad.cpu.model = "Nehalemm";
  absl::Status st = ResolveVmCpu(bad, "vm.yaml");
  EXPECT_THAT(std::string(st.message()), HasSubstr("vm.yaml: cpu.model"));
  VmSpec typo;
  typo.cpu.features = {"sse4_1"};
  st = ResolveVmCpu(typo, "vm.yaml");
  EXPECT_THAT(std::string(st.message()), HasSubstr("vm.yaml: cpu.features"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("sse4_1"));
}

TEST(CpuModel, BaselineIsTheLargestModelInsideTheCommonFeatures) {
  HostFacts newer, older;
  newer.cpu_vendor = older.cpu_vendor = "GenuineIntel";
  newer.cpu_features = *ExpandCpuModel("Haswell-noTSX");
  newer.cpu_features.push_back("avx512f");
  older.cpu_features = *ExpandCpuModel("Westmere");
  absl::StatusOr<CpuBaseline> b = BaselineCpu({newer, older});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->model, "Westmere");
  EXPECT_EQ(b->vendor, "GenuineIntel");
  EXPECT_THAT(b->features, Not(Contains("avx512f")));
  EXPECT_THAT(b->features, Contains("aes"));
  EXPECT_TRUE(b->extra.empty());
}

}  // namespace
}  // namespace ferry
