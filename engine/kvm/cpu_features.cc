#include "engine/kvm/cpu_features.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/status.h"
#include "engine/kvm/kvm_system.h"

namespace ferry {
namespace {

uint32_t& RegOf(kvm_cpuid_entry2& e, CpuidReg r) {
  switch (r) {
    case CpuidReg::kEax: return e.eax;
    case CpuidReg::kEbx: return e.ebx;
    case CpuidReg::kEcx: return e.ecx;
    case CpuidReg::kEdx: break;
  }
  return e.edx;
}

bool Matches(const kvm_cpuid_entry2& e, const CpuFeature& f) {
  if (e.function != f.leaf) return false;
  return !(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index == f.subleaf;
}

}  // namespace

const CpuFeature* FindCpuFeature(absl::string_view name) {
  for (const CpuFeature& f : AllCpuFeatures()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

std::vector<std::string> FeaturesOf(const std::vector<kvm_cpuid_entry2>& entries) {
  std::set<std::string> names;
  for (const CpuFeature& f : AllCpuFeatures()) {
    for (const kvm_cpuid_entry2& e : entries) {
      kvm_cpuid_entry2 copy = e;
      if (Matches(e, f) && (RegOf(copy, f.reg) >> f.bit & 1)) names.insert(f.name);
    }
  }
  return {names.begin(), names.end()};
}

absl::Status RestrictCpuid(std::vector<kvm_cpuid_entry2>& entries,
                           const std::vector<std::string>& allowed) {
  std::set<std::string> keep;
  for (const std::string& name : allowed) {
    if (FindCpuFeature(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown CPU feature '", name, "'"));
    }
    keep.insert(name);
  }
  for (const CpuFeature& f : AllCpuFeatures()) {
    if (keep.count(f.name)) continue;
    for (kvm_cpuid_entry2& e : entries) {
      if (Matches(e, f)) RegOf(e, f.reg) &= ~(uint32_t{1} << f.bit);
    }
  }
  return absl::OkStatus();
}

std::vector<kvm_cpuid_entry2> HostCpuid() {
  std::vector<kvm_cpuid_entry2> out;
  auto query = [&out](uint32_t leaf, uint32_t subleaf, bool indexed) {
    kvm_cpuid_entry2 e{};
    e.function = leaf;
    e.index = subleaf;
    e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    __cpuid_count(leaf, subleaf, e.eax, e.ebx, e.ecx, e.edx);
    out.push_back(e);
  };
  uint32_t max_basic = __get_cpuid_max(0, nullptr);
  uint32_t max_ext = __get_cpuid_max(0x80000000, nullptr);
  query(0, 0, false);
  query(0x80000000, 0, false);
  // Only the leaves the feature table names: the hypervisor range (0x4000xxxx) describes
  // whatever we run under, not this CPU.
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (const CpuFeature& f : AllCpuFeatures()) {
    bool ext = f.leaf >= 0x80000000;
    if (f.leaf >= 0x40000000 && !ext) continue;
    if (f.leaf == 0 || f.leaf == 0x80000000) continue;
    if (f.leaf > (ext ? max_ext : max_basic)) continue;
    if (!seen.insert({f.leaf, f.subleaf}).second) continue;
    bool indexed = f.leaf == 7 || f.leaf == 0xd || f.leaf == 0x14 || f.leaf == 0x12;
    query(f.leaf, f.subleaf, indexed);
  }
  return out;
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSupportedCpuid() {
  ASSIGN_OR_RETURN(KvmSystem kvm, KvmSystem::Open());
  return kvm.SupportedCpuid();
}

std::string CpuVendorOf(const std::vector<kvm_cpuid_entry2>& entries) {
  for (const kvm_cpuid_entry2& e : entries) {
    if (e.function != 0) continue;
    char vendor[13] = {};
    memcpy(vendor, &e.ebx, 4);
    memcpy(vendor + 4, &e.edx, 4);
    memcpy(vendor + 8, &e.ecx, 4);
    return vendor;
  }
  return "";
}

}  // namespace ferry
