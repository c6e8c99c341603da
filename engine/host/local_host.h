#pragma once
// Facts this machine can tell about itself: its CPU as KVM offers it to guests, and which of the
// KVM capabilities a Ferry VM needs are present.

#include <string>
#include <vector>

namespace ferry {

struct LocalCpu {
  std::string vendor;
  std::vector<std::string> features;  // sorted
  std::string source;                 // "KVM_GET_SUPPORTED_CPUID" or "cpuid (no /dev/kvm)"
};

// KVM-supported CPUID where /dev/kvm is usable, else the cpuid instruction's view.
LocalCpu ProbeLocalCpu();

// Names of the required KVM capabilities (engine/kvm/capabilities.h) present; empty without KVM.
std::vector<std::string> ProbeLocalKvmCapabilities();

// Names of every capability a Ferry microVM needs.
std::vector<std::string> RequiredKvmCapabilityNames();

}  // namespace ferry
