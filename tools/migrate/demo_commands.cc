// migrate demo: two agents on this machine, a live migration of the built-in guest, a summary.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/base/clock.h"
#include "tools/client/agent_client.h"
#include "tools/client/guest_verify.h"
#include "tools/client/local_cluster.h"
#include "tools/client/stats_render.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {

namespace {

struct DemoArgs {
  std::string memory = "256MiB", working_set = "64MiB", rate = "50MiB/s", pattern = "random", backend;
  std::string max_bandwidth = "0";
  uint32_t vcpus = 1, max_downtime_ms = 300;
  double warmup_s = 1.0, observe_s = 1.0;
  bool json = false, insecure = false, keep = false;
  DataPathFlags data;
};

absl::StatusOr<v1::VmInfo> GetVm(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  v1::GetVmRequest req;
  req.set_name(name);
  v1::VmInfo info;
  grpc::Status st = stub.GetVm(&ctx, req, &info);
  if (!st.ok()) return FromGrpcStatus(st);
  return info;
}

// Waits until the VM has sent heartbeats for `seconds`.
absl::Status WaitForHeartbeats(v1::Agent::Stub& stub, const std::string& name, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds + 10);
  auto first_seen = std::chrono::steady_clock::time_point{};
  while (std::chrono::steady_clock::now() < deadline) {
    auto vm = GetVm(stub, name);
    if (!vm.ok()) return vm.status();
    if (vm->health().corruptions() > 0) {
      return absl::DataLossError(absl::StrCat("guest reported corruption before migrating: ",
                                              vm->health().corruption_reports(0)));
    }
    if (vm->health().heartbeats() > 0) {
      if (first_seen == std::chrono::steady_clock::time_point{}) first_seen = std::chrono::steady_clock::now();
      if (std::chrono::steady_clock::now() - first_seen >= std::chrono::duration<double>(seconds)) {
        return absl::OkStatus();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("the guest sent no heartbeat within 10 s of booting");
}

int RunDemo(const DemoArgs& a) {
  auto fail = [&](const std::string& what) { return ReportError("demo", FailureError(what), a.json); };
  std::string backend = a.backend;
  if (backend.empty()) {
    backend = access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "synthetic";
    if (backend == "synthetic") {
      std::fprintf(stderr, "migrate demo: /dev/kvm is not usable here; using the synthetic backend\n");
    }
  }
  auto spec = BuildSpecFromFlags("demo-vm", a.memory, a.working_set, a.rate, a.pattern, backend, a.vcpus, 1, 0);
  if (!spec.ok()) return ReportError("demo", UsageError(std::string(spec.status().message())), a.json);
  auto opts = BuildMigrationOptions(a.max_downtime_ms, a.max_bandwidth, 0, 30, "cancel");
  if (opts.ok()) {
    if (absl::Status st = ApplyDataPathFlags(a.data, *opts); !st.ok()) opts = st;
  }
  if (!opts.ok()) return ReportError("demo", UsageError(std::string(opts.status().message())), a.json);
  auto say = [&](const std::string& s) {
    if (!a.json) std::printf("%s\n", s.c_str()), std::fflush(stdout);
  };

  Stopwatch total;
  LocalClusterOptions copts;
  copts.tls = !a.insecure;
  copts.keep_dir = a.keep;
  auto cluster = LocalCluster::Start(copts);
  if (!cluster.ok()) return fail(std::string(cluster.status().message()));
  LocalCluster& c = **cluster;
  say(absl::StrFormat("agents: %s at %s, %s at %s (%s, temporary dir %s)", c.name(0), c.address(0), c.name(1),
                      c.address(1), a.insecure ? "plaintext" : "mutual TLS with a temporary CA", c.dir()));
  auto src = c.Stub(0);
  auto dst = c.Stub(1);
  if (!src.ok() || !dst.ok()) return fail("cannot dial the agents");

  {
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = *spec;
    req.set_start(true);
    v1::VmInfo info;
    grpc::Status st = (*src)->CreateVm(&ctx, req, &info);
    if (!st.ok()) return fail("cannot create the VM on " + c.name(0) + ": " + st.error_message());
  }
  say(absl::StrFormat("VM demo-vm: %s memory, working set %s dirtied at %s (%s backend) on %s", a.memory,
                      a.working_set, a.rate, backend, c.name(0)));
  if (absl::Status st = WaitForHeartbeats(**src, "demo-vm", a.warmup_s); !st.ok()) {
    return fail(std::string(st.message()));
  }
  auto before = GetVm(**src, "demo-vm");
  if (!before.ok()) return fail(std::string(before.status().message()));
  say(absl::StrFormat("guest running: %d heartbeats, no corruption; migrating to %s", before->health().heartbeats(),
                      c.name(1)));

  v1::MigrateRequest req;
  req.set_vm_name("demo-vm");
  req.set_destination(c.address(1));
  req.set_destination_name(c.name(1));
  *req.mutable_options() = *opts;
  auto last = MigrateWithProgress(**src, req, a.json);
  if (!last.ok()) return fail(std::string(last.status().message()));
  if (last->phase() != v1::MIGRATION_PHASE_COMPLETED) {
    if (!a.json) PrintMigrationSummary(*last);
    return fail("migration did not complete: " + last->error());
  }

  // The guest must continue on the destination: heartbeats grow, no corruption.
  auto after1 = GetVm(**dst, "demo-vm");
  if (!after1.ok()) return fail("VM not found on the destination: " + std::string(after1.status().message()));
  std::this_thread::sleep_for(std::chrono::duration<double>(a.observe_s));
  // Verified means every page of the working set was re-checked by the guest after arrival.
  auto swept = WaitForFullSweep(**dst, "demo-vm");
  if (!swept.ok() && !absl::IsDataLoss(swept.status()) && !absl::IsDeadlineExceeded(swept.status())) {
    return fail("VM vanished from the destination: " + std::string(swept.status().message()));
  }
  auto after2 = GetVm(**dst, "demo-vm");
  if (!after2.ok()) return fail("VM vanished from the destination: " + std::string(after2.status().message()));
  auto gone = GetVm(**src, "demo-vm");
  bool left_source = !gone.ok() && absl::IsNotFound(gone.status());
  const auto& h = after2->health();
  bool heartbeat_grew = h.heartbeats() > after1->health().heartbeats() &&
                        h.last_heartbeat_value() > before->health().last_heartbeat_value();
  bool verified = heartbeat_grew && h.corruptions() == 0 && h.full_sweeps() > 0 && left_source &&
                  after2->state() == v1::VM_POWER_STATE_RUNNING;
  {
    grpc::ClientContext ctx;
    v1::StopVmRequest sreq;
    sreq.set_name("demo-vm");
    v1::VmInfo info;
    (void)(*dst)->StopVm(&ctx, sreq, &info);
  }
  const v1::MigrationStats& s = last->stats();
  if (a.json) {
    nlohmann::json j = {
        {"total_ms", s.total_ms()},
        {"setup_ms", s.setup_ms()},
        {"precopy_ms", s.precopy_ms()},
        {"downtime_ms", s.downtime_ms()},
        {"downtime_same_clock", s.downtime_same_clock()},
        {"expected_downtime_ms", s.expected_downtime_ms()},
        {"guest_observed_stall_ms", h.max_heartbeat_gap_ms()},
        {"guest_observed_stall_same_clock", !h.arrived_from_other_clock()},
        {"rounds", s.rounds()},
        {"bytes_transferred", s.bytes_transferred()},
        {"pages_sent", s.pages_sent()},
        {"zero_pages", s.zero_pages()},
        {"guest_memory_bytes", s.guest_memory_bytes()},
        {"state_bytes", s.state_bytes()},
        {"throughput_mib_s", s.throughput_mib_s()},
        {"transport", s.transport()},
        {"connections", s.connections()},
        {"encrypted", s.encrypted()},
        {"zero_copy", s.zero_copy()},
        {"hole_pages", s.hole_pages()},
        {"max_throttle_percent", s.max_throttle_percent()},
        {"throttle_by_round", [&] {
           nlohmann::json t = nlohmann::json::array();
           for (const auto& r : s.round_stats()) t.push_back(r.throttle_percent());
           return t;
         }()},
        {"pause_ms",
         {{"vcpu_pause", s.pause().vcpu_pause_ms()},
          {"dirty_log", s.pause().dirty_log_ms()},
          {"final_pages", s.pause().final_pages_ms()},
          {"state_save", s.pause().state_save_ms()},
          {"state_transfer", s.pause().state_transfer_ms()},
          {"wait_final_pages", s.pause().wait_final_pages_ms()},
          {"state_load", s.pause().state_load_ms()},
          {"resume", s.pause().resume_ms()},
          {"first_instruction", s.pause().first_instruction_ms()}}},
        {"backend", backend},
        {"forced_switchover", s.forced_switchover()},
        {"heartbeats_on_destination", h.heartbeats()},
        {"corruptions", h.corruptions()},
        {"left_source", left_source},
        {"guest_full_sweeps", h.full_sweeps()},
        {"guest_verify_ms", h.first_full_sweep_ms()},
        {"guest_verified", verified},
        {"demo_wall_ms", total.ElapsedMillis()},
    };
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    PrintMigrationSummary(*last);
    std::printf("  guest-observed stall %.1f ms (largest gap between heartbeats, stamped on arrival by both agents)\n",
                h.max_heartbeat_gap_ms());
    std::printf("guest on %s: %lu heartbeats since arrival growing=%s, corruptions %lu, gone from %s: %s\n",
                c.name(1).c_str(), (unsigned long)h.heartbeats(), heartbeat_grew ? "yes" : "NO",
                (unsigned long)h.corruptions(), c.name(0).c_str(), left_source ? "yes" : "NO");
    if (h.full_sweeps() > 0) {
      std::printf("guest re-checked its whole working set on %s in %.0f ms after arrival\n", c.name(1).c_str(),
                  h.first_full_sweep_ms());
    } else {
      std::printf("guest did not finish re-checking its working set on %s: %s\n", c.name(1).c_str(),
                  std::string(swept.status().message()).c_str());
    }
    std::printf("guest verified: %s\n", verified ? "yes" : "NO");
    for (const auto& r : h.corruption_reports()) std::printf("  %s\n", r.c_str());
  }
  return verified ? 0 : 1;
}

}  // namespace

void AddDemoCommand(CLI::App& app, Globals& g) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* demo = app.add_subcommand(
      "demo", "two agents on this machine, a live migration of the built-in guest, a summary");
  demo->add_option("--memory", a->memory, "guest memory");
  demo->add_option("--working-set", a->working_set, "memory the guest keeps dirtying");
  demo->add_option("--dirty-rate", a->rate, "how fast (MiB/s; 0 = as fast as it can)");
  demo->add_option("--pattern", a->pattern, "sequential | random | hotcold");
  demo->add_option("--vcpus", a->vcpus, "vCPUs");
  demo->add_option("--backend", a->backend, "kvm | synthetic (default: kvm when /dev/kvm works)");
  demo->add_option("--max-downtime", a->max_downtime_ms, "downtime target in ms");
  demo->add_option("--max-bandwidth", a->max_bandwidth, "bandwidth cap (MiB/s)");
  demo->add_option("--warmup", a->warmup_s, "seconds the guest runs before migrating");
  demo->add_flag("--insecure", a->insecure, "plaintext agents (default: mutual TLS with a temporary CA)");
  demo->add_flag("--keep", a->keep, "keep the temporary directory (agent logs, console logs)");
  demo->add_flag("--json", a->json, "print the summary as JSON");
  AddDataPathFlags(demo, a->data);
  AddDemoHaCommand(demo, g);
  demo->callback([&g, a, demo] {
    if (demo->got_subcommand("ha")) return;  // `demo ha` ran instead
    g.exit_code = RunDemo(*a);
  });
}

}  // namespace ferry::cli
