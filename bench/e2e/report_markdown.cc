// The Markdown table: one row per run, phases in milliseconds, ratios against the baseline.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/e2e/matrix.h"
#include "bench/e2e/report.h"

namespace ferry::bench {
namespace {

std::string Size(uint64_t b) {
  if (b >= (1ull << 30) && b % (1ull << 30) == 0) return absl::StrCat(b >> 30, " GiB");
  return absl::StrCat(b >> 20, " MiB");
}

}  // namespace

std::string MarkdownTable(const BenchReport& report) {
  std::string out;
  const double base = BaselineMiBps(report);
  const MachineRecord& m = report.machine;
  absl::StrAppendFormat(&out, "Machine: %s, %d cores, %.1f GiB, kernel %s, KVM %s%s. ", m.cpu_model, m.cores,
                        m.memory_bytes / 1073741824.0, m.kernel.substr(0, m.kernel.find(' ', 6)),
                        m.kvm_present ? "present" : "absent", m.kvm_nested ? " (nested)" : "");
  absl::StrAppend(&out, "Loopback TCP baseline (same run):");
  for (const TcpBaseline& b : report.baselines) {
    absl::StrAppendFormat(&out, " %d conn %.0f MiB/s;", b.connections, b.mib_s);
  }
  if (!report.baselines_after.empty()) {
    absl::StrAppend(&out, " after the runs:");
    for (const TcpBaseline& b : report.baselines_after) {
      absl::StrAppendFormat(&out, " %d conn %.0f MiB/s;", b.connections, b.mib_s);
    }
  }
  absl::StrAppend(&out, "\n\n");
  absl::StrAppend(&out,
                  "| group | backend | memory | working set | dirty MiB/s (asked / measured) | pattern | TLS | "
                  "total ms | setup ms | pre-copy ms | stop-copy ms | commit ms | downtime ms | guest stall ms | "
                  "rounds | MiB sent | zero pages | MiB/s | x TCP |\n");
  absl::StrAppend(&out, "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const RunRecord& r : report.runs) {
    const Scenario& s = r.scenario;
    std::string head = absl::StrFormat("| %s | %s | %s | %s | %s / %.0f | %s | %s |", s.group, s.backend,
                                       Size(s.memory_bytes), Size(s.working_set_bytes), DescribeRate(s),
                                       r.last_round_dirty_rate_mibps, s.pattern, s.tls ? "on" : "off");
    if (!r.ok) {
      absl::StrAppendFormat(&out, "%s %s: %s ||||||||||||\n", head, r.outcome, r.error);
      continue;
    }
    absl::StrAppendFormat(&out, "%s %.0f | %.1f | %.0f | %.1f | %.1f | %.1f | %.1f | %s | %.0f | %llu | %.0f | %.2f |\n",
                          head, r.total_ms, r.phases.setup_ms, r.phases.precopy_ms, r.phases.stop_copy_ms,
                          r.phases.commit_ms, r.downtime_ms, r.guest_stall_ms,
                          absl::StrCat(r.rounds, r.forced_switchover ? " (forced)" : ""),
                          r.bytes_transferred / 1048576.0, static_cast<unsigned long long>(r.zero_pages),
                          r.throughput_mib_s, base > 0 ? r.throughput_mib_s / base : 0.0);
  }
  return out;
}

absl::Status WriteMarkdown(const BenchReport& report, const std::string& path) {
  std::ofstream out(path);
  if (!out) return absl::InvalidArgumentError(absl::StrCat("--markdown: cannot write ", path));
  out << MarkdownTable(report);
  if (!out) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace ferry::bench
