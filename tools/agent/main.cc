// ferry-agent: one per host. Runs VMs and serves the Agent (orchestrators) and Peer (other
// agents) gRPC services.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "engine/agent/agent_cluster.h"
#include "engine/agent/agent_server.h"
#include "engine/agent/agent_tls.h"
#include "engine/agent/json_log_formatter.h"
#include "engine/agent/tls_config.h"

namespace {
// Where gRPC's log hook reports failed TLS handshakes (set once the server runs).
std::atomic<ferry::AgentObserver*> handshake_observer{nullptr};
}  // namespace

int main(int argc, char** argv) {
  using namespace ferry;
  // Block SIGTERM/SIGINT before any thread exists (gRPC starts some), so every thread inherits
  // the mask; one thread waits for them and shuts down gracefully.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CLI::App app{"ferry-agent: runs VMs and migrates them to and from other agents"};
  std::string config_path;
  AgentConfig flags;
  app.add_option("--config", config_path, "YAML config file (flags below override it)");
  auto* name = app.add_option("--name", flags.name, "agent name (its host certificate's name)");
  auto* listen = app.add_option("--listen", flags.listen, "listen address HOST:PORT (port 0: any free port)");
  auto* data_dir = app.add_option("--data-dir", flags.data_dir, "directory for VM logs and state");
  auto* port_file = app.add_option("--port-file", flags.port_file, "write the bound port here");
  auto* host_facts = app.add_option("--host-facts", flags.host_facts, "host file (YAML) or libvirt:URI");
  auto* ca = app.add_option("--tls-ca", flags.tls_ca, "CA certificate (PEM)");
  auto* cert = app.add_option("--tls-cert", flags.tls_cert, "this host's certificate (PEM)");
  auto* key = app.add_option("--tls-key", flags.tls_key, "this host's private key (PEM)");
  auto* insecure = app.add_flag("--insecure", flags.insecure, "plaintext gRPC, for local debugging only");
  std::string data_listen;
  auto* data_listen_opt = app.add_option("--data-listen", data_listen,
                                         "data port HOST:PORT for incoming pages (default: --listen's host, any port)");
  uint32_t connections = 0;
  uint32_t max_migrations = 0;
  auto* max_migrations_opt = app.add_option("--max-migrations", max_migrations,
                                            "migrations running at once, incoming and outgoing (default 4); "
                                            "more outgoing ones queue, more incoming ones are refused")
                                 ->check(CLI::Range(1, 64));
  uint32_t busy_retry_s = 0;
  auto* busy_retry_opt = app.add_option("--busy-retry-s", busy_retry_s,
                                        "how long an outgoing migration retries a destination that refuses it "
                                        "for now (busy) before it fails, in seconds (default 300)")
                             ->check(CLI::Range(1, 86400));
  auto* connections_opt = app.add_option("--connections", connections,
                                         "data connections per outgoing migration (default: one per core, 2..8)")
                              ->check(CLI::Range(1, 16));
  std::string metrics_listen;
  auto* metrics_listen_opt = app.add_option("--metrics-listen", metrics_listen,
                                            "serve Prometheus metrics on HOST:PORT/metrics (default: off)");
  bool in_process_vms = false;
  app.add_flag("--in-process-vms", in_process_vms,
               "run VMs inside the agent (they end with it) instead of one ferry-vmm process each");
  bool json_logs = false;
  app.add_flag("--json-logs", json_logs, "log as JSON lines");
  cluster::ClusterJoinConfig cluster_flags;
  std::string etcd_endpoints;
  auto* cluster_opt = app.add_option("--cluster", cluster_flags.name, "join this HA cluster (docs/cluster.md)");
  auto* etcd_endpoints_opt = app.add_option("--etcd-endpoints", etcd_endpoints, "the cluster's etcd, HOST:PORT,...");
  auto* etcd_ca_opt = app.add_option("--etcd-ca", cluster_flags.etcd_ca, "CA of etcd's certificates (default: --tls-ca)");
  auto* etcd_cert_opt = app.add_option("--etcd-cert", cluster_flags.etcd_cert, "client certificate for etcd (default: --tls-cert)");
  auto* etcd_key_opt = app.add_option("--etcd-key", cluster_flags.etcd_key, "its private key (default: --tls-key)");
  CLI11_PARSE(app, argc, argv);

  AgentConfig config;
  if (!config_path.empty()) {
    auto loaded = LoadAgentConfig(config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "ferry-agent: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    config = *loaded;
  }
  if (*name) config.name = flags.name;
  if (*listen) config.listen = flags.listen;
  if (*data_dir) config.data_dir = flags.data_dir;
  if (*port_file) config.port_file = flags.port_file;
  if (*host_facts) config.host_facts = flags.host_facts;
  if (*ca) config.tls_ca = flags.tls_ca;
  if (*cert) config.tls_cert = flags.tls_cert;
  if (*key) config.tls_key = flags.tls_key;
  if (*insecure) config.insecure = true;
  if (*data_listen_opt) config.data_listen = data_listen;
  if (*connections_opt) config.connections = connections;
  if (*max_migrations_opt) config.max_migrations = max_migrations;
  if (*busy_retry_opt) config.busy_retry_s = busy_retry_s;
  if (*metrics_listen_opt) config.metrics_listen = metrics_listen;
  cluster::ClusterJoinConfig cluster_config;
  if (!config_path.empty()) {
    auto loaded = cluster::LoadClusterJoinConfig(config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "ferry-agent: %s\n", std::string(loaded.status().message()).c_str());
      return 2;
    }
    cluster_config = *loaded;
  }
  if (*cluster_opt) cluster_config.name = cluster_flags.name;
  if (*etcd_endpoints_opt) {
    auto parsed = cluster::ParseEndpoints(etcd_endpoints);
    if (!parsed.ok()) {
      std::fprintf(stderr, "ferry-agent: --etcd-endpoints: %s\n", std::string(parsed.status().message()).c_str());
      return 2;
    }
    cluster_config.etcd_endpoints = *parsed;
  }
  if (*etcd_ca_opt) cluster_config.etcd_ca = cluster_flags.etcd_ca;
  if (*etcd_cert_opt) cluster_config.etcd_cert = cluster_flags.etcd_cert;
  if (*etcd_key_opt) cluster_config.etcd_key = cluster_flags.etcd_key;
  if (in_process_vms) config.in_process_vms = true;

  if (json_logs) {
    spdlog::set_formatter(std::make_unique<JsonLogFormatter>(config.name));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [" + config.name + "] %v");
  }

  RouteGrpcLogsToSpdlog([](std::string_view reason) {
    if (AgentObserver* o = handshake_observer.load()) o->OnTlsHandshakeFailure(reason);
  });
  auto security = MakeAgentSecurity(config);
  if (!security.ok()) {
    std::fprintf(stderr, "ferry-agent: %s\n", std::string(security.status().message()).c_str());
    return 2;
  }
  if (config.insecure) {
    spdlog::warn("**********************************************************************");
    spdlog::warn("INSECURE MODE: no TLS. Anyone who can reach {} can read or forge guests.", config.listen);
    spdlog::warn("Use only for local debugging.");
    spdlog::warn("**********************************************************************");
  }

  auto server = AgentServer::Start(config, security->server_credentials, security->dial_peer, !config.insecure);
  if (!server.ok()) {
    std::fprintf(stderr, "ferry-agent: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  handshake_observer.store((*server)->context().observer);
  std::shared_ptr<AgentCluster> ha;
  if (!cluster_config.name.empty()) {
    auto joined = AgentCluster::Join((*server)->context(), cluster_config,
                                     HostOfAddress(config.listen) + ":" + std::to_string((*server)->port()));
    if (!joined.ok()) {
      std::fprintf(stderr, "ferry-agent: %s\n", std::string(joined.status().message()).c_str());
      (*server)->Shutdown();
      return 1;
    }
    ha = std::move(*joined);
    std::lock_guard lock((*server)->context().ha_mu);
    (*server)->context().ha = ha;
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("event=signal signal={} action=graceful_shutdown", sig);
    {
      std::lock_guard lock((*server)->context().ha_mu);
      (*server)->context().ha.reset();
    }
    ha.reset();  // leave the cluster first: the others see it go at once, not after the lease TTL
    (*server)->Shutdown();
  });
  (*server)->Wait();
  waiter.join();
  handshake_observer.store(nullptr);
  spdlog::default_logger()->flush();
  return 0;
}
