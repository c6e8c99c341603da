// ferry-agent-faults: a test-only agent (never installed) that is ferry-agent plus faults injected
// through AgentContext's seams, so no fault switch lives in the production agent. Faults:
//   --fault drop-final-page   leave out one stale page of each outgoing final round (the guest
//                             must catch it: the lost-page negative control)
#include <csignal>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "engine/agent/agent_server.h"
#include "engine/agent/agent_tls.h"
#include "tests/fault_agent/drop_final_page_sender.h"

int main(int argc, char** argv) {
  using namespace ferry;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CLI::App app{"ferry-agent-faults: a test agent with injected faults"};
  AgentConfig config;
  std::string fault;
  app.add_option("--name", config.name);
  app.add_option("--listen", config.listen);
  app.add_option("--data-dir", config.data_dir);
  app.add_option("--port-file", config.port_file);
  app.add_option("--host-facts", config.host_facts);
  app.add_option("--tls-ca", config.tls_ca);
  app.add_option("--tls-cert", config.tls_cert);
  app.add_option("--tls-key", config.tls_key);
  app.add_flag("--insecure", config.insecure);
  app.add_option("--fault", fault, "drop-final-page")->check(CLI::IsMember({"drop-final-page"}));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [" + config.name + "] %v");

  auto security = MakeAgentSecurity(config);
  if (!security.ok()) {
    std::fprintf(stderr, "ferry-agent-faults: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }
  auto server = AgentServer::Start(config, security->server_credentials, security->dial_peer, !config.insecure);
  if (!server.ok()) {
    std::fprintf(stderr, "ferry-agent-faults: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  if (fault == "drop-final-page") {
    // Set before any request is served that could start a migration: the port file is what a
    // test waits for, and no migration starts before it asks for one.
    (*server)->context().wrap_page_sender = [](std::unique_ptr<PageSender> inner, Vm& vm) {
      return std::unique_ptr<PageSender>(new DropFinalPageSender(std::move(inner), vm));
    };
    spdlog::warn("event=test_fault_enabled fault=drop-final-page (a test agent that loses a page)");
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    (*server)->Shutdown();
  });
  (*server)->Wait();
  waiter.join();
  return 0;
}
