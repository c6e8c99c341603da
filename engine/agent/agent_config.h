#pragma once
// ferry-agent's configuration: a YAML file, overridable by flags.
//
//   name: host-a
//   listen: 127.0.0.1:7001     # port 0 picks a free port (see port_file)
//   data_dir: /var/lib/ferry
//   port_file: /run/ferry/host-a.port
//   host_facts: /etc/ferry/host-a.yaml   # or libvirt:qemu:///system
//   tls: {ca: ca.pem, cert: host-a.pem, key: host-a.key}
//   insecure: false
//   data_listen: 127.0.0.1:0   # the data port for incoming pages (default: listen's host, any port)
//   connections: 0             # data connections per outgoing migration (0: from the cores)
//   max_migrations: 4          # migrations running at once, incoming + outgoing (docs/jobs.md)
//   migration_history: 64      # finished migration jobs kept with their statistics
//   busy_retry_s: 300          # how long an outgoing job retries a destination that refuses it for now
//   metrics_listen: 127.0.0.1:9477   # Prometheus /metrics over HTTP (default: off)

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ferry {

struct AgentConfig {
  std::string name = "ferry-agent";
  std::string listen = "127.0.0.1:0";
  std::string data_dir;
  std::string port_file;
  std::string host_facts;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  bool insecure = false;
  std::string data_listen;   // HOST:PORT; "" = listen's host, port 0
  uint32_t connections = 0;  // 0 = DefaultDataConnections()
  uint32_t max_migrations = 4;      // concurrent migrations, incoming and outgoing; more queue (out) or are refused (in)
  uint32_t migration_history = 64;  // finished jobs kept
  // An outgoing job whose destination refuses it for now (busy: PeerError.temporary) queues again
  // and retries with back-off; it fails once refused for this long (docs/jobs.md).
  uint32_t busy_retry_s = 300;
  std::string metrics_listen;  // HOST:PORT serving /metrics; "" = no metrics
  // VMs run in their own ferry-vmm processes (docs/vmm_process.md) unless this is set (or there
  // is no data_dir to hold their sockets).
  bool in_process_vms = false;
  std::string vmm_binary;  // "" = ferry-vmm beside this executable
};

// Data connections per migration when neither the request nor the agent names a number: one per
// core, at least 2 and at most 8 (each connection is one sending and one receiving thread).
uint32_t DefaultDataConnections();

// The host part of HOST:PORT ("[::1]:7001" -> "::1").
std::string HostOfAddress(const std::string& address);

// Errors name the file and the field.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

// This host's boot id (/proc/sys/kernel/random/boot_id): two agents with the same one share a
// CLOCK_MONOTONIC, so their timestamps compare directly.
std::string HostBootId();

}  // namespace ferry
