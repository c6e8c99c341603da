#pragma once
// The KVM backend.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/vm/vm.h"

namespace ferry {

// How a microVM reads KVM's dirty log (see SetUpDirtyLog in micro_vm.cc).
enum class DirtyLogPath {
  kGetClears = 1,                  // KVM_GET_DIRTY_LOG clears and re-protects a whole slot (old kernels)
  kManualProtect = 2,              // GET copies; KVM_CLEAR_DIRTY_LOG re-protects chunk by chunk
  kManualProtectInitiallySet = 3,  // and enabling logging protects nothing up front
};

// Knobs of the KVM backend. Production code uses the defaults; tests force the paths only older
// kernels take.
struct MicroVmOptions {
  // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags the VM may enable, ANDed with what KVM offers: 0 forces
  // the legacy path, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE alone manual protection without
  // KVM_DIRTY_LOG_INITIALLY_SET.
  uint64_t dirty_log_protect_flags = ~0ull;
  // Pages re-protected per KVM_CLEAR_DIRTY_LOG call (KVM holds its MMU lock for one chunk at a
  // time); rounded up to a multiple of 64 pages.
  uint64_t dirty_clear_chunk_bytes = 64ull << 20;
};

// Fails with a clear error (naming /dev/kvm or the missing capability) where KVM is unusable.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVm(const VmSpec& spec, bool for_restore,
                                                  const MicroVmOptions& options = {});

// A microVM built for restore over guest RAM that already holds the guest (the memfd of the VMM
// being replaced in a same-host VMM upgrade, docs/vmm_process.md): nothing is copied or zeroed.
// `disk_fds`: the file disks open already (handed over, one per file disk in order, checked by
// CheckHandedOverDisks), used instead of opening their paths; empty: opened by path.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVmOverMemory(const VmSpec& spec, std::unique_ptr<GuestMemory> memory,
                                                            std::vector<UniqueFd> disk_fds = {},
                                                            const MicroVmOptions& options = {});

// A microVM that runs `code` copied to guest-physical `load_gpa` instead of a multiboot image
// (kvmtool's tiny test guests). Every vCPU starts at `load_gpa` in 32-bit protected mode with flat
// segments, paging off, EAX=0x2BADB002, EBX=0.
absl::StatusOr<std::unique_ptr<Vm>> CreateMicroVmWithCode(const VmSpec& spec, uint64_t load_gpa,
                                                          std::span<const uint8_t> code,
                                                          const MicroVmOptions& options = {});

// Storage migration: ORs into `out` every 4 KiB block (kDiskWriteBlockBytes) of file disk `disk`
// (VmSpec.disks of kind file, in order) that its virtio-blk device wrote since the VM was built or
// since the last call, and forgets them. `out` has one bit per block of the disk, rounded up.
// Writes complete in the bitmap before the guest sees them complete, so after Pause() nothing is
// missing.
inline constexpr uint64_t kDiskWriteBlockBytes = 4096;
absl::Status CollectDiskWrites(Vm& vm, uint32_t disk, DirtyBitmap& out);

// A same-host VMM upgrade: the descriptors of the microVM's file disks (VmSpec order), which the
// VMM hands to its successor. Empty for another backend (it opens no disk).
std::vector<int> DiskDescriptors(Vm& vm);

// A storage migration's synchronous mirror (docs/storage_migration.md): from StartDiskMirror on,
// the guest sees a write complete only once DiskMirrorStep released the cut that holds it (the
// caller copied that cut's blocks to the destination and it acknowledged them). DiskMirrorStep
// releases the cuts up to `release_through`, waits up to `wait` for a new held write, cuts, and
// ORs the cut's blocks (the write log, as CollectDiskWrites) into `out`; returns the cut.
// EndDiskMirror shows every held completion to the guest and stops holding them.
absl::Status StartDiskMirror(Vm& vm);
absl::StatusOr<uint64_t> DiskMirrorStep(Vm& vm, uint32_t disk, uint64_t release_through,
                                        std::chrono::milliseconds wait, DirtyBitmap& out);
absl::Status EndDiskMirror(Vm& vm);

// The dirty-log path a microVM took; InvalidArgument for another backend.
absl::StatusOr<DirtyLogPath> MicroVmDirtyLogPath(const Vm& vm);

}  // namespace ferry
