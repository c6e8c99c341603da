#pragma once
// What the isolation and VMCP monitors (isolation.h, vmcp_monitor.h) may do to the VMs of their
// host: list the running ones with where they live, and stop them so their VM locks are released
// (engine/storage/vm_lock.h) and another host can take them. The agent implements it over its VM
// registry (engine/agent/agent_ha_vms.h); tests implement it over real VM locks.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ferry::cluster {

struct HaVm {
  std::string name;
  std::string datastore;  // the datastore's name, the same on every host that mounts it
  std::string lock_path;  // its vm.lock
};

class HaVmControl {
 public:
  virtual ~HaVmControl() = default;
  // The VMs running on this host that live on a datastore.
  virtual std::vector<HaVm> RunningVms() = 0;
  // The datastores this host mounts: name -> mount path.
  virtual std::map<std::string, std::string> Datastores() = 0;
  // Ends the VM at once (its VMM is stopped, its lock closed). Idempotent for a VM already gone.
  virtual absl::Status PowerOff(const std::string& vm) = 0;
  // Ends the VM with a guest shutdown where the guest supports one, else as PowerOff; its lock goes.
  virtual absl::Status Shutdown(const std::string& vm) = 0;
};

// The hand-off of a VM this host powered off (VMCP "power off and restart") to the master, which
// restarts it on another host. See restart_request.h for the one the agent uses.
using RestartHandoff = std::function<absl::Status(const std::string& vm, const std::string& reason)>;

}  // namespace ferry::cluster
