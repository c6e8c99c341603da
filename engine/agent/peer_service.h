#pragma once
// The Peer service: the destination side of migrations coming from other agents.

#include "engine/agent/agent_context.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {

class PeerService final : public v1::Peer::Service {
 public:
  explicit PeerService(AgentContext& ctx) : ctx_(ctx) {}
  grpc::Status Migrate(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::PeerReply, v1::PeerMessage>* stream) override;
  grpc::Status GetHostFacts(grpc::ServerContext* context, const v1::GetHostFactsRequest* req,
                            v1::HostFacts* out) override;
  // peer_query.cc
  grpc::Status QueryMigration(grpc::ServerContext* context, const v1::QueryMigrationRequest* req,
                              v1::QueryMigrationReply* out) override;

 private:
  AgentContext& ctx_;
};

}  // namespace ferry
