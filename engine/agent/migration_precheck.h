#pragma once
// The source agent's precheck of a migration: its own facts, the destination's (asked over the
// Peer service, which probes disk access there), and the pure RunPrechecks over both.

#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/precheck/finding.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

absl::StatusOr<std::vector<Finding>> PrecheckMigration(const AgentConfig& config, const VmSpec& vm,
                                                       const std::shared_ptr<grpc::Channel>& destination);

}  // namespace ferry
