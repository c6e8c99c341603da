#pragma once
// The KVM extensions Ferry needs, as data (kvmtool's habit): checked in one place when a VM is
// built, and reported by name to the migration precheck.

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ferry {

class KvmSystem;

struct KvmCapability {
  int cap;           // KVM_CAP_*
  const char* name;  // "KVM_CAP_XSAVE"
  const char* why;   // what Ferry uses it for
};

// Every capability a Ferry microVM needs to boot, save and restore.
std::span<const KvmCapability> RequiredKvmCapabilities();

// Names of the required capabilities for which `present(cap)` is false, in table order.
std::vector<std::string> MissingKvmCapabilities(const std::function<bool(int)>& present);
std::vector<std::string> MissingKvmCapabilities(const KvmSystem& kvm);

// OK, or FailedPrecondition naming every missing capability and what it is needed for.
absl::Status CheckKvmCapabilities(const std::function<bool(int)>& present);
absl::Status CheckKvmCapabilities(const KvmSystem& kvm);

}  // namespace ferry
