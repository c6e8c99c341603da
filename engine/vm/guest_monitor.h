#pragma once
// What a VMM learns from its guest's status port and console: heartbeats stamped with the host
// clock on arrival, corruption reports, boot and shutdown. Shared by both backends.

#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/state.pb.h"

namespace ferry {

class GuestMonitor {
 public:
  void OnHeartbeat(uint64_t guest_counter);
  void OnCorruption(uint64_t page);
  // A full console line that starts with "CORRUPTION" is kept as the human-readable report.
  void OnConsoleLine(const std::string& line);
  void OnBooted(uint32_t vcpu);
  void OnShutdown(int32_t exit_code);

  GuestHealth health() const;
  // Counters travel with the VM, so a destination continues the counts (and measures the
  // heartbeat gap across the switch-over against the source's last stamp: both agents read the
  // same CLOCK_MONOTONIC when they share a host).
  v1::StatusDeviceState Save() const;
  void Restore(const v1::StatusDeviceState& s);

 private:
  static constexpr size_t kMaxReports = 16;
  mutable std::mutex mu_;
  GuestHealth h_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
