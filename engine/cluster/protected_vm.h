#pragma once
// A protected VM's record at /ferry/clusters/<cluster>/vms/<vm> (docs/cluster.md "Protected VMs
// and restarts"): its restart priority, where it runs (host) and where it lives (datastore and
// directory), and its HA state. Written by `vm protect` (through the agent running it), by the
// agent that runs it (host and state), by the master (restart states) and by RequestRestart.
// Every change is a read-modify-write guarded by the key's mod revision, so writers never
// overwrite each other's change.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/cluster/etcd_client.h"

namespace ferry::cluster {

enum class RestartPriority { kHigh = 1, kMedium, kLow };
absl::StatusOr<RestartPriority> ParseRestartPriority(const std::string& text);
std::string RestartPriorityName(RestartPriority p);

// running           runs on `host`, which keeps the record current
// powered_off       stopped by its user: not restarted
// restart_requested to be restarted by the master on a host other than `exclude_host`, once its
//                   lock is free (a failed host's VMs; an isolation or VMCP response's "power off
//                   and restart")
// restarting        the master asked `target` to start it
// held              a start was refused because its lock is held: it still runs somewhere (never
//                   started a second time; the master retries only once the lock is free)
// waiting_capacity  no surviving host could hold it yet (retried every interval, bounded)
// restart_failed    gave up after kMaxRestartAttempts
enum class ProtectedVmState {
  kRunning = 1,
  kPoweredOff,
  kRestartRequested,
  kRestarting,
  kHeld,
  kWaitingCapacity,
  kRestartFailed,
};
std::string ProtectedVmStateName(ProtectedVmState s);
absl::StatusOr<ProtectedVmState> ParseProtectedVmState(const std::string& text);

inline constexpr int kMaxRestartAttempts = 30;

struct ProtectedVm {
  std::string vm;
  RestartPriority priority = RestartPriority::kMedium;
  std::string host;          // where it runs (or ran last)
  std::string datastore;     // datastore name on `host`
  std::string datastore_id;  // the datastore's UUID: how another host finds the same storage
  std::string dir;           // the VM directory on `host` (its name inside the datastore is `vm`)
  uint64_t memory_bytes = 0;
  ProtectedVmState state = ProtectedVmState::kRunning;
  std::string exclude_host;  // restart_requested: never restart it there
  std::string target;        // restarting: the host asked
  int attempts = 0;          // restart attempts refused for capacity or failed
  std::string detail;        // why it is in its state, for people
};

std::string ToJson(const ProtectedVm& vm);
// The seed's {"vm","restart_priority"} records still read (running, nothing else known).
absl::StatusOr<ProtectedVm> ProtectedVmFromJson(const std::string& json);

// Reads vms/<vm>, applies `change` and writes it back only if nobody wrote it meanwhile (retried
// a few times on a conflict). `change` returns false to leave the record as it is. NOT_FOUND when
// the VM is not protected.
absl::StatusOr<ProtectedVm> UpdateProtectedVm(EtcdClient& etcd, const std::string& cluster, const std::string& vm,
                                              const std::function<bool(ProtectedVm&)>& change);

// The restart path for isolation responses and VMCP ("power off and restart"): marks `vm`
// restart_requested so the master restarts it on a host other than `exclude_host` once its lock is
// free. Call it after the VM was powered off (its lock released). `reason` is shown by `cluster
// status` and logged by the master.
absl::Status RequestRestart(EtcdClient& etcd, const std::string& cluster, const std::string& vm,
                            const std::string& exclude_host, const std::string& reason);

}  // namespace ferry::cluster
