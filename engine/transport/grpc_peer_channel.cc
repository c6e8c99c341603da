#include "engine/transport/grpc_peer_channel.h"

#include "absl/strings/str_cat.h"
#include "engine/base/error_text.h"

namespace ferry {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // A message may quote what a client or peer sent: bounded, so it never breaks their connection.
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), BoundedMessage(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(static_cast<int>(s.error_code())), s.error_message());
}

GrpcPeerChannel::GrpcPeerChannel(std::shared_ptr<grpc::Channel> channel, bool secure)
    : channel_(std::move(channel)), stub_(v1::Peer::NewStub(channel_)), secure_(secure) {}

GrpcPeerChannel::~GrpcPeerChannel() {
  if (stream_ && !finished_) {
    context_.TryCancel();
    final_status_ = stream_->Finish();
  }
}

absl::StatusOr<std::unique_ptr<GrpcPeerChannel>> GrpcPeerChannel::Open(std::shared_ptr<grpc::Channel> channel,
                                                                       bool secure) {
  std::unique_ptr<GrpcPeerChannel> c(new GrpcPeerChannel(std::move(channel), secure));
  c->stream_ = c->stub_->Migrate(&c->context_);
  if (!c->stream_) return absl::UnavailableError("cannot open the migration stream to the destination");
  return c;
}

absl::Status GrpcPeerChannel::Finish(const char* what) {
  if (!finished_) {
    finished_ = true;
    final_status_ = stream_->Finish();
  }
  if (final_status_.ok()) {
    return absl::UnavailableError(absl::StrCat("destination closed the migration stream while ", what));
  }
  return absl::UnavailableError(absl::StrCat("migration stream to the destination broke while ", what, ": ",
                                             final_status_.error_message()));
}

absl::Status GrpcPeerChannel::Send(const v1::PeerMessage& msg) {
  if (finished_ || writes_done_) return absl::FailedPreconditionError("migration stream already closed");
  if (!stream_->Write(msg)) return Finish("sending");
  return absl::OkStatus();
}

absl::Status GrpcPeerChannel::Receive(v1::PeerReply& reply) {
  if (finished_) return absl::UnavailableError("migration stream already closed");
  if (!stream_->Read(&reply)) return Finish("waiting for the destination's reply");
  return absl::OkStatus();
}

void GrpcPeerChannel::CloseSend() {
  if (!writes_done_ && !finished_) {
    writes_done_ = true;
    stream_->WritesDone();
  }
}

void GrpcPeerChannel::Abort() { context_.TryCancel(); }

}  // namespace ferry
