// Host isolation over a real etcd: host-b reaches etcd through a TCP proxy the test cuts (its
// network to etcd gone, the datastore still there) and probes an isolation address the test
// opens or closes. Its VMs are real VM directories holding real VM locks (lock_holding_vms.h);
// host-a, on a direct link, plays the rest of the cluster: it may start a VM only when its lock is
// free, which is what the master's restart does (docs/cluster.md "Isolation").
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "engine/cluster/cluster_member.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/datastore_heartbeat.h"
#include "engine/cluster/isolation.h"
#include "tests/cluster/etcd_fixture.h"
#include "tests/cluster/lock_holding_vms.h"
#include "tests/e2e/tcp_proxy.h"

namespace ferry::cluster {
namespace {

ClusterConfig FastConfig(IsolationResponse response) {
  ClusterConfig c;
  c.heartbeat_interval_ms = 500;
  c.heartbeat_misses = 2;  // 1 s lease
  c.isolation_response = response;
  return c;
}

ClusterMemberOptions MemberOptions(const std::string& host) {
  ClusterMemberOptions o;
  o.cluster = "c1";
  o.host = host;
  return o;
}

// A listening socket standing for the isolation address (a gateway): Close() makes it unreachable.
class Gateway {
 public:
  Gateway() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  }
  ~Gateway() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

struct IsolationSetup {
  std::unique_ptr<cli::LocalEtcd> etcd;
  std::unique_ptr<EtcdClient> client_a, client_b;
  std::unique_ptr<e2e::TcpProxy> proxy_b;  // host-b's only way to etcd
  std::unique_ptr<ClusterMember> a, b;
  std::string datastore;
  std::unique_ptr<testing::LockHoldingVms> vms_b;
  Gateway gateway;

  ~IsolationSetup() {
    a.reset();
    b.reset();
    if (!datastore.empty()) std::system(("rm -rf " + datastore).c_str());
  }
};

void StartTwoHosts(IsolationSetup& s, IsolationResponse response) {
  s.client_a = testing::ClientFor(*s.etcd, "host-a");
  ASSERT_TRUE(s.client_a);
  ASSERT_TRUE(CreateCluster(*s.client_a, "c1", FastConfig(response)).ok());
  const std::string& endpoint = s.etcd->endpoints()[0];
  uint32_t port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &port));
  s.proxy_b = std::make_unique<e2e::TcpProxy>(static_cast<uint16_t>(port));
  ASSERT_TRUE(s.proxy_b->ok());
  auto cert = s.etcd->IssueHostCert("host-b");
  ASSERT_TRUE(cert.ok());
  EtcdClientOptions options = s.etcd->ClientOptions(*cert);
  options.endpoints = {"127.0.0.1:" + std::to_string(s.proxy_b->port())};
  options.call_timeout = absl::Milliseconds(500);
  auto client_b = EtcdClient::Create(options);
  ASSERT_TRUE(client_b.ok());
  s.client_b = std::move(*client_b);
  auto a = ClusterMember::Join(*s.client_a, MemberOptions("host-a"));
  ASSERT_TRUE(a.ok()) << a.status();
  s.a = std::move(*a);
  ASSERT_TRUE(s.a->WaitForState(HostState::kMaster, absl::Seconds(10)));  // host-a is the master
  auto b = ClusterMember::Join(*s.client_b, MemberOptions("host-b"));
  ASSERT_TRUE(b.ok()) << b.status();
  s.b = std::move(*b);
  ASSERT_TRUE(s.b->WaitForState(HostState::kSlave, absl::Seconds(10)));

  char tmpl[] = "/tmp/ferry-ha-iso-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  s.datastore = tmpl;
  s.vms_b = std::make_unique<testing::LockHoldingVms>("host-b", std::map<std::string, std::string>{{"ds1", tmpl}});
  s.vms_b->Run("vm1", "ds1", s.datastore);
  s.vms_b->Run("vm2", "ds1", s.datastore);
}

