// Peer.QueryMigration: the destination's final answer to a source whose commit answer was lost
// (docs/wire_protocol.md "Failure cases and who owns the VM").
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/peer_service.h"
#include "engine/agent/tls_config.h"

namespace ferry {

grpc::Status PeerService::QueryMigration(grpc::ServerContext* context, const v1::QueryMigrationRequest* req,
                                         v1::QueryMigrationReply* out) {
  if (grpc::Status peer = RequireHostPeer(*context); !peer.ok()) return peer;
  if (req->migration_id().empty() || req->migration_id().size() > 128) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "migration id must be 1..128 characters");
  }
  std::string detail;
  // An agent that restarted knows no migration, but a VM that arrived by this one may still run
  // here in its VMM (adopted; the VMM remembers the migration): then the commit took effect.
  for (const auto& [name, e] : ctx_.vms.List()) {
    if (e->vm && e->arrived_by_migration == req->migration_id() && e->vm->run_state() != VmRunState::kStopped) {
      out->set_outcome(v1::COMMIT_OUTCOME_RUNS_HERE);
      out->set_detail(absl::StrCat("the commit took effect: VM '", name, "' arrived by it and runs here"));
      spdlog::info("event=migration_query migration={} outcome=RUNS_HERE vm={}", req->migration_id(), name);
      return grpc::Status::OK;
    }
  }
  out->set_outcome(ctx_.incoming_commits.Query(req->migration_id(), std::chrono::seconds(2), &detail));
  out->set_detail(detail);
  spdlog::info("event=migration_query migration={} outcome={} detail=\"{}\"", req->migration_id(),
               v1::CommitOutcome_Name(out->outcome()), detail);
  return grpc::Status::OK;
}

}  // namespace ferry
