// `cluster status` rendered from real cluster state after a host failure, and the protected VMs of
// a host whose agent comes back before the master acted (real etcd, three real ferry-agents,
// synthetic guests on a shared datastore directory: tools/client/ha_scenario.h).
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "engine/cluster/cluster_store.h"
#include "tools/client/cluster_status_render.h"
#include "tools/client/ha_scenario.h"

namespace ferry::cluster {
namespace {

std::unique_ptr<cli::HaScenario> StartOrSkip(int vms, bool* skipped) {
  cli::HaScenarioOptions o;
  o.etcd_members = 1;
  o.heartbeat_interval_ms = 1000;
  o.heartbeat_misses = 3;  // 3 s lease: a loaded test machine may delay a renewal by a second
  o.vms = vms;
  auto s = cli::HaScenario::Start(o);
  *skipped = absl::IsNotFound(s.status()) && absl::StrContains(s.status().message(), "etcd");
  if (*skipped) return nullptr;
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return nullptr;
  absl::Status created = (*s)->CreateProtectedVms();
  EXPECT_TRUE(created.ok()) << created;
  return created.ok() ? std::move(*s) : nullptr;
}

std::string LineOf(const std::string& text, const std::string& start) {
  size_t at = text.find("\n" + start);
  if (at == std::string::npos) return "";
  size_t end = text.find('\n', at + 1);
  return text.substr(at + 1, end - at - 1);
}

TEST(HaHostFailureStatus, ClusterStatusShowsTheFailedHostTheRestartedVmAndTheEvents) {
  bool skipped = false;
  auto s = StartOrSkip(1, &skipped);
  if (skipped) GTEST_SKIP() << "etcd is not installed (Debian: etcd-server)";
  ASSERT_TRUE(s);
  const std::string victim = s->victim();
  auto result = s->KillVictimAndFollow(/*verify=*/false, 60);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->ok()) << result->vms[0].error;
  auto status = ReadClusterStatus(s->client(), cli::HaScenario::kCluster);
  ASSERT_TRUE(status.ok()) << status.status();
  const std::string text = cli::RenderClusterStatus(*status);

  // The victim: network heartbeat lost, judged by the master as a host whose VMs are restarted
  // (failed; unknown when its datastore heartbeat could not be read), shown as etcd holds it.
  const HostStatus* judged = nullptr;
  for (const auto& h : status->hosts) {
    if (h.record.host == victim) judged = &h;
  }
  ASSERT_TRUE(judged && judged->judged) << text;
  EXPECT_TRUE(judged->judged->health == HostHealth::kFailed || judged->judged->health == HostHealth::kUnknown) << text;
  const std::string host_line = LineOf(text, victim + " ");
  EXPECT_NE(host_line.find(" " + ShownHealth(*judged) + " "), std::string::npos) << text;
  EXPECT_NE(host_line.find(" lost "), std::string::npos) << text;
  EXPECT_NE(host_line.find(" " + ShownDatastoreHeartbeat(*judged) + " "), std::string::npos) << text;
  EXPECT_NE(ShownDatastoreHeartbeat(*judged), "alive") << text;
  EXPECT_NE(host_line.find("expired"), std::string::npos) << text;
  // A survivor: alive on both heartbeats (the master does not judge itself: "-").
  for (const auto& h : status->hosts) {
    if (h.record.host == victim) continue;
    const std::string line = LineOf(text, h.record.host + " ");
    EXPECT_NE(line.find(" alive "), std::string::npos) << text;
    if (!h.master) {
      EXPECT_NE(line.find(" alive     "), std::string::npos) << line;
    }
  }
  // The VM: running on its new owner.
  const std::string vm_line = LineOf(text, "  vm-1 ");
  EXPECT_NE(vm_line.find("running"), std::string::npos) << text;
  EXPECT_NE(vm_line.find(result->vms[0].to), std::string::npos) << text;
  EXPECT_NE(result->vms[0].to, victim);
  // The events, oldest first: lost, judged failed, restart needed, restarted.
  size_t lost = text.find("host_lost"), verdict = text.find("host_verdict"), needed = text.find("vm_restart_needed"),
         restarted = text.find("vm_restarted");
  ASSERT_NE(restarted, std::string::npos) << text;
  EXPECT_LT(lost, verdict) << text;
  EXPECT_LT(verdict, needed) << text;
  EXPECT_LT(needed, restarted) << text;

  const std::string json = ToJson(*status);
  EXPECT_NE(json.find("\"state\":\"" + ShownHealth(*judged) + "\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"datastore_heartbeat\":\"" + ShownDatastoreHeartbeat(*judged) + "\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"kind\":\"vm_restarted\""), std::string::npos) << json;
}

TEST(HaHostFailureAgentBack, VmsOfAHostWhoseAgentCameBackBeforeTheMasterActedRunAgain) {
  bool skipped = false;
  auto s = StartOrSkip(2, &skipped);
  if (skipped) GTEST_SKIP() << "etcd is not installed (Debian: etcd-server)";
  ASSERT_TRUE(s);
  auto killed = s->KillVictim();
  ASSERT_TRUE(killed.ok()) << killed.status();
  // Back within the 3 s lease: the master never sees the host lost, so it never acts on its own.
  ASSERT_TRUE(s->RestartVictimAgent().ok());
  auto result = s->Follow(*killed, /*verify=*/true, 60);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const auto& vm : result->vms) {
    EXPECT_TRUE(vm.error.empty()) << vm.vm << ": " << vm.error;
    EXPECT_TRUE(vm.exactly_once) << vm.vm;
    EXPECT_TRUE(vm.memory_verified) << vm.vm;
  }
  auto events = ReadClusterEvents(s->client(), cli::HaScenario::kCluster);
  ASSERT_TRUE(events.ok());
  int gone = 0, host_lost = 0;
  for (const auto& e : *events) {
    gone += e.kind == "protected_vm_gone" && e.by == s->victim();
    host_lost += e.kind == "host_lost" && e.subject == s->victim();
  }
  EXPECT_EQ(gone, 2) << "the returning agent handed both VMs to the master";
  EXPECT_EQ(host_lost, 0) << "the master never saw the host lost";
}

}  // namespace
}  // namespace ferry::cluster
