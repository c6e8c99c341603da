#pragma once
// Same-host live upgrade of a VM's VMM process (docs/vmm_process.md "Upgrade"): a new ferry-vmm
// builds a fresh KVM VM over the running guest's memfd and the old VMM's open disk descriptors
// (nothing is copied or reopened; the datastore lock's descriptor goes too), the old VMM pauses the
// guest and saves its vCPU and device state (what a migration saves, disks quiesced), the new VMM
// loads it and resumes, takes the VM's socket, and the old VMM exits. A failure at any step before
// the new VMM resumed kills the new VMM and resumes the guest in the old one.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/remote_vm.h"

namespace ferry {

// The upgrade's steps as measured by the agent, in ns. The guest's pause is pause + save +
// restore + lock + resume (downtime_ns measures it whole: pause request sent -> new VMM's vCPUs running).
struct VmmUpgradeTimes {
  int64_t prepare_ns = 0;  // new VMM spawned and its VM built over the memory (the guest runs)
  int64_t pause_ns = 0;    // old VMM: every vCPU out of guest mode, disks quiesced
  int64_t save_ns = 0;     // old VMM: vCPU, in-kernel and device state saved
  int64_t restore_ns = 0;  // new VMM: that state loaded into its KVM VM
  int64_t lock_ns = 0;     // datastore VMs: the lock's holder record names the new VMM (0 without)
  int64_t resume_ns = 0;   // new VMM: vCPUs running
  int64_t downtime_ns = 0;
  int64_t finish_ns = 0;   // after resume: socket claimed, old VMM retired (the guest runs)
};

struct VmmUpgradeResult {
  std::unique_ptr<RemoteVm> vm;  // the VM, served by its new VMM
  pid_t old_pid = -1;
  pid_t new_pid = -1;
  VmmUpgradeTimes times;
  std::string warning;  // something after the resume that did not go as planned ("" = none)
};

// Test seams (never set in production): called with the new VMM's pid at the named step.
struct VmmUpgradeHooks {
  std::function<void(pid_t new_vmm)> before_pause;
  std::function<void(pid_t new_vmm)> before_resume;
};

// Upgrades the VMM of `vm` (running) to a new process of `vmm_binary`. A VM with a datastore lock
// hands it over, never releasing it: the new VMM gets the lock's open file description (the OFD
// lock lives on it) with the disks, so both VMMs hold the one lock until the old one exits, and
// the new one names itself (with `agent_name`) in the holder record before it resumes. On success
// `vm` is retired (its VMM gone) and the result's vm replaces it; on failure the new VMM is killed
// and `vm` (its record naming it again) still runs the guest.
absl::StatusOr<VmmUpgradeResult> UpgradeVmm(RemoteVm& vm, const std::string& vmm_binary,
                                            const std::string& agent_name, const VmmUpgradeHooks& hooks = {});

}  // namespace ferry
