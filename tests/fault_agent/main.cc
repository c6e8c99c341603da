// ferry-agent-faults: a test-only agent (never installed) that is ferry-agent plus faults injected
// through AgentContext's seams, so no fault switch lives in the production agent. Faults:
//   --fault drop-final-page   leave out one stale page of each outgoing final round (the guest
//                             must catch it: the lost-page negative control)
//   --fault drop-final-disk-block
//                             leave out one block of a storage migration's final round (the
//                             guest must catch it): on the data connections disk_fault_sender.h,
//                             on the gRPC transport drop_disk_block_channel.h
//   --fault disk-block-outside-disk
//                             send one block past the end of the disk on a data connection in the
//                             first storage migration (the destination must refuse it:
//                             disk_fault_sender.h)
//   --hold-at PHASE --hold-file PATH
//                             hold the first outgoing migration at state-loaded, commit-sent or
//                             resumed until the test removes PATH (holding_channel.h)
//   --refuse-at STEP          refuse the first incoming migration at start, round-1, round-2,
//                             state, commit or after-resume (refusing_destination.h)
//   --resolve-timeout-ms N    give up asking the destination after a lost commit answer after N ms
//                             (the agent's default is 30 s), so a test reaches commit-unconfirmed
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "engine/agent/agent_server.h"
#include "engine/agent/agent_tls.h"
#include "tests/fault_agent/disk_fault_sender.h"
#include "tests/fault_agent/drop_disk_block_channel.h"
#include "tests/fault_agent/drop_final_page_sender.h"
#include "tests/fault_agent/holding_channel.h"
#include "tests/fault_agent/refusing_destination.h"

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
  std::string hold_at, hold_file, refuse_at;
  int64_t resolve_timeout_ms = 0;
  app.add_option("--name", config.name);
  app.add_option("--listen", config.listen);
  app.add_option("--data-dir", config.data_dir);
  app.add_option("--port-file", config.port_file);
  app.add_option("--host-facts", config.host_facts);
  app.add_option("--tls-ca", config.tls_ca);
  app.add_option("--tls-cert", config.tls_cert);
  app.add_option("--tls-key", config.tls_key);
  app.add_flag("--insecure", config.insecure);
  app.add_option("--fault", fault, "drop-final-page|drop-final-disk-block|disk-block-outside-disk")
      ->check(CLI::IsMember({"drop-final-page", "drop-final-disk-block", "disk-block-outside-disk"}));
  app.add_option("--hold-at", hold_at, "state-loaded|commit-sent|resumed")
      ->check(CLI::IsMember({"state-loaded", "commit-sent", "resumed"}));
  app.add_option("--hold-file", hold_file);
  app.add_option("--refuse-at", refuse_at, "start|round-1|round-2|state|commit|after-resume")
      ->check(CLI::IsMember({"start", "round-1", "round-2", "state", "commit", "after-resume"}));
  app.add_option("--resolve-timeout-ms", resolve_timeout_ms)->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (hold_at.empty() != hold_file.empty()) {
    std::fprintf(stderr, "ferry-agent-faults: --hold-at and --hold-file go together\n");
    return 2;
  }
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
  static std::atomic<bool> dropped_block{false};
  if (fault == "drop-final-disk-block") {
    (*server)->context().wrap_migration_channel = [](MigrationChannel& inner) {
      return std::unique_ptr<MigrationChannel>(new DropDiskBlockChannel(inner, dropped_block));
    };
    (*server)->context().wrap_page_sender = [](std::unique_ptr<PageSender> inner, Vm& vm) {
      return std::unique_ptr<PageSender>(
          new DiskFaultSender(std::move(inner), vm, DiskFault::kDropFinalBlock, dropped_block));
    };
    spdlog::warn("event=test_fault_enabled fault=drop-final-disk-block (a test agent that loses a disk block)");
  }
  static std::atomic<bool> sent_outside{false};
  if (fault == "disk-block-outside-disk") {
    (*server)->context().wrap_page_sender = [](std::unique_ptr<PageSender> inner, Vm& vm) {
      return std::unique_ptr<PageSender>(
          new DiskFaultSender(std::move(inner), vm, DiskFault::kBlockOutsideDisk, sent_outside));
    };
    spdlog::warn("event=test_fault_enabled fault=disk-block-outside-disk (a test agent that sends a block past the disk)");
  }
  static std::atomic<bool> held{false};
  if (!hold_at.empty()) {
    HoldPhase at = *ParseHoldPhase(hold_at);  // CLI11 checked the name
    (*server)->context().wrap_migration_channel = [at, hold_file](MigrationChannel& inner) {
      return std::unique_ptr<MigrationChannel>(new HoldingChannel(inner, at, hold_file, held));
    };
    spdlog::warn("event=test_fault_enabled fault=hold-at phase={} file={}", hold_at, hold_file);
  }
  if (!refuse_at.empty()) {
    InstallRefusingDestination((*server)->context(), *ParseRefuseStep(refuse_at));  // CLI11 checked the name
    spdlog::warn("event=test_fault_enabled fault=refuse-at step={}", refuse_at);
  }
  if (resolve_timeout_ms > 0) {
    (*server)->context().adjust_source_config = [resolve_timeout_ms](SourceConfig& c) {
      c.resolve_timeout = std::chrono::milliseconds(resolve_timeout_ms);
    };
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
