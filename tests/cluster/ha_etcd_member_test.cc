// Protection over a 3-member etcd survives the loss of one member (must-show 2's "protection
// continues"): three real agents protect a VM; the etcd member every client talks to first is
// SIGKILLed; the agents move to the other members (EtcdClient retries the next endpoint), keep
// their leases and master; then host-a crashes and the master restarts its VM on a survivor,
// exactly once, with etcd on two members.
#include <gtest/gtest.h>

#include "tests/cluster/etcd_fixture.h"
#include "tests/cluster/ha_agent_cluster.h"

namespace ferry::cluster {
namespace {

ClusterConfig MemberLossConfig() {
  ClusterConfig c;
  c.heartbeat_interval_ms = 1000;
  c.heartbeat_misses = 3;  // 3 s lease: a loaded test machine may delay a renewal by a second
  return c;
}

class HaMasterEtcdMemberLoss : public testing::ThreeAgentsSharingADatastore {};

TEST_F(HaMasterEtcdMemberLoss, OneEtcdMemberKilledProtectionContinues) {
  FERRY_START_ETCD_OR_SKIP(etcd, 3);
  StartAgents(*etcd, MemberLossConfig());
  if (HasFatalFailure()) return;
  CreateProtectedVm(0, e2e::GuestSpec("web1", v1::BACKEND_KIND_SYNTHETIC, 64, 8, 20), 4u << 20, "high");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(e2e::WaitForHeartbeats(*stubs_[0], "web1", 3, 20));
  const std::string master_before = last_.master;

  etcd->Kill(0);  // every client's first endpoint
  ASSERT_FALSE(etcd->Alive(0));
  // Two lease TTLs later the cluster, read through the surviving members, still has a master and
  // three live hosts: their lease renewals went to the other members.
  absl::SleepFor(absl::Seconds(2 * MemberLossConfig().LeaseTtlSeconds()));
  ASSERT_TRUE(WaitFor(absl::Seconds(20),
                      [](const ClusterStatus& s) { return !s.master.empty() && testing::AliveHostCount(s) == 3; }))
      << ToJson(last_);
  std::printf("after etcd member 0 died: master %s (was %s), %d hosts alive\n", last_.master.c_str(),
              master_before.c_str(), testing::AliveHostCount(last_));
  const ProtectedVm* web1 = testing::FindProtectedVm(last_, "web1");
  ASSERT_NE(web1, nullptr);
  EXPECT_EQ(web1->state, ProtectedVmState::kRunning);
  EXPECT_EQ(web1->host, "host-a");

  // Protection continues on two members: host-a crashes, its VM runs again elsewhere, once.
  testing::CrashHost(*agents_, 0, {LockPath("web1")});
  if (HasFatalFailure()) return;
  const int index = WaitForRestartAwayFrom("web1", "host-a", absl::Seconds(45));
  ASSERT_GE(index, 1) << ToJson(last_);
  EXPECT_EQ(testing::AgentsRunning(stubs_, "web1"), std::vector<int>{index});
  auto holder = testing::LockHolderOf(LockPath("web1"));
  ASSERT_TRUE(holder.has_value());
  EXPECT_EQ(holder->agent, agents_->name(index));
  e2e::ExpectGuestHealthy(*stubs_[index], "web1", 1.0);
}

}  // namespace
}  // namespace ferry::cluster
