#pragma once
// The master's restart of protected VMs (docs/cluster.md "Protected VMs and restarts"). Every
// heartbeat interval, on the master only:
//  1. each host whose lease lapsed gets a verdict from its datastore heartbeats, read on the
//     datastores the master mounts: two reads kVerdictIntervals intervals apart; moving =
//     isolated/partitioned, still = failed, unreadable = unknown;
//  2. a running protected VM of a failed (or unknown) host becomes restart_requested; one of an
//     isolated host only once the master sees its lock free (its isolation response released it);
//     a held VM whose lock is free again is requested again;
//  3. requested VMs are placed by priority (high, medium, low; then by name) on live hosts other
//     than the excluded one that mount the VM's datastore and report enough free memory (minus
//     what this round already placed there), most free memory first, and started there.
// Exactly once is the lock's: a start refused because the lock is held marks the VM held (it
// runs somewhere) and it is not tried elsewhere. A refusal for capacity tries the next host, then
// waits for the next interval; kMaxRestartAttempts rounds without success give restart_failed.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/cluster/cluster_events.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/datastore_heartbeat.h"
#include "engine/cluster/etcd_client.h"
#include "engine/cluster/protected_vm.h"

namespace ferry::cluster {

inline constexpr int kVerdictIntervals = 2;

struct RestartCoordinatorOptions {
  std::string cluster;
  std::string host;  // the master's own name
  absl::Duration interval = absl::Seconds(1);
  // The master's datastores: uuid -> where it mounts them.
  std::function<std::map<std::string, std::string>()> datastores;
  // Asks `target` to start `vm` (its agent's StartVm with admission). The status is the agent's.
  std::function<absl::Status(const HostRecord& target, const ProtectedVm& vm)> start_vm;
  // Whether the lock of the VM directory `vm_dir` is held by anyone now (engine/storage's VmLock).
  std::function<absl::StatusOr<bool>(const std::string& vm_dir)> lock_held;
};

// A lapsed host's verdict from the reads of its heartbeat on each datastore both mount.
struct LostHostSample {
  absl::Time first_read;
  std::map<std::string, absl::StatusOr<HeartbeatRecord>> before;  // datastore path -> first read
  std::optional<LostHostVerdict> verdict;
};

class RestartCoordinator {
 public:
  explicit RestartCoordinator(RestartCoordinatorOptions options) : options_(std::move(options)) {}
  // One round (the master's AgentCluster thread calls it every interval).
  void Step(EtcdClient& etcd);
  // Forget what a previous mastership learnt (verdict samples start again).
  void Reset() {
    lost_.clear();
    datastore_seen_.clear();
    published_.clear();
  }

 private:
  struct HostView {
    HostRecord record;
    bool alive = false;
  };
  void JudgeLostHosts(EtcdClient& etcd, const std::map<std::string, HostView>& hosts);
  // host-health/<host> for every other host (cluster_events.h), rewritten when it changed.
  void PublishHostHealth(EtcdClient& etcd, const std::map<std::string, HostView>& hosts);
  DatastoreHeartbeatState ReadDatastoreHeartbeat(const HostRecord& host);
  // The newest datastore heartbeat's own_view of a host ("" when none says).
  std::string OwnViewOf(const HostRecord& host) const;
  // Logged by the caller; this also publishes it (events/) for `cluster status`.
  void Event(EtcdClient& etcd, const std::string& kind, const std::string& subject, const std::string& detail);
  std::vector<std::string> HeartbeatPathsOf(const HostRecord& host) const;
  void RequestRestarts(EtcdClient& etcd, const std::map<std::string, HostView>& hosts, std::vector<ProtectedVm>& vms);
  void PlaceAndStart(EtcdClient& etcd, const std::map<std::string, HostView>& hosts, std::vector<ProtectedVm>& vms);
  // Whether the master sees the VM's lock free now; nullopt when it cannot tell.
  std::optional<bool> LockFree(const ProtectedVm& vm) const;

  const RestartCoordinatorOptions options_;
  std::map<std::string, LostHostSample> lost_;  // lapsed host -> its verdict sampling
  struct DatastoreSeen {
    uint64_t sequence = 0;
    absl::Time moved;  // when the master last saw the sequence change (or first read it)
  };
  std::map<std::string, DatastoreSeen> datastore_seen_;  // host -> its heartbeat as last read
  std::map<std::string, HostHealthRecord> published_;    // host -> its last published health
};

}  // namespace ferry::cluster
