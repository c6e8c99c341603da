#pragma once
// Helpers for HA tests over real ferry-agent processes joined to a real etcd (LocalEtcd +
// LocalCluster): the agents' --cluster flags, polling the cluster's status, who runs a VM and who
// holds its lock, and a host crash (its agent and its VMM processes SIGKILLed).

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/cluster/cluster_store.h"
#include "engine/storage/vm_lock.h"
#include "tests/e2e/e2e_util.h"
#include "tools/client/local_cluster.h"
#include "tests/cluster/etcd_fixture.h"
#include "tools/client/local_etcd.h"

namespace ferry::cluster::testing {

// ferry-agent flags that join `cluster` as `host` with a certificate from etcd's CA (naming
// 127.0.0.1 and `ips`).
inline std::vector<std::string> AgentEtcdFlags(cli::LocalEtcd& etcd, const std::string& cluster,
                                               const std::string& host, const std::vector<std::string>& ips = {}) {
  auto cert = etcd.IssueHostCert(host, ips);
  EXPECT_TRUE(cert.ok()) << cert.status();
  const std::string certs = etcd.dir() + "/certs/";
  return {"--cluster", cluster, "--etcd-endpoints", etcd.endpoints_flag(), "--etcd-ca", etcd.ca_path(),
          "--etcd-cert", certs + host + ".crt", "--etcd-key", certs + host + ".key"};
}

// Polls `cluster`'s status every 100 ms until `done` holds (true) or `limit` passes (false);
// `last` gets the last status read.
inline bool WaitForClusterStatus(EtcdClient& etcd, const std::string& cluster, absl::Duration limit,
                                 const std::function<bool(const ClusterStatus&)>& done, ClusterStatus* last) {
  for (absl::Time end = absl::Now() + limit; absl::Now() < end; absl::SleepFor(absl::Milliseconds(100))) {
    auto s = ReadClusterStatus(etcd, cluster);
    if (!s.ok()) continue;
    if (last) *last = *s;
    if (done(*s)) return true;
  }
  return false;
}

inline int AliveHostCount(const ClusterStatus& s) {
  int n = 0;
  for (const auto& h : s.hosts) n += h.network_heartbeat_alive;
  return n;
}

inline const ProtectedVm* FindProtectedVm(const ClusterStatus& s, const std::string& name) {
  for (const auto& vm : s.vms) {
    if (vm.vm == name) return &vm;
  }
  return nullptr;
}

// Who holds the VM lock at `lock_path` (nullopt: nobody).
inline std::optional<VmLockHolder> LockHolderOf(const std::string& lock_path) {
  auto h = VmLock::CurrentHolder(lock_path);
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() ? *h : std::nullopt;
}

// The indexes of the agents among `stubs` (null entries skipped) that run `vm` now.
inline std::vector<int> AgentsRunning(const std::vector<std::unique_ptr<v1::Agent::Stub>>& stubs,
                                      const std::string& vm) {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(stubs.size()); ++i) {
    v1::VmInfo info;
    if (stubs[i] && e2e::GetVm(*stubs[i], vm, &info).ok() && info.state() == v1::VM_POWER_STATE_RUNNING) {
      out.push_back(i);
    }
  }
  return out;
}

// A host crash: agent `index` and every process holding one of `lock_paths` (its VMMs) are
// SIGKILLed. Each lock must be held by that agent.
inline void CrashHost(cli::LocalCluster& agents, int index, const std::vector<std::string>& lock_paths) {
  std::set<pid_t> holders;
  for (const auto& path : lock_paths) {
    auto h = LockHolderOf(path);
    ASSERT_TRUE(h.has_value()) << path << " is not held: the VM does not run";
    ASSERT_EQ(h->agent, agents.name(index));
    holders.insert(static_cast<pid_t>(h->pid));
  }
  const pid_t agent_pid = agents.pid(index);
  agents.Kill(index);
  for (pid_t pid : holders) {
    if (pid != agent_pid) kill(pid, SIGKILL);
  }
  // The kernel drops an OFD lock only when the killed holder's files are closed.
  for (const auto& path : lock_paths) {
    for (int t = 0; t < 200 && LockHolderOf(path).has_value(); ++t) absl::SleepFor(absl::Milliseconds(10));
  }
}

// Where the agents run when not all on loopback in the test's namespace (ha_netns_test.cc): agent
// i in network namespace netns[i], listening on ips[i], probing `isolation_address` when its lease
// lapses (cluster.isolation_addresses in its config file).
struct AgentPlacement {
  std::vector<std::string> netns;
  std::vector<std::string> ips;
  std::string isolation_address;
};

// Three agents (host-a, host-b, host-c) in cluster c1, sharing datastore `shared` (a directory of
// this machine), host files of 4 GiB each: a test creates protected VMs on them, crashes hosts and
// watches the cluster's status.
class ThreeAgentsSharingADatastore : public ::testing::Test {
 protected:
  void TearDown() override {
    agents_.reset();
    if (!dir_.empty()) {
      (void)cli::KillVmmProcessesUnder(dir_.string());
      std::filesystem::remove_all(dir_);
    }
  }

