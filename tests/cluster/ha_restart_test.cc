// Restart on host failure (docs/cluster.md "Protected VMs and restarts"), end to end: real etcd,
// three real ferry-agent processes sharing one datastore directory, two protected VMs (synthetic
// backend: memory verified by the guest workload; KVM is not the point here) on host-a, which is
// killed with its VM processes. The master restarts them on the survivors by priority, with
// admission (host files give the survivors little memory), exactly once (the VM lock decides).
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "engine/cluster/cluster_store.h"
#include "engine/storage/vm_lock.h"
#include "tests/cluster/etcd_fixture.h"
#include "tests/e2e/e2e_util.h"
#include "tools/client/local_cluster.h"

namespace ferry::cluster {
namespace {

namespace fs = std::filesystem;

ClusterConfig RestartTestConfig() {
  ClusterConfig c;
  c.heartbeat_interval_ms = 1000;
  c.heartbeat_misses = 3;  // 3 s lease: a loaded test machine may delay a renewal by a second
  return c;
}

std::vector<std::string> EtcdFlags(cli::LocalEtcd& etcd, const std::string& name) {
  auto cert = etcd.IssueHostCert(name);
  EXPECT_TRUE(cert.ok()) << cert.status();
  const std::string certs = etcd.dir() + "/certs/";
  return {"--cluster", "c1", "--etcd-endpoints", etcd.endpoints_flag(), "--etcd-ca", etcd.ca_path(),
          "--etcd-cert", certs + name + ".crt", "--etcd-key", certs + name + ".key"};
}

class HaHostFailureRestart : public ::testing::Test {
 protected:
  void TearDown() override {
    agents_.reset();
    if (!dir_.empty()) {
      (void)cli::KillVmmProcessesUnder(dir_.string());
      fs::remove_all(dir_);
    }
  }

  void WriteHostFile(const std::string& name, const std::string& memory) {
    std::ofstream(dir_ / (name + ".yaml")) << "name: " << name << "\nmemory: {total: " << memory << "}\n"
                                           << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                                           << "datastores:\n  - {name: shared, path: " << (dir_ / "shared").string()
                                           << "}\n";
  }

  // Three agents in cluster c1 sharing datastore `shared`; host-a can hold anything, host-b one
  // 64 MiB VM, host-c none.
  void StartAgents(cli::LocalEtcd& etcd) {
    dir_ = fs::temp_directory_path() / ("ferry-ha-restart-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "shared");
    std::ofstream(dir_ / "shared" / ".ferry-datastore-id") << "9d1e6c2a-7f4b-4e21-8a3c-5b6d7e8f9a0b\n";
    client_ = testing::ClientFor(etcd, "operator");
    ASSERT_TRUE(client_);
    ASSERT_TRUE(CreateCluster(*client_, "c1", RestartTestConfig()).ok());
    WriteHostFile("host-a", "4GiB");
    WriteHostFile("host-b", "100MiB");
    WriteHostFile("host-c", "40MiB");
    cli::LocalClusterOptions o;
    o.agents = 3;
    for (const char* name : {"host-a", "host-b", "host-c"}) {
      o.host_facts.push_back((dir_ / (std::string(name) + ".yaml")).string());
      o.extra_args.push_back(EtcdFlags(etcd, name));
    }
    auto agents = cli::LocalCluster::Start(o);
    ASSERT_TRUE(agents.ok()) << agents.status();
    agents_ = std::move(*agents);
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(agents_->name(i), std::string("host-") + static_cast<char>('a' + i));
      auto stub = agents_->Stub(i);
      ASSERT_TRUE(stub.ok()) << stub.status();
      stubs_.push_back(std::move(*stub));
    }
    ASSERT_TRUE(WaitFor(absl::Seconds(30), [&](const ClusterStatus& s) {
      int alive = 0;
      for (const auto& h : s.hosts) alive += h.network_heartbeat_alive;
      return !s.master.empty() && alive == 3;
    }));
  }

  void CreateAndProtect(const std::string& vm, const std::string& priority) {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = e2e::GuestSpec(vm, v1::BACKEND_KIND_SYNTHETIC, 64, 8, 20);
    req.set_start(true);
    req.set_datastore("shared");
    req.add_disk_bytes(4u << 20);
    v1::VmInfo info;
    grpc::Status created = stubs_[0]->CreateVm(&ctx, req, &info);
    ASSERT_TRUE(created.ok()) << created.error_message();
    grpc::ClientContext pctx;
    v1::ProtectVmRequest preq;
    preq.set_name(vm);
    preq.set_restart_priority(priority);
    v1::ProtectVmResponse presp;
    grpc::Status protected_ = stubs_[0]->ProtectVm(&pctx, preq, &presp);
    ASSERT_TRUE(protected_.ok()) << protected_.error_message();
    EXPECT_EQ(presp.state(), "running");
    EXPECT_EQ(presp.host(), "host-a");
    EXPECT_EQ(presp.directory(), (dir_ / "shared" / vm).string());
  }

  template <typename Pred>
  bool WaitFor(absl::Duration limit, Pred done) {
    for (absl::Time end = absl::Now() + limit; absl::Now() < end; absl::SleepFor(absl::Milliseconds(100))) {
      auto s = ReadClusterStatus(*client_, "c1");
      if (s.ok()) last_ = *s;
      if (s.ok() && done(*s)) return true;
    }
    return false;
  }

  const ProtectedVm* Vm(const ClusterStatus& s, const std::string& name) {
    for (const auto& vm : s.vms) {
      if (vm.vm == name) return &vm;
    }
    return nullptr;
  }

