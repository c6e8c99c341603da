#include "engine/vm/vm.h"

#include "absl/strings/str_format.h"
#include "engine/base/status.h"
#include "engine/vm/disks.h"
#include "engine/vm/micro_vm.h"
#include "engine/vm/synthetic_vm.h"
#include "engine/vm/vm_name.h"

namespace ferry {

std::string GuestCommandLine(const WorkloadSpec& w) {
  std::string line = absl::StrFormat("ws=%d rate=%g pattern=%s seed=%d tick_ms=%d", w.working_set_bytes >> 20,
                                     w.dirty_rate_mibps, w.pattern, w.seed, w.tick_ms);
  if (w.disk_working_set_bytes >> 20) {
    absl::StrAppendFormat(&line, " disk_ws=%d disk_rate=%g", w.disk_working_set_bytes >> 20, w.disk_rate_mibps);
  }
  return line;
}

absl::StatusOr<std::unique_ptr<Vm>> CreateVmForBoot(const VmSpec& spec) {
  RETURN_IF_ERROR(ValidateVmName(spec.name));
  if (spec.backend == Backend::kSynthetic) return CreateSyntheticVm(spec, /*for_restore=*/false);
  return CreateMicroVm(spec, /*for_restore=*/false);
}

absl::StatusOr<std::unique_ptr<Vm>> CreateVmForRestore(const VmSpec& spec) {
  RETURN_IF_ERROR(ValidateVmName(spec.name));
  if (spec.backend == Backend::kSynthetic) return CreateSyntheticVm(spec, /*for_restore=*/true);
  return CreateMicroVm(spec, /*for_restore=*/true);
}

absl::StatusOr<std::unique_ptr<Vm>> CreateVmForTakeOver(const VmSpec& spec, std::unique_ptr<GuestMemory> memory,
                                                        std::vector<UniqueFd> disk_fds) {
  RETURN_IF_ERROR(ValidateVmName(spec.name));
  if (spec.backend == Backend::kSynthetic) {
    if (!disk_fds.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "take-over: %d disk descriptors handed over, but a synthetic VM runs no disk device", disk_fds.size()));
    }
    return CreateSyntheticVm(spec, /*for_restore=*/true, std::move(memory));
  }
  RETURN_IF_ERROR(CheckHandedOverDisks(spec, disk_fds));
  return CreateMicroVmOverMemory(spec, std::move(memory), std::move(disk_fds));
}

}  // namespace ferry
