#pragma once
// The VM interface the migration engine drives. Two backends implement it: MicroVm (KVM) and
// SyntheticVm (host threads running the same workload over the same guest-memory object).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"
#include "engine/vm/vm_spec.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

enum class VmRunState { kCreated = 1, kRunning = 2, kPaused = 3, kStopped = 4 };
inline const char* VmRunStateName(VmRunState s) {
  switch (s) {
    case VmRunState::kCreated: return "created";
    case VmRunState::kRunning: return "running";
    case VmRunState::kPaused: return "paused";
    case VmRunState::kStopped: return "stopped";
  }
  return "unknown";
}

// What the VMM observed of its guest. Heartbeats are stamped with the host's monotonic clock on
// arrival, so the largest gap is the stall an outside observer saw (the guest's own clocks stop
// while it is paused).
struct GuestHealth {
  uint64_t heartbeats = 0;            // heartbeats received by this VMM
  uint64_t last_heartbeat_value = 0;  // the guest's own counter in the last one
  int64_t first_heartbeat_ns = 0;     // host CLOCK_MONOTONIC, 0 = none yet
  int64_t last_heartbeat_ns = 0;
  int64_t max_heartbeat_gap_ns = 0;
  uint64_t corruptions = 0;
  std::vector<std::string> corruption_reports;  // the first few, as the guest wrote them
  uint32_t vcpus_booted = 0;
  bool shut_down = false;
  int32_t exit_code = 0;
  // Restored from a host with another CLOCK_MONOTONIC (MonotonicClockId): the gap across the
  // switch-over cannot be measured here and is not in max_heartbeat_gap_ns.
  bool arrived_from_other_clock = false;
  // Verification since this VMM got the guest (boot or arrival): complete re-checks of the whole
  // working set that began here (a sweep under way at arrival does not count), and when the first
  // one ended, measured from arrival_ns (the first heartbeat here).
  uint64_t full_sweeps = 0;
  int64_t arrival_ns = 0;
  int64_t first_full_sweep_ns = 0;  // 0 = not yet
  // The guest's disk workload, from its once-a-second "disk written=.. verified=.." console line:
  // totals since the guest booted (they travel with it), 0 without a disk workload.
  uint64_t disk_blocks_written = 0;
  uint64_t disk_blocks_verified = 0;  // read back and checked
  uint64_t disk_sweeps = 0;           // passes of the verifying read over the disk working set
  uint64_t disk_flushes = 0;
  uint64_t disk_io_errors = 0;        // requests the device failed
  // Blocks found wrong: the guest's own total, or the "CORRUPTION block=" lines seen here if more.
  // Their lines are in corruption_reports too.
  uint64_t disk_corruptions = 0;
};

class Vm {
 public:
  virtual ~Vm() = default;

  virtual const VmSpec& spec() const = 0;
  virtual GuestMemory& memory() = 0;
  virtual VmRunState run_state() const = 0;

  // Boots a VM built for boot, or runs one whose state was restored.
  virtual absl::Status Start() = 0;
  // Returns once every vCPU is out of guest mode and parked.
  virtual absl::Status Pause() = 0;
  virtual absl::Status Resume() = 0;
  // vCPUs exit; idempotent.
  virtual absl::Status Stop() = 0;

  // Dirty tracking: KVM's log (or the synthetic tracker) OR'ed with the VMM's own writes.
  virtual absl::Status EnableDirtyTracking() = 0;
  virtual absl::Status DisableDirtyTracking() = 0;
  // ORs into `out` every page written since tracking was enabled or since the last call, and
  // clears the log. `out` has memory().num_pages() pages.
  virtual absl::Status CollectDirtyPages(DirtyBitmap& out) = 0;

  // vCPU, in-kernel and device state. Save requires kPaused; restore requires a VM built for
  // restore that has not started.
  virtual absl::StatusOr<v1::VmState> SaveState() = 0;
  virtual absl::Status RestoreState(const v1::VmState& state) = 0;

  // Auto-converge: the vCPUs (or the synthetic workload's threads) sleep `percent` % of the time
  // in slices of a few ms (vMotion's stun-during-page-send); 0 runs the guest at full speed.
  // The migration engine sets it only while migrating and always resets it to 0.
  virtual absl::Status SetThrottle(uint32_t percent) {
    (void)percent;
    return absl::UnimplementedError("this VM backend cannot be throttled");
  }
  virtual uint32_t throttle_percent() const { return 0; }
  // A migration's commit is about to be sent: from here the VM may run on the destination. A VM
  // in its own VMM process tells it, so a VMM whose agent dies keeps such a guest paused instead
  // of resuming it (docs/vmm_process.md "An agent that dies mid-migration"). In-process: nothing.
  virtual absl::Status MarkHandoverCommitted() { return absl::OkStatus(); }
  // CLOCK_MONOTONIC when a vCPU first re-entered guest mode after the last Start/Resume; 0 when
  // not yet or not known. Lets a destination report its "first guest instruction" figure.
  virtual int64_t first_guest_entry_ns() const { return 0; }

  virtual GuestHealth health() const = 0;
  // Stamps of heartbeats as they arrive are also useful to merge across hosts: the last
  // heartbeat's host time, so a destination can compute the gap across a migration.
};

// Firecracker's two constructors: a VM to boot, and an empty VM (memory allocated, image not
// loaded, vCPUs created but not run) to receive memory and state.
absl::StatusOr<std::unique_ptr<Vm>> CreateVmForBoot(const VmSpec& spec);
absl::StatusOr<std::unique_ptr<Vm>> CreateVmForRestore(const VmSpec& spec);
// A VM built for restore over `memory`, guest RAM that already holds the guest (another VMM
// process's memfd, mapped here): the same-host VMM upgrade, where nothing is copied. `disk_fds`
// are that VMM's file disks, open (one per file disk, in order; none for the synthetic backend,
// which opens no disk): checked against the spec's paths (CheckHandedOverDisks), never reopened.
absl::StatusOr<std::unique_ptr<Vm>> CreateVmForTakeOver(const VmSpec& spec, std::unique_ptr<GuestMemory> memory,
                                                        std::vector<UniqueFd> disk_fds = {});

}  // namespace ferry
