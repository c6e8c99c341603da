#pragma once
// VmSpec <-> ferry.v1.VmSpec.

#include "absl/status/statusor.h"
#include "engine/vm/vm_spec.h"
#include "proto/ferry/v1/vm.pb.h"

namespace ferry {

v1::VmSpec VmSpecToProto(const VmSpec& spec);

// When the guest's disk workload is checked against the VM's disks: at once, or later by whoever
// makes the disks (a VM created on a datastore with --disk SIZE has none until its directory exists).
enum class DiskWorkloadCheck { kNow, kOnceTheDisksExist };

// Validates what a peer or client sent: name, sizes, vCPU count, enums.
absl::StatusOr<VmSpec> VmSpecFromProto(const v1::VmSpec& p, DiskWorkloadCheck disk_check = DiskWorkloadCheck::kNow);

// The guest's disk workload fits the VM: a kvm VM, a file disk, the working set within it.
absl::Status CheckDiskWorkload(const VmSpec& spec);

}  // namespace ferry
