// VM component protection over a real etcd and ferry-faultfs: host-a runs VMs (synthetic guests
// with real VM directories holding real VM locks, lock_holding_vms.h) on datastore ds1, which it sees through
// its own ferry-faultfs mount; host-b sees the same backing directory through a second mount that
// stays healthy. Faults are switched on host-a's mount; each response setting is checked by the
// events, the VMs' locks and the restart hand-off (docs/cluster.md "VMCP").
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_member.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/vmcp_monitor.h"
#include "tests/cluster/etcd_fixture.h"
#include "tests/cluster/lock_holding_vms.h"
#include "tests/faultfs/faultfs_fixture.h"

namespace ferry::cluster {
namespace {

using faultfs::FaultFsMount;

ClusterMemberOptions MemberOptions(const std::string& host) {
  ClusterMemberOptions o;
  o.cluster = "c1";
  o.host = host;
  return o;
}

class HaVmcp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
    etcd_ = testing::StartEtcdOrSkip(1);
    if (!etcd_) {
      if (!HasFailure()) GTEST_SKIP() << "etcd is not installed (Debian: etcd-server)";
      return;
    }
    client_ = testing::ClientFor(*etcd_, "host-a");
    ASSERT_TRUE(client_);
    ClusterConfig config;
    config.heartbeat_interval_ms = 500;
    config.heartbeat_misses = 2;
    ASSERT_TRUE(CreateCluster(*client_, "c1", config).ok());
    auto a = FaultFsMount::Start();
    ASSERT_TRUE(a.ok()) << a.status();
    fs_a_ = std::move(*a);
    FaultFsMount::Options b;
    b.backing_dir = fs_a_->backing_dir();
    auto fs_b = FaultFsMount::Start(b);
    ASSERT_TRUE(fs_b.ok()) << fs_b.status();
    fs_b_ = std::move(*fs_b);
    char tmpl[] = "/tmp/ferry-ha-vmcp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    vm_dir_ = tmpl;
    vms_a_ = std::make_unique<testing::LockHoldingVms>(
        "host-a", std::map<std::string, std::string>{{"ds1", fs_a_->mount_dir()}});
    vms_a_->Run("vm1", "ds1", vm_dir_);
    auto member = ClusterMember::Join(*client_, MemberOptions("host-a"));
    ASSERT_TRUE(member.ok()) << member.status();
    member_a_ = std::move(*member);
  }
  void TearDown() override {
    monitor_a_.reset();
    monitor_b_.reset();
    member_b_.reset();
    member_a_.reset();
    if (fs_a_) {
      EXPECT_TRUE(fs_a_->Stop().ok());  // releases a probe left stuck in an APD
    }
    if (fs_b_) {
      EXPECT_TRUE(fs_b_->Stop().ok());
    }
    if (!vm_dir_.empty()) std::system(("rm -rf " + vm_dir_).c_str());
  }

