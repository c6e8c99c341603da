#pragma once
// Several ferry-agent processes on this machine (loopback, ephemeral ports, a temporary
// directory, a temporary CA): what `migrate demo`, migrate-bench and end-to-end tests run on.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/ferry/v1/agent.grpc.pb.h"
#include "tools/client/agent_client.h"

namespace ferry::cli {

struct LocalClusterOptions {
  int agents = 2;
  bool tls = true;           // a temporary CA, host certificates, a client certificate
  std::string bin_dir;       // where ferry-agent is; empty: beside this executable, then $FERRY_BIN_DIR
  std::string agent_binary = "ferry-agent";  // or the test-only ferry-agent-faults (tests/fault_agent)
  bool keep_dir = false;     // keep the temporary directory (logs) after teardown
  std::vector<std::string> host_facts;  // per agent: --host-facts (empty entries: none)
  std::vector<std::vector<std::string>> extra_args;  // per agent: more ferry-agent flags
  // Per agent (empty entries: 127.0.0.1): the address it listens on; its host certificate names it.
  std::vector<std::string> listen_hosts{};
  // Per agent (empty entries: this process's): the network namespace it runs in, with its VMMs
  // (`ip netns exec`, tools/client/netns_exec.h).
  std::vector<std::string> netns{};
};

class LocalCluster {
 public:
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  // SIGTERM to every agent, wait, kill the VMM processes they leave running, remove the directory.
  ~LocalCluster();

  int size() const { return static_cast<int>(agents_.size()); }
  const std::string& name(int i) const { return agents_[i].name; }
  std::string address(int i) const { return agents_[i].host + ":" + std::to_string(agents_[i].port); }
  pid_t pid(int i) const { return agents_[i].pid; }
  const std::string& dir() const { return dir_; }
  std::string log_path(int i) const { return dir_ + "/" + agents_[i].name + ".log"; }
  const ClientTls& client_tls() const { return client_tls_; }
  absl::StatusOr<std::unique_ptr<v1::Agent::Stub>> Stub(int i) const;

  // Kills agent i at once (SIGKILL), as a crash would.
  void Kill(int i);
  // Whether agent i's process is still running.
  bool Alive(int i) const;
  // Starts agent i again after Kill: same name, data directory and certificates, a new port. It
  // re-adopts the VMs its VMM processes kept running (docs/vmm_process.md).
  absl::Status Restart(int i);

 private:
  struct Agent {
    std::string name;
    std::string host = "127.0.0.1";  // where it listens
    pid_t pid = -1;
    int port = 0;
  };
  LocalCluster() = default;
  absl::Status Spawn(int index, const LocalClusterOptions& options, const std::string& agent_bin);
  absl::Status WaitForPort(int index);

  LocalClusterOptions options_;
  std::string agent_bin_;
  std::string dir_;
  bool keep_dir_ = false;
  ClientTls client_tls_;
  std::vector<Agent> agents_;
};

// Kills (SIGKILL) every ferry-vmm process whose pid file lies under `dir` (DIR/*/vms/*/vmm.pid or
// DIR/vms/*/vmm.pid): VMM processes outlive their agents, a test's teardown must not leave them.
// Returns how many it killed.
int KillVmmProcessesUnder(const std::string& dir);

// Where sibling binaries (ferry-agent, ferry-guest.elf) are: beside /proc/self/exe, else
// $FERRY_BIN_DIR.
std::string SiblingBinary(const std::string& name);

}  // namespace ferry::cli
