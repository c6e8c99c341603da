// PLACEHOLDER until the backend lands: replaced wholesale by the real implementation.
#include "engine/vm/synthetic_vm.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<Vm>> CreateSyntheticVm(const VmSpec& spec, bool for_restore) {
  return absl::UnimplementedError("synthetic backend not built yet");
}

}  // namespace ferry
