// migrate-bench: end-to-end live-migration scenarios between two local ferry-agents, with a raw
// loopback TCP baseline measured in the same run. Writes JSON, a Markdown table and gnuplot
// figures. Nothing here asserts speed: the exit status says only whether every run migrated.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "bench/e2e/data_path_suite.h"
#include "bench/e2e/link_share_bench.h"
#include "bench/e2e/machine_info.h"
#include "bench/e2e/matrix.h"
#include "bench/e2e/report.h"
#include "bench/e2e/scenario_runner.h"
#include "bench/e2e/tcp_baseline.h"
#include "engine/base/clock.h"
#include "engine/base/size_parse.h"
#include "tools/client/local_cluster.h"

namespace ferry::bench {
namespace {

struct Flags {
  bool smoke = false;
  std::string json, plots, markdown;
  std::string backend, tls;
  std::vector<std::string> memory, working_set, dirty_rate, pattern;
  int repeat = 1;
  double baseline_s = 1.5;
  int baseline_connections = 4;
  std::string max_kvm_memory = "4GiB";
  bool keep_logs = false;
  std::string suite;
  std::string summary;  // --suite: write the summary table here too
  std::vector<std::string> only;  // --suite: run only the scenarios whose label contains one of these
  bool in_process_vms = false;    // agents run VMs inside themselves (no ferry-vmm processes)
  RunnerOptions runner;
};

int Usage(const std::string& message) {
  std::fprintf(stderr, "migrate-bench: %s\n", message.c_str());
  return 2;
}

absl::StatusOr<std::vector<std::string>> ResolveBackends(const Flags& f, bool kvm_present) {
  std::string b = f.backend;
  if (b.empty()) b = f.smoke ? "available" : (kvm_present ? "kvm" : "synthetic");
  if (b == "available") return kvm_present ? std::vector<std::string>{"kvm", "synthetic"}
                                           : std::vector<std::string>{"synthetic"};
  std::vector<std::string> out;
  if (b == "kvm" || b == "both") out.push_back("kvm");
  if (b == "synthetic" || b == "both") out.push_back("synthetic");
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--backend '", b, "' must be kvm, synthetic or both"));
  if (out.front() == "kvm" && !kvm_present) {
    return absl::FailedPreconditionError(
        "--backend kvm needs /dev/kvm (read-write), which this host lacks; use --backend synthetic");
  }
  return out;
}

absl::StatusOr<std::vector<bool>> ResolveTls(const Flags& f, bool default_matrix) {
  std::string t = f.tls.empty() ? (default_matrix ? "both" : "on") : f.tls;
  if (t == "on") return std::vector<bool>{true};
  if (t == "off") return std::vector<bool>{false};
  if (t == "both") return std::vector<bool>{true, false};
  return absl::InvalidArgumentError(absl::StrCat("--tls '", t, "' must be on, off or both"));
}

class Clusters {
 public:
  Clusters(bool keep_logs, bool in_process_vms) : keep_logs_(keep_logs), in_process_vms_(in_process_vms) {}
  absl::StatusOr<cli::LocalCluster*> For(bool tls) {
    auto& c = clusters_[tls];
    if (c && (!c->Alive(0) || !c->Alive(1))) {
      std::fprintf(stderr, "migrate-bench: an agent of the %s cluster died (logs: %s); restarting it\n",
                   tls ? "TLS" : "plaintext", c->dir().c_str());
      c.reset();
    }
    if (!c) {
      cli::LocalClusterOptions o;
      o.agents = 2;
      o.tls = tls;
      o.keep_dir = keep_logs_;
      if (in_process_vms_) o.extra_args = {{"--in-process-vms"}, {"--in-process-vms"}};
      auto started = cli::LocalCluster::Start(o);
      if (!started.ok()) return started.status();
      c = std::move(*started);
      if (keep_logs_) std::fprintf(stderr, "agent logs: %s\n", c->dir().c_str());
    }
    return c.get();
  }

