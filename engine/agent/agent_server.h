#pragma once
// A running agent: the gRPC server with the Agent and Peer services.

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "engine/agent/agent_context.h"
#include "engine/agent/agent_metrics.h"
#include "engine/agent/agent_service.h"
#include "engine/agent/peer_service.h"

namespace ferry {

class AgentServer {
 public:
  // Binds config.listen (port 0 = any free port) and serves. When config.port_file is set, the
  // bound port is written there once the server accepts connections.
  static absl::StatusOr<std::unique_ptr<AgentServer>> Start(
      AgentConfig config, std::shared_ptr<grpc::ServerCredentials> server_credentials,
      decltype(AgentContext::dial_peer) dial_peer, bool secure);
  ~AgentServer();

  int port() const { return port_; }
  AgentContext& context() { return ctx_; }
  // Stops accepting requests, cancels outgoing migrations (their VMs stay here, running), stops
  // every VM cleanly.
  void Shutdown();
  void Wait();

 private:
  AgentServer() = default;

  AgentContext ctx_;
  std::unique_ptr<AgentMetrics> metrics_;  // when config.metrics_listen is set; reads ctx_.vms
  std::unique_ptr<AgentService> agent_service_;
  std::unique_ptr<PeerService> peer_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace ferry
