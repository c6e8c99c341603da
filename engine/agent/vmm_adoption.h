#pragma once
// A starting agent re-adopts the VMM processes a previous agent left running
// (docs/vmm_process.md "Adoption"): each DATA_DIR/vms/NAME/vmm.sock is asked for its VM's spec,
// run state and memory; a socket with no live VMM behind it is reported as a failed VM and removed.

#include <string>

#include "engine/agent/vm_registry.h"

namespace ferry {

struct AdoptionSummary {
  int adopted = 0;
  int lost = 0;
};

AdoptionSummary AdoptRunningVmms(const std::string& data_dir, VmRegistry& vms);

}  // namespace ferry
