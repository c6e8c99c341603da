#pragma once
// A test HaVmControl: VMs with the synthetic backend (engine/vm: the built-in guest's workload on
// host threads), each with a real VM directory holding its real VM lock (engine/storage/vm_lock.h)
// for as long as it runs. PowerOff/Shutdown stop the guest and close the lock, as a stopped VMM does. What the isolation and VMCP monitors see and do is what they would do to an
// agent's VMs; whether another host may start a VM is what the lock says.

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/cluster/ha_vm_control.h"
#include "engine/storage/vm_lock.h"
#include "engine/vm/synthetic_vm.h"

namespace ferry::cluster::testing {

class LockHoldingVms : public HaVmControl {
 public:
  LockHoldingVms(std::string host, std::map<std::string, std::string> datastores)
      : host_(std::move(host)), datastores_(std::move(datastores)) {}

  // Makes <dir>/<vm>/ and takes its lock as this host: the VM runs here now.
  void Run(const std::string& vm, const std::string& datastore, const std::string& dir) {
    std::string vm_dir = dir + "/" + vm;
    ::mkdir(vm_dir.c_str(), 0700);
    auto lock = VmLock::Acquire(vm_dir + "/" + kVmLockFile, vm, ThisProcessAsHolder(host_));
    ASSERT_TRUE(lock.ok()) << lock.status();
    VmSpec spec;
    spec.name = vm;
    spec.backend = Backend::kSynthetic;
    spec.memory_bytes = 16ull << 20;
    spec.workload.working_set_bytes = 4ull << 20;
    spec.workload.dirty_rate_mibps = 2;
    auto guest = CreateSyntheticVm(spec, /*for_restore=*/false);
    ASSERT_TRUE(guest.ok()) << guest.status();
    ASSERT_TRUE((*guest)->Start().ok());
    std::lock_guard l(mu_);
    running_.emplace(vm, Running{HaVm{vm, datastore, lock->path()}, std::move(*lock), std::move(*guest)});
  }
  std::vector<HaVm> RunningVms() override {
    std::lock_guard l(mu_);
    std::vector<HaVm> out;
    for (const auto& [name, r] : running_) out.push_back(r.vm);
    return out;
  }
  std::map<std::string, std::string> Datastores() override { return datastores_; }
  absl::Status PowerOff(const std::string& vm) override { return End(vm, "power-off"); }
  absl::Status Shutdown(const std::string& vm) override { return End(vm, "shutdown"); }

  // Running here: its guest runs, has sent heartbeats and found no corruption.
  bool running(const std::string& vm) {
    std::lock_guard l(mu_);
    auto it = running_.find(vm);
    if (it == running_.end() || it->second.guest->run_state() != VmRunState::kRunning) return false;
    for (int i = 0; i < 100 && it->second.guest->health().heartbeats == 0; ++i) absl::SleepFor(absl::Milliseconds(20));
    GuestHealth h = it->second.guest->health();
    return h.heartbeats > 0 && h.corruptions == 0;
  }
  std::vector<std::string> stopped() {
    std::lock_guard l(mu_);
    return stopped_;
  }

 private:
  struct Running {
    HaVm vm;
    VmLock lock;
    std::unique_ptr<Vm> guest;
  };
  absl::Status End(const std::string& vm, const std::string& how) {
    std::lock_guard l(mu_);
    auto it = running_.find(vm);
    if (it == running_.end()) return absl::OkStatus();
    if (absl::Status st = it->second.guest->Stop(); !st.ok()) return st;
    running_.erase(it);  // closes the lock
    stopped_.push_back(vm + ":" + how);
    return absl::OkStatus();
  }
  std::string host_;
  std::map<std::string, std::string> datastores_;
  std::mutex mu_;
  std::map<std::string, Running> running_;
  std::vector<std::string> stopped_;
};

// Who holds `lock_path` now ("" when nobody).
inline std::string LockHolder(const std::string& lock_path) {
  auto h = VmLock::CurrentHolder(lock_path);
  EXPECT_TRUE(h.ok()) << h.status();
  return h.ok() && h->has_value() ? (*h)->agent : "";
}

}  // namespace ferry::cluster::testing
