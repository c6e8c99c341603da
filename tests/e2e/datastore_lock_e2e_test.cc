// The lock is the owner (docs/datastores.md), over real agents sharing one datastore directory:
// a second start is refused naming the holder, a migration passes the lock exactly at commit, and
// a destination that cannot take the lock leaves the VM running on the source. The synthetic
// backend where KVM is not the point; a KVM guest where its disk workload is the oracle.

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/storage/vm_lock.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class DatastoreLockE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: a VMM's socket lives under it (<ds>/<vm>/vmm-<agent>/vmm.sock, at most 107 bytes).
    static int test_number = 0;
    dir_ = fs::temp_directory_path() / ("ferry-ds-" + std::to_string(getpid()) + "-" + std::to_string(++test_number));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "shared");
    // The datastore's identity, as an agent would write it (both hosts read the same one).
    std::ofstream(dir_ / "shared" / ".ferry-datastore-id") << "3f0c9a52-5b1e-4c2a-9d7e-0a1b2c3d4e5f\n";
  }
  void TearDown() override {
    cluster_.reset();
    // VMs that arrived on the shared datastore run in VMMs there, outside the agents' data dirs.
    (void)cli::KillVmmProcessesUnder(dir_.string());
    fs::remove_all(dir_);
  }
  std::string HostFile(const std::string& name, const fs::path& datastore) {
    fs::path p = dir_ / (name + ".yaml");
    std::ofstream(p) << "name: " << name << "\nmemory: {total: 8GiB}\n"
                     << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                     << "datastores:\n  - {name: shared, path: " << datastore.string() << "}\n";
    return p.string();
  }
  void StartAgents(const fs::path& second_datastore, std::vector<std::string> extra_args = {}) {
    cli::LocalClusterOptions o;
    o.agents = 2;
    o.extra_args = {extra_args, extra_args};
    o.host_facts = {HostFile("host-a", dir_ / "shared"), HostFile("host-b", second_datastore)};
    auto c = cli::LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    for (int i = 0; i < 2; ++i) {
      auto s = cluster_->Stub(i);
      ASSERT_TRUE(s.ok()) << s.status();
      stubs_.push_back(std::move(*s));
    }
  }
  grpc::Status CreateOnDatastore(int agent, const std::string& name) {
    return CreateOnDatastore(agent, GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 64, 8, 20));
  }
  grpc::Status CreateOnDatastore(int agent, const v1::VmSpec& spec) {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = spec;
    req.set_start(true);
    req.set_datastore("shared");
    req.add_disk_bytes(4u << 20);
    v1::VmInfo info;
    return stubs_[agent]->CreateVm(&ctx, req, &info);
  }
  grpc::Status StartVm(int agent, const std::string& name) {
    grpc::ClientContext ctx;
    v1::StartVmRequest req;
    req.set_name(name);
    v1::VmInfo info;
    return stubs_[agent]->StartVm(&ctx, req, &info);
  }
  std::optional<VmLockHolder> Holder(const std::string& name) {
    auto h = VmLock::CurrentHolder((dir_ / "shared" / name / "vm.lock").string());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }
  // The VMM process agent `agent` runs `name` in: the lock's holder (docs/vmm_process.md "The VM lock").
  pid_t VmmPid(int agent, const std::string& name, const std::string& datastore = "shared") {
    std::ifstream in(dir_ / datastore / name / ("vmm-" + cluster_->name(agent)) / "vmm.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  const v1::VmInfo* Listed(int agent, const std::string& name, v1::ListVmsResponse& resp) {
    resp = ListVms(*stubs_[agent]);
    for (const auto& v : resp.vms()) {
      if (v.spec().name() == name) return &v;
    }
    return nullptr;
  }

  fs::path dir_;
  std::unique_ptr<cli::LocalCluster> cluster_;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs_;
};