std::unique_ptr<IsolationMonitor> MonitorB(IsolationSetup& s, IsolationResponse response) {
  IsolationOptions o;
  o.cluster = "c1";
  o.host = "host-b";
  o.isolation_addresses = {s.gateway.address()};
  o.response = response;
  o.check_interval = absl::Milliseconds(200);
  o.connect_timeout = absl::Milliseconds(200);
  ClusterMember* member = s.b.get();
  auto m = IsolationMonitor::Start(o, [member] { return member->state(); }, *s.vms_b);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

// What host-a's restart does first: take the VM's lock (refused while host-b holds it).
bool HostACanStart(IsolationSetup& s, const std::string& vm, std::optional<VmLock>& taken) {
  auto lock = VmLock::Acquire(s.datastore + "/" + vm + "/" + kVmLockFile, vm, ThisProcessAsHolder("host-a"));
  if (!lock.ok()) return false;
  taken.emplace(std::move(*lock));
  return true;
}

TEST(HaIsolation, PowerOffReleasesTheLocksAndTheVmsStartElsewhereOnce) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  IsolationSetup s;
  s.etcd = std::move(etcd);
  StartTwoHosts(s, IsolationResponse::kPowerOff);
  if (HasFatalFailure()) return;
  auto monitor = MonitorB(s, IsolationResponse::kPowerOff);
  ASSERT_TRUE(monitor);
  std::optional<VmLock> on_a;
  EXPECT_FALSE(HostACanStart(s, "vm1", on_a)) << "host-b runs vm1: a second copy must be refused";

  s.proxy_b->Cut();  // host-b loses etcd...
  s.gateway.Close();  // ...and its isolation address: isolated
  ASSERT_TRUE(monitor->WaitForState(IsolationState::kIsolated, absl::Seconds(20)));
  EXPECT_EQ(monitor->responses_applied(), 1);
  EXPECT_FALSE(s.vms_b->running("vm1"));
  EXPECT_FALSE(s.vms_b->running("vm2"));
  EXPECT_EQ(testing::LockHolder(s.datastore + "/vm1/vm.lock"), "");
  // The master saw host-b's network heartbeat go.
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end && !s.a->lost_hosts().count("host-b");) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(s.a->lost_hosts().count("host-b"));
  // Restarted elsewhere, exactly once: host-a takes vm1, and nobody else can now.
  ASSERT_TRUE(HostACanStart(s, "vm1", on_a));
  EXPECT_EQ(testing::LockHolder(s.datastore + "/vm1/vm.lock"), "host-a");
  std::optional<VmLock> second;
  EXPECT_FALSE(HostACanStart(s, "vm1", second));
  EXPECT_EQ(s.vms_b->stopped(), (std::vector<std::string>{"vm1:power-off", "vm2:power-off"}));
}

TEST(HaIsolation, LeaveRunningKeepsTheLocksSoNoSecondCopyStartsAndTheHostReconnects) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  IsolationSetup s;
  s.etcd = std::move(etcd);
  StartTwoHosts(s, IsolationResponse::kLeaveRunning);
  if (HasFatalFailure()) return;
  auto monitor = MonitorB(s, IsolationResponse::kLeaveRunning);
  ASSERT_TRUE(monitor);
  s.proxy_b->Cut();
  s.gateway.Close();
  ASSERT_TRUE(monitor->WaitForState(IsolationState::kIsolated, absl::Seconds(20)));
  EXPECT_EQ(monitor->responses_applied(), 1);
  EXPECT_TRUE(s.vms_b->running("vm1"));
  EXPECT_EQ(testing::LockHolder(s.datastore + "/vm1/vm.lock"), "host-b");
  std::optional<VmLock> on_a;
  EXPECT_FALSE(HostACanStart(s, "vm1", on_a)) << "the isolated host still runs vm1";
  EXPECT_TRUE(s.vms_b->stopped().empty());
  // The network comes back: host-b re-joins and is connected again, its VMs untouched.
  s.proxy_b->Restore();
  ASSERT_TRUE(monitor->WaitForState(IsolationState::kConnected, absl::Seconds(30)));
  EXPECT_TRUE(s.vms_b->running("vm1"));
  EXPECT_EQ(monitor->responses_applied(), 1);
}

TEST(HaIsolation, EtcdLostButIsolationAddressAnswersIsPartitionedNotIsolated) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  IsolationSetup s;
  s.etcd = std::move(etcd);
  StartTwoHosts(s, IsolationResponse::kPowerOff);
  if (HasFatalFailure()) return;
  auto monitor = MonitorB(s, IsolationResponse::kPowerOff);
  ASSERT_TRUE(monitor);
  s.proxy_b->Cut();  // etcd gone, the gateway still answers
  ASSERT_TRUE(monitor->WaitForState(IsolationState::kPartitioned, absl::Seconds(20)));
  EXPECT_EQ(monitor->responses_applied(), 0);
  EXPECT_TRUE(s.vms_b->running("vm1"));
  EXPECT_EQ(testing::LockHolder(s.datastore + "/vm2/vm.lock"), "host-b");
}

TEST(HaIsolation, BadOptionsAreNamed) {
  testing::LockHoldingVms vms("host-b", {});
  IsolationOptions o;
  o.cluster = "c1";
  o.host = "host-b";
  auto none = IsolationMonitor::Start(o, [] { return HostState::kSlave; }, vms);
  EXPECT_TRUE(absl::IsInvalidArgument(none.status()));
  o.isolation_addresses = {"10.0.0.1"};
  auto bad = IsolationMonitor::Start(o, [] { return HostState::kSlave; }, vms);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'10.0.0.1' is not HOST:PORT"), std::string::npos) << bad.status();
}

TEST(HaIsolation, StateFollowsHeartbeatAndAddresses) {
  EXPECT_EQ(NextIsolationState(false, false), IsolationState::kConnected);
  EXPECT_EQ(NextIsolationState(true, true), IsolationState::kPartitioned);
  EXPECT_EQ(NextIsolationState(true, false), IsolationState::kIsolated);
}

}  // namespace
}  // namespace ferry::cluster

