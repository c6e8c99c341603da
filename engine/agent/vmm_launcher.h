#pragma once
// Starts a VM in its own ferry-vmm process (docs/vmm_process.md "Lifecycle"): fork+exec in a new
// session, its output to DIR/vmm.log, then `create` over DIR/vmm.sock. DIR is the VM's directory
// (the one holding its console log).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/vm/vm.h"
#include "engine/vmm/vmm_client.h"

namespace ferry {

inline constexpr char kVmmSocketName[] = "vmm.sock";
inline constexpr char kVmmPidFileName[] = "vmm.pid";
inline constexpr char kVmmLogName[] = "vmm.log";

// The datastore lock a VMM process holds for its VM (docs/vmm_process.md "The VM lock"): a boot
// takes it before the VM is built, a restore only when asked (RemoteVm::TakeLock). Empty path: none.
struct VmmLockRequest {
  std::string path;   // the VM directory's vm.lock
  std::string agent;  // named in the holder record
};

// Where the VMM of a VM on a datastore keeps its socket, pid file and log: a subdirectory of the VM's
// directory named for the agent (`<ds>/<vm>/vmm-<agent>/`), so hosts sharing the datastore never
// touch each other's sockets (a unix socket on a shared file system reaches only its own host).
std::string DatastoreVmmDirectory(const std::string& vm_dir, const std::string& agent);

// Where ferry-vmm is: beside this executable, else $FERRY_BIN_DIR.
std::string DefaultVmmBinaryPath();

// Forks and execs `binary` for the VM in `vm_dir` (a new session, output to vmm.log, no
// parent-death signal) with --socket/--pid-file/--name, then `extra_args`.
absl::StatusOr<pid_t> SpawnVmm(const std::string& binary, const std::string& vm_dir, const std::string& name,
                               const std::vector<std::string>& extra_args = {});
// Connects once `socket` listens; fails (with the log's tail) if `pid` exits first or after 10 s.
absl::StatusOr<VmmConnection> WaitForVmmSocket(const std::string& socket, pid_t pid, const std::string& log);

// Spawns ferry-vmm for `spec` in `vm_dir` and builds its VM for boot or for restore (by migration
// `arriving_migration`, which the VMM reports once the VM ran: VmmCreate.arriving_migration).
absl::StatusOr<std::unique_ptr<Vm>> LaunchVmm(const VmSpec& spec, bool for_restore, const std::string& vm_dir,
                                              const std::string& vmm_binary, const VmmLockRequest& lock = {},
                                              const std::string& arriving_migration = "");

// The agent's way to make a VM: in a VMM process, unless the configuration keeps VMs in-process
// or the VM has no directory (an agent without data_dir). `lock` goes to the VMM; a VM kept
// in-process ignores it (its lock, if any, is the agent's to hold: VmOwnership).
absl::StatusOr<std::unique_ptr<Vm>> CreateAgentVm(const AgentConfig& config, const VmSpec& spec, bool for_restore,
                                                  const VmmLockRequest& lock = {},
                                                  const std::string& arriving_migration = "");
// Whether CreateAgentVm runs `spec` in this agent's own process.
bool RunsInAgentProcess(const AgentConfig& config, const VmSpec& spec);

}  // namespace ferry
