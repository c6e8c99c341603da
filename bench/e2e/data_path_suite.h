#pragma once
// `migrate-bench --suite data-path`: the scenarios behind docs/performance.md's data-path figures
// (round-1 link throughput against the same run's raw TCP, the 1 GiB / 256 MiB stall, an idle
// guest's pause by its parts, auto-converge against a guest that outruns the link, and cost
// growth with touched memory), and their summary table.

#include <string>
#include <vector>

#include "bench/e2e/bench_record.h"

namespace ferry::bench {

// `repeat` applies to the scenarios whose figure is a median (stall, idle).
std::vector<Scenario> DataPathSuite(bool kvm_present, int repeat);

// One line per label: medians over its runs, and what the issue asks of it.
std::string DataPathSummary(const std::vector<RunRecord>& runs);

}  // namespace ferry::bench