  void StartAgents(cli::LocalEtcd& etcd, const ClusterConfig& config, const AgentPlacement& placement = {}) {
    namespace fs = std::filesystem;
    dir_ = fs::temp_directory_path() / ("ferry-ha-agents-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "shared");
    std::ofstream(dir_ / "shared" / ".ferry-datastore-id") << "5b0c1e7d-2a4f-4c3e-9d8b-7a6f5e4d3c2b\n";
    client_ = ClientFor(etcd, "operator");
    ASSERT_TRUE(client_);
    ASSERT_TRUE(CreateCluster(*client_, "c1", config).ok());
    cli::LocalClusterOptions o;
    o.agents = 3;
    for (int i = 0; i < 3; ++i) {
      const std::string name = std::string("host-") + static_cast<char>('a' + i);
      const std::string ip = i < static_cast<int>(placement.ips.size()) ? placement.ips[i] : "127.0.0.1";
      const fs::path facts = dir_ / (name + ".yaml");
      std::ofstream(facts) << "name: " << name << "\nmemory: {total: 4GiB}\n"
                           << "migration_interface: {address: " << ip << ", link_speed_mbps: 10000}\n"
                           << "datastores:\n  - {name: shared, path: " << (dir_ / "shared").string() << "}\n";
      o.host_facts.push_back(facts.string());
      o.extra_args.push_back(AgentEtcdFlags(etcd, "c1", name, {ip}));
      if (!placement.isolation_address.empty()) {
        const fs::path config_file = dir_ / (name + "-agent.yaml");
        std::ofstream(config_file) << "name: " << name << "\ncluster:\n  isolation_addresses: ["
                                   << placement.isolation_address << "]\n";
        o.extra_args.back().insert(o.extra_args.back().end(), {"--config", config_file.string()});
      }
    }
    o.netns = placement.netns;
    o.listen_hosts = placement.ips;
    auto agents = cli::LocalCluster::Start(o);
    ASSERT_TRUE(agents.ok()) << agents.status();
    agents_ = std::move(*agents);
    for (int i = 0; i < 3; ++i) {
      auto stub = agents_->Stub(i);
      ASSERT_TRUE(stub.ok()) << stub.status();
      stubs_.push_back(std::move(*stub));
    }
    ASSERT_TRUE(WaitFor(absl::Seconds(30),
                        [](const ClusterStatus& s) { return !s.master.empty() && AliveHostCount(s) == 3; }))
        << ToJson(last_);
  }

  // Creates `spec` on agent `agent`'s datastore with one disk of `disk_bytes`, starts it and
  // protects it with `priority`.
  void CreateProtectedVm(int agent, const v1::VmSpec& spec, uint64_t disk_bytes, const std::string& priority) {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = spec;
    req.set_start(true);
    req.set_datastore("shared");
    req.add_disk_bytes(disk_bytes);
    v1::VmInfo info;
    grpc::Status created = stubs_[agent]->CreateVm(&ctx, req, &info);
    ASSERT_TRUE(created.ok()) << created.error_message();
    grpc::ClientContext pctx;
    v1::ProtectVmRequest preq;
    preq.set_name(spec.name());
    preq.set_restart_priority(priority);
    v1::ProtectVmResponse presp;
    grpc::Status protected_ = stubs_[agent]->ProtectVm(&pctx, preq, &presp);
    ASSERT_TRUE(protected_.ok()) << protected_.error_message();
    EXPECT_EQ(presp.host(), agents_->name(agent));
  }

  bool WaitFor(absl::Duration limit, const std::function<bool(const ClusterStatus&)>& done) {
    return WaitForClusterStatus(*client_, "c1", limit, done, &last_);
  }

  // Waits until the master has `vm` running on a host other than `not_on`; returns that host's
  // agent index (-1 on timeout).
  int WaitForRestartAwayFrom(const std::string& vm, const std::string& not_on, absl::Duration limit) {
    if (!WaitFor(limit, [&](const ClusterStatus& s) {
          const ProtectedVm* p = FindProtectedVm(s, vm);
          return p && p->state == ProtectedVmState::kRunning && p->host != not_on;
        })) {
      return -1;
    }
    const std::string host = FindProtectedVm(last_, vm)->host;
    for (int i = 0; i < agents_->size(); ++i) {
      if (agents_->name(i) == host) return i;
    }
    return -1;
  }

  std::string LockPath(const std::string& vm) const { return (dir_ / "shared" / vm / "vm.lock").string(); }

  std::filesystem::path dir_;
  std::unique_ptr<EtcdClient> client_;
  std::unique_ptr<cli::LocalCluster> agents_;
  std::vector<std::unique_ptr<v1::Agent::Stub>> stubs_;
  ClusterStatus last_;
};

}  // namespace ferry::cluster::testing
