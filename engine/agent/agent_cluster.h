#pragma once
// An agent's HA membership (engine/cluster), started when it is configured with a cluster and
// left cleanly at shutdown. Without a cluster the agent runs exactly as before. Besides the
// membership (lease, election) it runs:
//  - the datastore heartbeat writer, on the heartbeat datastores chosen among those it mounts;
//  - a loop every heartbeat interval that claims, in the protected-VM list, the protected VMs it
//    runs (host, directory, state running) and, while this host is master, runs the restart
//    coordinator (engine/cluster/restart_coordinator.h), which starts a failed host's VMs on the
//    survivors through their agents' StartVm (mutual TLS, with admission).

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/agent/agent_context.h"
#include "engine/agent/agent_ha_protection.h"
#include "engine/cluster/cluster_join_config.h"
#include "engine/cluster/cluster_member.h"
#include "engine/cluster/heartbeat_writer.h"
#include "engine/cluster/protected_vm.h"
#include "engine/cluster/restart_coordinator.h"

namespace ferry {

// What a restarted VM may take on this host: with a host file, its memory (free, else total)
// minus the memory of the VMs running here; without, MemAvailable minus what running VMs were
// promised and have not drawn yet.
uint64_t HaFreeMemoryBytes(AgentContext& ctx);

class AgentCluster {
 public:
  // Missing etcd credentials default to the agent's own TLS files. Fails (naming what is wrong)
  // when etcd cannot be reached or the cluster does not exist. `ctx` must outlive the result.
  static absl::StatusOr<std::unique_ptr<AgentCluster>> Join(AgentContext& ctx, cluster::ClusterJoinConfig join,
                                                            const std::string& agent_address);
  ~AgentCluster();
  cluster::HostState state() const { return member_->state(); }
  const std::string& cluster() const { return cluster_; }

  // `vm protect`: `name` must be a datastore VM of this host (running here, or defined on one of
  // its datastores: then powered_off). Refused past max_protected_vms_per_datastore.
  absl::StatusOr<cluster::ProtectedVm> Protect(const std::string& name, cluster::RestartPriority priority);
  absl::Status Unprotect(const std::string& name);
  // A protected VM stopped by its user here: powered_off, so it is not restarted.
  void OnVmStopped(const std::string& name);

 private:
  AgentCluster(AgentContext& ctx, std::string cluster) : ctx_(ctx), cluster_(std::move(cluster)) {}
  void Run();
  void ChooseHeartbeatDatastores();
  void ClaimRunningVms();
  // A protected VM recorded running here that does not run here (its VMM died, or this agent came
  // back after a crash before the master acted): once two rounds in a row saw it gone with its lock
  // free, hand it to the master for a restart (any host, this one included).
  void ReconcileGoneVm(const cluster::ProtectedVm& record);
  cluster::HostReport Report();
  absl::Status StartOn(const cluster::HostRecord& target, const cluster::ProtectedVm& vm);

  AgentContext& ctx_;
  const std::string cluster_;
  std::unique_ptr<cluster::EtcdClient> etcd_;
  std::unique_ptr<cluster::ClusterMember> member_;
  std::unique_ptr<cluster::HeartbeatWriter> heartbeats_;
  std::unique_ptr<cluster::RestartCoordinator> restarts_;
  std::unique_ptr<AgentHaProtection> protection_;  // isolation response and VMCP

  std::map<std::string, int> gone_rounds_;  // VM -> rounds seen gone from here (Run's thread only)

  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ferry
