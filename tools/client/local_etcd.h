#pragma once
// A 1- or 3-member etcd cluster on this machine for tests and `migrate demo ha`: loopback,
// ephemeral ports, a temporary directory, mutual TLS with certificates from Ferry's own CA
// (engine/agent/certs.h) for both client and peer traffic. For the partition tests a member may
// instead run in a network namespace of its own on a given address. See docs/cluster.md.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/agent/certs.h"
#include "engine/cluster/etcd_client.h"

namespace ferry::cli {

struct LocalEtcdOptions {
  int members = 1;                    // 1 or 3
  std::string etcd_binary = "etcd";   // found on PATH when not a path
  bool keep_dir = false;
  // Per member (empty: every member on 127.0.0.1): the address it listens on and advertises for
  // clients and peers; its certificate names it besides 127.0.0.1 (etcd checks a peer's
  // certificate against the address it connects from).
  std::vector<std::string> member_ips{};
  // Per member (empty entries: this process's namespace): the network namespace it runs in
  // (`ip netns exec`, tools/client/netns_exec.h). Such a member has the namespace to itself and
  // uses etcd's standard ports, 2379 (clients) and 2380 (peers).
  std::vector<std::string> member_netns{};
};

class LocalEtcd {
 public:
  // NOT_FOUND when etcd is not installed (Debian: etcd-server). Returns once every member answers.
  static absl::StatusOr<std::unique_ptr<LocalEtcd>> Start(const LocalEtcdOptions& options);
  // SIGTERM to every member, wait, remove the directory.
  ~LocalEtcd();

  const std::string& dir() const { return dir_; }
  // HOST:PORT of each member's client URL.
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  std::string endpoints_flag() const;  // comma-separated, for --etcd-endpoints
  const CertAndKey& ca() const { return ca_; }
  std::string ca_path() const { return dir_ + "/certs/ca.crt"; }

  // Issues a host certificate for `name` (SAN 127.0.0.1 and `ips`) from this cluster's CA, writes
  // DIR/certs/NAME.{crt,key} and returns its PEMs.
  absl::StatusOr<CertAndKey> IssueHostCert(const std::string& name, const std::vector<std::string>& ips = {});
  // Client options for a caller holding `cert` (from this CA, or any other for negative tests).
  cluster::EtcdClientOptions ClientOptions(const CertAndKey& cert) const;

  void Kill(int member);  // SIGKILL, as a crash
  bool Alive(int member) const;

 private:
  struct Member {
    std::string name;
    pid_t pid = -1;
    std::string ip = "127.0.0.1";
    std::string netns;  // "" for this process's
    int client_port = 0;
    int peer_port = 0;
  };
  LocalEtcd() = default;
  absl::Status SpawnAll(const std::string& etcd_bin);
  absl::Status WaitReady();

  std::string dir_;
  bool keep_dir_ = false;
  int member_count_ = 1;
  LocalEtcdOptions options_;
  CertAndKey ca_;
  std::vector<Member> members_;
  std::vector<std::string> endpoints_;
};

}  // namespace ferry::cli
