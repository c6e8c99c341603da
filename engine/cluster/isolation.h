#pragma once
// Host isolation (docs/cluster.md "Isolation"). A host whose network heartbeat has lapsed (its
// ClusterMember lost its lease and is joining again) probes its isolation addresses (TCP connect;
// default: the etcd endpoints). None answers: the host is isolated and applies the cluster's
// isolation response to its running VMs once:
//   leave-running  the VMs keep running and keep their locks (the master cannot restart them)
//   shutdown       each VM is shut down; its lock goes, so the master can restart it elsewhere
//   power-off      each VM is powered off at once; likewise
// Some address answers: the host is partitioned from etcd but not isolated; no response.
// When the heartbeat is back the state returns to connected (an event; stopped VMs stay stopped).
//
//   connected --heartbeat lapsed, no address answers--> isolated
//   connected --heartbeat lapsed, an address answers--> partitioned
//   partitioned --no address answers--> isolated
//   isolated --an address answers--> partitioned      (response is not undone)
//   isolated, partitioned --heartbeat back--> connected

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/ha_vm_control.h"
#include "engine/cluster/host_state.h"

namespace ferry::cluster {

enum class IsolationState { kConnected = 1, kPartitioned, kIsolated };
std::string IsolationStateName(IsolationState s);

// The next state from what this check saw.
IsolationState NextIsolationState(bool heartbeat_lapsed, bool any_address_answers);

// A TCP connect to HOST:PORT within `timeout`. InvalidArgument for a malformed address.
absl::StatusOr<bool> TcpAnswers(const std::string& host_port, absl::Duration timeout);

struct IsolationOptions {
  std::string cluster;
  std::string host;
  std::vector<std::string> isolation_addresses;  // HOST:PORT, at least one
  IsolationResponse response = IsolationResponse::kLeaveRunning;
  absl::Duration check_interval = absl::Seconds(1);
  absl::Duration connect_timeout = absl::Milliseconds(500);
  // Told every change of state (from the monitor's thread), e.g. so the datastore heartbeats
  // carry it (HeartbeatWriter::SetOwnView). Must outlive the monitor.
  std::function<void(IsolationState)> on_change;
};

class IsolationMonitor {
 public:
  // `member_state` reads the host's membership state (ClusterMember::state). The heartbeat has
  // lapsed when the host is joining again after having been a slave or master. Errors name the
  // bad option. `vms` must outlive the monitor.
  static absl::StatusOr<std::unique_ptr<IsolationMonitor>> Start(IsolationOptions options,
                                                                  std::function<HostState()> member_state,
                                                                  HaVmControl& vms);
  ~IsolationMonitor();

  IsolationState state() const;
  bool WaitForState(IsolationState s, absl::Duration timeout) const;
  // How many times the isolation response has been applied.
  int responses_applied() const;

 private:
  IsolationMonitor(IsolationOptions options, std::function<HostState()> member_state, HaVmControl& vms);
  void Run();
  void CheckOnce();
  bool AnyAddressAnswers();
  void ApplyResponse();

  const IsolationOptions options_;
  std::function<HostState()> member_state_;
  HaVmControl& vms_;
  bool was_member_ = false;  // Run's thread only

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  IsolationState state_ ABSL_GUARDED_BY(mu_) = IsolationState::kConnected;
  int responses_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ferry::cluster
