#pragma once
// Talking to agents from the CLI: dialling with the client certificate, and following a
// migration's progress stream with a progress bar.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/ferry/v1/agent.grpc.pb.h"

namespace ferry::cli {

// How the CLI authenticates to agents (orchestrator API: a client certificate).
struct ClientTls {
  std::string ca, cert, key;
  bool insecure = false;
};

// expected_name: the name the agent's certificate must carry; empty = the host part of address.
absl::StatusOr<std::unique_ptr<v1::Agent::Stub>> DialAgent(const ClientTls& tls, const std::string& address,
                                                           const std::string& expected_name = "");

// Runs a migration, drawing a live progress bar on stderr (a line per round when stderr is not a
// terminal). Ctrl-C asks the source agent to cancel. Returns the last event (with statistics).
// "2 connections", or "the gRPC stream" for 0.
std::string ConnectionsText(uint32_t n);

absl::StatusOr<v1::MigrationEvent> MigrateWithProgress(v1::Agent::Stub& source, const v1::MigrateRequest& req,
                                                       bool quiet);

std::string FormatBytes(uint64_t bytes);
// "queued", "pre-copy", "completed", ...
const char* PhaseName(v1::MigrationPhase p);

}  // namespace ferry::cli
