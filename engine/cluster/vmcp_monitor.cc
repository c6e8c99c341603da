#include "engine/cluster/vmcp_monitor.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/ha_log.h"

namespace ferry::cluster {

std::string VmcpDatastoreStateName(VmcpDatastoreState s) {
  switch (s) {
    case VmcpDatastoreState::kHealthy: return "healthy";
    case VmcpDatastoreState::kApdPending: return "apd_pending";
    case VmcpDatastoreState::kApdTimedOut: return "apd_timed_out";
    case VmcpDatastoreState::kPdl: return "pdl";
  }
  return "unknown";
}

std::string DatastoreHealthKey(const std::string& cluster, const std::string& host) {
  return ClusterKeys(cluster).prefix() + "datastore-health/" + host;
}

std::string ToJson(const DatastoreHealthRecord& r) {
  nlohmann::ordered_json j;
  j["host"] = r.host;
  j["datastores"] = r.datastores;
  return j.dump();
}

absl::StatusOr<DatastoreHealthRecord> DatastoreHealthFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("host") || !j["host"].is_string() ||
      !j.contains("datastores") || !j["datastores"].is_object()) {
    return absl::DataLossError("datastore health record is not {\"host\":..., \"datastores\":{...}}");
  }
  DatastoreHealthRecord r;
  r.host = j["host"].get<std::string>();
  for (const auto& [name, health] : j["datastores"].items()) {
    if (!health.is_string()) return absl::DataLossError(absl::StrCat("datastore health of '", name, "' is not a string"));
    r.datastores[name] = health.get<std::string>();
  }
  return r;
}

absl::StatusOr<std::vector<std::string>> HostsSeeingHealthy(EtcdClient& etcd, const std::string& cluster,
                                                            const std::string& self, const std::string& datastore) {
  auto hosts = etcd.GetPrefix(ClusterKeys(cluster).hosts());
  if (!hosts.ok()) return hosts.status();
  std::vector<std::string> out;
  for (const auto& kv : *hosts) {
    auto record = HostRecordFromJson(kv.value);
    if (!record.ok() || record->host == self) continue;
    auto lease = etcd.LeaseTimeToLive(record->lease);
    if (!lease.ok()) return lease.status();
    if (lease->remaining_ttl_s < 0) continue;  // a lost host's old record says nothing now
    auto health = etcd.Get(DatastoreHealthKey(cluster, record->host));
    if (!health.ok()) return health.status();
    if (!health->has_value()) continue;
    auto parsed = DatastoreHealthFromJson((*health)->value);
    if (!parsed.ok() || parsed->host != record->host) continue;  // corrupted or foreign: not trusted
    auto it = parsed->datastores.find(datastore);
    if (it != parsed->datastores.end() && it->second == DatastoreHealthName(DatastoreHealth::kHealthy)) {
      out.push_back(record->host);
    }
  }
  return out;
}

VmcpOptions VmcpOptionsFrom(const ClusterConfig& config, const std::string& cluster, const std::string& host) {
  VmcpOptions o;
  o.cluster = cluster;
  o.host = host;
  o.pdl = config.vmcp_pdl;
  o.apd = config.vmcp_apd;
  o.apd_delay = absl::Seconds(config.vmcp_apd_delay_s);
  o.probe_interval = absl::Milliseconds(config.heartbeat_interval_ms);
  o.probe_deadline = std::max(absl::Milliseconds(300), o.probe_interval * 2);
  return o;
}

absl::StatusOr<std::unique_ptr<VmcpMonitor>> VmcpMonitor::Create(VmcpOptions options, EtcdClient& etcd,
                                                                  HaVmControl& vms, RestartHandoff handoff) {
  if (auto st = ValidateName("cluster", options.cluster); !st.ok()) return st;
  if (auto st = ValidateName("host", options.host); !st.ok()) return st;
  if (options.probe_interval <= absl::ZeroDuration() || options.probe_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("vmcp: probe interval and deadline must be positive");
  }
  if (options.apd_delay < absl::ZeroDuration()) return absl::InvalidArgumentError("vmcp: apd delay is negative");
  if (!handoff) return absl::InvalidArgumentError("vmcp: no restart hand-off");
  return std::unique_ptr<VmcpMonitor>(new VmcpMonitor(std::move(options), etcd, vms, std::move(handoff)));
}

