#include "engine/cluster/host_state.h"

#include "absl/strings/str_cat.h"

namespace ferry::cluster {

std::string HostStateName(HostState s) {
  switch (s) {
    case HostState::kJoining: return "joining";
    case HostState::kSlave: return "slave";
    case HostState::kMaster: return "master";
    case HostState::kLeft: return "left";
  }
  return "unknown";
}

std::string HostEventName(HostEvent e) {
  switch (e) {
    case HostEvent::kRegistered: return "registered";
    case HostEvent::kWonElection: return "won_election";
    case HostEvent::kMastershipLost: return "mastership_lost";
    case HostEvent::kLeaseLost: return "lease_lost";
    case HostEvent::kLeave: return "leave";
  }
  return "unknown";
}

absl::StatusOr<HostState> NextHostState(HostState from, HostEvent event) {
  switch (event) {
    case HostEvent::kRegistered:
      if (from == HostState::kJoining) return HostState::kSlave;
      break;
    case HostEvent::kWonElection:
      if (from == HostState::kSlave) return HostState::kMaster;
      break;
    case HostEvent::kMastershipLost:
      if (from == HostState::kMaster) return HostState::kSlave;
      break;
    case HostEvent::kLeaseLost:
      if (from == HostState::kSlave || from == HostState::kMaster) return HostState::kJoining;
      break;
    case HostEvent::kLeave:
      if (from != HostState::kLeft) return HostState::kLeft;
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("host state ", HostStateName(from), " cannot take event ", HostEventName(event)));
}

}  // namespace ferry::cluster
