#pragma once
// One agent's membership in a cluster: it holds a lease and keeps it alive (its network
// heartbeat), registers under hosts/<host>, and campaigns for master by creating the master key
// bound to its lease in one transaction; a slave watches the key and campaigns again when it is
// deleted (the master left, or its lease expired). The master notices hosts whose lease lapsed.
// The host's state follows host_state.h.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/etcd_client.h"
#include "engine/cluster/host_state.h"

namespace ferry::cluster {

struct ClusterMemberOptions {
  std::string cluster;
  std::string host;
  std::string address;  // this agent's gRPC address, shown by `cluster status`
  // What this host reports in hosts/<host> besides its lease (free memory, datastores), read at
  // registration and every interval; the record is rewritten when it changed. Unset: nothing.
  std::function<HostReport()> report;
};

class ClusterMember {
 public:
  // Checks the names and reads the cluster's configuration (NOT_FOUND if the cluster was never
  // created), then joins in the background. `etcd` must outlive the member.
  static absl::StatusOr<std::unique_ptr<ClusterMember>> Join(EtcdClient& etcd, const ClusterMemberOptions& options);
  // Leaves the cluster (Leave()).
  ~ClusterMember();

  // Gives up mastership, revokes the lease and removes hosts/<host>: a clean exit, seen by the
  // others at once rather than after the lease TTL.
  void Leave();

  HostState state() const;
  // Hosts whose lease this member, as master, has seen lapse (and not come back).
  std::set<std::string> lost_hosts() const;
  const ClusterConfig& config() const { return config_; }
  // Blocks until the state is `s` or `timeout` passes; true when reached.
  bool WaitForState(HostState s, absl::Duration timeout) const;

 private:
  ClusterMember(EtcdClient& etcd, ClusterMemberOptions options, ClusterConfig config);
  void Run();
  void Apply(HostEvent event);
  // One step of the loop for the current state; returns how long to pause before the next.
  absl::Duration StepJoining();
  absl::Duration StepSlave();
  absl::Duration StepMaster();
  // Keeps the lease alive; false when it has lapsed (then the host must join again).
  bool KeepLeaseAlive();
  void WatchHosts();
  // hosts/<host> with the current report; rewritten only when it changed.
  HostRecord CurrentRecord() const;
  void RefreshRecord();
  bool Stopping() const;

  EtcdClient& etcd_;
  const ClusterMemberOptions options_;
  const ClusterConfig config_;
  int64_t lease_ = 0;
  absl::Time last_keepalive_;
  std::string last_record_json_;  // Run's thread only

  // std::mutex, not absl::Mutex: Debian's abseil is not built with TSan, which then cannot see the
  // lock and reports every guarded access as a race (scripts/test.sh --tsan).
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;  // state_ or stop_ changed
  HostState state_ ABSL_GUARDED_BY(mu_) = HostState::kJoining;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> lost_hosts_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ferry::cluster
