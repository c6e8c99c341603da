// migrate: Ferry's command line for people.
#include <cstdio>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {

CLI::App* SubcommandOf(CLI::App& parent, const std::string& name, const std::string& description) {
  for (CLI::App* sub : parent.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  CLI::App* sub = parent.add_subcommand(name, description);
  sub->require_subcommand(0, 1);
  return sub;
}

}  // namespace ferry::cli

int main(int argc, char** argv) {
  using namespace ferry::cli;
  // Log lines (warnings from the client library) go to stderr: stdout carries results, and with
  // --json nothing but JSON.
  spdlog::set_default_logger(spdlog::stderr_color_mt("migrate"));
  CLI::App app{"migrate: live-migrate KVM virtual machines between Ferry agents"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--agent", g.agent, "agent address HOST:PORT")->envname("FERRY_AGENT");
  app.add_option("--agent-name", g.agent_name, "name on the agent's certificate (default: the host part of --agent)")
      ->envname("FERRY_AGENT_NAME");
  app.add_option("--tls-ca", g.tls_ca, "cluster CA certificate (PEM)")->envname("FERRY_TLS_CA");
  app.add_option("--tls-cert", g.tls_cert, "client certificate (PEM)")->envname("FERRY_TLS_CERT");
  app.add_option("--tls-key", g.tls_key, "client private key (PEM)")->envname("FERRY_TLS_KEY");
  app.add_flag("--insecure", g.insecure, "talk plaintext gRPC (agents started with --insecure)")
      ->envname("FERRY_INSECURE");
  AddVmLocalCommands(app, g);
  AddAgentCommands(app, g);
  AddPrecheckCommands(app, g);
  AddDemoCommand(app, g);
  AddCertsCommands(app, g);
  AddMigrationCommands(app, g);
  AddClusterCommands(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // With --json, a command line CLI11 rejects is reported like any other error (cli_error.h).
    if (e.get_exit_code() != 0 && WantsJson(argc, argv)) return ReportError("", UsageError(e.what()), true);
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return g.exit_code;
}
