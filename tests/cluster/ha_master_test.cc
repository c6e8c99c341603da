// Membership and master election over a real etcd, with members in this process.
#include <gtest/gtest.h>

#include "engine/cluster/cluster_member.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_store.h"
#include "tests/cluster/etcd_fixture.h"

namespace ferry::cluster {
namespace {

ClusterConfig FastConfig() {
  ClusterConfig c;
  c.heartbeat_interval_ms = 500;
  c.heartbeat_misses = 2;  // 1 s lease
  return c;
}

TEST(HaMaster, JoiningAClusterThatDoesNotExistSaysHowToCreateIt) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  auto m = ClusterMember::Join(*client, {"nope", "host-a", "", nullptr});
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsNotFound(m.status()));
  EXPECT_NE(m.status().message().find("migrate cluster create nope"), std::string::npos) << m.status();
  EXPECT_TRUE(absl::IsAlreadyExists(
      [&] {
        (void)CreateCluster(*client, "c1", FastConfig());
        return CreateCluster(*client, "c1", FastConfig());
      }()));
}

TEST(HaMaster, ExactlyOneOfThreeHostsIsElectedAndTheOthersAreSlaves) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ASSERT_TRUE(CreateCluster(*client, "c1", FastConfig()).ok());
  std::vector<std::unique_ptr<ClusterMember>> members;
  for (const char* h : {"host-a", "host-b", "host-c"}) {
    auto m = ClusterMember::Join(*client, {"c1", h, "", nullptr});
    ASSERT_TRUE(m.ok()) << m.status();
    members.push_back(std::move(*m));
  }
  // Settled: one master, two slaves (each member moves on its own thread).
  int masters = 0, slaves = 0;
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end;) {
    masters = slaves = 0;
    for (auto& m : members) {
      masters += m->state() == HostState::kMaster;
      slaves += m->state() == HostState::kSlave;
    }
    if (masters == 1 && slaves == 2) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(masters, 1);
  EXPECT_EQ(slaves, 2);
  auto status = ReadClusterStatus(*client, "c1");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_FALSE(status->master.empty());
  ASSERT_EQ(status->hosts.size(), 3u);
  for (const auto& h : status->hosts) EXPECT_TRUE(h.network_heartbeat_alive) << h.record.host;
}

TEST(HaMaster, WhenTheMasterLeavesASlaveTakesOverThroughTheWatch) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ClusterConfig slow = FastConfig();
  slow.heartbeat_interval_ms = 5000;  // takeover faster than a heartbeat tick can only come from the watch
  ASSERT_TRUE(CreateCluster(*client, "c1", slow).ok());
  auto a = ClusterMember::Join(*client, {"c1", "host-a", "", nullptr});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->WaitForState(HostState::kMaster, absl::Seconds(10)));
  auto b = ClusterMember::Join(*client, {"c1", "host-b", "", nullptr});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->WaitForState(HostState::kSlave, absl::Seconds(10)));
  (*a)->Leave();
  EXPECT_EQ((*a)->state(), HostState::kLeft);
  EXPECT_TRUE((*b)->WaitForState(HostState::kMaster, absl::Seconds(3)));
  auto status = ReadClusterStatus(*client, "c1");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->master, "host-b");
  ASSERT_EQ(status->hosts.size(), 1u);  // host-a removed its record on leaving
}

ProtectedVm Protected(const std::string& name, RestartPriority priority) {
  ProtectedVm vm;
  vm.vm = name;
  vm.priority = priority;
  return vm;
}

TEST(HaMaster, ProtectedVmsAreListed) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  EXPECT_TRUE(absl::IsNotFound(ProtectVm(*client, "c1", Protected("vm1", RestartPriority::kHigh))));
  ASSERT_TRUE(CreateCluster(*client, "c1", FastConfig()).ok());
  ASSERT_TRUE(ProtectVm(*client, "c1", Protected("vm1", RestartPriority::kHigh)).ok());
  ASSERT_TRUE(ProtectVm(*client, "c1", Protected("vm2", RestartPriority::kLow)).ok());
  ASSERT_TRUE(UnprotectVm(*client, "c1", "vm2").ok());
  auto status = ReadClusterStatus(*client, "c1");
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->vms.size(), 1u);
  EXPECT_EQ(status->vms[0].vm, "vm1");
  EXPECT_EQ(status->vms[0].priority, RestartPriority::kHigh);
}

TEST(HaMaster, RequestRestartMarksTheVmAndConcurrentUpdatesAreNotLost) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ASSERT_TRUE(CreateCluster(*client, "c1", FastConfig()).ok());
  EXPECT_TRUE(absl::IsNotFound(RequestRestart(*client, "c1", "vm1", "host-a", "apd")));
  ProtectedVm vm = Protected("vm1", RestartPriority::kHigh);
  vm.host = "host-a";
  vm.memory_bytes = 64u << 20;
  ASSERT_TRUE(ProtectVm(*client, "c1", vm).ok());
  ASSERT_TRUE(RequestRestart(*client, "c1", "vm1", "host-a", "pdl on shared").ok());
  // A change made between another writer's read and write is not overwritten: the write is retried.
  bool interfered = false;
  auto updated = UpdateProtectedVm(*client, "c1", "vm1", [&](ProtectedVm& r) {
    if (!interfered) {
      interfered = true;
      EXPECT_TRUE(UpdateProtectedVm(*client, "c1", "vm1", [](ProtectedVm& x) {
                    x.attempts = 7;
                    return true;
                  }).ok());
    }
    r.detail = "second writer";
    return true;
  });
  ASSERT_TRUE(updated.ok()) << updated.status();
  auto status = ReadClusterStatus(*client, "c1");
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->vms.size(), 1u);
  EXPECT_EQ(status->vms[0].state, ProtectedVmState::kRestartRequested);
  EXPECT_EQ(status->vms[0].exclude_host, "host-a");
  EXPECT_EQ(status->vms[0].attempts, 7);
  EXPECT_EQ(status->vms[0].detail, "second writer");
  EXPECT_EQ(status->vms[0].memory_bytes, 64u << 20);
  ASSERT_TRUE(client->Put(ClusterKeys("c1").vm("vm2"), "{\"vm\":\"vm2\",\"state\":\"flying\"}").ok());
  EXPECT_EQ(ReadClusterStatus(*client, "c1").status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ferry::cluster
