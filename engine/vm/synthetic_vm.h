#pragma once
// The synthetic backend: the built-in guest's workload run by host threads over guest memory,
// dirty-tracked by the kernel. For hosts without /dev/kvm and for very large guests.

#include <memory>

#include "absl/status/statusor.h"
#include "engine/vm/vm.h"

namespace ferry {

// `memory` (may be null): guest RAM that already holds the guest (a VMM upgrade), used instead of
// a new allocation.
absl::StatusOr<std::unique_ptr<Vm>> CreateSyntheticVm(const VmSpec& spec, bool for_restore,
                                                      std::unique_ptr<GuestMemory> memory = nullptr);

}  // namespace ferry
