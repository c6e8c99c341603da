#pragma once
// The migrate CLI is one CLI11 app; each file adds one family of subcommands. A command sets
// `exit_code` in its callback (0 ok, 1 failure, 2 bad usage, 3 precheck found errors).

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/status/statusor.h"
#include "proto/ferry/v1/migration.pb.h"
#include "proto/ferry/v1/vm.pb.h"
#include "tools/client/agent_client.h"

namespace ferry::cli {

struct Globals {
  std::string agent;  // --agent HOST:PORT
  std::string agent_name;  // --agent-name: the name the agent's certificate must carry
  std::string tls_ca, tls_cert, tls_key;  // client certificate for the orchestrator API
  bool insecure = false;
  int exit_code = 0;
};

// The client certificate options as the client library takes them.
inline ClientTls ClientTlsOf(const Globals& g) { return {g.tls_ca, g.tls_cert, g.tls_key, g.insecure}; }

// Flag values -> API messages, shared by `vm create`/`vm migrate` and `demo` (agent_commands.cc).
// Errors name the flag.
absl::StatusOr<v1::VmSpec> BuildSpecFromFlags(const std::string& name, const std::string& memory,
                                              const std::string& working_set, const std::string& rate,
                                              const std::string& pattern, const std::string& backend,
                                              uint32_t vcpus, uint64_t seed, uint32_t tick_ms);
absl::StatusOr<v1::MigrationOptions> BuildMigrationOptions(uint32_t max_downtime_ms, const std::string& max_bandwidth,
                                                           uint32_t timeout_s, uint32_t max_rounds,
                                                           const std::string& policy);

// The data-path flags of `vm migrate` and `demo`: --connections, --transport, --no-auto-converge,
// --zero-copy.
struct DataPathFlags {
  uint32_t connections = 0;
  std::string transport = "data";
  bool no_auto_converge = false;
  bool zero_copy = false;
};
void AddDataPathFlags(CLI::App* cmd, DataPathFlags& f);

// A message as JSON, the way every --json output prints it (field names as in the .proto).
std::string ToJson(const google::protobuf::Message& m);
absl::Status ApplyDataPathFlags(const DataPathFlags& f, v1::MigrationOptions& o);

// Returns parent's subcommand `name`, creating it if no file has yet.
CLI::App* SubcommandOf(CLI::App& parent, const std::string& name, const std::string& description);

void AddVmLocalCommands(CLI::App& app, Globals& g);   // vm run | snapshot | restore (no agent)
void AddAgentCommands(CLI::App& app, Globals& g);     // vm create|list|show|stop|migrate|announce, precheck VM --to
void AddDatastoreVmCommands(CLI::App* vm, Globals& g);  // vm start|delete|register (datastore_vm_commands.cc)
void AddVmmUpgradeCommand(CLI::App* vm, Globals& g);    // vm upgrade (vmm_upgrade_command.cc)
void AddPrecheckCommands(CLI::App& app, Globals& g);  // precheck --vm --source --destination, host cpu-baseline
void AddDemoCommand(CLI::App& app, Globals& g);       // demo
void AddDemoHaCommand(CLI::App* demo, Globals& g);    // demo ha (demo_ha_command.cc)
void AddCertsCommands(CLI::App& app, Globals& g);     // certs ...
void AddMigrationCommands(CLI::App& app, Globals& g); // migration list|show|watch|cancel|set (jobs on --agent)
void AddClusterCommands(CLI::App& app, Globals& g);   // cluster create|join|status|config (etcd)

// --priority high|standard (an error names the flag).
absl::StatusOr<v1::MigrationPriority> ParsePriority(const std::string& text);

// The agent form of `precheck` (`migrate --agent A precheck VM --to B [--json]`) shares the
// subcommand AddPrecheckCommands creates (options VM, --to, --json); the agent commands plug in
// the handler, which returns the exit code (tools/migrate/findings_render.h prints findings).
void SetAgentPrecheckHandler(std::function<int(const std::string& vm, const std::string& to, bool json)> handler);

}  // namespace ferry::cli
