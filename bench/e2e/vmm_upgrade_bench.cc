// vmm-upgrade-bench: the guest's pause in a same-host VMM upgrade (docs/vmm_process.md "Same-host
// upgrade"), by its parts, for a KVM guest of --memory-mib with a written working set. The VM runs
// in a real ferry-vmm; each upgrade moves it to a new one over the same memfd. Prints one line per
// upgrade and the median; --json writes them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/agent/vmm_upgrade.h"
#include "engine/vm/multiboot_loader.h"

namespace {

using namespace ferry;

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

template <typename F>
bool WaitUntil(F done, int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vmm-upgrade-bench: the guest's pause in a same-host VMM upgrade"};
  uint64_t memory_mib = 2048, ws_mib = 1024, upgrades = 5;
  double rate_mibps = 100;
  uint32_t vcpus = 1;
  std::string dir = "/var/tmp", json_path, vmm_binary;
  app.add_option("--memory-mib", memory_mib, "guest memory")->check(CLI::Range(64, 1 << 20));
  app.add_option("--ws-mib", ws_mib, "the guest's working set (written before the first upgrade)");
  app.add_option("--rate-mibps", rate_mibps, "the guest's dirty rate while upgrades run");
  app.add_option("--vcpus", vcpus, "vCPUs")->check(CLI::Range(1, 8));
  app.add_option("--upgrades", upgrades, "upgrades in a row")->check(CLI::Range(1, 100));
  app.add_option("--dir", dir, "where the VM's directory goes");
  app.add_option("--vmm-binary", vmm_binary, "ferry-vmm to run (default: beside this binary)");
  app.add_option("--json", json_path, "write the figures here");
  CLI11_PARSE(app, argc, argv);
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "vmm-upgrade-bench: needs /dev/kvm\n");
    return 2;
  }
  if (vmm_binary.empty()) vmm_binary = DefaultVmmBinaryPath();
  spdlog::set_level(spdlog::level::warn);

  char tmpl[4096];
  std::snprintf(tmpl, sizeof(tmpl), "%s/ferry-upgrade-bench.XXXXXX", dir.c_str());
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string vm_dir = tmpl;
  VmSpec spec;
  spec.name = "upgrade-bench";
  spec.memory_bytes = memory_mib << 20;
  spec.vcpus = vcpus;
  spec.workload.working_set_bytes = ws_mib << 20;
  spec.workload.dirty_rate_mibps = rate_mibps;
  spec.image_path = DefaultGuestImagePath();
  spec.console_log_path = vm_dir + "/console.log";
  int rc = 0;
  nlohmann::json out;
  {
    auto launched = LaunchVmm(spec, /*for_restore=*/false, vm_dir, vmm_binary);
    if (!launched.ok()) {
      std::fprintf(stderr, "vmm-upgrade-bench: %s\n", std::string(launched.status().message()).c_str());
      std::filesystem::remove_all(vm_dir);
      return 1;
    }
    std::unique_ptr<RemoteVm> vm(dynamic_cast<RemoteVm*>(launched->release()));
    if (!vm->Start().ok() || !WaitUntil([&] { return vm->health().full_sweeps > 0; }, 600)) {
      std::fprintf(stderr, "vmm-upgrade-bench: the guest did not write and verify its working set\n");
      (void)vm->Stop();
      std::filesystem::remove_all(vm_dir);
      return 1;
    }
    std::printf("guest: %lu MiB, %u vCPU, working set %lu MiB written, dirtying %.0f MiB/s\n", memory_mib, vcpus,
                ws_mib, rate_mibps);
    std::printf("%-3s %10s %10s %10s %10s %8s %10s %10s %12s\n", "#", "pause_ms", "vcpu_stop", "save", "load",
                "lock", "resume", "prepare", "guest_gap_ms");
    std::vector<double> downtimes;
    for (uint64_t i = 0; i < upgrades; ++i) {
      auto r = UpgradeVmm(*vm, vmm_binary, "bench");
      if (!r.ok()) {
        std::fprintf(stderr, "upgrade %lu: %s\n", i + 1, std::string(r.status().message()).c_str());
        rc = 1;
        break;
      }
      vm = std::move(r->vm);
      // The guest's own view: heartbeats stamped on arrival by the host, across the switch.
      const uint64_t beats = vm->health().heartbeats;
      WaitUntil([&] { return vm->health().heartbeats > beats + 3; }, 30);
      const GuestHealth h = vm->health();
      const VmmUpgradeTimes& t = r->times;
      std::printf("%-3lu %10.3f %10.3f %10.3f %10.3f %8.3f %10.3f %10.1f %12.3f\n", i + 1, Ms(t.downtime_ns),
                  Ms(t.pause_ns), Ms(t.save_ns), Ms(t.restore_ns), Ms(t.lock_ns), Ms(t.resume_ns), Ms(t.prepare_ns),
                  Ms(h.max_heartbeat_gap_ns));
      downtimes.push_back(Ms(t.downtime_ns));
      out["upgrades"].push_back({{"downtime_ms", Ms(t.downtime_ns)},
                                 {"vcpu_pause_ms", Ms(t.pause_ns)},
                                 {"state_save_ms", Ms(t.save_ns)},
                                 {"state_load_ms", Ms(t.restore_ns)},
                                 {"lock_ms", Ms(t.lock_ns)},
                                 {"resume_ms", Ms(t.resume_ns)},
                                 {"prepare_ms", Ms(t.prepare_ns)},
                                 {"finish_ms", Ms(t.finish_ns)},
                                 {"guest_max_heartbeat_gap_ms", Ms(h.max_heartbeat_gap_ns)},
                                 {"corruptions", h.corruptions}});
      if (h.corruptions) {
        std::fprintf(stderr, "upgrade %lu: the guest reports %lu corruptions\n", i + 1, h.corruptions);
        rc = 1;
      }
    }
    if (!downtimes.empty()) {
      std::sort(downtimes.begin(), downtimes.end());
      std::printf("median pause %.3f ms, max %.3f ms over %zu upgrades\n", downtimes[downtimes.size() / 2],
                  downtimes.back(), downtimes.size());
      out["median_downtime_ms"] = downtimes[downtimes.size() / 2];
      out["max_downtime_ms"] = downtimes.back();
    }
    out["workload"] = {{"memory_mib", memory_mib}, {"vcpus", vcpus}, {"working_set_mib", ws_mib},
                       {"dirty_rate_mibps", rate_mibps}};
    (void)vm->Stop();
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  std::filesystem::remove_all(vm_dir);
  return rc;
}
