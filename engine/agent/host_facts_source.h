#pragma once
// An agent's own host facts: its configured host file (YAML or libvirt:URI), or what it can see
// of this machine.

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/host/host_facts.h"

namespace ferry {

absl::StatusOr<HostFacts> AgentHostFacts(const AgentConfig& config);

}  // namespace ferry