VmcpMonitor::VmcpMonitor(VmcpOptions options, EtcdClient& etcd, HaVmControl& vms, RestartHandoff handoff)
    : options_(std::move(options)), etcd_(etcd), vms_(vms), handoff_(std::move(handoff)) {}

VmcpMonitor::~VmcpMonitor() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    stop_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void VmcpMonitor::StartThread() {
  thread_ = std::thread([this] {
    while (true) {
      CheckOnce();
      std::unique_lock lock(mu_);
      if (stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.probe_interval), [this] { return stop_; })) return;
    }
  });
}

VmcpDatastoreState VmcpMonitor::state(const std::string& datastore) const {
  std::lock_guard lock(mu_);
  auto it = states_.find(datastore);
  return it == states_.end() ? VmcpDatastoreState::kHealthy : it->second;
}

std::vector<VmcpEvent> VmcpMonitor::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

void VmcpMonitor::Emit(VmcpEvent e) {
  auto log = HaLog();
  const bool bad = e.kind != "apd_recovered" && e.kind != "datastore_back";
  log->log(bad ? spdlog::level::warn : spdlog::level::info, "ha: event=vmcp_{} cluster={} host={} datastore={}{}{}",
           e.kind, options_.cluster, options_.host, e.datastore, e.vm.empty() ? "" : " vm=" + e.vm,
           e.detail.empty() ? "" : " detail=\"" + e.detail + "\"");
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
}

void VmcpMonitor::CheckOnce() {
  for (const auto& [name, root] : vms_.Datastores()) {
    auto it = watched_.find(name);
    if (it == watched_.end()) {
      auto probe = DatastoreProbe::Create({root, options_.host, options_.probe_deadline});
      if (!probe.ok()) {
        HaLog()->error("ha: event=vmcp_probe_refused cluster={} host={} datastore={}: {}", options_.cluster,
                       options_.host, name, probe.status().ToString());
        continue;
      }
      Watched w;
      w.probe = std::move(*probe);
      it = watched_.emplace(name, std::move(w)).first;
    }
    DatastoreProbeResult result = it->second.probe->Probe();
    {
      std::lock_guard lock(mu_);
      health_[name] = std::string(DatastoreHealthName(result.health));
    }
    Step(name, it->second, result);
    std::lock_guard lock(mu_);
    states_[name] = it->second.state;
  }
  Publish();
}

