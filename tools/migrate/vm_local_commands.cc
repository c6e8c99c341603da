// Local VM commands (no agent): vm run | vm snapshot | vm restore. They run the built-in guest in
// this process, show its console, and judge it by what the guest itself reported.
#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/clock.h"
#include "engine/base/size_parse.h"
#include "engine/state/snapshot.h"
#include "engine/vm/vm.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {
namespace {

struct RunOptions {
  std::string memory = "256MiB";
  std::string working_set = "64MiB";
  std::string dirty_rate = "50MiB/s";
  std::string pattern = "random";
  uint64_t seed = 1;
  uint32_t vcpus = 1;
  uint32_t tick_ms = 0;
  double seconds = 5;
  std::string backend = "kvm";
  std::string image;
  std::string console_log;
  bool quiet = false;
  std::string snapshot_to;
};

// Bad input (sizes, missing image, too much memory, unusable KVM) is a usage error: exit 2.
int ExitCodeFor(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
      return 2;
    default:
      return 1;
  }
}

// "migrate <command>: [<step>: ]<message>" (cli_error.h), with this file's exit codes.
int Fail(std::string_view command, const absl::Status& st, const std::string& step = "") {
  CliError e = ErrorFromStatus(st);
  if (!step.empty()) e.message = absl::StrCat(step, ": ", e.message);
  e.exit_code = ExitCodeFor(st);
  return ReportError(command, e, /*json=*/false);
}

absl::StatusOr<VmSpec> SpecFromOptions(const RunOptions& o) {
  VmSpec spec;
  spec.name = "local";
  if (o.backend == "kvm") {
    spec.backend = Backend::kKvm;
  } else if (o.backend == "synthetic") {
    spec.backend = Backend::kSynthetic;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--backend '", o.backend, "' must be kvm or synthetic"));
  }
  auto mem = ParseByteSize(o.memory);
  if (!mem.ok()) return absl::InvalidArgumentError(absl::StrCat("--memory: ", mem.status().message()));
  auto ws = ParseByteSize(o.working_set);
  if (!ws.ok()) return absl::InvalidArgumentError(absl::StrCat("--working-set: ", ws.status().message()));
  auto rate = ParseRateMiBps(o.dirty_rate);
  if (!rate.ok()) return absl::InvalidArgumentError(absl::StrCat("--dirty-rate: ", rate.status().message()));
  if (*ws > *mem) {
    return absl::InvalidArgumentError(absl::StrCat("--working-set ", o.working_set, " is larger than --memory ", o.memory));
  }
  if (o.pattern != "sequential" && o.pattern != "random" && o.pattern != "hotcold") {
    return absl::InvalidArgumentError(
        absl::StrCat("--pattern '", o.pattern, "' must be sequential, random or hotcold"));
  }
  if (o.seconds <= 0) return absl::InvalidArgumentError("--seconds must be positive");
  spec.memory_bytes = *mem;
  spec.vcpus = o.vcpus;
  spec.workload.working_set_bytes = *ws;
  spec.workload.dirty_rate_mibps = *rate;
  spec.workload.pattern = o.pattern;
  spec.workload.seed = o.seed;
  spec.workload.tick_ms = o.tick_ms;
  spec.image_path = o.image;
  spec.console_log_path = o.console_log;
  spec.console_to_stdout = !o.quiet;
  return spec;
}

std::atomic<bool> g_interrupted{false};

// Runs `vm` until `seconds` pass, the guest shuts down, or Ctrl-C.
void RunFor(Vm& vm, double seconds) {
  g_interrupted = false;
  auto old = std::signal(SIGINT, [](int) { g_interrupted = true; });
  Stopwatch sw;
  while (sw.ElapsedMillis() < seconds * 1000 && !g_interrupted && vm.run_state() != VmRunState::kStopped) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::signal(SIGINT, old);
}

