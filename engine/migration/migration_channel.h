#pragma once
// The source's view of the link to the destination: ordered messages out, replies in. The gRPC
// Peer stream implements it (engine/transport); tests use an in-process pair. The migration
// engine knows nothing else about the transport.

#include "absl/status/status.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class MigrationChannel {
 public:
  virtual ~MigrationChannel() = default;
  // Blocks while the link applies back-pressure. An error means the link is gone.
  virtual absl::Status Send(const v1::PeerMessage& msg) = 0;
  // Blocks until the destination replies or the link breaks (then an error).
  virtual absl::Status Receive(v1::PeerReply& reply) = 0;
  // No more messages from the source; the destination sees end-of-stream.
  virtual void CloseSend() = 0;
  // Breaks the link from another thread: blocked Send/Receive return errors.
  virtual void Abort() = 0;
  // A short name for statistics ("grpc", "grpc+tls", "in-process").
  virtual const char* name() const = 0;
  // Whether what travels on it is encrypted (TLS).
  virtual bool encrypted() const = 0;
};

}  // namespace ferry
