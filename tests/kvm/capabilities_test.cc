#include "engine/kvm/capabilities.h"

#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <set>

#include "engine/kvm/kvm_system.h"
#include "tests/kvm/kvm_available.h"

namespace ferry {
namespace {

std::function<bool(int)> AllBut(std::set<int> absent) {
  return [absent](int cap) { return absent.count(cap) == 0; };
}

TEST(KvmCapabilities, NothingMissingWhenEverythingIsPresent) {
  EXPECT_TRUE(MissingKvmCapabilities(AllBut({})).empty());
  EXPECT_TRUE(CheckKvmCapabilities(AllBut({})).ok());
}

TEST(KvmCapabilities, ReportsEachMissingCapabilityByName) {
  auto missing = MissingKvmCapabilities(AllBut({KVM_CAP_XSAVE, KVM_CAP_IRQCHIP}));
  EXPECT_EQ(missing, (std::vector<std::string>{"KVM_CAP_IRQCHIP", "KVM_CAP_XSAVE"}));
  absl::Status st = CheckKvmCapabilities(AllBut({KVM_CAP_XSAVE}));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("KVM_CAP_XSAVE"), std::string::npos) << st;
  EXPECT_EQ(st.message().find("KVM_CAP_IRQCHIP"), std::string::npos) << st;
}

TEST(KvmCapabilities, NoKvmMeansEveryCapabilityMissing) {
  auto missing = MissingKvmCapabilities([](int) { return false; });
  EXPECT_EQ(missing.size(), RequiredKvmCapabilities().size());
  EXPECT_NE(std::find(missing.begin(), missing.end(), "KVM_CAP_USER_MEMORY"), missing.end());
}

TEST(KvmCapabilities, TableNamesAreUniqueAndSpelledAsKvmDoes) {
  std::set<std::string> names;
  for (const KvmCapability& c : RequiredKvmCapabilities()) {
    EXPECT_TRUE(names.insert(c.name).second) << c.name;
    EXPECT_EQ(std::string(c.name).rfind("KVM_CAP_", 0), 0u) << c.name;
  }
}

TEST(KvmSystem, ThisHostHasEveryRequiredCapability) {
  FERRY_SKIP_WITHOUT_KVM();
  auto kvm = KvmSystem::Open();
  ASSERT_TRUE(kvm.ok()) << kvm.status();
  EXPECT_TRUE(CheckKvmCapabilities(*kvm).ok()) << CheckKvmCapabilities(*kvm);
  auto cpuid = kvm->SupportedCpuid();
  ASSERT_TRUE(cpuid.ok()) << cpuid.status();
  EXPECT_GT(cpuid->size(), 10u);
  auto msrs = kvm->MsrIndexList();
  ASSERT_TRUE(msrs.ok()) << msrs.status();
  EXPECT_NE(std::find(msrs->begin(), msrs->end(), 0x10u), msrs->end()) << "IA32_TSC not in KVM's MSR list";
}

TEST(KvmSystem, MissingDeviceIsAClearError) {
  auto kvm = KvmSystem::Open("/nonexistent/kvm");
  ASSERT_FALSE(kvm.ok());
  EXPECT_NE(kvm.status().message().find("/nonexistent/kvm"), std::string::npos) << kvm.status();
}

}  // namespace
}  // namespace ferry
