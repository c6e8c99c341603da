// The JSON document: { schema, command, machine, baseline_tcp, baseline_tcp_after, runs[] }.
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/e2e/matrix.h"
#include "bench/e2e/report.h"

namespace ferry::bench {
namespace {

using nlohmann::json;

json BaselinesJson(const std::vector<TcpBaseline>& list) {
  json a = json::array();
  for (const TcpBaseline& b : list) {
    a.push_back({{"connections", b.connections}, {"bytes", b.bytes}, {"seconds", b.seconds}, {"mib_s", b.mib_s}});
  }
  return a;
}

json RunJson(const RunRecord& r) {
  const Scenario& s = r.scenario;
  return json{
      {"group", s.group},
      {"backend", s.backend},
      {"memory_bytes", s.memory_bytes},
      {"working_set_bytes", s.working_set_bytes},
      {"dirty_rate_mibps", s.unlimited_rate ? json(nullptr) : json(s.dirty_rate_mibps)},
      {"dirty_rate", DescribeRate(s)},
      {"pattern", s.pattern},
      {"tls", s.tls},
      {"repeat_index", s.repeat_index},
      {"ok", r.ok},
      {"outcome", r.outcome},
      {"error", r.error},
      {"total_ms", r.total_ms},
      {"setup_ms", r.phases.setup_ms},
      {"precopy_ms", r.phases.precopy_ms},
      {"stop_copy_ms", r.phases.stop_copy_ms},
      {"commit_ms", r.phases.commit_ms},
      {"downtime_ms", r.downtime_ms},
      {"downtime_same_clock", r.downtime_same_clock},
      {"expected_downtime_ms", r.expected_downtime_ms},
      {"guest_downtime_ms", r.guest_stall_ms},
      {"guest_max_gap_before_ms", r.guest_stall_before_ms},
      {"rounds", r.rounds},
      {"bytes_transferred", r.bytes_transferred},
      {"pages_sent", r.pages_sent},
      {"zero_pages", r.zero_pages},
      {"state_bytes", r.state_bytes},
      {"throughput_mib_s", r.throughput_mib_s},
      {"throughput_ratio_to_tcp", r.throughput_ratio},
      {"forced_switchover", r.forced_switchover},
      {"measured_dirty_rate_mibps", r.last_round_dirty_rate_mibps},
      {"guest_corruptions", r.guest_corruptions},
      {"source_heartbeats", r.source_heartbeats},
      {"destination_heartbeats", r.destination_heartbeats},
      {"transport", r.transport},
      {"create_and_warmup_ms", r.create_ms},
      {"label", s.label},
      {"connections", r.connections},
      {"encrypted", r.encrypted},
      {"zero_copy_requested", s.zero_copy},
      {"round1_mib_s", r.round1_mib_s},
      {"run_baseline_tcp_mib_s", r.run_baseline_mib_s},
      {"round1_ratio_to_run_baseline", r.round1_ratio},
      {"guest_running_baseline_tcp_mib_s", r.guest_running_baseline_mib_s},
      {"max_throttle_percent", r.max_throttle_percent},
      {"throttle_by_round", r.throttle_by_round},
      {"hole_pages", r.hole_pages},
      {"pause_ms", [&] {
         json p = json::object();
         for (const auto& [k, v] : r.pause_parts) p[k] = v;
         return p;
       }()},
  };
}

}  // namespace

double BaselineMiBps(const BenchReport& report) {
  for (const TcpBaseline& b : report.baselines) {
    if (b.connections == 1) return b.mib_s;
  }
  return 0;
}

absl::Status WriteJson(const BenchReport& report, const std::string& path) {
  const MachineRecord& m = report.machine;
  json doc{
      {"schema", "ferry.migrate-bench/1"},
      {"command", report.command},
      {"wall_s", report.wall_s},
      {"machine",
       {{"cpu_model", m.cpu_model},
        {"cores", m.cores},
        {"kernel", m.kernel},
        {"hostname", m.hostname},
        {"memory_bytes", m.memory_bytes},
        {"memory_available_bytes", m.memory_available_bytes},
        {"kvm_present", m.kvm_present},
        {"hypervisor_flag", m.hypervisor},
        {"kvm_nested", m.kvm_nested},
        {"nested_param", m.nested_param},
        {"timestamp_utc", m.timestamp_utc}}},
      {"baseline_tcp", BaselinesJson(report.baselines)},
      {"baseline_tcp_after", BaselinesJson(report.baselines_after)},
      {"baseline_mib_s", BaselineMiBps(report)},
  };
  json runs = json::array();
  for (const RunRecord& r : report.runs) runs.push_back(RunJson(r));
  doc["runs"] = std::move(runs);
  std::ofstream out(path);
  if (!out) return absl::InvalidArgumentError(absl::StrCat("--json: cannot write ", path));
  out << doc.dump(2) << "\n";
  if (!out) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace ferry::bench
