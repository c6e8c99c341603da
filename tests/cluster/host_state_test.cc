#include "engine/cluster/host_state.h"

#include <gtest/gtest.h>

namespace ferry::cluster {
namespace {

void ExpectTransition(HostState from, HostEvent event, HostState to) {
  auto next = NextHostState(from, event);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(*next, to) << HostStateName(from) << " + " << HostEventName(event);
}

TEST(HaHostState, JoiningRegisteredBecomesSlave) {
  ExpectTransition(HostState::kJoining, HostEvent::kRegistered, HostState::kSlave);
}
TEST(HaHostState, SlaveWinningElectionBecomesMaster) {
  ExpectTransition(HostState::kSlave, HostEvent::kWonElection, HostState::kMaster);
}
TEST(HaHostState, MasterLosingMastershipBecomesSlave) {
  ExpectTransition(HostState::kMaster, HostEvent::kMastershipLost, HostState::kSlave);
}
TEST(HaHostState, SlaveLosingLeaseJoinsAgain) {
  ExpectTransition(HostState::kSlave, HostEvent::kLeaseLost, HostState::kJoining);
}
TEST(HaHostState, MasterLosingLeaseJoinsAgain) {
  ExpectTransition(HostState::kMaster, HostEvent::kLeaseLost, HostState::kJoining);
}
TEST(HaHostState, JoiningLeaves) { ExpectTransition(HostState::kJoining, HostEvent::kLeave, HostState::kLeft); }
TEST(HaHostState, SlaveLeaves) { ExpectTransition(HostState::kSlave, HostEvent::kLeave, HostState::kLeft); }
TEST(HaHostState, MasterLeaves) { ExpectTransition(HostState::kMaster, HostEvent::kLeave, HostState::kLeft); }

TEST(HaHostState, EveryOtherPairIsRefusedNamingStateAndEvent) {
  const HostState states[] = {HostState::kJoining, HostState::kSlave, HostState::kMaster, HostState::kLeft};
  const HostEvent events[] = {HostEvent::kRegistered, HostEvent::kWonElection, HostEvent::kMastershipLost,
                              HostEvent::kLeaseLost, HostEvent::kLeave};
  int refused = 0;
  for (HostState s : states) {
    for (HostEvent e : events) {
      auto next = NextHostState(s, e);
      if (next.ok()) continue;
      ++refused;
      EXPECT_TRUE(absl::IsFailedPrecondition(next.status()));
      EXPECT_NE(next.status().message().find(HostStateName(s)), std::string::npos);
      EXPECT_NE(next.status().message().find(HostEventName(e)), std::string::npos);
    }
  }
  EXPECT_EQ(refused, 4 * 5 - 8);  // the eight transitions above are the only ones
}

}  // namespace
}  // namespace ferry::cluster
