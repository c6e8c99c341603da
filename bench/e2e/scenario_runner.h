#pragma once
// One end-to-end run: create a VM on agent 0 of a local cluster, let its workload warm up,
// migrate it to agent 1 through the agents' API, read the guest-observed stall on the
// destination, and stop it.

#include <string>

#include "bench/e2e/bench_record.h"
#include "tools/client/local_cluster.h"

namespace ferry::bench {

struct RunnerOptions {
  int warmup_ms = 500;          // workload running before the migration starts
  uint32_t max_downtime_ms = 300;
  uint32_t max_rounds = 30;
  uint32_t timeout_s = 120;
  bool force_switchover = true;  // a dirty rate above the link still completes (and says so)
  int settle_ms = 200;           // destination running before its heartbeat gap is read
  // Also measure raw loopback TCP after the warm-up, while the guest runs (RunRecord::
  // guest_running_baseline_mib_s): what the link gets on this host while the workload holds its CPU.
  bool baseline_with_guest_running = false;
};

// Never fails as a call: a run that could not be done is a record with ok=false and an error.
RunRecord RunScenario(cli::LocalCluster& cluster, const Scenario& scenario, const RunnerOptions& options,
                      const std::string& vm_name);

}  // namespace ferry::bench
