#pragma once
// What an agent's services share: its configuration, VMs, migrations and how it dials peers.

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "engine/agent/agent_config.h"
#include "engine/agent/incoming_commits.h"
#include "engine/agent/unconfirmed_commits.h"
#include "engine/agent/agent_observer.h"
#include "engine/agent/link_history.h"
#include "engine/agent/migration_manager.h"
#include "engine/agent/vm_ownership.h"
#include "engine/agent/vm_registry.h"
#include "engine/migration/precopy_source.h"
#include "engine/transport/data_listener.h"
#include "proto/ferry/v1/migration.pb.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class AgentCluster;  // agent_cluster.h

struct AgentContext {
  AgentConfig config;
  std::string boot_id;
  VmRegistry vms;
  VmOwnership ownership;  // the locks of the datastore VMs running here (docs/datastores.md)
  // Every migration of this host as a job (docs/jobs.md); made by AgentServer::Start from config.
  std::unique_ptr<MigrationManager> migrations;
  LinkHistory links;  // what completed migrations to each destination carried
  // Where each incoming migration's commit stands (Peer.QueryMigration answers from it).
  IncomingCommits incoming_commits;
  // Outgoing migrations whose commit nobody confirmed: their VMs wait here, paused.
  UnconfirmedCommits unconfirmed_commits;
  // Told of migration events, arrivals, precheck findings (the agent's metrics when they are on).
  AgentObserver* observer = &NoAgentObserver();
  // Opens a channel to another agent (TLS-aware); expected_name is the peer's certificate name.
  std::function<absl::StatusOr<std::shared_ptr<grpc::Channel>>(const std::string& address,
                                                               const std::string& expected_name)>
      dial_peer;
  bool secure = false;
  // The data port: incoming migrations' data connections (docs/wire_protocol.md).
  std::unique_ptr<DataListener> data_listener;
  // Test seam (unset in production): wraps each outgoing migration's page sender. Only the
  // test-only agent of tests/fault_agent sets it, to inject faults.
  std::function<std::unique_ptr<PageSender>(std::unique_ptr<PageSender>, Vm&)> wrap_page_sender;
  // Test seams (unset in production), also set only by tests/fault_agent: wrap each outgoing
  // migration's control channel (to hold it at a phase while a test injects a fault), and adjust
  // its engine's configuration (shorter bounds) before it runs.
  std::function<std::unique_ptr<MigrationChannel>(MigrationChannel&)> wrap_migration_channel;
  std::function<void(SourceConfig&)> adjust_source_config;
  // The HA membership (agent_cluster.h) once this agent joined a cluster, else null: set and
  // cleared by ferry-agent's main, read through Ha() by the RPCs that need it (vm protect, stop).
  std::mutex ha_mu;
  std::shared_ptr<AgentCluster> ha ABSL_GUARDED_BY(ha_mu);
  std::shared_ptr<AgentCluster> Ha() {
    std::lock_guard lock(ha_mu);
    return ha;
  }
  // Test seams (unset in production, set only by tests/fault_agent) of the destination side:
  // refuse_incoming answers an incoming message with its error reply instead of the receiver
  // (nullopt: handled as usual), and is asked once more with an empty message right after the VM
  // resumed here (before the announcement); adjust_incoming_data_path changes a data path's
  // options (IncomingOptions::refuse_batch refuses a round).
  std::function<std::optional<v1::PeerReply>(const v1::PeerMessage&)> refuse_incoming;
  std::function<void(IncomingOptions&)> adjust_incoming_data_path;
};

}  // namespace ferry
