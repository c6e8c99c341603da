#pragma once
// An agent's HA membership (engine/cluster), started when it is configured with a cluster and
// left cleanly at shutdown. Without a cluster the agent runs exactly as before.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_config.h"
#include "engine/cluster/cluster_join_config.h"
#include "engine/cluster/cluster_member.h"

namespace ferry {

class AgentCluster {
 public:
  // Missing etcd credentials default to the agent's own TLS files. Fails (naming what is wrong)
  // when etcd cannot be reached or the cluster does not exist.
  static absl::StatusOr<std::unique_ptr<AgentCluster>> Join(const AgentConfig& agent,
                                                            cluster::ClusterJoinConfig join,
                                                            const std::string& agent_address);
  ~AgentCluster();
  cluster::HostState state() const { return member_->state(); }

 private:
  AgentCluster() = default;
  std::unique_ptr<cluster::EtcdClient> etcd_;
  std::unique_ptr<cluster::ClusterMember> member_;
};

}  // namespace ferry
