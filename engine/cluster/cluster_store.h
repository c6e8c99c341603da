#pragma once
// Reading and writing a cluster's records in etcd (cluster_keys.h): its configuration, its hosts,
// its protected VMs, and the status view `migrate cluster status` prints.

#include <cstdint>
#include <string>
#include <vector>

#include <optional>

#include "absl/status/statusor.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/cluster_events.h"
#include "engine/cluster/etcd_client.h"
#include "engine/cluster/protected_vm.h"

namespace ferry::cluster {

// hosts/<host>: written by the host when it joins (or re-joins with a new lease).
struct HostRecord {
  std::string host;
  std::string address;  // its agent's gRPC address, "" if unknown
  int64_t lease = 0;    // its network heartbeat
  // Refreshed by the host every interval (docs/cluster.md "Protected VMs and restarts"):
  uint64_t free_memory_bytes = 0;                    // admission: what a restarted VM may take here
  std::vector<std::string> datastore_ids;            // UUIDs of the datastores it mounts
  std::vector<std::string> heartbeat_datastore_ids;  // where it writes its datastore heartbeats
};
// What a host reports about itself in its record, besides its name, address and lease.
struct HostReport {
  uint64_t free_memory_bytes = 0;
  std::vector<std::string> datastore_ids;
  std::vector<std::string> heartbeat_datastore_ids;
};
std::string ToJson(const HostRecord& r);
absl::StatusOr<HostRecord> HostRecordFromJson(const std::string& json);

// ALREADY_EXISTS when the cluster has a configuration already.
absl::Status CreateCluster(EtcdClient& etcd, const std::string& cluster, const ClusterConfig& config);
// NOT_FOUND (saying how to create it) when the cluster does not exist.
absl::StatusOr<ClusterConfig> ReadClusterConfig(EtcdClient& etcd, const std::string& cluster);
absl::Status WriteClusterConfig(EtcdClient& etcd, const std::string& cluster, const ClusterConfig& config);

// Writes the whole record (a new protection, or a new priority): the cluster must exist.
absl::Status ProtectVm(EtcdClient& etcd, const std::string& cluster, const ProtectedVm& vm);
absl::Status UnprotectVm(EtcdClient& etcd, const std::string& cluster, const std::string& vm);

// One host as the cluster sees it. Liveness is the lease: no clock is compared across hosts.
struct HostStatus {
  HostRecord record;
  bool network_heartbeat_alive = false;  // its lease is still live
  int64_t lease_remaining_s = -1;        // -1 once expired
  int64_t since_keepalive_s = 0;         // granted TTL - remaining: how long since its last heartbeat
  bool master = false;
  std::optional<HostHealthRecord> judged;  // the master's judgement (host-health/<host>), if any
};
// What `cluster status` shows for a host: alive while its lease is live, else the master's
// judgement (judging, failed, isolated, partitioned, unknown), "lost" before any.
std::string ShownHealth(const HostStatus& h);
// Its datastore heartbeat as the master last read it; "-" when nobody judged it yet.
std::string ShownDatastoreHeartbeat(const HostStatus& h);
struct ClusterStatus {
  std::string cluster;
  ClusterConfig config;
  std::string master;  // "" while there is none
  std::vector<HostStatus> hosts;
  std::vector<ProtectedVm> vms;
  std::vector<ClusterEvent> events;  // oldest first
};
absl::StatusOr<ClusterStatus> ReadClusterStatus(EtcdClient& etcd, const std::string& cluster);
std::string ToJson(const ClusterStatus& s);

}  // namespace ferry::cluster
