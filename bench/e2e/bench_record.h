#pragma once
// What migrate-bench measures: the scenario a run used, the figures it got, the loopback TCP
// baseline of the same invocation and the machine it ran on.

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::bench {

struct Scenario {
  std::string group;  // which sweep it belongs to: memory, dirty-rate, pattern, tls, custom, smoke
  std::string backend = "synthetic";  // kvm | synthetic
  uint64_t memory_bytes = 256ull << 20;
  uint64_t working_set_bytes = 64ull << 20;
  double dirty_rate_mibps = 0;  // 0 = the guest dirties nothing (see kIdleRateMiBps)
  bool unlimited_rate = false;  // the guest dirties as fast as it can
  std::string pattern = "random";
  bool tls = true;
  int repeat_index = 0;
  // The data-path suite's knobs (defaults: the product's defaults).
  std::string transport = "data";  // data | grpc
  uint32_t connections = 0;        // 0 = the agent's default
  int warmup_ms = -1;              // -1 = the runner's --warmup-ms
  bool auto_converge = true;
  bool zero_copy = false;
  double max_bandwidth_mibps = 0;  // 0 = unlimited
  uint32_t timeout_s = 0;          // 0 = the runner's
  bool force_switchover = true;
  std::string label;               // what the suite measures with this run
};

// The workload's own rate 0 means "unlimited", so a requested rate of 0 runs as this trickle
// (1 KiB/s: a page every 4 s), and is reported as 0.
inline constexpr double kIdleRateMiBps = 1.0 / 1024;

struct PhaseTimes {
  double setup_ms = 0;      // destination VM created, protocol started
  double precopy_ms = 0;    // dirty tracking on -> source pause
  double stop_copy_ms = 0;  // pause -> destination loaded the final pages and state
  double commit_ms = 0;     // the rest: commit, destination resume, source release
};

struct RunRecord {
  Scenario scenario;
  bool ok = false;
  std::string error;
  std::string outcome;      // completed | failed | cancelled | skipped
  double total_ms = 0;
  PhaseTimes phases;
  double downtime_ms = 0;           // engine: source pause -> destination resume
  bool downtime_same_clock = false;
  double expected_downtime_ms = 0;
  double guest_stall_ms = 0;        // guest-observed: largest heartbeat gap on the destination
  double guest_stall_before_ms = 0; // the same figure on the source just before migrating
  uint32_t rounds = 0;
  uint64_t bytes_transferred = 0;
  uint64_t pages_sent = 0;
  uint64_t zero_pages = 0;
  uint64_t state_bytes = 0;
  double throughput_mib_s = 0;
  double throughput_ratio = 0;      // throughput / single-connection loopback TCP baseline
  bool forced_switchover = false;
  uint64_t guest_corruptions = 0;
  uint64_t source_heartbeats = 0;     // heartbeats the source saw before the migration began
  uint64_t destination_heartbeats = 0;  // heartbeats the destination saw after it resumed
  std::string transport;
  double last_round_dirty_rate_mibps = 0;  // measured by the engine in the last pre-copy round
  double create_ms = 0;                    // CreateVm + warm-up (not part of the migration)
  uint32_t connections = 0;
  bool encrypted = false;
  double round1_mib_s = 0;          // link throughput during round 1 (end to end)
  double run_baseline_mib_s = 0;    // raw loopback TCP measured just before this run
  double round1_ratio = 0;          // round1_mib_s / run_baseline_mib_s
  // Raw loopback TCP measured after the warm-up with the guest running (data-path suite): a KVM
  // guest of the built-in image spins its vCPU (CPL 3 cannot halt), holding a core the idle
  // baseline had. Context for round1_ratio, not a replacement for it.
  double guest_running_baseline_mib_s = 0;
  uint32_t max_throttle_percent = 0;
  std::vector<uint32_t> throttle_by_round;
  std::vector<std::pair<std::string, double>> pause_parts;  // PauseBreakdown, in order
  uint64_t hole_pages = 0;
};

struct TcpBaseline {
  int connections = 1;
  uint64_t bytes = 0;
  double seconds = 0;
  double mib_s = 0;
};

struct MachineRecord {
  std::string cpu_model;
  int cores = 0;
  std::string kernel;
  uint64_t memory_bytes = 0;
  uint64_t memory_available_bytes = 0;
  bool kvm_present = false;
  bool hypervisor = false;       // cpuinfo's hypervisor flag: this host is itself a guest
  bool kvm_nested = false;       // KVM here runs inside a VM (KVM present and hypervisor flag)
  std::string nested_param;      // /sys/module/kvm_{intel,amd}/parameters/nested, "" if absent
  std::string hostname;
  std::string timestamp_utc;
};

}  // namespace ferry::bench
