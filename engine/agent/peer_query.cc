// Peer.QueryMigration: the destination's final answer to a source whose commit answer was lost
// (docs/wire_protocol.md "Failure cases and who owns the VM").
#include <spdlog/spdlog.h>

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
  out->set_outcome(ctx_.incoming_commits.Query(req->migration_id(), std::chrono::seconds(2), &detail));
  out->set_detail(detail);
  spdlog::info("event=migration_query migration={} outcome={} detail=\"{}\"", req->migration_id(),
               v1::CommitOutcome_Name(out->outcome()), detail);
  return grpc::Status::OK;
}

}  // namespace ferry
