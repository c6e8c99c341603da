#pragma once
// The simple transport: the migration runs over one bidirectional gRPC stream of the Peer service
// (TLS comes with the channel's credentials).

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "engine/migration/migration_channel.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {

class GrpcPeerChannel : public MigrationChannel {
 public:
  // Opens the Peer.Migrate stream on `channel`. `secure` only labels statistics.
  static absl::StatusOr<std::unique_ptr<GrpcPeerChannel>> Open(std::shared_ptr<grpc::Channel> channel,
                                                               bool secure);
  ~GrpcPeerChannel() override;

  absl::Status Send(const v1::PeerMessage& msg) override;
  absl::Status Receive(v1::PeerReply& reply) override;
  void CloseSend() override;
  void Abort() override;
  const char* name() const override { return secure_ ? "grpc+tls" : "grpc"; }
  bool encrypted() const override { return secure_; }

 private:
  GrpcPeerChannel(std::shared_ptr<grpc::Channel> channel, bool secure);
  absl::Status Finish(const char* what);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Peer::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PeerMessage, v1::PeerReply>> stream_;
  bool secure_;
  bool writes_done_ = false;
  bool finished_ = false;
  grpc::Status final_status_;
};

// absl::Status <-> grpc::Status at the edge.
grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace ferry
