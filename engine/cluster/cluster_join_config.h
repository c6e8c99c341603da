#pragma once
// How an agent joins a cluster: `ferry-agent --cluster NAME --etcd-endpoints ... --etcd-ca/cert/key`,
// or the `cluster:` section of its YAML config (flags override it):
//
//   cluster:
//     name: prod
//     etcd_endpoints: [10.0.0.1:2379, 10.0.0.2:2379, 10.0.0.3:2379]
//     etcd_ca: /etc/ferry/etcd-ca.crt     # default: the agent's tls.ca
//     etcd_cert: /etc/ferry/host-a.crt    # default: the agent's tls.cert
//     etcd_key: /etc/ferry/host-a.key     # default: the agent's tls.key
//     isolation_addresses: [10.0.0.254:22]  # probed when the lease lapses; default: etcd_endpoints

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cluster/etcd_client.h"

namespace ferry::cluster {

struct ClusterJoinConfig {
  std::string name;  // "": the agent is in no cluster
  std::vector<std::string> etcd_endpoints;
  std::string etcd_ca, etcd_cert, etcd_key;  // file paths
  std::vector<std::string> isolation_addresses;  // HOST:PORT (isolation.h); empty: etcd_endpoints
};

// The `cluster:` section of the agent's YAML file; an empty config when there is none. Errors
// name the file and field.
absl::StatusOr<ClusterJoinConfig> LoadClusterJoinConfig(const std::string& path);

// "a:1,b:2" -> {"a:1", "b:2"}; empty entries are an error.
absl::StatusOr<std::vector<std::string>> ParseEndpoints(const std::string& text);

// Reads the PEM files (errors name the file and the option) into client options.
absl::StatusOr<EtcdClientOptions> EtcdClientOptionsFor(const ClusterJoinConfig& config);

}  // namespace ferry::cluster
