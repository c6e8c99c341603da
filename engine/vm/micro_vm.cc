// PLACEHOLDER until the backend lands: replaced wholesale by the real implementation.
#include "engine/vm/micro_vm.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVm(const VmSpec& spec, bool for_restore) {
  return absl::UnimplementedError("micro backend not built yet");
}

}  // namespace ferry
