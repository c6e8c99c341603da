#include "engine/host/local_host.h"

#include "engine/kvm/capabilities.h"
#include "engine/kvm/cpu_features.h"
#include "engine/kvm/kvm_system.h"

namespace ferry {

LocalCpu ProbeLocalCpu() {
  LocalCpu cpu;
  auto kvm = KvmSupportedCpuid();
  std::vector<kvm_cpuid_entry2> host = HostCpuid();
  cpu.vendor = CpuVendorOf(host);
  if (kvm.ok()) {
    cpu.features = FeaturesOf(*kvm);
    cpu.source = "KVM_GET_SUPPORTED_CPUID";
  } else {
    cpu.features = FeaturesOf(host);
    cpu.source = "cpuid (no /dev/kvm)";
  }
  return cpu;
}

std::vector<std::string> ProbeLocalKvmCapabilities() {
  std::vector<std::string> present;
  auto kvm = KvmSystem::Open();
  if (!kvm.ok()) return present;
  for (const KvmCapability& c : RequiredKvmCapabilities()) {
    if (kvm->CheckExtension(c.cap) > 0) present.push_back(c.name);
  }
  return present;
}

std::vector<std::string> RequiredKvmCapabilityNames() {
  std::vector<std::string> names;
  for (const KvmCapability& c : RequiredKvmCapabilities()) names.push_back(c.name);
  return names;
}

}  // namespace ferry
