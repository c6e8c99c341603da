#pragma once
// The agent's side of host isolation and VM component protection (engine/cluster/isolation.h,
// vmcp_monitor.h): AgentHaVms lets the monitors see and stop the datastore VMs of this agent, and
// AgentHaProtection runs both monitors for a host that joined a cluster. docs/cluster.md
// "Isolation" and "VMCP".

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/agent/agent_context.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/cluster_member.h"
#include "engine/cluster/etcd_client.h"
#include "engine/cluster/ha_vm_control.h"
#include "engine/cluster/heartbeat_writer.h"
#include "engine/cluster/isolation.h"
#include "engine/cluster/vmcp_monitor.h"

namespace ferry {

// The running datastore VMs of this agent, by their datastore's UUID (the same on every host;
// its name when it has none yet). PowerOff and Shutdown stop the VM as `vm stop` does (its VMM
// ends and with it the VM lock); Ferry's VMs have no guest shutdown request, so Shutdown is a stop.
class AgentHaVms : public cluster::HaVmControl {
 public:
  explicit AgentHaVms(AgentContext& ctx) : ctx_(ctx) {}
  std::vector<cluster::HaVm> RunningVms() override;
  std::map<std::string, std::string> Datastores() override;
  absl::Status PowerOff(const std::string& vm) override;
  absl::Status Shutdown(const std::string& vm) override { return PowerOff(vm); }

 private:
  AgentContext& ctx_;
};

class AgentHaProtection {
 public:
  // `etcd`, `member` and `ctx` must outlive the result. `isolation_addresses` empty: the etcd
  // endpoints. `handoff` is the restart path a VMCP power-off hands its VM to.
  static absl::StatusOr<std::unique_ptr<AgentHaProtection>> Start(AgentContext& ctx, cluster::EtcdClient& etcd,
                                                                  cluster::ClusterMember& member,
                                                                  const std::string& cluster,
                                                                  std::vector<std::string> isolation_addresses,
                                                                  const std::vector<std::string>& etcd_endpoints,
                                                                  cluster::RestartHandoff handoff,
                                                                  cluster::HeartbeatWriter& heartbeats);
  ~AgentHaProtection();

 private:
  explicit AgentHaProtection(AgentContext& ctx) : vms_(ctx) {}
  AgentHaVms vms_;
  std::unique_ptr<cluster::IsolationMonitor> isolation_;
  std::unique_ptr<cluster::VmcpMonitor> vmcp_;
};

}  // namespace ferry
