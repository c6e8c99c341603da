// A same-host VMM upgrade through a real ferry-agent and the `migrate vm upgrade NAME` CLI
// (docs/vmm_process.md "Same-host upgrade"): a datastore VM whose KVM guest writes and verifies
// its disk moves to a new VMM process, which holds the VM's lock (named in its record) and runs
// the disk over the descriptors the old VMM handed it; the guest reports nothing wrong.

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/storage/vm_lock.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/migrate_cli.h"

namespace ferry::e2e {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class VmmUpgradeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: the VMM's socket lives under it (<ds>/<vm>/vmm-<agent>/vmm.sock, at most 107 bytes).
    dir_ = fs::temp_directory_path() / ("ferry-upg-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "ds");
    std::ofstream(dir_ / "ds" / ".ferry-datastore-id") << "7d1e3b0a-2c4f-4e8b-9a61-5f0e2d3c4b5a\n";
    const fs::path host = dir_ / "host-a.yaml";
    std::ofstream(host) << "name: host-a\nmemory: {total: 8GiB}\n"
                        << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                        << "datastores:\n  - {name: ds, path: " << (dir_ / "ds").string() << "}\n";
    cli::LocalClusterOptions o;
    o.agents = 1;
    o.host_facts = {host.string()};
    auto c = cli::LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto s = cluster_->Stub(0);
    ASSERT_TRUE(s.ok()) << s.status();
    stub_ = std::move(*s);
  }
  void TearDown() override {
    cluster_.reset();
    (void)cli::KillVmmProcessesUnder(dir_.string());
    fs::remove_all(dir_);
  }
  pid_t VmmPid(const std::string& name) {
    std::ifstream in(dir_ / "ds" / name / ("vmm-" + cluster_->name(0)) / "vmm.pid");
    pid_t pid = -1;
    in >> pid;
    return pid;
  }
  std::optional<VmLockHolder> Holder(const std::string& name) {
    auto h = VmLock::CurrentHolder((dir_ / "ds" / name / "vm.lock").string());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }

  fs::path dir_;
  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<v1::Agent::Stub> stub_;
};

TEST_F(VmmUpgradeE2E, CliUpgradesADatastoreVmWhoseGuestKeepsWritingItsDisk) {
  if (!KvmUsable()) GTEST_SKIP() << "needs /dev/kvm: the guest's own disk workload is the oracle";
  v1::VmSpec spec = GuestSpec("db1", v1::BACKEND_KIND_KVM, 64, 4, 8);
  spec.set_vcpus(2);
  spec.mutable_workload()->set_disk_working_set_bytes(1u << 20);
  spec.mutable_workload()->set_disk_rate_mibps(4);
  {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = spec;
    req.set_start(true);
    req.set_datastore("ds");
    req.add_disk_bytes(4u << 20);
    v1::VmInfo info;
    grpc::Status created = stub_->CreateVm(&ctx, req, &info);
    ASSERT_TRUE(created.ok()) << created.error_message();
  }
  ASSERT_TRUE(WaitForHeartbeats(*stub_, "db1", 3, 120)) << "the guest never started beating";
  ASSERT_TRUE(WaitForDiskSweeps(*stub_, "db1", 1)) << "the guest never swept its disk";
  v1::VmInfo before;
  ASSERT_TRUE(GetVm(*stub_, "db1", &before).ok());
  const pid_t old_vmm = VmmPid("db1");
  ASSERT_GT(old_vmm, 0);
  ASSERT_EQ(Holder("db1")->pid, old_vmm);

  Cli r = RunMigrate(*cluster_, "vm upgrade db1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json j = Json(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("old_pid", 0), old_vmm) << r.out;
  const pid_t new_vmm = j.value("new_pid", 0);
  ASSERT_GT(new_vmm, 0) << r.out;
  EXPECT_NE(new_vmm, old_vmm);
  EXPECT_EQ(j.value("warning", ""), "");
  EXPECT_EQ(VmmPid("db1"), new_vmm) << "the VMM's pid file does not name the new VMM";
  std::optional<VmLockHolder> holder = Holder("db1");
  ASSERT_TRUE(holder.has_value()) << "nobody holds the lock after the upgrade";
  EXPECT_EQ(holder->pid, new_vmm) << "the lock's record does not name the new VMM";
  EXPECT_EQ(holder->agent, cluster_->name(0));
  for (int i = 0; i < 200 && kill(old_vmm, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(kill(old_vmm, 0), 0) << "the old VMM did not exit";

  ExpectDiskIntact(*stub_, "db1");
  v1::VmInfo after;
  ASSERT_TRUE(GetVm(*stub_, "db1", &after).ok());
  EXPECT_EQ(after.state(), v1::VM_POWER_STATE_RUNNING);
  EXPECT_GT(after.health().disk_blocks_written(), before.health().disk_blocks_written())
      << "the guest did not write its disk in the new VMM";
  EXPECT_GT(after.health().heartbeats(), before.health().heartbeats());

  // The agent drives the new VMM: a second upgrade works the same way.
  Cli again = RunMigrate(*cluster_, "vm upgrade db1");
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("upgraded the VMM of VM db1: pid " + std::to_string(new_vmm)));
  EXPECT_EQ(Holder("db1")->pid, VmmPid("db1"));
  EXPECT_NE(VmmPid("db1"), new_vmm);
}

}  // namespace
}  // namespace ferry::e2e
