#pragma once
// The source agent's precheck of a migration: its own facts, the destination's (asked over the
// Peer service, which probes disk access there), the pure RunPrechecks over both, and the
// convergence forecast from a short sample of the guest's dirty rate.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/agent/link_history.h"
#include "engine/agent/vm_registry.h"
#include "engine/precheck/finding.h"
#include "engine/vm/vm.h"
#include "engine/vm/vm_spec.h"
#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

// Distinct pages the guest wrote during a short window.
struct DirtyRateSample {
  double mib_s = 0;
  uint64_t dirtied_bytes = 0;
  double window_ms = 0;
};

inline constexpr std::chrono::milliseconds kDirtySampleWindow{200};

// Samples a running VM's dirty rate with its dirty-tracking API; nullopt when the VM is not running
// or tracking is unavailable. Tracking is off again on return, on every path. The caller makes
// sure no migration of `vm` runs meanwhile (it would share the dirty log).
std::optional<DirtyRateSample> SampleDirtyRate(Vm& vm, std::chrono::milliseconds window = kDirtySampleWindow);
// The same for a VM that is not migrating: holds it as migrating out for the sample, so no
// migration can start on it meanwhile; nullopt (no sample) if it is migrating or not running.
std::optional<DirtyRateSample> SampleIdleVmDirtyRate(VmRegistry& vms, const std::string& name);

// What the convergence forecast needs besides the host facts. Without sample_dirty_rate, none.
struct ForecastContext {
  std::function<std::optional<DirtyRateSample>()> sample_dirty_rate;
  const LinkHistory* links = nullptr;
  std::string destination;       // the key of `links`; named in the message
  v1::MigrationOptions options;  // the downtime ceiling, auto-converge, the bandwidth cap
};

// A storage migration's precheck inputs: the target datastore's name on the destination; its free
// space comes from the destination's answer (Datastore.free_bytes).
struct StorageMoveRequest {
  std::string to_datastore;  // empty: not a storage migration
};

absl::StatusOr<std::vector<Finding>> PrecheckMigration(const AgentConfig& config, const VmSpec& vm,
                                                       const std::shared_ptr<grpc::Channel>& destination,
                                                       const ForecastContext& forecast = {},
                                                       const StorageMoveRequest& storage = {});

}  // namespace ferry
