#pragma once
// The KVM backend.

#include <memory>

#include "absl/status/statusor.h"
#include "engine/vm/vm.h"

namespace ferry {

// Fails with a clear error (naming /dev/kvm or the missing capability) where KVM is unusable.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVm(const VmSpec& spec, bool for_restore);

}  // namespace ferry
