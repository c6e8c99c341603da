// migrate demo ha: three agents and a 3-member etcd on this machine, two protected VMs, their host
// killed, the VMs restarted elsewhere and verified by their guests, a summary of the times
// (tools/client/ha_scenario.h; docs/cluster.md "migrate demo ha").
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "engine/cluster/cluster_store.h"
#include "tools/client/ha_scenario.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted.store(true); }

struct DemoHaArgs {
  uint32_t interval_ms = 1000, misses = 3;
  int etcd_members = 3;
  std::string backend;
  bool json = false, keep = false;
};

nlohmann::json ToJson(const HaRunResult& r, const HaScenarioOptions& o, const std::string& backend) {
  nlohmann::json vms = nlohmann::json::array();
  for (const auto& v : r.vms) {
    vms.push_back({{"vm", v.vm},
                   {"priority", v.priority},
                   {"from", v.from},
                   {"to", v.to},
                   {"restarted_s", v.restarted_s},
                   {"running_s", v.running_s},
                   {"start_ms", v.start_ms},
                   {"exactly_once", v.exactly_once},
                   {"memory_verified", v.memory_verified},
                   {"memory_sweep_ms", v.memory_sweep_ms},
                   {"disk_verified", v.disk_verified},
                   {"disk_sweeps", v.disk_sweeps},
                   {"disk_blocks_verified", v.disk_blocks_verified},
                   {"corruptions", v.corruptions},
                   {"error", v.error}});
  }
  return {{"backend", backend},
          {"etcd_members", o.etcd_members},
          {"heartbeat_interval_ms", o.heartbeat_interval_ms},
          {"heartbeat_misses", o.heartbeat_misses},
          {"victim", r.victim},
          {"master", r.master},
          {"lease_lost_s", r.lease_lost_s},
          {"detected_s", r.detected_s},
          {"vms", vms},
          {"ok", r.ok()}};
}

void PrintSummary(const HaRunResult& r, const HaScenarioOptions& o) {
  cluster::ClusterConfig c;
  c.heartbeat_interval_ms = o.heartbeat_interval_ms;
  c.heartbeat_misses = o.heartbeat_misses;
  std::printf("\nsummary: heartbeat interval %u ms, %u misses -> lease %lld s; %s killed, master %s\n",
              o.heartbeat_interval_ms, o.heartbeat_misses, static_cast<long long>(c.LeaseTtlSeconds()),
              r.victim.c_str(), r.master.c_str());
  std::printf("  lease expired (master's host_lost)  %6.2f s after the kill\n", r.lease_lost_s);
  std::printf("  detected failed (master's verdict)  %6.2f s after the kill\n", r.detected_s);
  std::printf("  %-6s %-8s %-8s %-11s %-11s %-9s %-7s %-16s %s\n", "VM", "PRIORITY", "TO", "RESTARTED", "RUNNING",
              "START", "ONCE", "GUEST MEMORY", "GUEST DISK");
  for (const auto& v : r.vms) {
    std::string memory = v.memory_verified ? absl::StrFormat("ok (%d ms)", v.memory_sweep_ms) : "NOT verified";
    std::string disk = !o.kvm ? "n/a (synthetic)"
                       : v.disk_verified ? absl::StrFormat("ok (%d sweeps, %d blocks)", v.disk_sweeps, v.disk_blocks_verified)
                                         : "NOT verified";
    std::printf("  %-6s %-8s %-8s %8.2f s  %8.2f s  %6.0f ms %-7s %-16s %s\n", v.vm.c_str(), v.priority.c_str(),
                v.to.c_str(), v.restarted_s, v.running_s, v.start_ms, v.exactly_once ? "yes" : "NO", memory.c_str(),
                disk.c_str());
    if (!v.error.empty()) std::printf("    %s: %s\n", v.vm.c_str(), v.error.c_str());
  }
  std::printf("  (RESTARTED: the master's vm_restarted event; RUNNING: the new host answers with the VM running;\n"
              "   START: the StartVm call; GUEST: a full verification sweep on the new host, no corruption)\n");
  std::printf("HA demo: %s\n", r.ok() ? "every protected VM runs again elsewhere, exactly once, verified" : "FAILED");
}

int RunDemoHa(const DemoHaArgs& a) {
  const char* cmd = "demo ha";
  std::string backend = a.backend;
  if (backend.empty()) backend = access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "synthetic";
  if (backend != "kvm" && backend != "synthetic") {
    return ReportError(cmd, UsageError("--backend must be kvm or synthetic"), a.json);
  }
  if (a.etcd_members != 1 && a.etcd_members != 3) {
    return ReportError(cmd, UsageError("--etcd-members must be 1 or 3"), a.json);
  }
  if (backend == "kvm" && access("/dev/kvm", R_OK | W_OK) != 0) {
    return ReportError(cmd, FailureError("--backend kvm needs /dev/kvm (read-write), which this host lacks"), a.json);
  }
  if (backend == "synthetic" && !a.json) {
    std::printf("/dev/kvm is not used: synthetic guests (host threads over guest memory) verify their memory; "
                "no disk workload (it needs a KVM guest)\n");
  }
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  HaScenarioOptions o;
  o.etcd_members = a.etcd_members;
  o.heartbeat_interval_ms = a.interval_ms;
  o.heartbeat_misses = a.misses;
  o.kvm = backend == "kvm";
  o.keep_dir = a.keep;
  o.cancelled = &g_interrupted;
  if (!a.json) o.say = [](const std::string& s) { std::printf("%s\n", s.c_str()), std::fflush(stdout); };
  int rc = 1;
  {
    auto scenario = HaScenario::Start(o);
    if (!scenario.ok()) return ReportError(cmd, scenario.status(), a.json);
    absl::Status st = (*scenario)->CreateProtectedVms();
    absl::StatusOr<HaRunResult> result = st.ok() ? (*scenario)->KillVictimAndFollow(/*verify=*/true)
                                                 : absl::StatusOr<HaRunResult>(st);
    if (!a.json && result.ok()) o.say("cleaning up: agents, VMM processes, etcd members, temporary directories");
    scenario->reset();  // stops every process it started and removes its directories
    if (!result.ok()) return ReportError(cmd, result.status(), a.json);
    if (a.json) {
      std::printf("%s\n", ToJson(*result, o, backend).dump(2).c_str());
    } else {
      PrintSummary(*result, o);
    }
    rc = result->ok() ? 0 : 1;
  }
  return rc;
}

}  // namespace

void AddDemoHaCommand(CLI::App* demo, Globals& g) {
  auto a = std::make_shared<DemoHaArgs>();
  CLI::App* ha = demo->add_subcommand(
      "ha", "three agents and a 3-member etcd here, two protected VMs, their host killed, the VMs restarted "
            "elsewhere and verified by their guests");
  ha->add_option("--heartbeat-interval-ms", a->interval_ms, "the cluster's heartbeat interval")
      ->check(CLI::Range(100, 60000));
  ha->add_option("--heartbeat-misses", a->misses, "missed heartbeats before a host's lease expires")
      ->check(CLI::Range(2, 60));
  ha->add_option("--etcd-members", a->etcd_members, "1 or 3");
  ha->add_option("--backend", a->backend, "kvm | synthetic (default: kvm when /dev/kvm works)");
  ha->add_flag("--keep", a->keep, "keep the temporary directories (agent and etcd logs)");
  ha->add_flag("--json", a->json, "print the summary as JSON");
  ha->callback([&g, a] { g.exit_code = RunDemoHa(*a); });
}

}  // namespace ferry::cli
