#pragma once
// Starts a VM in its own ferry-vmm process (docs/vmm_process.md "Lifecycle"): fork+exec in a new
// session, its output to DIR/vmm.log, then `create` over DIR/vmm.sock. DIR is the VM's directory
// (the one holding its console log).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/vm/vm.h"

namespace ferry {

inline constexpr char kVmmSocketName[] = "vmm.sock";
inline constexpr char kVmmPidFileName[] = "vmm.pid";
inline constexpr char kVmmLogName[] = "vmm.log";

// Where ferry-vmm is: beside this executable, else $FERRY_BIN_DIR.
std::string DefaultVmmBinaryPath();

// Spawns ferry-vmm for `spec` in `vm_dir` and builds its VM for boot or for restore.
absl::StatusOr<std::unique_ptr<Vm>> LaunchVmm(const VmSpec& spec, bool for_restore, const std::string& vm_dir,
                                              const std::string& vmm_binary);

// The agent's way to make a VM: in a VMM process, unless the configuration keeps VMs in-process
// or the VM has no directory (an agent without data_dir).
absl::StatusOr<std::unique_ptr<Vm>> CreateAgentVm(const AgentConfig& config, const VmSpec& spec, bool for_restore);

}  // namespace ferry
