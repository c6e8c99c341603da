#pragma once
// x86 CPUID feature names (libvirt's spelling, from its cpu_map/x86_features.xml) and where each
// lives in CPUID. The microVM restricts the guest's CPUID to a feature list with RestrictCpuid;
// host facts report which features this machine (and its KVM) offers.

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry {

enum class CpuidReg : uint8_t { kEax = 0, kEbx = 1, kEcx = 2, kEdx = 3 };

struct CpuFeature {
  const char* name;
  uint32_t leaf;
  uint32_t subleaf;
  CpuidReg reg;
  uint8_t bit;
};

// Every known feature, in cpu_map order.
const std::vector<CpuFeature>& AllCpuFeatures();
// nullptr when `name` is not a known feature.
const CpuFeature* FindCpuFeature(absl::string_view name);

// Names of the known features whose bit is set in `entries`, sorted.
std::vector<std::string> FeaturesOf(const std::vector<kvm_cpuid_entry2>& entries);

// Clears every known feature bit whose name is not in `allowed`. An unknown name in `allowed`
// is an error naming it (a typo must not silently give the guest less than asked for).
absl::Status RestrictCpuid(std::vector<kvm_cpuid_entry2>& entries,
                           const std::vector<std::string>& allowed);

// This machine's CPUID as the cpuid instruction reports it (no KVM needed): basic, extended and
// KVM-paravirt-free leaves, with every subleaf of the leaves that have them.
std::vector<kvm_cpuid_entry2> HostCpuid();

// What KVM can give a guest (KVM_GET_SUPPORTED_CPUID on /dev/kvm). Error if /dev/kvm is absent.
absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSupportedCpuid();

// "GenuineIntel", "AuthenticAMD", ... from leaf 0 of `entries`; empty if leaf 0 is absent.
std::string CpuVendorOf(const std::vector<kvm_cpuid_entry2>& entries);

}  // namespace ferry
