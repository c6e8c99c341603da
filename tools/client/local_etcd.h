#pragma once
// A 1- or 3-member etcd cluster on this machine for tests and `migrate demo ha`: loopback,
// ephemeral ports, a temporary directory, mutual TLS with certificates from Ferry's own CA
// (engine/agent/certs.h) for both client and peer traffic. See docs/cluster.md.

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

  // Issues a host certificate for `name` from this cluster's CA, writes DIR/certs/NAME.{crt,key}
  // and returns its PEMs.
  absl::StatusOr<CertAndKey> IssueHostCert(const std::string& name);
  // Client options for a caller holding `cert` (from this CA, or any other for negative tests).
  cluster::EtcdClientOptions ClientOptions(const CertAndKey& cert) const;

  void Kill(int member);  // SIGKILL, as a crash
  bool Alive(int member) const;

 private:
  struct Member {
    std::string name;
    pid_t pid = -1;
    int client_port = 0;
    int peer_port = 0;
  };
  LocalEtcd() = default;
  absl::Status SpawnAll(const std::string& etcd_bin);
  absl::Status WaitReady();

  std::string dir_;
  bool keep_dir_ = false;
  int member_count_ = 1;
  CertAndKey ca_;
  std::vector<Member> members_;
  std::vector<std::string> endpoints_;
};

}  // namespace ferry::cli
