#pragma once
// One host's place in its cluster, as an explicit state machine:
//
//   joining --registered--> slave --won_election--> master
//   slave/master --lease_lost--> joining      (its heartbeat lapsed: it must join again)
//   master --mastership_lost--> slave         (the master key is gone or names another host)
//   joining/slave/master --leave--> left      (left is final)
//
// Any other (state, event) pair is refused with an error naming both.

#include <string>

#include "absl/status/statusor.h"

namespace ferry::cluster {

enum class HostState { kJoining = 1, kSlave, kMaster, kLeft };
enum class HostEvent { kRegistered = 1, kWonElection, kMastershipLost, kLeaseLost, kLeave };

std::string HostStateName(HostState s);
std::string HostEventName(HostEvent e);

absl::StatusOr<HostState> NextHostState(HostState from, HostEvent event);

}  // namespace ferry::cluster
