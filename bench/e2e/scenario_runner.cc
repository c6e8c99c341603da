#include "bench/e2e/scenario_runner.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/e2e/tcp_baseline.h"
#include "engine/base/clock.h"
#include "tools/client/agent_client.h"

namespace ferry::bench {
namespace {

v1::VmSpec SpecFor(const Scenario& s, const std::string& name) {
  v1::VmSpec spec;
  spec.set_name(name);
  spec.set_backend(s.backend == "kvm" ? v1::BACKEND_KIND_KVM : v1::BACKEND_KIND_SYNTHETIC);
  spec.set_memory_bytes(s.memory_bytes);
  spec.set_vcpus(1);
  auto* w = spec.mutable_workload();
  w->set_working_set_bytes(s.working_set_bytes);
  // The workload's 0 means unlimited; an idle guest gets a trickle instead.
  w->set_dirty_rate_mibps(s.unlimited_rate ? 0 : std::max(s.dirty_rate_mibps, kIdleRateMiBps));
  w->set_pattern(s.pattern);
  w->set_seed(1);
  return spec;
}

absl::StatusOr<v1::VmInfo> GetVm(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetVmRequest req;
  req.set_name(name);
  v1::VmInfo info;
  grpc::Status st = stub.GetVm(&ctx, req, &info);
  if (!st.ok()) return absl::InternalError(absl::StrCat("GetVm ", name, ": ", st.error_message()));
  return info;
}

void StopVm(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::StopVmRequest req;
  req.set_name(name);
  v1::VmInfo info;
  (void)stub.StopVm(&ctx, req, &info);
}

// Waits for the guest's first heartbeat (it has booted and its workload runs).
absl::Status WaitForHeartbeats(v1::Agent::Stub& stub, const std::string& name) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (true) {
    auto info = GetVm(stub, name);
    if (!info.ok()) return info.status();
    if (info->health().heartbeats() > 0) return absl::OkStatus();
    if (info->state() == v1::VM_POWER_STATE_STOPPED || info->health().shut_down()) {
      return absl::InternalError(absl::StrCat("VM ", name, " stopped before its first heartbeat; see ",
                                              info->console_log_path()));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("VM ", name, " sent no heartbeat within 30 s"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void FillFromStats(const v1::MigrationStats& st, RunRecord& r) {
  r.total_ms = st.total_ms();
  r.phases.setup_ms = st.setup_ms();
  r.phases.precopy_ms = st.precopy_ms();
  r.phases.stop_copy_ms = st.stop_copy_ms();
  r.phases.commit_ms = std::max(0.0, st.total_ms() - st.setup_ms() - st.precopy_ms() - st.stop_copy_ms());
  r.downtime_ms = st.downtime_ms();
  r.downtime_same_clock = st.downtime_same_clock();
  r.expected_downtime_ms = st.expected_downtime_ms();
  r.rounds = st.rounds();
  r.bytes_transferred = st.bytes_transferred();
  r.pages_sent = st.pages_sent();
  r.zero_pages = st.zero_pages();
  r.state_bytes = st.state_bytes();
  r.throughput_mib_s = st.throughput_mib_s();
  r.forced_switchover = st.forced_switchover();
  r.transport = st.transport();
  r.connections = st.connections();
  r.encrypted = st.encrypted();
  r.max_throttle_percent = st.max_throttle_percent();
  r.hole_pages = st.hole_pages();
  for (const auto& rs : st.round_stats()) r.throttle_by_round.push_back(rs.throttle_percent());
  if (st.round_stats_size() > 0) r.round1_mib_s = st.round_stats(0).bandwidth_mibps();
  const v1::PauseBreakdown& p = st.pause();
  r.pause_parts = {{"vcpu_pause", p.vcpu_pause_ms()},       {"dirty_log", p.dirty_log_ms()},
                   {"final_pages", p.final_pages_ms()},     {"state_save", p.state_save_ms()},
                   {"state_transfer", p.state_transfer_ms()}, {"wait_final_pages", p.wait_final_pages_ms()},
                   {"state_load", p.state_load_ms()},       {"resume", p.resume_ms()},
                   {"first_instruction", p.first_instruction_ms()}};
  // The last pre-copy round (the final entry is the stop-and-copy round).
  if (st.round_stats_size() >= 2) {
    r.last_round_dirty_rate_mibps = st.round_stats(st.round_stats_size() - 2).dirty_rate_mibps();
  }
}

}  // namespace

RunRecord RunScenario(cli::LocalCluster& cluster, const Scenario& s, const RunnerOptions& o,
                      const std::string& name) {
  RunRecord r;
  r.scenario = s;
  r.outcome = "failed";
  auto src = cluster.Stub(0);
  auto dst = cluster.Stub(1);
  if (!src.ok() || !dst.ok()) {
    r.error = std::string((src.ok() ? dst.status() : src.status()).message());
    return r;
  }

  Stopwatch create_watch;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::CreateVmRequest req;
    *req.mutable_spec() = SpecFor(s, name);
    req.set_start(true);
    v1::VmInfo info;
    grpc::Status st = (*src)->CreateVm(&ctx, req, &info);
    if (!st.ok()) {
      r.error = absl::StrCat("CreateVm: ", st.error_message());
      return r;
    }
  }
  if (absl::Status st = WaitForHeartbeats(**src, name); !st.ok()) {
    r.error = std::string(st.message());
    StopVm(**src, name);
    return r;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(s.warmup_ms >= 0 ? s.warmup_ms : o.warmup_ms));
  r.create_ms = create_watch.ElapsedMillis();
  if (o.baseline_with_guest_running) {
    if (auto b = MeasureLoopbackTcp(1, std::chrono::milliseconds(500)); b.ok()) r.guest_running_baseline_mib_s = b->mib_s;
  }
  if (auto before = GetVm(**src, name); before.ok()) {
    r.guest_stall_before_ms = before->health().max_heartbeat_gap_ms();
    r.source_heartbeats = before->health().heartbeats();
  }

  v1::MigrateRequest req;
  req.set_vm_name(name);
  req.set_destination(cluster.address(1));
  req.set_destination_name(cluster.name(1));
  auto* opt = req.mutable_options();
  opt->set_max_downtime_ms(o.max_downtime_ms);
  opt->set_max_rounds(o.max_rounds);
  opt->set_timeout_s(o.timeout_s);
  opt->set_policy(o.force_switchover && s.force_switchover ? v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER
                                                           : v1::CONVERGENCE_POLICY_CANCEL);
  if (s.timeout_s > 0) opt->set_timeout_s(s.timeout_s);
  opt->set_transport(s.transport == "grpc" ? v1::TRANSPORT_GRPC : v1::TRANSPORT_DATA);
  opt->set_connections(s.connections);
  opt->set_no_auto_converge(!s.auto_converge);
  opt->set_zero_copy(s.zero_copy);
  opt->set_max_bandwidth_mibps(s.max_bandwidth_mibps);
  auto last = cli::MigrateWithProgress(**src, req, /*quiet=*/true);
  if (!last.ok()) {
    r.error = absl::StrCat("Migrate: ", last.status().message());
    StopVm(**src, name);
    return r;
  }
  FillFromStats(last->stats(), r);
  if (last->phase() != v1::MIGRATION_PHASE_COMPLETED) {
    r.outcome = last->phase() == v1::MIGRATION_PHASE_CANCELLED ? "cancelled" : "failed";
    r.error = last->error();
    StopVm(**src, name);
    return r;
  }
  r.outcome = "completed";
  std::this_thread::sleep_for(std::chrono::milliseconds(o.settle_ms));
  auto after = GetVm(**dst, name);
  if (!after.ok()) {
    r.error = std::string(after.status().message());
    StopVm(**dst, name);
    return r;
  }
  r.guest_stall_ms = after->health().max_heartbeat_gap_ms();
  r.guest_corruptions = after->health().corruptions();
  // The largest gap only grows when a heartbeat arrives: make sure the guest runs on the
  // destination, or a guest that never resumed would look like a short stall.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto later = GetVm(**dst, name);
  StopVm(**dst, name);
  if (!later.ok()) {
    r.error = std::string(later.status().message());
    return r;
  }
  r.destination_heartbeats = later->health().heartbeats();
  if (later->health().heartbeats() <= after->health().heartbeats()) {
    r.error = absl::StrFormat(
        "the guest made no progress on the destination (no heartbeat in 100 ms, %.0f ms since the last one)",
        later->health().since_last_heartbeat_ms());
    return r;
  }
  if (r.guest_corruptions > 0) {
    r.error = absl::StrCat("the guest reported ", r.guest_corruptions, " corrupted page(s) after migrating");
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace ferry::bench
