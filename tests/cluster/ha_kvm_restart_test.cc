// Must-show 1 with a real guest (docs/cluster.md "Tests"): a KVM guest with a disk on a shared
// datastore directory runs its disk workload on host-a; host-a's agent and VMM are SIGKILLed; the
// master restarts the VM on another agent from the VM's directory. The disk the crashed guest left
// is checked from the host (every block zeros or exactly some generation of itself), and the new
// guest, booted over that disk, sweeps it (a block it has not written since this boot must be
// zeros or a whole generation of itself), keeps writing it and finds no memory or disk corruption.
// Three agents, a 3-member etcd.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "engine/guest/guest_abi.h"
#include "tests/cluster/etcd_fixture.h"
#include "tests/cluster/ha_agent_cluster.h"

namespace ferry::cluster {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDiskBytes = 16ull << 20;
constexpr uint64_t kDiskWorkingSet = 1ull << 20;
constexpr uint64_t kBlock = 4096;

ClusterConfig KvmRestartConfig() {
  ClusterConfig c;
  c.heartbeat_interval_ms = 1000;
  c.heartbeat_misses = 3;
  return c;
}

// From the host: how many blocks of the disk file hold a whole generation of themselves; a block
// that is neither all zeros nor exactly one generation of itself fails the test.
uint64_t WrittenBlocksOrFail(const std::string& disk) {
  std::ifstream in(disk, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << disk;
  uint64_t written = 0;
  std::vector<uint64_t> w(kBlock / 8);
  for (uint64_t b = 0; b < kDiskBytes / kBlock && in; ++b) {
    in.read(reinterpret_cast<char*>(w.data()), kBlock);
    if (!in) break;
    if (w[0] == 0) {
      for (uint64_t i = 1; i < w.size(); ++i) {
        if (w[i] != 0) {
          ADD_FAILURE() << "block " << b << " is torn: word 0 is zero, word " << i << " is not";
          return written;
        }
      }
      continue;
    }
    EXPECT_LT(b, kDiskWorkingSet / kBlock) << "the guest wrote outside its disk working set";
    const uint32_t gen = static_cast<uint32_t>(w[0] >> 32);
    for (uint32_t i = 0; i < w.size(); ++i) {
      if (w[i] != ferry_block_word(b, gen, i)) {
        ADD_FAILURE() << "block " << b << " generation " << gen << " word " << i << " is wrong";
        return written;
      }
    }
    ++written;
  }
  return written;
}

class HaHostFailureKvm : public testing::ThreeAgentsSharingADatastore {};

TEST_F(HaHostFailureKvm, RestartedGuestVerifiesTheDiskItsCrashedHostLeftAndKeepsWriting) {
  if (!e2e::KvmUsable()) GTEST_SKIP() << "needs /dev/kvm: the guest's own disk workload is the oracle";
  FERRY_START_ETCD_OR_SKIP(etcd, 3);
  StartAgents(*etcd, KvmRestartConfig());
  if (HasFatalFailure()) return;
  v1::VmSpec spec = e2e::GuestSpec("db1", v1::BACKEND_KIND_KVM, 64, 4, 8);
  spec.mutable_workload()->set_disk_working_set_bytes(kDiskWorkingSet);
  spec.mutable_workload()->set_disk_rate_mibps(4);
  CreateProtectedVm(0, spec, kDiskBytes, "high");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(e2e::WaitForHeartbeats(*stubs_[0], "db1", 3, 120)) << "the guest never started beating";
  ASSERT_TRUE(e2e::WaitForDiskSweeps(*stubs_[0], "db1", 1)) << "the guest never swept its disk on host-a";
  v1::VmInfo before;
  ASSERT_TRUE(e2e::GetVm(*stubs_[0], "db1", &before).ok());
  ASSERT_GT(before.health().disk_blocks_written(), 0u);
  EXPECT_EQ(before.health().disk_corruptions(), 0u);

  const absl::Time crashed = absl::Now();
  testing::CrashHost(*agents_, 0, {LockPath("db1")});
  if (HasFatalFailure()) return;
  // What the crash left on the datastore: only whole generations (the guest's writes went through
  // its VMM's io_uring into this machine's page cache, which outlives the VMM).
  const std::string disk = (dir_ / "shared" / "db1" / "disk0.raw").string();
  ASSERT_TRUE(fs::exists(disk)) << disk;
  EXPECT_GT(WrittenBlocksOrFail(disk), 0u) << "the crashed guest left no block on its disk";

  const int index = WaitForRestartAwayFrom("db1", "host-a", absl::Seconds(60));
  ASSERT_GE(index, 1) << ToJson(last_);
  const double restart_s = absl::ToDoubleSeconds(absl::Now() - crashed);
  const std::string new_host = agents_->name(index);
  // Exactly once: one agent runs it (host-a's is dead and answers nothing), and its VMM holds the lock.
  ASSERT_EQ(testing::AgentsRunning(stubs_, "db1"), std::vector<int>{index});
  auto holder = testing::LockHolderOf(LockPath("db1"));
  ASSERT_TRUE(holder.has_value());
  EXPECT_EQ(holder->agent, new_host);
  ASSERT_TRUE(e2e::WaitForHeartbeats(*stubs_[index], "db1", 3, 120)) << "the restarted guest never beat";
  std::printf("db1 (KVM, disk workload) running again on %s %.1f s after host-a crashed (lease TTL %lld s)\n",
              new_host.c_str(), restart_s, static_cast<long long>(KvmRestartConfig().LeaseTtlSeconds()));

  // The new guest sweeps the whole disk working set twice (the old generations included), keeps
  // writing it and finds no corruption in memory or on disk.
  e2e::ExpectGuestHealthy(*stubs_[index], "db1", 1.0);
  e2e::ExpectDiskIntact(*stubs_[index], "db1");
  v1::VmInfo after;
  ASSERT_TRUE(e2e::GetVm(*stubs_[index], "db1", &after).ok());
  EXPECT_GT(after.health().disk_blocks_written(), 0u) << "the restarted guest does not write its disk";
  EXPECT_EQ(testing::AgentsRunning(stubs_, "db1"), std::vector<int>{index}) << "still exactly once";
}

}  // namespace
}  // namespace ferry::cluster
