// Agent.ResolveMigration (`migrate migration resolve ID`): a migration whose commit nobody
// confirmed left its VM paused here; ask the destination again and settle where the VM runs.
#include "engine/agent/agent_service.h"
#include "engine/agent/commit_resolver.h"
#include "engine/transport/grpc_peer_channel.h"

namespace ferry {

grpc::Status AgentService::ResolveMigration(grpc::ServerContext*, const v1::ResolveMigrationRequest* req,
                                            v1::ResolveMigrationResponse* out) {
  const std::string& id = req->migration_id();
  absl::StatusOr<CommitSettlement> settled = SettleUnconfirmedCommit(ctx_, id);
  if (!settled.ok()) {
    // Aborted (the VM is gone from here) reads as a precondition to the operator.
    const absl::Status& st = settled.status();
    return absl::IsAborted(st) ? grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::string(st.message()))
                               : ToGrpcStatus(st);
  }
  out->set_migration_id(id);
  out->set_vm_name(settled->vm_name);
  out->set_runs_on_destination(settled->runs_on_destination);
  out->set_message(settled->message);
  return grpc::Status::OK;
}

}  // namespace ferry