  void StartMonitorA(PdlResponse pdl, ApdResponse apd, absl::Duration apd_delay) {
    VmcpOptions o;
    o.cluster = "c1";
    o.host = "host-a";
    o.pdl = pdl;
    o.apd = apd;
    o.apd_delay = apd_delay;
    o.probe_deadline = absl::Milliseconds(300);
    auto m = VmcpMonitor::Create(o, *client_, *vms_a_, [this](const std::string& vm, const std::string& reason) {
      handed_off_.push_back(vm);
      return absl::OkStatus();
    });
    ASSERT_TRUE(m.ok()) << m.status();
    monitor_a_ = std::move(*m);
  }
  // host-b joins and publishes that it sees ds1 healthy through its own mount.
  void HostBSeesDs1Healthy() {
    client_b_ = testing::ClientFor(*etcd_, "host-b");
    ASSERT_TRUE(client_b_);
    auto member = ClusterMember::Join(*client_b_, MemberOptions("host-b"));
    ASSERT_TRUE(member.ok());
    member_b_ = std::move(*member);
    ASSERT_TRUE(member_b_->WaitForState(HostState::kSlave, absl::Seconds(10)));
    vms_b_ = std::make_unique<testing::LockHoldingVms>(
        "host-b", std::map<std::string, std::string>{{"ds1", fs_b_->mount_dir()}});
    VmcpOptions o;
    o.cluster = "c1";
    o.host = "host-b";
    auto m = VmcpMonitor::Create(o, *client_b_, *vms_b_, [](const std::string&, const std::string&) {
      return absl::OkStatus();
    });
    ASSERT_TRUE(m.ok());
    monitor_b_ = std::move(*m);
    for (int i = 0; i < 20 && monitor_b_->state("ds1") != VmcpDatastoreState::kHealthy; ++i) monitor_b_->CheckOnce();
    monitor_b_->CheckOnce();
  }
  void Protect(const std::string& vm) {
    ProtectedVm p;
    p.vm = vm;
    ASSERT_TRUE(ProtectVm(*client_, "c1", p).ok());
  }
  // Probes until ds1 reaches `s` (a probe over FUSE may outlast its deadline on a loaded host).
  bool CheckUntil(VmcpDatastoreState s) {
    for (int i = 0; i < 40; ++i) {
      monitor_a_->CheckOnce();
      if (monitor_a_->state("ds1") == s) return true;
    }
    return false;
  }
  std::vector<std::string> Kinds() {
    std::vector<std::string> out;
    for (const auto& e : monitor_a_->events()) out.push_back(e.kind + (e.vm.empty() ? "" : ":" + e.vm));
    return out;
  }
  bool Has(const std::string& kind) {
    auto k = Kinds();
    return std::find(k.begin(), k.end(), kind) != k.end();
  }
  std::string LockOfVm1() { return testing::LockHolder(vm_dir_ + "/vm1/vm.lock"); }

  std::unique_ptr<cli::LocalEtcd> etcd_;
  std::unique_ptr<EtcdClient> client_, client_b_;
  std::unique_ptr<FaultFsMount> fs_a_, fs_b_;
  std::string vm_dir_;
  std::unique_ptr<testing::LockHoldingVms> vms_a_, vms_b_;
  std::unique_ptr<ClusterMember> member_a_, member_b_;
  std::unique_ptr<VmcpMonitor> monitor_a_, monitor_b_;
  std::vector<std::string> handed_off_;
};

TEST_F(HaVmcp, PdlWithIssueEventsReportsAndLeavesTheVmRunning) {
  StartMonitorA(PdlResponse::kIssueEvents, ApdResponse::kIssueEvents, absl::Seconds(60));
  Protect("vm1");
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kHealthy));
  ASSERT_TRUE(fs_a_->SetMode("pdl").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kPdl));
  EXPECT_TRUE(Has("pdl_detected")) << ::testing::PrintToString(Kinds());
  EXPECT_TRUE(Has("vm_affected:vm1"));
  EXPECT_EQ(LockOfVm1(), "host-a");
  EXPECT_TRUE(vms_a_->running("vm1")) << "its guest runs on";
  EXPECT_TRUE(handed_off_.empty());
}

TEST_F(HaVmcp, PdlWithPowerOffRestartPowersOffReleasesTheLockAndHandsTheVmOver) {
  StartMonitorA(PdlResponse::kPowerOffRestart, ApdResponse::kIssueEvents, absl::Seconds(60));
  Protect("vm1");
  ASSERT_TRUE(fs_a_->SetMode("pdl").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kPdl));
  EXPECT_TRUE(Has("vm_powered_off:vm1")) << ::testing::PrintToString(Kinds());
  EXPECT_TRUE(Has("restart_requested:vm1"));
  EXPECT_EQ(LockOfVm1(), "");
  EXPECT_FALSE(vms_a_->running("vm1"));
  EXPECT_EQ(handed_off_, std::vector<std::string>{"vm1"});
  // Back: an event, nothing else happens.
  ASSERT_TRUE(fs_a_->SetMode("healthy").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kHealthy));
  EXPECT_TRUE(Has("datastore_back"));
  EXPECT_EQ(handed_off_.size(), 1u);
}

