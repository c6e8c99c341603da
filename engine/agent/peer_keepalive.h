#pragma once
// HTTP/2 keepalive on agent-to-agent connections. A peer or a link that goes silent (a dead host,
// a frozen link) breaks the Peer stream within about kPeerKeepaliveTimeMs + kPeerKeepaliveTimeoutMs,
// so a destination discards a migration whose source went silent (freeing its name and memory)
// and a source's blocked send returns. docs/wire_protocol.md "Bounds".

#include <cstdint>

#include <grpcpp/grpcpp.h>

namespace ferry {

inline constexpr int kPeerKeepaliveTimeMs = 1000;     // a ping after this much silence
inline constexpr int kPeerKeepaliveTimeoutMs = 3000;  // no answer to it: the connection is dead
// A data connection whose send makes no progress this long is dead by the same rule (the link is
// frozen or the peer is gone): the source fails the migration and its guest runs on.
inline constexpr int64_t kDataPathDeadAfterMs = kPeerKeepaliveTimeMs + kPeerKeepaliveTimeoutMs;

void AddPeerKeepalive(grpc::ChannelArguments& args);
void AddPeerKeepalive(grpc::ServerBuilder& builder);

}  // namespace ferry
