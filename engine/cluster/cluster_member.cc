#include "engine/cluster/cluster_member.h"

#include <spdlog/spdlog.h>

#include "engine/cluster/cluster_events.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_store.h"

namespace ferry::cluster {

absl::StatusOr<std::unique_ptr<ClusterMember>> ClusterMember::Join(EtcdClient& etcd,
                                                                   const ClusterMemberOptions& options) {
  if (auto st = ValidateName("cluster", options.cluster); !st.ok()) return st;
  if (auto st = ValidateName("host", options.host); !st.ok()) return st;
  auto config = ReadClusterConfig(etcd, options.cluster);
  if (!config.ok()) return config.status();
  std::unique_ptr<ClusterMember> m(new ClusterMember(etcd, options, *config));
  m->thread_ = std::thread([p = m.get()] { p->Run(); });
  return m;
}

ClusterMember::ClusterMember(EtcdClient& etcd, ClusterMemberOptions options, ClusterConfig config)
    : etcd_(etcd), options_(std::move(options)), config_(config) {}

ClusterMember::~ClusterMember() { Leave(); }

HostState ClusterMember::state() const {
  std::unique_lock lock(mu_);
  return state_;
}

std::set<std::string> ClusterMember::lost_hosts() const {
  std::unique_lock lock(mu_);
  return lost_hosts_;
}

bool ClusterMember::WaitForState(HostState s, absl::Duration timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return state_ == s; });
}

bool ClusterMember::Stopping() const {
  std::unique_lock lock(mu_);
  return stop_;
}

void ClusterMember::Apply(HostEvent event) {
  std::unique_lock lock(mu_);
  auto next = NextHostState(state_, event);
  if (!next.ok()) {
    spdlog::error("ha: cluster={} host={} {}", options_.cluster, options_.host, next.status().ToString());
    return;
  }
  spdlog::info("ha: event=host_state cluster={} host={} from={} to={} cause={}", options_.cluster, options_.host,
               HostStateName(state_), HostStateName(*next), HostEventName(event));
  state_ = *next;
  if (state_ != HostState::kMaster) lost_hosts_.clear();
  changed_.notify_all();
}

void ClusterMember::Run() {
  while (true) {
    absl::Duration pause;
    switch (state()) {
      case HostState::kJoining: pause = StepJoining(); break;
      case HostState::kSlave: pause = StepSlave(); break;
      case HostState::kMaster: pause = StepMaster(); break;
      case HostState::kLeft: return;
    }
    std::unique_lock lock(mu_);
    if (changed_.wait_for(lock, absl::ToChronoNanoseconds(pause), [this] { return stop_; })) return;
  }
}

absl::Duration ClusterMember::StepJoining() {
  const absl::Duration interval = absl::Milliseconds(config_.heartbeat_interval_ms);
  auto lease = etcd_.GrantLease(config_.LeaseTtlSeconds());
  if (!lease.ok()) {
    spdlog::warn("ha: cluster={} host={} cannot get a lease: {}", options_.cluster, options_.host,
                 lease.status().ToString());
    return interval;
  }
  lease_ = lease->id;
  last_keepalive_ = absl::Now();
  const std::string record = ToJson(CurrentRecord());
  auto put = etcd_.Put(ClusterKeys(options_.cluster).host(options_.host), record);
  if (!put.ok()) {
    spdlog::warn("ha: cluster={} host={} cannot register: {}", options_.cluster, options_.host, put.status().ToString());
    (void)etcd_.RevokeLease(lease_);
    return interval;
  }
  last_record_json_ = record;
  Apply(HostEvent::kRegistered);
  return absl::ZeroDuration();
}

HostRecord ClusterMember::CurrentRecord() const {
  HostRecord r;
  r.host = options_.host;
  r.address = options_.address;
  r.lease = lease_;
  if (options_.report) {
    HostReport report = options_.report();
    r.free_memory_bytes = report.free_memory_bytes;
    r.datastore_ids = std::move(report.datastore_ids);
    r.heartbeat_datastore_ids = std::move(report.heartbeat_datastore_ids);
  }
  return r;
}

void ClusterMember::RefreshRecord() {
  if (!options_.report) return;
  std::string record = ToJson(CurrentRecord());
  if (record == last_record_json_) return;
  if (etcd_.Put(ClusterKeys(options_.cluster).host(options_.host), record).ok()) last_record_json_ = record;
}