TEST_F(HaVmcp, ApdConservativeRefusesUntilAnotherHostSeesTheDatastoreHealthy) {
  StartMonitorA(PdlResponse::kIssueEvents, ApdResponse::kRestartConservative, absl::ZeroDuration());
  Protect("vm1");
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kHealthy));
  ASSERT_TRUE(fs_a_->SetMode("apd").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kApdTimedOut));
  EXPECT_TRUE(Has("apd_detected")) << ::testing::PrintToString(Kinds());
  EXPECT_TRUE(Has("restart_refused:vm1"));
  EXPECT_EQ(LockOfVm1(), "host-a") << "refused: the VM keeps running";
  EXPECT_TRUE(vms_a_->running("vm1"));
  EXPECT_TRUE(handed_off_.empty());
  // host-b, alive, reports the same storage healthy through its own path: now the restart goes.
  HostBSeesDs1Healthy();
  if (HasFatalFailure()) return;
  auto seeing = HostsSeeingHealthy(*client_, "c1", "host-a", "ds1");
  ASSERT_TRUE(seeing.ok());
  EXPECT_EQ(*seeing, std::vector<std::string>{"host-b"});
  monitor_a_->CheckOnce();
  EXPECT_TRUE(Has("vm_powered_off:vm1")) << ::testing::PrintToString(Kinds());
  EXPECT_EQ(LockOfVm1(), "");
  EXPECT_FALSE(vms_a_->running("vm1"));
  EXPECT_EQ(handed_off_, std::vector<std::string>{"vm1"});
}

TEST_F(HaVmcp, ApdAggressiveRestartsEvenWhenNoOtherHostSeesTheDatastore) {
  StartMonitorA(PdlResponse::kIssueEvents, ApdResponse::kRestartAggressive, absl::ZeroDuration());
  Protect("vm1");
  ASSERT_TRUE(fs_a_->SetMode("apd").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kApdTimedOut));
  EXPECT_FALSE(Has("restart_refused:vm1"));
  EXPECT_TRUE(Has("vm_powered_off:vm1")) << ::testing::PrintToString(Kinds());
  EXPECT_EQ(LockOfVm1(), "");
  EXPECT_FALSE(vms_a_->running("vm1"));
  EXPECT_EQ(handed_off_, std::vector<std::string>{"vm1"});
}

TEST_F(HaVmcp, ApdThatClearsBeforeTheDelayIsAnEventAndNoAction) {
  StartMonitorA(PdlResponse::kIssueEvents, ApdResponse::kRestartAggressive, absl::Seconds(60));
  Protect("vm1");
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kHealthy));
  ASSERT_TRUE(fs_a_->SetMode("apd").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kApdPending));
  ASSERT_TRUE(fs_a_->SetMode("healthy").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kHealthy));
  EXPECT_TRUE(Has("apd_recovered")) << ::testing::PrintToString(Kinds());
  EXPECT_FALSE(Has("apd_timeout"));
  EXPECT_EQ(LockOfVm1(), "host-a");
  EXPECT_TRUE(vms_a_->running("vm1")) << "its guest runs on";
  EXPECT_TRUE(handed_off_.empty());
}

TEST_F(HaVmcp, AnUnprotectedVmIsOnlyReported) {
  StartMonitorA(PdlResponse::kPowerOffRestart, ApdResponse::kRestartAggressive, absl::ZeroDuration());
  ASSERT_TRUE(fs_a_->SetMode("pdl").ok());
  ASSERT_TRUE(CheckUntil(VmcpDatastoreState::kPdl));
  EXPECT_TRUE(Has("report_only:vm1")) << ::testing::PrintToString(Kinds());
  EXPECT_EQ(LockOfVm1(), "host-a");
  EXPECT_TRUE(vms_a_->running("vm1")) << "its guest runs on";
  EXPECT_TRUE(handed_off_.empty());
}

}  // namespace
}  // namespace ferry::cluster