void VmcpMonitor::Step(const std::string& name, Watched& w, const DatastoreProbeResult& result) {
  using S = VmcpDatastoreState;
  const bool monitored_apd = options_.apd != ApdResponse::kDisabled;
  const bool monitored_pdl = options_.pdl != PdlResponse::kDisabled;
  switch (result.health) {
    case DatastoreHealth::kUnknown: return;
    case DatastoreHealth::kHealthy:
      if (w.state == S::kApdPending) {
        Emit({"apd_recovered", name, "",
              absl::StrCat("cleared after ", absl::FormatDuration(absl::Now() - w.apd_since), ", before the ",
                           absl::FormatDuration(options_.apd_delay), " delay: no action")});
      } else if (w.state != S::kHealthy) {
        Emit({"datastore_back", name, "", "was " + VmcpDatastoreStateName(w.state)});
      }
      for (const HaVm& vm : vms_.RunningVms()) {
        if (vm.datastore == name) refused_.erase(vm.name);
      }
      w.state = S::kHealthy;
      return;
    case DatastoreHealth::kPdl:
      if (w.state == S::kPdl || !monitored_pdl) return;
      Emit({"pdl_detected", name, "", result.detail});
      w.state = S::kPdl;
      Respond(name, /*pdl=*/true);
      return;
    case DatastoreHealth::kApd:
      if (!monitored_apd) return;
      if (w.state == S::kHealthy) {
        w.state = S::kApdPending;
        w.apd_since = absl::Now();
        Emit({"apd_detected", name, "",
              absl::StrCat(result.detail.empty() ? "probe timed out" : result.detail, "; response ",
                           ApdResponseName(options_.apd), " after ", absl::FormatDuration(options_.apd_delay))});
      }
      if (w.state == S::kApdPending && absl::Now() - w.apd_since >= options_.apd_delay) {
        Emit({"apd_timeout", name, "", absl::StrCat("still APD after ", absl::FormatDuration(options_.apd_delay))});
        w.state = S::kApdTimedOut;
        Respond(name, /*pdl=*/false);
      } else if (w.state == S::kApdTimedOut && options_.apd == ApdResponse::kRestartConservative) {
        Respond(name, /*pdl=*/false);  // a refused VM goes once another host reports the datastore healthy
      }
      return;
  }
}

bool VmcpMonitor::Protected(const std::string& vm) {
  auto kv = etcd_.Get(ClusterKeys(options_.cluster).vm(vm));
  return kv.ok() && kv->has_value();
}

void VmcpMonitor::Respond(const std::string& datastore, bool pdl) {
  const bool restart = pdl ? options_.pdl == PdlResponse::kPowerOffRestart
                           : (options_.apd == ApdResponse::kRestartConservative ||
                              options_.apd == ApdResponse::kRestartAggressive);
  const std::string reason = pdl ? "VMCP: PDL on datastore " + datastore : "VMCP: APD on datastore " + datastore;
  for (const HaVm& vm : vms_.RunningVms()) {
    if (vm.datastore != datastore) continue;
    if (!restart) {
      Emit({"vm_affected", datastore, vm.name, pdl ? "PDL: issue-events" : "APD: issue-events"});
      continue;
    }
    if (!Protected(vm.name)) {
      Emit({"report_only", datastore, vm.name, "not protected (no restart policy): left as it is"});
      continue;
    }
    if (!pdl && options_.apd == ApdResponse::kRestartConservative) {
      auto seeing = HostsSeeingHealthy(etcd_, options_.cluster, options_.host, datastore);
      if (!seeing.ok() || seeing->empty()) {
        if (!refused_.insert(vm.name).second) continue;  // said once per APD
        Emit({"restart_refused", datastore, vm.name,
              seeing.ok() ? "conservative: no other live host reports the datastore healthy; the VM keeps running"
                          : "conservative: cannot read the other hosts' datastore health: " +
                                std::string(seeing.status().message())});
        continue;
      }
    }
    if (absl::Status st = vms_.PowerOff(vm.name); !st.ok()) {
      Emit({"power_off_failed", datastore, vm.name, std::string(st.message())});
      continue;
    }
    Emit({"vm_powered_off", datastore, vm.name, "lock released"});
    if (absl::Status st = handoff_(vm.name, reason); !st.ok()) {
      Emit({"restart_request_failed", datastore, vm.name, std::string(st.message())});
      continue;
    }
    Emit({"restart_requested", datastore, vm.name, reason});
  }
}

void VmcpMonitor::Publish() {
  DatastoreHealthRecord r;
  r.host = options_.host;
  {
    std::lock_guard lock(mu_);
    r.datastores = health_;
  }
  auto put = etcd_.Put(DatastoreHealthKey(options_.cluster, options_.host), ToJson(r));
  if (!put.ok()) {
    HaLog()->warn("ha: cluster={} host={} cannot publish datastore health: {}", options_.cluster, options_.host,
                  put.status().ToString());
  }
}

}  // namespace ferry::cluster
