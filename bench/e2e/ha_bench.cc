// ha-bench: how long HA takes to detect a failed host and to restart its protected VMs, against the
// configured heartbeat interval (docs/cluster.md "Benchmark"). Each run is a fresh HaScenario
// (tools/client/ha_scenario.h): a LocalEtcd, three agents, two protected VMs on a slave that is
// SIGKILLed with its VMMs. Prints per interval the median and max over --repeat runs; --json
// writes every run. Nothing here asserts a time: the exit status says only whether every run's VMs
// ran again elsewhere exactly once.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/cluster/cluster_config.h"
#include "tools/client/ha_scenario.h"

namespace {

std::atomic<bool> g_interrupted{false};

struct Figure {
  std::vector<double> values;
  void Add(double v) {
    if (v >= 0) values.push_back(v);
  }
  double Median() const {
    if (values.empty()) return -1;
    std::vector<double> v = values;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
  double Max() const { return values.empty() ? -1 : *std::max_element(values.begin(), values.end()); }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ha-bench: time to detect a failed host and to restart its VMs, by heartbeat interval"};
  std::vector<uint32_t> intervals = {500, 1000, 2000};
  uint32_t misses = 3;
  int repeat = 3, etcd_members = 3, vms = 2;
  bool kvm = false;
  std::string json_path;
  app.add_option("--intervals-ms", intervals, "heartbeat intervals to measure")->delimiter(',');
  app.add_option("--misses", misses, "heartbeat misses (lease TTL = interval x misses, whole seconds)")
      ->check(CLI::Range(2, 60));
  app.add_option("--repeat", repeat, "runs per interval")->check(CLI::Range(1, 100));
  app.add_option("--etcd-members", etcd_members, "1 or 3")->check(CLI::IsMember({1, 3}));
  app.add_option("--vms", vms, "protected VMs on the killed host")->check(CLI::Range(1, 8));
  app.add_flag("--kvm", kvm, "KVM guests with a disk workload (default: synthetic guests)");
  app.add_option("--json", json_path, "write every run here");
  CLI11_PARSE(app, argc, argv);
  for (uint32_t i : intervals) {
    if (i < 100 || i > 60000) {
      std::fprintf(stderr, "ha-bench: --intervals-ms: %u is outside 100..60000\n", i);
      return 2;
    }
  }
  std::signal(SIGINT, [](int) { g_interrupted.store(true); });

  nlohmann::json runs = nlohmann::json::array();
  bool all_ok = true;
  std::printf("%-11s %-6s %-5s %-21s %-21s %-21s\n", "INTERVAL", "LEASE", "RUNS", "LEASE LOST med/max",
              "DETECTED med/max", "VMS RUNNING med/max");
  for (uint32_t interval : intervals) {
    Figure lost, detected, running, restarted;
    int ok_runs = 0;
    for (int rep = 0; rep < repeat && !g_interrupted; ++rep) {
      ferry::cli::HaScenarioOptions o;
      o.etcd_members = etcd_members;
      o.heartbeat_interval_ms = interval;
      o.heartbeat_misses = misses;
      o.kvm = kvm;
      o.vms = vms;
      o.cancelled = &g_interrupted;
      nlohmann::json run = {{"heartbeat_interval_ms", interval}, {"heartbeat_misses", misses}, {"repetition", rep}};
      auto scenario = ferry::cli::HaScenario::Start(o);
      absl::Status st = scenario.ok() ? (*scenario)->CreateProtectedVms() : scenario.status();
      absl::StatusOr<ferry::cli::HaRunResult> result =
          st.ok() ? (*scenario)->KillVictimAndFollow(/*verify=*/false) : absl::StatusOr<ferry::cli::HaRunResult>(st);
      if (!result.ok()) {
        run["error"] = std::string(result.status().message());
        std::fprintf(stderr, "ha-bench: interval %u ms run %d: %s\n", interval, rep,
                     std::string(result.status().message()).c_str());
        all_ok = false;
        runs.push_back(run);
        continue;
      }
      run["lease_lost_s"] = result->lease_lost_s;
      run["detected_s"] = result->detected_s;
      run["ok"] = result->ok();
      lost.Add(result->lease_lost_s);
      detected.Add(result->detected_s);
      double last_running = -1;
      for (const auto& v : result->vms) {
        run["vms"].push_back({{"vm", v.vm}, {"priority", v.priority}, {"restarted_s", v.restarted_s},
                              {"running_s", v.running_s}, {"start_ms", v.start_ms}, {"error", v.error}});
        restarted.Add(v.restarted_s);
        last_running = std::max(last_running, v.running_s);
      }
      running.Add(last_running);  // when the last of the host's VMs ran again
      ok_runs += result->ok();
      all_ok &= result->ok();
      runs.push_back(run);
    }
    ferry::cluster::ClusterConfig c;
    c.heartbeat_interval_ms = interval;
    c.heartbeat_misses = misses;
    std::printf("%-8u ms %3lld s  %2d/%-2d %7.2f / %7.2f s    %7.2f / %7.2f s    %7.2f / %7.2f s\n", interval,
                static_cast<long long>(c.LeaseTtlSeconds()), ok_runs, repeat, lost.Median(), lost.Max(),
                detected.Median(), detected.Max(), running.Median(), running.Max());
    std::fflush(stdout);
  }
  std::printf("(times from the SIGKILL of the host's agent and VMMs; LEASE LOST: the master's host_lost event; "
              "DETECTED: its verdict failed; VMS RUNNING: the last VM answering as running on its new host)\n");
  if (!json_path.empty()) {
    std::ofstream(json_path) << nlohmann::json{{"backend", kvm ? "kvm" : "synthetic"},
                                               {"etcd_members", etcd_members},
                                               {"vms", vms},
                                               {"runs", runs}}
                                    .dump(2)
                             << "\n";
  }
  return all_ok ? 0 : 1;
}
