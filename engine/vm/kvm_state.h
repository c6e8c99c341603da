#pragma once
// KVM vCPU and VM state <-> v1 messages. KVM structs travel as raw bytes; every blob's length is
// checked against its struct before use, and a wrong one is an error naming the field.

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kvm/kvm_vcpu.h"
#include "engine/kvm/kvm_vm.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

// Saves a paused vCPU: registers, FPU/XSAVE, XCRs, `msr_indices`, LAPIC, events, MP state, debug
// registers, TSC frequency and the CPUID it was given.
absl::StatusOr<v1::VcpuState> SaveVcpuState(KvmVcpu& vcpu, const std::vector<uint32_t>& msr_indices,
                                            const std::vector<kvm_cpuid_entry2>& cpuid);
// Order follows Firecracker: CPUID first (it decides which MSRs exist), then MP state, registers,
// FPU, XCRs, debug registers, LAPIC, TSC frequency, MSRs (TSC-deadline needs the LAPIC), events.
absl::Status RestoreVcpuState(KvmVcpu& vcpu, const v1::VcpuState& s);

absl::StatusOr<v1::KvmVmState> SaveKvmVmState(KvmVm& vm);
absl::Status RestoreKvmVmState(KvmVm& vm, const v1::KvmVmState& s);

absl::StatusOr<std::vector<kvm_cpuid_entry2>> CpuidFromBlob(const std::string& blob, uint32_t vcpu);

// Checks every blob of `s` (lengths only), so a bad state fails before any vCPU is touched.
absl::Status ValidateVcpuState(const v1::VcpuState& s);
absl::Status ValidateKvmVmState(const v1::KvmVmState& s);

}  // namespace ferry
