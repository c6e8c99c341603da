#pragma once
// The migrate CLI is one CLI11 app; each file adds one family of subcommands. A command sets
// `exit_code` in its callback (0 ok, 1 failure, 2 bad usage, 3 precheck found errors).

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

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

// Returns parent's subcommand `name`, creating it if no file has yet.
CLI::App* SubcommandOf(CLI::App& parent, const std::string& name, const std::string& description);

void AddVmLocalCommands(CLI::App& app, Globals& g);   // vm run | snapshot | restore (no agent)
void AddAgentCommands(CLI::App& app, Globals& g);     // vm create|list|show|stop|migrate|announce, precheck VM --to
void AddPrecheckCommands(CLI::App& app, Globals& g);  // precheck --vm --source --destination, host cpu-baseline
void AddDemoCommand(CLI::App& app, Globals& g);       // demo
void AddCertsCommands(CLI::App& app, Globals& g);     // certs ...

// The agent form of `precheck` (`migrate --agent A precheck VM --to B [--json]`) shares the
// subcommand AddPrecheckCommands creates (options VM, --to, --json); the agent commands plug in
// the handler, which returns the exit code (tools/migrate/findings_render.h prints findings).
void SetAgentPrecheckHandler(std::function<int(const std::string& vm, const std::string& to, bool json)> handler);

}  // namespace ferry::cli