 private:
  bool keep_logs_;
  bool in_process_vms_;
  std::map<bool, std::unique_ptr<cli::LocalCluster>> clusters_;
};

std::vector<TcpBaseline> MeasureBaselines(std::chrono::milliseconds d, int multi) {
  std::vector<TcpBaseline> out;
  for (int conns : {1, multi}) {
    if (conns < 1 || (conns == multi && multi == 1 && !out.empty())) continue;
    auto b = MeasureLoopbackTcp(conns, d);
    if (!b.ok()) {
      std::fprintf(stderr, "migrate-bench: loopback TCP baseline (%d connections) failed: %s\n", conns,
                   std::string(b.status().message()).c_str());
      continue;
    }
    std::fprintf(stderr, "baseline: raw loopback TCP, %d connection(s): %.0f MiB/s\n", conns, b->mib_s);
    out.push_back(*b);
  }
  return out;
}

int Run(const Flags& f, const std::string& command) {
  Stopwatch wall;
  BenchReport report;
  report.command = command;
  report.machine = DescribeMachine();
  auto backends = ResolveBackends(f, report.machine.kvm_present);
  if (!backends.ok()) return Usage(std::string(backends.status().message()));
  const bool custom = !f.memory.empty() || !f.working_set.empty() || !f.dirty_rate.empty() || !f.pattern.empty();
  auto tls = ResolveTls(f, !f.smoke && !custom);
  if (!tls.ok()) return Usage(std::string(tls.status().message()));
  MatrixFlags mf;
  mf.smoke = f.smoke;
  mf.backends = *backends;
  mf.memory = f.memory;
  mf.working_set = f.working_set;
  mf.dirty_rate = f.dirty_rate;
  mf.pattern = f.pattern;
  mf.tls_modes = *tls;
  mf.repeat = f.repeat;
  auto max_kvm = ParseByteSize(f.max_kvm_memory);
  if (!max_kvm.ok()) return Usage(absl::StrCat("--max-kvm-memory: ", max_kvm.status().message()));
  mf.max_kvm_memory = *max_kvm;
  if (f.suite == "link-share") return RunLinkShareBench({f.repeat > 1 ? f.repeat : 3, f.keep_logs});
  absl::StatusOr<std::vector<Scenario>> matrix;
  if (f.suite == "data-path") {
    matrix = DataPathSuite(report.machine.kvm_present, f.repeat > 1 ? f.repeat : 5);
    if (!f.only.empty()) {
      // A value equal to a label selects that label alone; otherwise every label containing it.
      std::vector<Scenario> kept;
      for (const Scenario& s : *matrix) {
        for (const std::string& o : f.only) {
          bool exact_elsewhere = false;
          for (const Scenario& t : *matrix) exact_elsewhere |= t.label == o;
          if (exact_elsewhere ? s.label == o : absl::StrContains(s.label, o)) {
            kept.push_back(s);
            break;
          }
        }
      }
      if (kept.empty()) return Usage(absl::StrCat("--only: no data-path scenario's label contains '",
                                                  absl::StrJoin(f.only, "' or '"), "'"));
      matrix = std::move(kept);
    }
  } else if (!f.suite.empty()) {
    return Usage(absl::StrCat("--suite '", f.suite, "' must be data-path or link-share"));
  } else if (!f.only.empty()) {
    return Usage("--only needs --suite data-path");
  } else {
    matrix = BuildMatrix(mf);
  }
  if (!matrix.ok()) return Usage(std::string(matrix.status().message()));
  if (f.baseline_s <= 0 || f.baseline_s > 30) return Usage("--baseline-seconds must be in (0, 30]");

  std::fprintf(stderr, "migrate-bench: %zu run(s) on %s, %d cores, KVM %s%s\n", matrix->size(),
               report.machine.cpu_model.c_str(), report.machine.cores,
               report.machine.kvm_present ? "present" : "absent", report.machine.kvm_nested ? " (nested)" : "");
  const auto baseline_time = std::chrono::milliseconds(static_cast<int64_t>(f.baseline_s * 1000));
  report.baselines = MeasureBaselines(baseline_time, f.baseline_connections);
  const double base = BaselineMiBps(report);

  Clusters clusters(f.keep_logs, f.in_process_vms);
  int failed = 0, index = 0;
  for (const Scenario& s : *matrix) {
    ++index;
    std::string label = !s.label.empty() ? absl::StrCat(s.label, " #", s.repeat_index + 1) : absl::StrCat(s.group, " ", s.backend, " mem=", s.memory_bytes >> 20, "MiB ws=",
                                      s.working_set_bytes >> 20, "MiB rate=", DescribeRate(s), " ", s.pattern,
                                      " tls=", s.tls ? "on" : "off");
    RunRecord r;
    // Two copies (source and destination) of what the guest touches, and slack: untouched guest
    // memory stays a hole on both hosts.
    const uint64_t need = 2 * (s.group == "data-path" ? s.working_set_bytes + (64ull << 20) : s.memory_bytes) +
                          (512ull << 20);
    const uint64_t avail = AvailableMemoryBytes();
    if (avail > 0 && need > avail) {
      r.scenario = s;
      r.outcome = "skipped";
      r.error = absl::StrCat("needs ", need >> 20, " MiB of host memory (two copies of the guest), ", avail >> 20,
                             " MiB available");
    } else if (s.working_set_bytes + (4ull << 20) > s.memory_bytes) {
      r.scenario = s;
      r.outcome = "skipped";
      r.error = "working set does not fit in guest memory (4 MiB are reserved)";
    } else {
      auto cluster = clusters.For(s.tls);
      if (!cluster.ok()) {
        r.scenario = s;
        r.outcome = "failed";
        r.error = absl::StrCat("cannot start the local agents: ", cluster.status().message());
      } else {
        if (!f.suite.empty()) {
          // The same run's raw loopback TCP, right before the migration.
          auto b = MeasureLoopbackTcp(1, std::chrono::milliseconds(500));
          RunnerOptions runner = f.runner;
          runner.baseline_with_guest_running = true;
          r = RunScenario(**cluster, s, runner, absl::StrCat("bench-", index, "-", getpid()));
          if (b.ok()) {
            r.run_baseline_mib_s = b->mib_s;
            if (b->mib_s > 0) r.round1_ratio = r.round1_mib_s / b->mib_s;
          }
        } else {
          r = RunScenario(**cluster, s, f.runner, absl::StrCat("bench-", index, "-", getpid()));
        }
      }
    }
    if (r.ok && base > 0) r.throughput_ratio = r.throughput_mib_s / base;
    if (!r.ok && r.outcome != "skipped") ++failed;
    if (r.ok) {
      std::fprintf(stderr,
                   "[%d/%zu] %s: total %.0f ms (setup %.0f, pre-copy %.0f, stop-copy %.1f, commit %.1f), downtime "
                   "%.1f ms, guest stall %.1f ms, %u rounds, %.0f MiB, %.0f MiB/s = %.2fx TCP\n",
                   index, matrix->size(), label.c_str(), r.total_ms, r.phases.setup_ms, r.phases.precopy_ms,
                   r.phases.stop_copy_ms, r.phases.commit_ms, r.downtime_ms, r.guest_stall_ms, r.rounds,
                   r.bytes_transferred / 1048576.0, r.throughput_mib_s, r.throughput_ratio);
      if (!f.suite.empty()) {
        std::fprintf(stderr,
                     "    round 1 %.0f MiB/s vs same-run TCP %.0f MiB/s = %.2fx (TCP with the guest running %.0f MiB/s "
                     "= %.2fx), max throttle %u%%, %s\n",
                     r.round1_mib_s, r.run_baseline_mib_s, r.round1_ratio, r.guest_running_baseline_mib_s,
                     r.guest_running_baseline_mib_s > 0 ? r.round1_mib_s / r.guest_running_baseline_mib_s : 0.0,
                     r.max_throttle_percent, r.transport.c_str());
      }
    } else {
      std::fprintf(stderr, "[%d/%zu] %s: %s: %s\n", index, matrix->size(), label.c_str(), r.outcome.c_str(),
                   r.error.c_str());
    }
    report.runs.push_back(std::move(r));
  }
  if (!f.smoke) report.baselines_after = MeasureBaselines(baseline_time, 1);
  report.wall_s = wall.ElapsedMillis() / 1e3;

  int rc = failed > 0 ? 1 : 0;
  if (!f.json.empty()) {
    if (absl::Status st = WriteJson(report, f.json); !st.ok()) return Usage(std::string(st.message()));
    std::fprintf(stderr, "wrote %s\n", f.json.c_str());
  }
  if (!f.markdown.empty()) {
    if (absl::Status st = WriteMarkdown(report, f.markdown); !st.ok()) return Usage(std::string(st.message()));
    std::fprintf(stderr, "wrote %s\n", f.markdown.c_str());
  }
  if (!f.plots.empty()) {
    if (absl::Status st = WritePlots(report, f.plots); !st.ok()) {
      std::fprintf(stderr, "migrate-bench: plots: %s\n", std::string(st.message()).c_str());
      rc = 1;
    } else {
      std::fprintf(stderr, "wrote plots to %s\n", f.plots.c_str());
    }
  }
  if (!f.suite.empty()) {
    std::string summary = DataPathSummary(report.runs);
    std::printf("%s", summary.c_str());
    if (!f.summary.empty()) {
      FILE* out = std::fopen(f.summary.c_str(), "w");
      if (!out) return Usage(absl::StrCat("--summary: cannot write ", f.summary));
      std::fputs(summary.c_str(), out);
      std::fclose(out);
    }
  }
  std::fprintf(stderr, "migrate-bench: %zu run(s), %d failed, %.0f s\n", report.runs.size(), failed, report.wall_s);
  return rc;
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using ferry::bench::Flags;
  Flags f;
  CLI::App app{"migrate-bench: end-to-end live-migration benchmark over two local ferry-agents"};
  app.add_flag("--smoke", f.smoke, "one tiny run per available backend (CI)");
  app.add_option("--json", f.json, "write the runs, baselines and machine record as JSON to this file");
  app.add_option("--plots", f.plots, "write gnuplot PNGs and their .dat/.gp files into this directory");
  app.add_option("--markdown", f.markdown, "write the results table (Markdown) to this file");
  app.add_option("--backend", f.backend, "kvm | synthetic | both (default: kvm when /dev/kvm exists)");
  app.add_option("--tls", f.tls, "on | off | both (default: both for the default matrix, else on)");
  app.add_option("--memory", f.memory, "guest memory sizes, e.g. 256MiB,1GiB")->delimiter(',');
  app.add_option("--working-set", f.working_set, "working-set sizes")->delimiter(',');
  app.add_option("--dirty-rate", f.dirty_rate, "dirty rates in MiB/s (0 = idle, max = unlimited)")->delimiter(',');
  app.add_option("--pattern", f.pattern, "sequential | random | hotcold")->delimiter(',');
  app.add_option("--repeat", f.repeat, "run every scenario N times");
  app.add_option("--max-kvm-memory", f.max_kvm_memory, "largest KVM guest in the default matrix (default 4GiB)");
  app.add_option("--baseline-seconds", f.baseline_s, "duration of each loopback TCP baseline (default 1.5)");
  app.add_option("--baseline-connections", f.baseline_connections, "connections of the multi-connection baseline");
  app.add_option("--warmup-ms", f.runner.warmup_ms, "workload running before the migration (default 500)");
  app.add_option("--max-downtime-ms", f.runner.max_downtime_ms, "the migration's downtime target (default 300)");
  app.add_option("--max-rounds", f.runner.max_rounds, "pre-copy round limit (default 30)");
  app.add_option("--suite", f.suite,
                 "data-path: the data-path figures of docs/performance.md (repeat 5 by default); link-share: two "
                 "concurrent migrations' share of the link, high vs standard (docs/jobs.md)");
  app.add_option("--summary", f.summary, "with --suite: also write the summary table (Markdown) here");
  app.add_option("--only", f.only,
                 "with --suite data-path: only these scenarios: a whole label selects it alone, a part of one every "
                 "label containing it, e.g. '1GiB idle'")
      ->delimiter(',');
  app.add_flag("--in-process-vms", f.in_process_vms,
               "start the agents with --in-process-vms (VMs inside the agents, no ferry-vmm processes)");
  app.add_flag("--keep-logs", f.keep_logs, "keep the agents' temporary directories (logs, consoles)");
  CLI11_PARSE(app, argc, argv);
  if (f.smoke) f.baseline_s = std::min(f.baseline_s, 0.3);
  std::vector<std::string> args(argv, argv + argc);
  return ferry::bench::Run(f, absl::StrJoin(args, " "));
}
