// ferry-vmm: one VM in its own process, started by ferry-agent and driven over a unix socket
// (docs/vmm_process.md). It outlives its agent; it ends when told to stop.
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "engine/vmm/vmm_server.h"

namespace {
std::atomic<bool> terminate_requested{false};
void OnTerminate(int) { terminate_requested.store(true); }
}  // namespace

int main(int argc, char** argv) {
  using namespace ferry;
  CLI::App app{"ferry-vmm: runs one VM for ferry-agent"};
  VmmServerOptions options;
  std::string name = "vm";
  app.add_option("--socket", options.socket_path, "unix socket the agent connects to")->required();
  app.add_option("--pid-file", options.pid_file, "write this process's id here");
  app.add_option("--name", name, "the VM's name (for the log)");
  app.add_option("--create-timeout-ms", options.create_timeout_ms, "exit if no VM is created by then")
      ->check(CLI::Range(100, 3'600'000));
  app.add_flag("--take-over", options.take_over,
               "a VMM upgrade's successor: listen beside --socket until told to claim it");
  CLI11_PARSE(app, argc, argv);

  // The agent blocks these in every thread; a child inherits the mask across exec.
  sigset_t all;
  sigemptyset(&all);
  sigaddset(&all, SIGTERM);
  sigaddset(&all, SIGINT);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);
  struct sigaction sa {};
  sa.sa_handler = OnTerminate;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);  // its agent's session may end; the VM does not

  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [vmm " + name + "] %v");
  auto server = VmmServer::Listen(options);
  if (!server.ok()) {
    std::fprintf(stderr, "ferry-vmm: %s\n", std::string(server.status().message()).c_str());
    return 2;
  }
  spdlog::info("event=vmm_listening socket={} pid={}", options.socket_path, getpid());
  const std::string reason = (*server)->Run(terminate_requested);
  spdlog::info("event=vmm_exit reason=\"{}\"", reason);
  server->reset();
  spdlog::default_logger()->flush();
  return 0;
}
