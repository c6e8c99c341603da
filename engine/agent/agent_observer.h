#pragma once
// What an agent's services tell whoever watches the agent (its metrics) as things happen. The
// services call it with one line where they record an event; every method may be called from
// any thread and must return quickly.

#include <string>
#include <string_view>
#include <vector>

#include "engine/precheck/finding.h"
#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

// How an incoming migration ended on this (destination) agent.
struct IncomingMigrationEnd {
  bool resumed = false;            // the VM runs here now
  uint64_t pages_received = 0;     // pages applied to guest memory (data and zero markers)
  uint64_t stream_bytes = 0;       // bytes of messages on the control stream (state; pages on --transport grpc)
};

class AgentObserver {
 public:
  virtual ~AgentObserver() = default;
  // Every event of an outgoing migration, in order; the last one has phase COMPLETED, FAILED
  // or CANCELLED and carries the migration's statistics.
  virtual void OnMigrationEvent(const v1::MigrationEvent& event) {}
  // An incoming migration's VM was adopted: it runs here from now on.
  virtual void OnVmArrived(const std::string& vm_name) {}
  virtual void OnIncomingMigrationEnd(const IncomingMigrationEnd& end) {}
  // The findings of one precheck (before a migration, or asked for on its own).
  virtual void OnPrecheckFindings(const std::vector<Finding>& findings) {}
  // A client's TLS handshake failed on the agent's port; `reason` is a short label
  // (HandshakeFailureReason in tls_config.h).
  virtual void OnTlsHandshakeFailure(std::string_view reason) {}
};

// An observer that ignores everything: the agent's default when metrics are off.
AgentObserver& NoAgentObserver();

}  // namespace ferry
