#pragma once
// VmSpec <-> ferry.v1.VmSpec.

#include "absl/status/statusor.h"
#include "engine/vm/vm_spec.h"
#include "proto/ferry/v1/vm.pb.h"

namespace ferry {

v1::VmSpec VmSpecToProto(const VmSpec& spec);
// Validates what a peer or client sent: name, sizes, vCPU count, enums.
absl::StatusOr<VmSpec> VmSpecFromProto(const v1::VmSpec& p);

}  // namespace ferry