// Prints the summary; returns the exit code (0 only with new heartbeats and no corruption).
int Summarize(Vm& vm, double ran_s, uint64_t heartbeats_before, uint64_t corruptions_before) {
  GuestHealth h = vm.health();
  fflush(stdout);
  uint64_t new_heartbeats = h.heartbeats - heartbeats_before;
  printf("\n--- %s VM: %u vCPU, %s MiB, ran %.2f s ---\n", vm.spec().backend == Backend::kKvm ? "kvm" : "synthetic",
         vm.spec().vcpus, absl::StrCat(vm.spec().memory_bytes >> 20).c_str(), ran_s);
  printf("heartbeats:        %llu this run (%llu total, guest counter %llu)\n",
         static_cast<unsigned long long>(new_heartbeats), static_cast<unsigned long long>(h.heartbeats),
         static_cast<unsigned long long>(h.last_heartbeat_value));
  printf("max heartbeat gap: %.3f ms\n", NanosToMillis(h.max_heartbeat_gap_ns));
  printf("corruptions:       %llu\n", static_cast<unsigned long long>(h.corruptions));
  for (const std::string& r : h.corruption_reports) printf("  %s\n", r.c_str());
  if (h.shut_down) {
    printf("exit status:       guest shut down, code %d\n", h.exit_code);
  } else {
    printf("exit status:       stopped by migrate (guest still running)\n");
  }
  std::string failure;
  if (h.corruptions > corruptions_before) {
    failure = absl::StrCat("the guest reported ", h.corruptions - corruptions_before, " corrupted page(s)");
  } else if (new_heartbeats == 0) {
    failure = "no heartbeat from the guest";
  } else if (h.shut_down && h.exit_code != 0) {
    failure = absl::StrCat("the guest exited with code ", h.exit_code);
  }
  if (failure.empty()) {
    printf("result:            OK\n");
    return 0;
  }
  printf("result:            FAILED: %s\n", failure.c_str());
  return 1;
}

int SnapshotAndStop(Vm& vm, const std::string& dir) {
  if (absl::Status st = vm.Pause(); !st.ok()) return Fail("vm snapshot", st, "pause");
  Stopwatch sw;
  auto stats = SaveSnapshot(vm, dir);
  if (!stats.ok()) return Fail("vm snapshot", stats.status(), absl::StrCat("snapshot to ", dir));
  fflush(stdout);
  printf("\nsnapshot: %s (%llu MiB memory, %llu non-zero pages written, %llu bytes of state) in %.1f ms\n",
         dir.c_str(), static_cast<unsigned long long>(stats->memory_bytes >> 20),
         static_cast<unsigned long long>(stats->pages_written), static_cast<unsigned long long>(stats->state_bytes),
         sw.ElapsedMillis());
  return 0;
}

int RunCommand(const RunOptions& o) {
  const char* command = o.snapshot_to.empty() ? "vm run" : "vm snapshot";
  auto spec = SpecFromOptions(o);
  if (!spec.ok()) return Fail(command, spec.status());
  auto vm = CreateVmForBoot(*spec);
  if (!vm.ok()) return Fail(command, vm.status());
  Stopwatch sw;
  if (absl::Status st = (*vm)->Start(); !st.ok()) return Fail(command, st, "start");
  RunFor(**vm, o.seconds);
  double ran = sw.ElapsedMillis() / 1000;
  int snap_rc = 0;
  if (!o.snapshot_to.empty()) {
    if ((*vm)->run_state() == VmRunState::kStopped) {
      fprintf(stderr, "migrate vm snapshot: not snapshotting: the guest has already shut down\n");
      snap_rc = 1;
    } else {
      snap_rc = SnapshotAndStop(**vm, o.snapshot_to);
    }
  }
  (void)(*vm)->Stop();
  int rc = Summarize(**vm, ran, 0, 0);
  return snap_rc != 0 ? snap_rc : rc;
}

