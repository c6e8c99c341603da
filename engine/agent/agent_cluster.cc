#include "engine/agent/agent_cluster.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<AgentCluster>> AgentCluster::Join(const AgentConfig& agent,
                                                                  cluster::ClusterJoinConfig join,
                                                                  const std::string& agent_address) {
  if (join.etcd_ca.empty()) join.etcd_ca = agent.tls_ca;
  if (join.etcd_cert.empty()) join.etcd_cert = agent.tls_cert;
  if (join.etcd_key.empty()) join.etcd_key = agent.tls_key;
  auto options = cluster::EtcdClientOptionsFor(join);
  if (!options.ok()) return options.status();
  auto etcd = cluster::EtcdClient::Create(*options);
  if (!etcd.ok()) return etcd.status();
  std::unique_ptr<AgentCluster> c(new AgentCluster());
  c->etcd_ = std::move(*etcd);
  auto member = cluster::ClusterMember::Join(*c->etcd_, {join.name, agent.name, agent_address});
  if (!member.ok()) {
    return absl::Status(member.status().code(),
                        absl::StrCat("cannot join cluster '", join.name, "' through etcd at ",
                                     absl::StrJoin(join.etcd_endpoints, ","), ": ", member.status().message()));
  }
  c->member_ = std::move(*member);
  spdlog::info("ha: event=cluster_join cluster={} host={} etcd={}", join.name, agent.name,
               absl::StrJoin(join.etcd_endpoints, ","));
  return c;
}

AgentCluster::~AgentCluster() {
  if (member_) member_->Leave();
}

}  // namespace ferry