namespace ferry::cluster {
namespace {

// A partition into {host-a} and {host-b, host-c}: b and c lose etcd (their proxies are cut) but
// still reach each other (each one's isolation address is the other's gateway, which answers) and
// the datastore, where they keep writing their datastore heartbeats. They are partitioned, not
// isolated: no response, their VMs keep running under their locks; the master (host-a) sees their
// network heartbeats lost and, from their moving datastore heartbeats, judges them
// isolated/partitioned, not failed; no VM can start a second time.
TEST(HaPartition, TheCutOffGroupKeepsItsVmsAndIsJudgedPartitionedNotFailed) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client_a = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client_a);
  ASSERT_TRUE(CreateCluster(*client_a, "c1", FastConfig(IsolationResponse::kPowerOff)).ok());
  auto a = ClusterMember::Join(*client_a, MemberOptions("host-a"));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->WaitForState(HostState::kMaster, absl::Seconds(10)));
  char tmpl[] = "/tmp/ferry-ha-part-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string ds = tmpl;
  const std::string& endpoint = etcd->endpoints()[0];
  uint32_t port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &port));

  struct Side {
    std::string name;
    std::unique_ptr<e2e::TcpProxy> proxy;
    std::unique_ptr<EtcdClient> client;
    std::unique_ptr<ClusterMember> member;
    std::unique_ptr<testing::LockHoldingVms> vms;
    Gateway gateway;
    std::unique_ptr<IsolationMonitor> monitor;
  };
  std::vector<std::unique_ptr<Side>> group;
  for (const char* name : {"host-b", "host-c"}) {
    auto s = std::make_unique<Side>();
    s->name = name;
    s->proxy = std::make_unique<e2e::TcpProxy>(static_cast<uint16_t>(port));
    auto cert = etcd->IssueHostCert(name);
    ASSERT_TRUE(cert.ok());
    EtcdClientOptions options = etcd->ClientOptions(*cert);
    options.endpoints = {"127.0.0.1:" + std::to_string(s->proxy->port())};
    options.call_timeout = absl::Milliseconds(500);
    auto client = EtcdClient::Create(options);
    ASSERT_TRUE(client.ok());
    s->client = std::move(*client);
    auto m = ClusterMember::Join(*s->client, MemberOptions(name));
    ASSERT_TRUE(m.ok());
    s->member = std::move(*m);
    ASSERT_TRUE(s->member->WaitForState(HostState::kSlave, absl::Seconds(10)));
    s->vms = std::make_unique<testing::LockHoldingVms>(name, std::map<std::string, std::string>{{"ds1", ds}});
    s->vms->Run(std::string("vm-") + name, "ds1", ds);
    group.push_back(std::move(s));
  }
  for (int i = 0; i < 2; ++i) {
    IsolationOptions o;
    o.cluster = "c1";
    o.host = group[i]->name;
    o.isolation_addresses = {group[1 - i]->gateway.address()};  // the other side of its group
    o.response = IsolationResponse::kPowerOff;
    o.check_interval = absl::Milliseconds(200);
    ClusterMember* member = group[i]->member.get();
    auto m = IsolationMonitor::Start(o, [member] { return member->state(); }, *group[i]->vms);
    ASSERT_TRUE(m.ok());
    group[i]->monitor = std::move(*m);
  }
  // Their datastore heartbeats go on through the partition (what each agent's writer does).
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (uint64_t seq = 1; writing.load(); ++seq) {
      for (const auto& s : group) (void)WriteHeartbeat(ds, {"c1", s->name, seq, absl::ToUnixNanos(absl::Now()), ""});
      absl::SleepFor(absl::Milliseconds(200));
    }
  });
  for (auto& s : group) s->proxy->Cut();
  for (auto& s : group) {
    EXPECT_TRUE(s->monitor->WaitForState(IsolationState::kPartitioned, absl::Seconds(20))) << s->name;
  }
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end && (*a)->lost_hosts().size() < 2;) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ((*a)->lost_hosts(), (std::set<std::string>{"host-b", "host-c"}));
  for (auto& s : group) {
    auto before = ReadHeartbeat(ds, "c1", s->name);
    absl::SleepFor(absl::Milliseconds(600));
    EXPECT_EQ(ClassifyLostHost(before, ReadHeartbeat(ds, "c1", s->name)), LostHostVerdict::kIsolatedOrPartitioned)
        << s->name;
    EXPECT_EQ(s->monitor->responses_applied(), 0) << s->name;
    const std::string vm = "vm-" + s->name;
    EXPECT_TRUE(s->vms->running(vm));
    EXPECT_EQ(testing::LockHolder(ds + "/" + vm + "/vm.lock"), s->name);
    auto second = VmLock::Acquire(ds + "/" + vm + "/vm.lock", vm, ThisProcessAsHolder("host-a"));
    EXPECT_FALSE(second.ok()) << vm << " would run twice";
  }
  writing.store(false);
  writer.join();
  for (auto& s : group) s->monitor.reset();
  std::system(("rm -rf " + ds).c_str());
}

}  // namespace
}  // namespace ferry::cluster
