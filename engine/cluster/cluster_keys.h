#pragma once
// Where a cluster keeps its state in etcd. Every key lives under /ferry/clusters/<cluster>/:
//   config          ClusterConfig (JSON)
//   master          the master's host name, bound to its lease (the election key)
//   hosts/<host>    HostRecord (JSON): a member of the cluster and its current lease
//   vms/<vm>        ProtectedVm (JSON): the protected-VM list
//   host-health/<host>  HostHealthRecord (JSON): the master's judgement of a host (cluster_events.h)
//   events/<time>-<host>  ClusterEvent (JSON): the latest events, oldest first

#include <string>

#include "absl/status/status.h"

namespace ferry::cluster {

// Cluster and host names: 1..63 of [a-z0-9.-_], starting with a letter or digit (they become
// etcd keys and datastore folder names).
absl::Status ValidateName(const char* what, const std::string& name);

class ClusterKeys {
 public:
  explicit ClusterKeys(std::string cluster) : prefix_("/ferry/clusters/" + cluster + "/") {}
  const std::string& prefix() const { return prefix_; }
  std::string config() const { return prefix_ + "config"; }
  std::string master() const { return prefix_ + "master"; }
  std::string hosts() const { return prefix_ + "hosts/"; }
  std::string host(const std::string& name) const { return hosts() + name; }
  std::string vms() const { return prefix_ + "vms/"; }
  std::string vm(const std::string& name) const { return vms() + name; }
  std::string host_health() const { return prefix_ + "host-health/"; }
  std::string host_health(const std::string& name) const { return host_health() + name; }
  std::string events() const { return prefix_ + "events/"; }

 private:
  std::string prefix_;
};

}  // namespace ferry::cluster
