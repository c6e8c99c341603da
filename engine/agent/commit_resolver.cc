#include "engine/agent/commit_resolver.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/transport/grpc_peer_channel.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {

absl::StatusOr<bool> AskDestinationRunsVm(AgentContext& ctx, const std::string& address,
                                          const std::string& expected_name, const std::string& migration_id) {
  auto channel = ctx.dial_peer(address, expected_name);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Peer::NewStub(*channel);
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::QueryMigrationRequest req;
  req.set_migration_id(migration_id);
  v1::QueryMigrationReply reply;
  grpc::Status st = stub->QueryMigration(&call, req, &reply);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("asking ", address, " failed: ", st.error_message()));
  }
  switch (reply.outcome()) {
    case v1::COMMIT_OUTCOME_RUNS_HERE: return true;
    case v1::COMMIT_OUTCOME_NOT_HERE: return false;
    default: return absl::UnavailableError(absl::StrCat(address, " has no final answer yet: ", reply.detail()));
  }
}

}  // namespace ferry
