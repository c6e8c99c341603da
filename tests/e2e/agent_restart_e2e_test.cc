// VMs in their own ferry-vmm processes outlive their agent (docs/vmm_process.md): SIGKILL the
// agent while two guests run, they keep beating (asked from their VMMs directly), a new agent on
// the same data directory adopts both and migrates one to a second agent; a VMM that dies while
// its agent runs is reported as failed.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <gtest/gtest.h>

#include "engine/storage/vm_lock.h"
#include "engine/vmm/vmm_client.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using cli::LocalCluster;

class AgentRestartE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = KvmUsable() ? v1::BACKEND_KIND_KVM : v1::BACKEND_KIND_SYNTHETIC;
    std::cout << "[ guests  ] " << (KvmUsable() ? "KVM" : "synthetic (no usable /dev/kvm)") << "\n";
    cli::LocalClusterOptions o;
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  // The cluster's teardown kills the VMM processes its agents leave running.
  void TearDown() override { cluster_.reset(); }

  std::string VmDir(int agent, const std::string& vm) const {
    return cluster_->dir() + "/" + cluster_->name(agent) + "/vms/" + vm;
  }
  pid_t VmmPid(int agent, const std::string& vm) const {
    std::ifstream in(VmDir(agent, vm) + "/vmm.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  // Heartbeats as the VMM itself counts them, with no agent in between.
  uint64_t HeartbeatsFromVmm(int agent, const std::string& vm) const {
    auto conn = VmmConnection::Connect(VmDir(agent, vm) + "/vmm.sock", 2000);
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) return 0;
    v1::VmmRequest describe;
    describe.set_describe(true);
    auto reply = conn->Call(describe, 5000);
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (!reply.ok()) return 0;
    EXPECT_EQ(reply->run_state(), v1::VMM_RUN_STATE_RUNNING);
    EXPECT_EQ(reply->health().corruptions(), 0u);
    return reply->health().heartbeats();
  }

  v1::BackendKind backend_ = v1::BACKEND_KIND_SYNTHETIC;
  std::unique_ptr<LocalCluster> cluster_;
};

TEST_F(AgentRestartE2E, GuestsOutliveAKilledAgentAndTheNextAgentAdoptsAndMigratesThem) {
  auto a = cluster_->Stub(0);
  ASSERT_TRUE(a.ok());
  for (const char* vm : {"vm1", "vm2"}) {
    ASSERT_TRUE(CreateVm(**a, GuestSpec(vm, backend_, 128, 16, 20)).ok()) << vm;
  }
  for (const char* vm : {"vm1", "vm2"}) ASSERT_TRUE(WaitForHeartbeats(**a, vm, 3, 60)) << vm;
  const pid_t vmm1 = VmmPid(0, "vm1"), vmm2 = VmmPid(0, "vm2");
  ASSERT_GT(vmm1, 0);
  ASSERT_GT(vmm2, 0);
  EXPECT_NE(vmm1, cluster_->pid(0)) << "the VM runs in the agent's process";

  cluster_->Kill(0);  // SIGKILL: no shutdown code runs
  for (const char* vm : {"vm1", "vm2"}) {
    const uint64_t before = HeartbeatsFromVmm(0, vm);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_GT(HeartbeatsFromVmm(0, vm), before) << vm << " stopped beating when its agent died";
  }

  ASSERT_TRUE(cluster_->Restart(0).ok());
  auto again = cluster_->Stub(0);
  ASSERT_TRUE(again.ok());
  v1::ListVmsResponse list = ListVms(**again);
  ASSERT_EQ(list.vms_size(), 2) << list.DebugString();
  for (const auto& v : list.vms()) {
    EXPECT_EQ(v.state(), v1::VM_POWER_STATE_RUNNING) << v.spec().name() << ": " << v.failure();
    EXPECT_EQ(v.spec().memory_bytes(), 128ull << 20);
  }
  EXPECT_EQ(VmmPid(0, "vm1"), vmm1) << "adopted, not restarted";
  ExpectGuestHealthy(**again, "vm2", 1.0);

  auto b = cluster_->Stub(1);
  ASSERT_TRUE(b.ok());
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(**again, MigrateTo(*cluster_, 1, "vm1"));
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
  ExpectGuestHealthy(**b, "vm1", 1.0);
  v1::VmInfo gone;
  EXPECT_EQ(GetVm(**again, "vm1", &gone).error_code(), grpc::StatusCode::NOT_FOUND) << "vm1 still on the source";
  v1::VmInfo stays;
  ASSERT_TRUE(GetVm(**again, "vm2", &stays).ok());
  EXPECT_EQ(stays.state(), v1::VM_POWER_STATE_RUNNING);
  EXPECT_NE(VmmPid(1, "vm1"), vmm1) << "vm1 runs in a new VMM process on the destination";
}

