#pragma once
// VM component protection (docs/cluster.md "VMCP"): each host probes the datastores it mounts
// (DatastoreProbe, engine/storage) every interval, publishes what it sees in etcd
// (datastore-health/<host>) and answers a failed datastore under its running VMs per the cluster's
// configuration:
//   PDL  issue-events       an event per VM
//        power-off-restart  power the VM off here and hand it to the master to restart elsewhere
//   APD  issue-events       an event per VM
//        restart-conservative  after vmcp_apd_delay_s still APD: power off and restart only when
//                           another live host reports the datastore healthy; else refused (one
//                           event) and asked again every probe while the APD lasts
//        restart-aggressive    after the delay: power off and restart whatever the others see
//        An APD that clears before the delay: an event, no action.
//   disabled: the datastore is not answered (still probed and published).
// A VM not in the protected-VM list (no restart policy) gets events only. Per datastore:
//   healthy --APD--> apd_pending --delay passed--> apd_timed_out (response applied once)
//   apd_pending --healthy--> healthy (event apd_recovered, no action)
//   healthy, apd_* --PDL--> pdl (response applied once)
//   apd_timed_out, pdl --healthy--> healthy (event datastore_back)

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/cluster/cluster_config.h"
#include "engine/cluster/etcd_client.h"
#include "engine/cluster/ha_vm_control.h"
#include "engine/storage/datastore_probe.h"

namespace ferry::cluster {

enum class VmcpDatastoreState { kHealthy = 1, kApdPending, kApdTimedOut, kPdl };
std::string VmcpDatastoreStateName(VmcpDatastoreState s);

// One thing VMCP noticed or did; also logged on the "ferry-ha" logger as ha: event=vmcp_<kind>.
struct VmcpEvent {
  std::string kind;       // apd_detected, apd_recovered, apd_timeout, pdl_detected, datastore_back,
                          // vm_affected, vm_powered_off, restart_requested, restart_refused, report_only,
                          // power_off_failed
  std::string datastore;
  std::string vm;         // "" for a datastore event
  std::string detail;
};

// datastore-health/<host>: what `host` last saw of each datastore it mounts.
struct DatastoreHealthRecord {
  std::string host;
  std::map<std::string, std::string> datastores;  // name -> "healthy" | "APD" | "PDL" | "unknown"
};
std::string ToJson(const DatastoreHealthRecord& r);
absl::StatusOr<DatastoreHealthRecord> DatastoreHealthFromJson(const std::string& json);
std::string DatastoreHealthKey(const std::string& cluster, const std::string& host);

// Hosts other than `self` whose network heartbeat is live and whose last record says `datastore`
// is healthy: where a VM of that datastore could be restarted.
absl::StatusOr<std::vector<std::string>> HostsSeeingHealthy(EtcdClient& etcd, const std::string& cluster,
                                                            const std::string& self, const std::string& datastore);

struct VmcpOptions {
  std::string cluster;
  std::string host;
  PdlResponse pdl = PdlResponse::kIssueEvents;
  ApdResponse apd = ApdResponse::kIssueEvents;
  absl::Duration apd_delay = absl::Seconds(180);
  absl::Duration probe_interval = absl::Seconds(1);
  absl::Duration probe_deadline = absl::Seconds(2);
};
// The cluster's VMCP settings for this host, probed every heartbeat interval.
VmcpOptions VmcpOptionsFrom(const ClusterConfig& config, const std::string& cluster, const std::string& host);

class VmcpMonitor {
 public:
  // `etcd` publishes health and reads the protected list and the others' health; `handoff` asks
  // the master to restart a VM powered off here. All must outlive the monitor. Starts no thread:
  // call StartThread() (the agent) or CheckOnce() (tests, step by step).
  static absl::StatusOr<std::unique_ptr<VmcpMonitor>> Create(VmcpOptions options, EtcdClient& etcd, HaVmControl& vms,
                                                             RestartHandoff handoff);
  ~VmcpMonitor();
  void StartThread();

  // Probes every datastore once and applies what follows.
  void CheckOnce();

  VmcpDatastoreState state(const std::string& datastore) const;
  std::vector<VmcpEvent> events() const;

 private:
  VmcpMonitor(VmcpOptions options, EtcdClient& etcd, HaVmControl& vms, RestartHandoff handoff);
  struct Watched {
    std::unique_ptr<DatastoreProbe> probe;
    VmcpDatastoreState state = VmcpDatastoreState::kHealthy;
    absl::Time apd_since;
  };
  void Step(const std::string& name, Watched& w, const DatastoreProbeResult& result);
  void Respond(const std::string& datastore, bool pdl);
  void Emit(VmcpEvent e);
  void Publish();
  bool Protected(const std::string& vm);

  const VmcpOptions options_;
  EtcdClient& etcd_;
  HaVmControl& vms_;
  RestartHandoff handoff_;
  std::map<std::string, Watched> watched_;  // CheckOnce's thread only
  std::set<std::string> refused_;           // VMs a conservative APD response refused (CheckOnce's thread)

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, VmcpDatastoreState> states_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> health_ ABSL_GUARDED_BY(mu_);
  std::vector<VmcpEvent> events_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ferry::cluster
