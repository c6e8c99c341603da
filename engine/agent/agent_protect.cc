// The Agent RPCs of HA protection (docs/cluster.md "Protected VMs and restarts"): vm protect and
// vm unprotect, through this agent's cluster membership.

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/agent_cluster.h"
#include "engine/agent/agent_service.h"
#include "engine/transport/grpc_peer_channel.h"

namespace ferry {
namespace {

absl::StatusOr<std::shared_ptr<AgentCluster>> ClusterOf(AgentContext& ctx) {
  auto ha = ctx.Ha();
  if (!ha) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent ", ctx.config.name, " is in no HA cluster (start it with --cluster NAME --etcd-endpoints ...)"));
  }
  return ha;
}

}  // namespace

grpc::Status AgentService::ProtectVm(grpc::ServerContext*, const v1::ProtectVmRequest* req,
                                     v1::ProtectVmResponse* out) {
  auto ha = ClusterOf(ctx_);
  if (!ha.ok()) return ToGrpcStatus(ha.status());
  auto priority = cluster::ParseRestartPriority(req->restart_priority().empty() ? "medium" : req->restart_priority());
  if (!priority.ok()) return ToGrpcStatus(priority.status());
  auto vm = (*ha)->Protect(req->name(), *priority);
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  out->set_cluster((*ha)->cluster());
  out->set_host(vm->host);
  out->set_datastore(vm->datastore);
  out->set_directory(vm->dir);
  out->set_state(cluster::ProtectedVmStateName(vm->state));
  out->set_restart_priority(cluster::RestartPriorityName(vm->priority));
  return grpc::Status::OK;
}

grpc::Status AgentService::UnprotectVm(grpc::ServerContext*, const v1::UnprotectVmRequest* req,
                                       v1::UnprotectVmResponse* out) {
  auto ha = ClusterOf(ctx_);
  if (!ha.ok()) return ToGrpcStatus(ha.status());
  if (absl::Status st = (*ha)->Unprotect(req->name()); !st.ok()) return ToGrpcStatus(st);
  out->set_cluster((*ha)->cluster());
  return grpc::Status::OK;
}

}  // namespace ferry
