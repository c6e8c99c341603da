#pragma once
// One HA host-failure run on this machine, shared by `migrate demo ha` and ha-bench: a LocalEtcd
// (1 or 3 members), an HA cluster with the given heartbeat interval and misses, three ferry-agents
// joined to it sharing one datastore directory, protected VMs on a host that is not the master;
// that host is killed as a crash would (its agent and every VMM holding one of its VMs' locks
// SIGKILLed) and the VMs are followed until they run elsewhere, then verified by their guests.
// Times come from the master's events in etcd (cluster_events.h) against the kill, all on this
// machine's clock. Everything it started is stopped and removed by its destructor.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cluster/etcd_client.h"
#include "proto/ferry/v1/agent.grpc.pb.h"
#include "tools/client/local_cluster.h"
#include "tools/client/local_etcd.h"

namespace ferry::cli {

struct HaScenarioOptions {
  int etcd_members = 3;
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t heartbeat_misses = 3;
  bool kvm = false;            // KVM guests with a disk workload on the shared datastore; else synthetic
  int vms = 2;                 // protected VMs on the victim: vm-1 high priority, the others medium
  uint64_t memory_mib = 64, working_set_mib = 8;
  uint64_t disk_mib = 16, disk_working_set_mib = 4;  // KVM only
  bool keep_dir = false;
  const std::atomic<bool>* cancelled = nullptr;      // Ctrl-C: every wait returns CANCELLED
  std::function<void(const std::string&)> say;       // progress lines (may be empty)
};

struct HaVmOutcome {
  std::string vm, priority, from, to;
  double restarted_s = -1;  // kill -> the master's vm_restarted event
  double running_s = -1;    // kill -> the new host answers GetVm with the VM running
  double start_ms = -1;     // the StartVm call the master made, as it measured it
  bool memory_verified = false;  // a full sweep of the working set on the new host, no corruption
  bool disk_verified = false;    // KVM: a whole disk sweep on the new host, no corrupt block, no I/O error
  uint64_t memory_sweep_ms = 0;  // the guest's own time to its first full sweep there
  uint64_t disk_sweeps = 0, disk_blocks_verified = 0, corruptions = 0, disk_io_errors = 0;
  bool exactly_once = false;     // exactly one agent runs it
  std::string error;
};

struct HaRunResult {
  std::string victim, master;
  double lease_lost_s = -1;  // kill -> the master's host_lost event (its lease expired)
  double detected_s = -1;    // kill -> the master's verdict failed (or unknown: no datastore heartbeat read)
  std::vector<HaVmOutcome> vms;
  bool ok() const;
};

class HaScenario {
 public:
  // Starts etcd, creates cluster "demo-ha", starts the agents and waits for a master and all three
  // alive. NOT_FOUND when etcd is not installed.
  static absl::StatusOr<std::unique_ptr<HaScenario>> Start(const HaScenarioOptions& options);
  ~HaScenario();

  // Creates and protects the VMs on a host that is not the master and waits until their guests
  // run (and, with KVM, have swept their disk once).
  absl::Status CreateProtectedVms();
  // Kills the victim and follows the restarts; verifies the guests when `verify`.
  absl::StatusOr<HaRunResult> KillVictimAndFollow(bool verify, double timeout_s = 90);
  // The two halves: the kill (returns when it happened), and following the VMs until each runs
  // again on a live agent (any host, the victim's restarted agent included).
  absl::StatusOr<absl::Time> KillVictim();
  absl::StatusOr<HaRunResult> Follow(absl::Time killed, bool verify, double timeout_s = 90);
  // Starts the victim's agent again (same name, data and certificates), as a host coming back.
  absl::Status RestartVictimAgent();
  cluster::EtcdClient& client() { return *client_; }

  const LocalEtcd& etcd() const { return *etcd_; }
  const LocalCluster& agents() const { return *agents_; }
  const std::string& victim() const { return victim_; }
  const std::string& datastore_dir() const { return datastore_dir_; }
  static constexpr const char* kCluster = "demo-ha";

 private:
  HaScenario() = default;
  void Say(const std::string& s) const;
  absl::Status CheckCancelled() const;
  int IndexOf(const std::string& host) const;
  absl::Status VerifyGuest(HaVmOutcome& out);

  HaScenarioOptions options_;
  std::string dir_, datastore_dir_;
  std::unique_ptr<LocalEtcd> etcd_;
  std::unique_ptr<cluster::EtcdClient> client_;
  std::unique_ptr<LocalCluster> agents_;
  std::string victim_, master_;
  std::vector<std::string> vm_names_;
};

}  // namespace ferry::cli