int RestoreCommand(const std::string& dir, double seconds, bool quiet, const std::string& console_log) {
  if (seconds <= 0) return Fail("vm restore", absl::InvalidArgumentError("--seconds must be positive"));
  auto spec = ReadSnapshotSpec(dir);
  if (!spec.ok()) return Fail("vm restore", spec.status(), dir);
  spec->console_to_stdout = !quiet;
  spec->console_log_path = console_log;
  auto vm = CreateVmForRestore(*spec);
  if (!vm.ok()) return Fail("vm restore", vm.status());
  Stopwatch load;
  if (absl::Status st = RestoreSnapshot(dir, **vm); !st.ok()) return Fail("vm restore", st, dir);
  GuestHealth before = (*vm)->health();
  printf("restored %s in %.1f ms (guest heartbeat counter at %llu)\n", dir.c_str(), load.ElapsedMillis(),
         static_cast<unsigned long long>(before.last_heartbeat_value));
  fflush(stdout);
  Stopwatch sw;
  if (absl::Status st = (*vm)->Start(); !st.ok()) return Fail("vm restore", st, "start");
  RunFor(**vm, seconds);
  double ran = sw.ElapsedMillis() / 1000;
  (void)(*vm)->Stop();
  return Summarize(**vm, ran, before.heartbeats, before.corruptions);
}

void AddRunOptions(CLI::App* cmd, RunOptions& o) {
  cmd->add_option("--memory", o.memory, "guest memory, e.g. 256MiB")->capture_default_str();
  cmd->add_option("--working-set", o.working_set, "memory the guest keeps dirtying")->capture_default_str();
  cmd->add_option("--dirty-rate", o.dirty_rate, "dirtying rate, e.g. 50MiB/s (0 = unlimited)")->capture_default_str();
  cmd->add_option("--pattern", o.pattern, "sequential | random | hotcold")->capture_default_str();
  cmd->add_option("--seed", o.seed, "workload seed")->capture_default_str();
  cmd->add_option("--vcpus", o.vcpus, "vCPUs")->capture_default_str();
  cmd->add_option("--tick-ms", o.tick_ms, "print a '.' on the console every N ms (0 = never)")->capture_default_str();
  cmd->add_option("--seconds", o.seconds, "how long to run")->capture_default_str();
  cmd->add_option("--backend", o.backend, "kvm | synthetic")->capture_default_str();
  cmd->add_option("--image", o.image, "guest image (default: ferry-guest.elf beside migrate)");
  cmd->add_option("--console-log", o.console_log, "also append the guest console to this file");
  cmd->add_flag("--quiet", o.quiet, "do not show the guest console");
}

}  // namespace

void AddVmLocalCommands(CLI::App& app, Globals& g) {
  CLI::App* vm = SubcommandOf(app, "vm", "virtual machines");

  auto run_opts = std::make_shared<RunOptions>();
  CLI::App* run = vm->add_subcommand("run", "run the built-in guest in this process and judge its health");
  AddRunOptions(run, *run_opts);
  run->add_option("--snapshot-to", run_opts->snapshot_to, "at the end, pause and save memory+state to DIR");
  run->callback([run_opts, &g] { g.exit_code = RunCommand(*run_opts); });

  auto snap_opts = std::make_shared<RunOptions>();
  CLI::App* snap = vm->add_subcommand("snapshot", "vm run, then save memory+state to DIR (vm run --snapshot-to)");
  snap->add_option("dir", snap_opts->snapshot_to, "snapshot directory")->required();
  AddRunOptions(snap, *snap_opts);
  snap->callback([snap_opts, &g] { g.exit_code = RunCommand(*snap_opts); });

  struct RestoreOptions {
    std::string dir;
    double seconds = 5;
    bool quiet = false;
    std::string console_log;
  };
  auto restore_opts = std::make_shared<RestoreOptions>();
  CLI::App* restore = vm->add_subcommand("restore", "restore a snapshot directory in this process and run it");
  restore->add_option("dir", restore_opts->dir, "snapshot directory")->required();
  restore->add_option("--seconds", restore_opts->seconds, "how long to run")->capture_default_str();
  restore->add_option("--console-log", restore_opts->console_log, "also append the guest console to this file");
  restore->add_flag("--quiet", restore_opts->quiet, "do not show the guest console");
  restore->callback([restore_opts, &g] {
    g.exit_code = RestoreCommand(restore_opts->dir, restore_opts->seconds, restore_opts->quiet,
                                 restore_opts->console_log);
  });
}

}  // namespace ferry::cli