TEST_F(AgentRestartE2E, AVmmKilledWhileItsAgentRunsIsReportedAsFailed) {
  auto a = cluster_->Stub(0);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("doomed", backend_, 64, 8, 10)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "doomed", 1, 60));
  const pid_t pid = VmmPid(0, "doomed");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  v1::VmInfo info;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(GetVm(**a, "doomed", &info).ok()) << "the dead VM was forgotten instead of reported";
    if (info.state() == v1::VM_POWER_STATE_FAILED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(info.state(), v1::VM_POWER_STATE_FAILED) << v1::VmPowerState_Name(info.state());
  EXPECT_NE(info.failure().find("VMM process"), std::string::npos) << info.failure();
  // It cannot be migrated; stopping it forgets it.
  std::vector<v1::MigrationEvent> none;
  {
    grpc::ClientContext ctx;
    auto reader = (*a)->Migrate(&ctx, MigrateTo(*cluster_, 1, "doomed"));
    v1::MigrationEvent e;
    while (reader->Read(&e)) none.push_back(e);
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  grpc::ClientContext ctx;
  v1::StopVmRequest stop;
  stop.set_name("doomed");
  v1::VmInfo stopped;
  ASSERT_TRUE((*a)->StopVm(&ctx, stop, &stopped).ok());
  EXPECT_EQ(GetVm(**a, "doomed", &info).error_code(), grpc::StatusCode::NOT_FOUND);
}

// VMs on a datastore run in VMMs in their datastore directory and hold their own locks: an agent
// SIGKILL leaves them running and locked, the restarted agent adopts them from the datastore, and
// one whose VMM died meanwhile is reported and listed as powered off (its lock died with it).
class AgentRestartDatastoreE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    static int test_number = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("ferry-ards-" + std::to_string(getpid()) + "-" + std::to_string(++test_number));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "shared");
    std::ofstream(dir_ / "shared" / ".ferry-datastore-id") << "7d2e4b10-3c5a-4f6e-8a9b-1c2d3e4f5a6b\n";
    cli::LocalClusterOptions o;
    for (const char* host : {"host-a", "host-b"}) {
      const auto file = dir_ / (std::string(host) + ".yaml");
      std::ofstream(file) << "name: " << host << "\nmemory: {total: 8GiB}\n"
                          << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                          << "datastores:\n  - {name: shared, path: " << (dir_ / "shared").string() << "}\n";
      o.host_facts.push_back(file.string());
    }
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
  }
  void TearDown() override {
    cluster_.reset();
    (void)cli::KillVmmProcessesUnder(dir_.string());  // VMMs in the datastore, outside the agents' dirs
    std::filesystem::remove_all(dir_);
  }
  grpc::Status CreateOnDatastore(v1::Agent::Stub& stub, const std::string& name) {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 64, 8, 20);
    req.set_start(true);
    req.set_datastore("shared");
    req.add_disk_bytes(4u << 20);
    v1::VmInfo info;
    return stub.CreateVm(&ctx, req, &info);
  }
  grpc::Status StartVm(v1::Agent::Stub& stub, const std::string& name) {
    grpc::ClientContext ctx;
    v1::StartVmRequest req;
    req.set_name(name);
    v1::VmInfo info;
    return stub.StartVm(&ctx, req, &info);
  }
  pid_t VmmPid(const std::string& vm) const {
    std::ifstream in(dir_ / "shared" / vm / "vmm-host-a" / "vmm.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  std::optional<VmLockHolder> Holder(const std::string& vm) const {
    auto h = VmLock::CurrentHolder((dir_ / "shared" / vm / "vm.lock").string());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalCluster> cluster_;
};

TEST_F(AgentRestartDatastoreE2E, ADatastoreVmOutlivesAKilledAgentIsAdoptedAndKeepsItsLock) {
  auto a = cluster_->Stub(0);
  ASSERT_TRUE(a.ok());
  for (const char* vm : {"dsvm", "dsdead"}) ASSERT_TRUE(CreateOnDatastore(**a, vm).ok()) << vm;
  for (const char* vm : {"dsvm", "dsdead"}) ASSERT_TRUE(WaitForHeartbeats(**a, vm, 3, 30)) << vm;
  const pid_t vmm = VmmPid("dsvm"), doomed = VmmPid("dsdead");
  ASSERT_GT(vmm, 0) << "dsvm does not run in a VMM in its datastore directory";
  ASSERT_GT(doomed, 0);
  ASSERT_EQ(Holder("dsvm")->pid, vmm) << "the VMM holds the VM's lock, not the agent";

  cluster_->Kill(0);  // SIGKILL: the agent's descriptors close, the VMMs' locks stay
  ASSERT_EQ(kill(doomed, SIGKILL), 0);  // and one VMM dies while no agent watches
  ASSERT_TRUE(Holder("dsvm").has_value()) << "a killed agent took the VMM's lock with it";
  EXPECT_EQ(Holder("dsvm")->pid, vmm);
  for (int i = 0; i < 500 && Holder("dsdead").has_value(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(Holder("dsdead").has_value()) << "a killed VMM still holds its lock";

  ASSERT_TRUE(cluster_->Restart(0).ok());
  auto again = cluster_->Stub(0);
  ASSERT_TRUE(again.ok());
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(**again, "dsvm", &info).ok()) << "the datastore VM was not adopted";
  EXPECT_EQ(info.state(), v1::VM_POWER_STATE_RUNNING) << info.failure();
  EXPECT_EQ(info.datastore(), "shared");
  EXPECT_EQ(VmmPid("dsvm"), vmm) << "adopted, not restarted";
  ExpectGuestHealthy(**again, "dsvm", 1.0);
  v1::ListVmsResponse list = ListVms(**again);
  const v1::VmInfo* dead = nullptr;
  for (const auto& v : list.vms()) {
    if (v.spec().name() == "dsdead") dead = &v;
  }
  ASSERT_NE(dead, nullptr) << "the VM whose VMM died was forgotten: " << list.DebugString();
  EXPECT_EQ(dead->state(), v1::VM_POWER_STATE_POWERED_OFF);
  EXPECT_NE(dead->failure().find("was not found at agent start"), std::string::npos) << dead->failure();
  std::ifstream log(cluster_->log_path(0));
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("event=vmm_lost vm=dsdead"), std::string::npos) << "the dead VMM was not reported";

  // Still the owner: a start on the other agent sharing the datastore is refused naming the VMM.
  auto b = cluster_->Stub(1);
  ASSERT_TRUE(b.ok());
  grpc::Status refused = StartVm(**b, "dsvm");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(refused.error_message().find("vm dsvm is locked by agent host-a (pid " + std::to_string(vmm)),
            std::string::npos)
      << refused.error_message();
  ASSERT_TRUE(StartVm(**again, "dsdead").ok()) << "the powered-off VM does not start again";
  EXPECT_EQ(Holder("dsdead")->pid, VmmPid("dsdead"));
}

}  // namespace
}  // namespace ferry::e2e
