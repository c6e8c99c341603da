#include "bench/e2e/data_path_suite.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

Scenario Make(const std::string& label, const std::string& backend, uint64_t mem_mib, uint64_t ws_mib, double rate,
              const std::string& pattern, int warmup_ms, bool tls) {
  Scenario s;
  s.group = "data-path";
  s.label = label;
  s.backend = backend;
  s.memory_bytes = mem_mib * kMiB;
  s.working_set_bytes = ws_mib * kMiB;
  s.dirty_rate_mibps = rate;
  s.unlimited_rate = false;
  s.pattern = pattern;
  s.warmup_ms = warmup_ms;
  s.tls = tls;
  return s;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::vector<Scenario> DataPathSuite(bool kvm, int repeat) {
  std::vector<Scenario> out;
  auto add = [&](Scenario s, int times) {
    for (int i = 0; i < times; ++i) {
      s.repeat_index = i;
      out.push_back(s);
    }
  };
  const std::string vm = kvm ? "kvm" : "synthetic";
  // Round 1 of a 2 GiB guest whose 1.5 GiB working set was written sequentially in full during
  // the warm-up. A KVM guest's first write to a page costs ~150 us on this nested host (the EPT
  // mapping), so the fill runs flat out at ~27 MiB/s: 60 s; afterwards it rewrites at 64 MiB/s.
  const int fill_ms = kvm ? 62000 : 30000;
  add(Make("link 2GiB/1.5GiB plaintext", vm, 2048, 1536, 64, "sequential", fill_ms, false), 1);
  add(Make("link 2GiB/1.5GiB encrypted", vm, 2048, 1536, 64, "sequential", fill_ms, true), 1);
  Scenario zc = Make("link 2GiB/1.5GiB plaintext zero-copy", vm, 2048, 1536, 64, "sequential", fill_ms, false);
  zc.zero_copy = true;
  add(zc, 1);
  // The workload: 1 GiB guest, 256 MiB working set at 100 MiB/s after a 4 s warm-up.
  add(Make("1GiB 256MiB@100 encrypted", vm, 1024, 256, 100, "random", 4000, true), repeat);
  add(Make("1GiB idle encrypted", vm, 1024, 64, 0, "random", 1000, true), repeat);
  // Faster than the link: a guest dirtying 1 GiB/s over a link capped at 256 MiB/s (on this
  // 2-core host the uncapped link carries about what the synthetic guest dirties) converges with
  // auto-converge, without forcing.
  Scenario ac = Make("synthetic 1GiB/s over 256MiB/s auto-converge", "synthetic", 1024, 512, 1024, "random", 2000, true);
  ac.max_bandwidth_mibps = 256;
  ac.force_switchover = false;
  add(ac, 1);
  Scenario no_ac = ac;
  no_ac.label = "synthetic 1GiB/s over 256MiB/s no auto-converge";
  no_ac.auto_converge = false;
  no_ac.force_switchover = true;
  add(no_ac, 1);
  // Cost growth: touched memory (written in full during the warm-up) ...
  // (first writes run at ~27 MiB/s on a nested KVM host: the fills take ws / 25 MiB/s).
  for (uint64_t mem : {256, 512, 1024, 2048}) {
    uint64_t ws = mem / 4;
    add(Make(absl::StrCat("growth ", vm, " ", mem, "MiB touched ", ws, "MiB"), vm, mem, ws, 32, "sequential",
             static_cast<int>(ws * 1000 / (kvm ? 25 : 32) + 1000), true),
        1);
  }
  // ... and untouched memory, which should add nothing.
  for (uint64_t mem : {1024, 4096, 16384}) {
    add(Make(absl::StrCat("growth synthetic ", mem, "MiB touched 64MiB"), "synthetic", mem, 64, 64, "sequential",
             1500, true),
        1);
  }
  return out;
}

std::string DataPathSummary(const std::vector<RunRecord>& runs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const RunRecord*>> by;
  for (const RunRecord& r : runs) {
    if (!by.count(r.scenario.label)) order.push_back(r.scenario.label);
    by[r.scenario.label].push_back(&r);
  }
  std::string out =
      "| scenario | runs ok | total (median) | engine pause | guest stall (median) | rounds | round-1 link | "
      "same-run TCP | ratio | TCP, guest running | ratio to it | max throttle | transport |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  std::string parts;
  for (const std::string& label : order) {
    std::vector<double> total, pause, stall, r1, base, ratio, guest_base, guest_ratio, rounds, throttle;
    int ok = 0;
    std::string transport, errors;
    const RunRecord* median_run = nullptr;
    for (const RunRecord* r : by[label]) {
      if (!r->ok) {
        absl::StrAppend(&errors, errors.empty() ? "" : "; ", r->outcome, ": ", r->error);
        continue;
      }
      ++ok;
      total.push_back(r->total_ms);
      pause.push_back(r->downtime_ms);
      stall.push_back(r->guest_stall_ms);
      r1.push_back(r->round1_mib_s);
      base.push_back(r->run_baseline_mib_s);
      ratio.push_back(r->round1_ratio);
      if (r->guest_running_baseline_mib_s > 0) {
        guest_base.push_back(r->guest_running_baseline_mib_s);
        guest_ratio.push_back(r->round1_mib_s / r->guest_running_baseline_mib_s);
      }
      rounds.push_back(r->rounds);
      throttle.push_back(r->max_throttle_percent);
      transport = r->transport;
    }
    double mstall = Median(stall);
    for (const RunRecord* r : by[label]) {
      if (r->ok && (!median_run || std::abs(r->guest_stall_ms - mstall) < std::abs(median_run->guest_stall_ms - mstall))) {
        median_run = r;
      }
    }
    absl::StrAppend(&out, absl::StrFormat("| %s | %d/%zu | %.0f ms | %.1f ms | %.1f ms | %.0f | %.0f MiB/s | %.0f MiB/s | "
                                          "%.2f | %.0f MiB/s | %.2f | %.0f %% | %s |\n",
                                          label, ok, by[label].size(), Median(total), Median(pause), mstall,
                                          Median(rounds), Median(r1), Median(base), Median(ratio), Median(guest_base),
                                          Median(guest_ratio), Median(throttle), transport));
    if (!errors.empty()) absl::StrAppend(&out, "|  ↳ ", errors, " |||||||||||||\n");
    if (median_run && !median_run->pause_parts.empty()) {
      absl::StrAppend(&parts, "- ", label, " (median-stall run):");
      for (const auto& [k, v] : median_run->pause_parts) absl::StrAppend(&parts, absl::StrFormat(" %s %.2f", k, v));
      absl::StrAppend(&parts, " ms; throttle by round:");
      for (uint32_t t : median_run->throttle_by_round) absl::StrAppend(&parts, " ", t);
      absl::StrAppend(&parts, "\n");
    }
  }
  return absl::StrCat(out, "\nPause by its parts:\n\n", parts);
}

}  // namespace ferry::bench