TEST_F(DatastoreLockE2E, SecondStartIsRefusedNamingTheHolderOnThisAndAnotherAgent) {
  StartAgents(dir_ / "shared");
  ASSERT_TRUE(CreateOnDatastore(0, "web1").ok());
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "web1", 3, 20));

  grpc::Status same = StartVm(0, "web1");
  EXPECT_EQ(same.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(same.error_message(), HasSubstr("vm web1 already runs on this agent"));

  grpc::Status other = StartVm(1, "web1");
  EXPECT_EQ(other.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  const pid_t vmm = VmmPid(0, "web1");
  ASSERT_GT(vmm, 0) << "web1 does not run in its own VMM process in its datastore directory";
  EXPECT_NE(vmm, cluster_->pid(0));
  EXPECT_THAT(other.error_message(), HasSubstr("vm web1 is locked by agent " + cluster_->name(0) + " (pid " +
                                               std::to_string(vmm)));
  EXPECT_THAT(other.error_message(), HasSubstr("it is running there"));
  v1::ListVmsResponse resp;
  EXPECT_EQ(Listed(1, "web1", resp), nullptr) << "a VM running on another host is not powered off here";

  grpc::ClientContext del_ctx;
  v1::DeleteVmRequest del;
  del.set_name("web1");
  v1::DeleteVmResponse deleted;
  grpc::Status refused = stubs_[1]->DeleteVm(&del_ctx, del, &deleted);
  EXPECT_THAT(refused.error_message(), HasSubstr("locked by agent " + cluster_->name(0)));
  EXPECT_TRUE(fs::exists(dir_ / "shared" / "web1" / "disk0.raw"));

  // Stopped: the files stay, the lock goes, and either agent may start it.
  grpc::ClientContext stop_ctx;
  v1::StopVmRequest stop;
  stop.set_name("web1");
  v1::VmInfo stopped;
  ASSERT_TRUE(stubs_[0]->StopVm(&stop_ctx, stop, &stopped).ok());
  EXPECT_FALSE(Holder("web1").has_value());
  const v1::VmInfo* off = Listed(1, "web1", resp);
  ASSERT_NE(off, nullptr) << "a stopped datastore VM is listed as powered off";
  EXPECT_EQ(off->state(), v1::VM_POWER_STATE_POWERED_OFF);
  EXPECT_EQ(off->datastore(), "shared");
  ASSERT_TRUE(StartVm(1, "web1").ok());
  ASSERT_TRUE(Holder("web1").has_value());
  EXPECT_EQ(Holder("web1")->agent, cluster_->name(1));
}

// --in-process-vms: the agent runs the VM and holds its lock itself, as before VMM processes.
TEST_F(DatastoreLockE2E, InProcessVmsKeepTheLockInTheAgent) {
  StartAgents(dir_ / "shared", {"--in-process-vms"});
  ASSERT_TRUE(CreateOnDatastore(0, "web4").ok());
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "web4", 3, 20));
  EXPECT_FALSE(fs::exists(dir_ / "shared" / "web4" / "vmm-host-a")) << "a VMM process was started";
  ASSERT_TRUE(Holder("web4").has_value());
  EXPECT_EQ(Holder("web4")->pid, cluster_->pid(0));
  grpc::Status other = StartVm(1, "web4");
  EXPECT_THAT(other.error_message(), HasSubstr("vm web4 is locked by agent " + cluster_->name(0) + " (pid " +
                                               std::to_string(cluster_->pid(0))));
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], MigrateTo(*cluster_, 1, "web4"));
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
  ASSERT_TRUE(Holder("web4").has_value());
  EXPECT_EQ(Holder("web4")->pid, cluster_->pid(1)) << "the destination agent holds it after commit";
}

TEST_F(DatastoreLockE2E, MigrationPassesTheLockAtCommit) {
  StartAgents(dir_ / "shared");
  ASSERT_TRUE(CreateOnDatastore(0, "web2").ok());
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "web2", 3, 20));
  const pid_t source_vmm = VmmPid(0, "web2");
  ASSERT_EQ(Holder("web2")->pid, source_vmm) << "the source's VMM process holds the lock";

  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], MigrateTo(*cluster_, 1, "web2"));
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();

  std::optional<VmLockHolder> holder = Holder("web2");
  ASSERT_TRUE(holder.has_value()) << "after commit the destination holds the lock";
  EXPECT_EQ(holder->agent, cluster_->name(1));
  EXPECT_EQ(holder->pid, VmmPid(1, "web2")) << "the destination's VMM process holds the lock";
  EXPECT_NE(holder->pid, source_vmm);
  v1::VmInfo info;
  ASSERT_TRUE(GetVm(*stubs_[1], "web2", &info).ok());
  EXPECT_EQ(info.datastore(), "shared");
  EXPECT_EQ(info.state(), v1::VM_POWER_STATE_RUNNING);
  grpc::Status again = StartVm(0, "web2");
  EXPECT_THAT(again.error_message(), HasSubstr("locked by agent " + cluster_->name(1)));
}

