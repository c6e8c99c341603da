#pragma once
// An agent's security wiring: server credentials for its own port and how it dials peers.

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/agent/agent_context.h"

namespace ferry {

struct AgentSecurity {
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  decltype(AgentContext::dial_peer) dial_peer;
};

// TLS unless config.insecure; errors name the missing or bad file.
absl::StatusOr<AgentSecurity> MakeAgentSecurity(const AgentConfig& config);

}  // namespace ferry
