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
};

// Errors name the file and the field.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

// DATA_DIR/vms/NAME/console.log, creating its directory; "" when the agent has no data_dir.
std::string PrepareConsoleLogPath(const AgentConfig& config, const std::string& vm_name);

// This host's boot id (/proc/sys/kernel/random/boot_id): two agents with the same one share a
// CLOCK_MONOTONIC, so their timestamps compare directly.
std::string HostBootId();

}  // namespace ferry