bool ClusterMember::KeepLeaseAlive() {
  auto ttl = etcd_.KeepAlive(lease_);
  if (ttl.ok()) {
    last_keepalive_ = absl::Now();
    return true;
  }
  // Unreachable etcd: the lease may still be live; it is surely gone once a whole TTL passed.
  bool expired = absl::IsNotFound(ttl.status()) ||
                 absl::Now() - last_keepalive_ > absl::Seconds(config_.LeaseTtlSeconds());
  spdlog::warn("ha: cluster={} host={} heartbeat failed{}: {}", options_.cluster, options_.host,
               expired ? " (lease lapsed)" : "", ttl.status().ToString());
  if (expired) Apply(HostEvent::kLeaseLost);
  return !expired;
}

absl::Duration ClusterMember::StepSlave() {
  const absl::Duration interval = absl::Milliseconds(config_.heartbeat_interval_ms);
  if (!KeepLeaseAlive()) return absl::ZeroDuration();
  RefreshRecord();
  const std::string key = ClusterKeys(options_.cluster).master();
  auto created = etcd_.CreateIfAbsent(key, options_.host, lease_);
  if (!created.ok()) return interval;
  auto current = etcd_.Get(key);
  if (!current.ok()) return interval;
  // A retried create may have succeeded the first time: the key bound to our lease is ours.
  if (*created || (current->has_value() && (*current)->lease == lease_)) {
    Apply(HostEvent::kWonElection);
    (void)RecordClusterEvent(etcd_, options_.cluster, {0, options_.host, "master_elected", options_.host, ""});
    return absl::ZeroDuration();
  }
  if (!current->has_value()) return absl::ZeroDuration();  // deleted meanwhile: campaign again
  // Watch the master key until it goes or a heartbeat is due.
  auto deleted = etcd_.WaitForDelete(key, (*current)->mod_revision + 1, interval);
  return deleted.ok() ? absl::ZeroDuration() : interval;
}

absl::Duration ClusterMember::StepMaster() {
  const absl::Duration interval = absl::Milliseconds(config_.heartbeat_interval_ms);
  if (!KeepLeaseAlive()) return absl::ZeroDuration();
  auto current = etcd_.Get(ClusterKeys(options_.cluster).master());
  if (current.ok() && (!current->has_value() || (*current)->lease != lease_)) {
    Apply(HostEvent::kMastershipLost);
    return absl::ZeroDuration();
  }
  RefreshRecord();
  WatchHosts();
  return interval;
}

void ClusterMember::WatchHosts() {
  auto hosts = etcd_.GetPrefix(ClusterKeys(options_.cluster).hosts());
  if (!hosts.ok()) return;
  std::set<std::string> lost;
  for (const auto& kv : *hosts) {
    auto record = HostRecordFromJson(kv.value);
    if (!record.ok()) {
      spdlog::warn("ha: cluster={} bad host record {}: {}", options_.cluster, kv.key, record.status().ToString());
      continue;
    }
    if (record->host == options_.host) continue;
    auto lease = etcd_.LeaseTimeToLive(record->lease);
    if (lease.ok() && lease->remaining_ttl_s < 0) lost.insert(record->host);  // -1: expired
  }
  std::unique_lock lock(mu_);
  for (const auto& h : lost) {
    if (!lost_hosts_.count(h)) {
      spdlog::warn("ha: event=host_network_heartbeat_lost cluster={} host={} master={}", options_.cluster, h,
                   options_.host);
    }
  }
  for (const auto& h : lost_hosts_) {
    if (!lost.count(h)) spdlog::info("ha: event=host_network_heartbeat_back cluster={} host={}", options_.cluster, h);
  }
  lost_hosts_ = lost;
}

void ClusterMember::Leave() {
  {
    std::unique_lock lock(mu_);
    if (stop_) return;
    stop_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (state() == HostState::kLeft) return;
  if (lease_ != 0) {
    ClusterKeys keys(options_.cluster);
    (void)etcd_.DeleteIfLease(keys.master(), lease_);
    (void)etcd_.Delete(keys.host(options_.host));
    (void)etcd_.RevokeLease(lease_);
  }
  Apply(HostEvent::kLeave);
}

}  // namespace ferry::cluster
