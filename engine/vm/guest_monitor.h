#pragma once
// What a VMM learns from its guest's status port and console: heartbeats stamped with the host
// clock on arrival, corruption reports, boot and shutdown. Shared by both backends.

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "engine/guest/guest_abi.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

class GuestMonitor {
 public:
  void OnHeartbeat(uint64_t guest_counter);
  void OnCorruption(uint64_t page);
  // A full console line that starts with "CORRUPTION" is kept as the human-readable report; the
  // disk workload's "disk written=.." line and "CORRUPTION block=" lines fill the disk_* fields.
  void OnConsoleLine(const std::string& line);
  void OnBooted(uint32_t vcpu);
  void OnShutdown(int32_t exit_code);
  // FERRY_STATUS_SWEEP: a worker finished re-checking its slice of the working set.
  void OnSweep(uint32_t value);

  GuestHealth health() const;
  // Counters travel with the VM, so a destination continues the counts. The heartbeat gap across
  // the switch-over is measured against the source's last stamp only when both read the same
  // CLOCK_MONOTONIC (same MonotonicClockId); otherwise health() says it was not measured.
  v1::StatusDeviceState Save() const;
  void Restore(const v1::StatusDeviceState& s);

 private:
  static constexpr size_t kMaxReports = 16;
  void UpdateFullSweeps() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  GuestHealth h_ ABSL_GUARDED_BY(mu_);
  // Sweeps each worker finished since this VMM got the guest; after a restore the first one of
  // each worker began on the previous host, so it does not count as a full sweep here.
  std::array<uint64_t, FERRY_MAX_VCPUS> sweeps_here_ ABSL_GUARDED_BY(mu_){};
  bool restored_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t disk_corruption_lines_ ABSL_GUARDED_BY(mu_) = 0;  // "CORRUPTION block=" lines seen by this VMM
};

}  // namespace ferry
