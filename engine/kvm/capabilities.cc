#include "engine/kvm/capabilities.h"

#include <linux/kvm.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kvm/kvm_system.h"

namespace ferry {
namespace {

#define FERRY_CAP(cap, why) KvmCapability{cap, #cap, why}
constexpr KvmCapability kRequired[] = {
    FERRY_CAP(KVM_CAP_USER_MEMORY, "guest RAM from a memfd"),
    FERRY_CAP(KVM_CAP_IRQCHIP, "in-kernel LAPIC/IOAPIC/PIC"),
    FERRY_CAP(KVM_CAP_SET_TSS_ADDR, "x86 TSS placement"),
    FERRY_CAP(KVM_CAP_SET_IDENTITY_MAP_ADDR, "x86 identity map placement"),
    FERRY_CAP(KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2"),
    FERRY_CAP(KVM_CAP_MP_STATE, "vCPU run state save/restore"),
    FERRY_CAP(KVM_CAP_VCPU_EVENTS, "pending exception/interrupt save/restore"),
    FERRY_CAP(KVM_CAP_XSAVE, "FPU/SSE/AVX state save/restore"),
    FERRY_CAP(KVM_CAP_XCRS, "XCR0 save/restore"),
    FERRY_CAP(KVM_CAP_DEBUGREGS, "debug register save/restore"),
    FERRY_CAP(KVM_CAP_ADJUST_CLOCK, "KVM clock save/restore"),
    FERRY_CAP(KVM_CAP_KVMCLOCK_CTRL, "telling the guest it was paused"),
    FERRY_CAP(KVM_CAP_GET_TSC_KHZ, "TSC frequency for the guest and saved state"),
    FERRY_CAP(KVM_CAP_IMMEDIATE_EXIT, "pausing vCPUs without losing a kick"),
    FERRY_CAP(KVM_CAP_SYNC_MMU, "guest RAM shared with the VMM"),
};
#undef FERRY_CAP

}  // namespace

std::span<const KvmCapability> RequiredKvmCapabilities() { return kRequired; }

std::vector<std::string> MissingKvmCapabilities(const std::function<bool(int)>& present) {
  std::vector<std::string> missing;
  for (const KvmCapability& c : kRequired) {
    if (!present(c.cap)) missing.push_back(c.name);
  }
  return missing;
}

std::vector<std::string> MissingKvmCapabilities(const KvmSystem& kvm) {
  return MissingKvmCapabilities([&kvm](int cap) { return kvm.CheckExtension(cap) > 0; });
}

absl::Status CheckKvmCapabilities(const std::function<bool(int)>& present) {
  std::vector<std::string> parts;
  for (const KvmCapability& c : kRequired) {
    if (!present(c.cap)) parts.push_back(absl::StrCat(c.name, " (", c.why, ")"));
  }
  if (parts.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("this host's KVM lacks required capabilities: ", absl::StrJoin(parts, ", ")));
}

absl::Status CheckKvmCapabilities(const KvmSystem& kvm) {
  return CheckKvmCapabilities([&kvm](int cap) { return kvm.CheckExtension(cap) > 0; });
}

}  // namespace ferry