// A KVM guest writing and verifying its disk while it moves between two agents sharing the
// datastore: the destination's VMM opens the same disk file and takes the lock at commit, and the
// guest finds every block (and page) it wrote.
TEST_F(DatastoreLockE2E, DiskWorkloadSurvivesASharedDatastoreMigration) {
  if (!KvmUsable()) GTEST_SKIP() << "needs /dev/kvm: the guest's own disk workload is the oracle";
  StartAgents(dir_ / "shared");
  v1::VmSpec spec = GuestSpec("db1", v1::BACKEND_KIND_KVM, 64, 4, 8);
  spec.mutable_workload()->set_disk_working_set_bytes(1u << 20);
  spec.mutable_workload()->set_disk_rate_mibps(4);
  grpc::Status created = CreateOnDatastore(0, spec);
  ASSERT_TRUE(created.ok()) << created.error_message();
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "db1", 3, 120)) << "the guest never started beating";
  v1::VmInfo before;
  for (int i = 0; i < 1200 && GetVm(*stubs_[0], "db1", &before).ok() && before.health().disk_blocks_written() == 0;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(before.health().disk_blocks_written(), 0u) << "the guest never wrote its disk";
  const pid_t source_vmm = VmmPid(0, "db1");

  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], MigrateTo(*cluster_, 1, "db1"));
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
  EXPECT_EQ(events.back().stats().disk_blocks_sent(), 0u) << "a shared disk is not copied";

  std::optional<VmLockHolder> holder = Holder("db1");
  ASSERT_TRUE(holder.has_value()) << "after commit the destination holds the lock";
  EXPECT_EQ(holder->agent, cluster_->name(1));
  EXPECT_EQ(holder->pid, VmmPid(1, "db1")) << "the destination's VMM process holds the lock";
  EXPECT_NE(holder->pid, source_vmm);
  ExpectGuestHealthy(*stubs_[1], "db1", 1.0);
  ExpectDiskIntact(*stubs_[1], "db1");
  v1::VmInfo after;
  ASSERT_TRUE(GetVm(*stubs_[1], "db1", &after).ok());
  EXPECT_GT(after.health().disk_blocks_written(), before.health().disk_blocks_written())
      << "the guest did not write its disk on the destination";
}

// host-b cannot take the VM's lock (the test holds host-b's lock file, as another owner would):
// it refuses to resume, and the source takes its lock back and resumes the guest.
TEST_F(DatastoreLockE2E, DestinationThatCannotTakeTheLockLeavesTheVmOnTheSource) {
  // host-b's view of the datastore: the same identity and VM directory, its own lock file.
  fs::create_directories(dir_ / "view-b");
  fs::copy_file(dir_ / "shared" / ".ferry-datastore-id", dir_ / "view-b" / ".ferry-datastore-id");
  StartAgents(dir_ / "view-b");
  ASSERT_TRUE(CreateOnDatastore(0, "web3").ok());
  ASSERT_TRUE(WaitForHeartbeats(*stubs_[0], "web3", 3, 20));
  const pid_t source_vmm = VmmPid(0, "web3");
  ASSERT_EQ(Holder("web3")->pid, source_vmm);
  fs::create_directories(dir_ / "view-b" / "web3");
  for (const auto& f : fs::directory_iterator(dir_ / "shared" / "web3")) {  // not host-a's VMM directory
    if (f.is_regular_file()) fs::copy_file(f.path(), dir_ / "view-b" / "web3" / f.path().filename());
  }
  absl::StatusOr<VmLock> held = VmLock::Acquire((dir_ / "view-b" / "web3" / "vm.lock").string(), "web3",
                                                VmLockHolder{"test-holder", 4242, "", 0});
  ASSERT_TRUE(held.ok()) << held.status();

  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*stubs_[0], MigrateTo(*cluster_, 1, "web3"));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().phase(), v1::MIGRATION_PHASE_FAILED);
  EXPECT_THAT(events.back().error(), HasSubstr("cannot take the VM's lock"));
  EXPECT_THAT(events.back().error(), HasSubstr("locked by agent test-holder (pid 4242)"));
  EXPECT_THAT(events.back().error(), HasSubstr("the VM resumed on the source"));

  std::optional<VmLockHolder> holder = Holder("web3");
  ASSERT_TRUE(holder.has_value()) << "the source took its lock back";
  EXPECT_EQ(holder->pid, source_vmm) << "the source's own VMM took it back and resumed the guest";
  EXPECT_EQ(VmmPid(0, "web3"), source_vmm);
  EXPECT_FALSE(fs::exists(dir_ / "view-b" / "web3" / "vmm-host-b" / "vmm.sock")) << "the refused copy's VMM stayed";
  ExpectGuestHealthy(*stubs_[0], "web3", 1.0);
  v1::VmInfo gone;
  EXPECT_FALSE(GetVm(*stubs_[1], "web3", &gone).ok()) << "nothing runs on the destination";
}

}  // namespace
}  // namespace ferry::e2e
