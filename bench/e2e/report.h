#pragma once
// migrate-bench's outputs: the JSON document (machine, baselines, one record per run), the
// Markdown table, and gnuplot figures with the .dat files they plot.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/e2e/bench_record.h"

namespace ferry::bench {

struct BenchReport {
  std::string command;  // the command line that produced it
  MachineRecord machine;
  std::vector<TcpBaseline> baselines;        // measured before the runs
  std::vector<TcpBaseline> baselines_after;  // measured again after them (drift check)
  std::vector<RunRecord> runs;
  double wall_s = 0;
};

// The single-connection baseline every ratio is taken against (the gRPC data path is one stream).
double BaselineMiBps(const BenchReport& report);

absl::Status WriteJson(const BenchReport& report, const std::string& path);
std::string MarkdownTable(const BenchReport& report);
absl::Status WriteMarkdown(const BenchReport& report, const std::string& path);
// Writes DIR/*.dat and DIR/*.gp, then runs gnuplot to make DIR/*.png.
absl::Status WritePlots(const BenchReport& report, const std::string& dir);

}  // namespace ferry::bench