  std::optional<VmLockHolder> Holder(const std::string& vm) {
    auto h = VmLock::CurrentHolder((dir_ / "shared" / vm / "vm.lock").string());
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : std::nullopt;
  }

  // Kills host-a as a crash would: its agent and every process holding one of its VMs' locks
  // (its VMM processes; for a VM run inside the agent, the agent itself).
  void KillHostA(const std::vector<std::string>& vms) {
    std::set<pid_t> holders;
    for (const auto& vm : vms) {
      auto h = Holder(vm);
      ASSERT_TRUE(h.has_value()) << vm << " is not running";
      ASSERT_EQ(h->agent, "host-a");
      holders.insert(static_cast<pid_t>(h->pid));
    }
    agents_->Kill(0);
    for (pid_t pid : holders) {
      if (pid != agents_->pid(0)) kill(pid, SIGKILL);
    }
  }

  // Which agents run `vm` now (GetVm answers with a running VM).
  std::vector<int> RunningOn(const std::string& vm) {
    std::vector<int> out;
    for (int i = 1; i < 3; ++i) {
      v1::VmInfo info;
      if (e2e::GetVm(*stubs_[i], vm, &info).ok() && info.state() == v1::VM_POWER_STATE_RUNNING) out.push_back(i);
    }
    return out;
  }

  fs::path dir_;
  std::unique_ptr<EtcdClient> client_;
  std::unique_ptr<cli::LocalCluster> agents_;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs_;
  ClusterStatus last_;
};

TEST_F(HaHostFailureRestart, ProtectedVmsRestartByPriorityWithAdmissionExactlyOnce) {
  FERRY_START_ETCD_OR_SKIP(etcd, 3);
  StartAgents(*etcd);
  if (HasFatalFailure()) return;
  CreateAndProtect("vm-high", "high");
  CreateAndProtect("vm-low", "low");
  if (HasFatalFailure()) return;
  ASSERT_TRUE(e2e::WaitForHeartbeats(*stubs_[0], "vm-high", 3, 20));

  const absl::Time killed = absl::Now();
  KillHostA({"vm-high", "vm-low"});
  if (HasFatalFailure()) return;

  // Only host-b can hold one 64 MiB VM: the high-priority one goes there, the low one waits.
  ASSERT_TRUE(WaitFor(absl::Seconds(45), [&](const ClusterStatus& s) {
    const ProtectedVm* high = Vm(s, "vm-high");
    const ProtectedVm* low = Vm(s, "vm-low");
    return high && low && high->state == ProtectedVmState::kRunning && high->host != "host-a" &&
           low->state == ProtectedVmState::kWaitingCapacity;
  })) << ToJson(last_);
  const double restart_s = absl::ToDoubleSeconds(absl::Now() - killed);
  EXPECT_EQ(Vm(last_, "vm-high")->host, "host-b");
  EXPECT_GE(Vm(last_, "vm-low")->attempts, 1);
  EXPECT_FALSE(Holder("vm-low").has_value()) << "vm-low runs nowhere while it waits";
  ASSERT_EQ(RunningOn("vm-high"), std::vector<int>{1});  // exactly once
  ASSERT_TRUE(Holder("vm-high").has_value());
  EXPECT_EQ(Holder("vm-high")->agent, "host-b");
  e2e::ExpectGuestHealthy(*stubs_[1], "vm-high", 1.0);
  std::printf("vm-high running again on host-b %.1f s after host-a was killed (lease TTL %lld s)\n", restart_s,
              static_cast<long long>(RestartTestConfig().LeaseTtlSeconds()));

  // Someone else holds vm-low's lock (it "still runs somewhere"): once host-c has room, its start
  // there is refused by the lock and the VM is held, never started a second time.
  auto outsider = VmLock::Acquire((dir_ / "shared" / "vm-low" / "vm.lock").string(), "vm-low",
                                  ThisProcessAsHolder("host-z"));
  ASSERT_TRUE(outsider.ok()) << outsider.status();
  WriteHostFile("host-c", "200MiB");
  ASSERT_TRUE(WaitFor(absl::Seconds(20), [&](const ClusterStatus& s) {
    const ProtectedVm* low = Vm(s, "vm-low");
    return low && low->state == ProtectedVmState::kHeld;
  })) << ToJson(last_);
  EXPECT_NE(Vm(last_, "vm-low")->detail.find("locked by agent host-z"), std::string::npos) << Vm(last_, "vm-low")->detail;
  EXPECT_TRUE(RunningOn("vm-low").empty());

  // The holder goes: the lock is free, the master restarts it where it fits now.
  outsider = absl::CancelledError("released");
  ASSERT_TRUE(WaitFor(absl::Seconds(20), [&](const ClusterStatus& s) {
    const ProtectedVm* low = Vm(s, "vm-low");
    return low && low->state == ProtectedVmState::kRunning && low->host != "host-a";
  })) << ToJson(last_);
  EXPECT_EQ(Vm(last_, "vm-low")->host, "host-c");
  ASSERT_EQ(RunningOn("vm-low"), std::vector<int>{2});
  EXPECT_EQ(Holder("vm-low")->agent, "host-c");
  e2e::ExpectGuestHealthy(*stubs_[2], "vm-low", 1.0);
  EXPECT_EQ(RunningOn("vm-high"), std::vector<int>{1});  // still exactly once
}

}  // namespace
}  // namespace ferry::cluster
