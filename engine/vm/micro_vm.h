#pragma once
// The KVM backend.

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "engine/vm/vm.h"

namespace ferry {

// Fails with a clear error (naming /dev/kvm or the missing capability) where KVM is unusable.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVm(const VmSpec& spec, bool for_restore);

// A microVM that runs `code` copied to guest-physical `load_gpa` instead of a multiboot image
// (kvmtool's tiny test guests). Every vCPU starts at `load_gpa` in 32-bit protected mode with flat
// segments, paging off, EAX=0x2BADB002, EBX=0.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVmWithCode(const VmSpec& spec, uint64_t load_gpa,
                                                          std::span<const uint8_t> code);

}  // namespace ferry
