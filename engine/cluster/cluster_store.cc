#include "engine/cluster/cluster_store.h"

#include <map>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/cluster/cluster_keys.h"

namespace ferry::cluster {

std::string ToJson(const HostRecord& r) {
  nlohmann::ordered_json j;
  j["host"] = r.host;
  j["address"] = r.address;
  j["lease"] = r.lease;
  j["free_memory_bytes"] = r.free_memory_bytes;
  j["datastores"] = r.datastore_ids;
  j["heartbeat_datastores"] = r.heartbeat_datastore_ids;
  return j.dump();
}

absl::StatusOr<HostRecord> HostRecordFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("host") || !j["host"].is_string() ||
      !j.contains("lease") || !j["lease"].is_number_integer()) {
    return absl::DataLossError("host record is not {host, address, lease} JSON");
  }
  HostRecord r;
  r.host = j["host"].get<std::string>();
  if (j.contains("address") && j["address"].is_string()) r.address = j["address"].get<std::string>();
  r.lease = j["lease"].get<int64_t>();
  if (j.contains("free_memory_bytes") && j["free_memory_bytes"].is_number_unsigned()) {
    r.free_memory_bytes = j["free_memory_bytes"].get<uint64_t>();
  }
  for (const char* field : {"datastores", "heartbeat_datastores"}) {
    if (!j.contains(field) || !j[field].is_array()) continue;
    auto& out = std::string(field) == "datastores" ? r.datastore_ids : r.heartbeat_datastore_ids;
    for (const auto& id : j[field]) {
      if (id.is_string()) out.push_back(id.get<std::string>());
    }
  }
  return r;
}

absl::Status CreateCluster(EtcdClient& etcd, const std::string& cluster, const ClusterConfig& config) {
  if (auto st = ValidateName("cluster", cluster); !st.ok()) return st;
  if (auto st = Validate(config); !st.ok()) return st;
  auto created = etcd.CreateIfAbsent(ClusterKeys(cluster).config(), ToJson(config), 0);
  if (!created.ok()) return created.status();
  if (!*created) return absl::AlreadyExistsError(absl::StrCat("cluster '", cluster, "' already exists"));
  return absl::OkStatus();
}

absl::StatusOr<ClusterConfig> ReadClusterConfig(EtcdClient& etcd, const std::string& cluster) {
  if (auto st = ValidateName("cluster", cluster); !st.ok()) return st;
  auto kv = etcd.Get(ClusterKeys(cluster).config());
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("cluster '", cluster, "' does not exist (create it with `migrate cluster create ", cluster, "`)"));
  }
  auto config = ConfigFromJson((*kv)->value);
  if (!config.ok()) return absl::DataLossError(absl::StrCat("cluster '", cluster, "': ", config.status().message()));
  return config;
}

absl::Status WriteClusterConfig(EtcdClient& etcd, const std::string& cluster, const ClusterConfig& config) {
  if (auto st = Validate(config); !st.ok()) return st;
  if (auto existing = ReadClusterConfig(etcd, cluster); !existing.ok()) return existing.status();
  auto rev = etcd.Put(ClusterKeys(cluster).config(), ToJson(config));
  return rev.ok() ? absl::OkStatus() : rev.status();
}

absl::Status ProtectVm(EtcdClient& etcd, const std::string& cluster, const ProtectedVm& vm) {
  if (auto st = ValidateName("VM", vm.vm); !st.ok()) return st;
  if (auto existing = ReadClusterConfig(etcd, cluster); !existing.ok()) return existing.status();
  auto rev = etcd.Put(ClusterKeys(cluster).vm(vm.vm), ToJson(vm));
  return rev.ok() ? absl::OkStatus() : rev.status();
}

absl::Status UnprotectVm(EtcdClient& etcd, const std::string& cluster, const std::string& vm) {
  if (auto st = ValidateName("VM", vm); !st.ok()) return st;
  return etcd.Delete(ClusterKeys(cluster).vm(vm));
}

std::string ShownHealth(const HostStatus& h) {
  if (h.network_heartbeat_alive) return HostHealthName(HostHealth::kAlive);
  if (!h.judged || h.judged->health == HostHealth::kAlive) return "lost";  // not judged since it went
  return HostHealthName(h.judged->health);
}

std::string ShownDatastoreHeartbeat(const HostStatus& h) {
  return h.judged ? DatastoreHeartbeatStateName(h.judged->datastore_heartbeat) : "-";
}

absl::StatusOr<ClusterStatus> ReadClusterStatus(EtcdClient& etcd, const std::string& cluster) {
  ClusterStatus s;
  s.cluster = cluster;
  auto config = ReadClusterConfig(etcd, cluster);
  if (!config.ok()) return config.status();
  s.config = *config;
  ClusterKeys keys(cluster);
  auto master = etcd.Get(keys.master());
  if (!master.ok()) return master.status();
  if (master->has_value()) s.master = (*master)->value;
  auto judged = etcd.GetPrefix(keys.host_health());
  if (!judged.ok()) return judged.status();
  std::map<std::string, HostHealthRecord> judgements;
  for (const auto& kv : *judged) {
    auto r = HostHealthRecordFromJson(kv.value);
    if (r.ok()) judgements[r->host] = *r;  // a bad record is shown as not judged, never trusted
  }
  auto hosts = etcd.GetPrefix(keys.hosts());
  if (!hosts.ok()) return hosts.status();
  for (const auto& kv : *hosts) {
    auto record = HostRecordFromJson(kv.value);
    if (!record.ok()) {
      return absl::DataLossError(absl::StrCat(kv.key, ": ", record.status().message()));
    }
    HostStatus h;
    h.record = *record;
    h.master = !s.master.empty() && s.master == record->host;
    auto lease = etcd.LeaseTimeToLive(record->lease);
    if (!lease.ok()) return lease.status();
    h.lease_remaining_s = lease->remaining_ttl_s;
    // etcd rounds the remaining TTL down to whole seconds: 0 is a live lease, -1 an expired one.
    h.network_heartbeat_alive = lease->remaining_ttl_s >= 0;
    if (h.network_heartbeat_alive) h.since_keepalive_s = lease->granted_ttl_s - lease->remaining_ttl_s;
    // Only the current master's judgement counts (an old master's record may be stale).
    if (auto j = judgements.find(record->host); j != judgements.end() && j->second.by == s.master) h.judged = j->second;
    s.hosts.push_back(h);
  }
  auto vms = etcd.GetPrefix(keys.vms());
  if (!vms.ok()) return vms.status();
  for (const auto& kv : *vms) {
    auto vm = ProtectedVmFromJson(kv.value);
    if (!vm.ok()) return absl::DataLossError(absl::StrCat(kv.key, ": ", vm.status().message()));
    s.vms.push_back(*vm);
  }
  auto events = ReadClusterEvents(etcd, cluster);
  if (!events.ok()) return events.status();
  s.events = std::move(*events);
  return s;
}

std::string ToJson(const ClusterStatus& s) {
  nlohmann::ordered_json j;
  j["cluster"] = s.cluster;
  j["master"] = s.master;
  j["config"] = nlohmann::ordered_json::parse(ToJson(s.config));
  j["hosts"] = nlohmann::ordered_json::array();
  for (const auto& h : s.hosts) {
    nlohmann::ordered_json hj;
    hj["host"] = h.record.host;
    hj["address"] = h.record.address;
    hj["role"] = h.master ? "master" : "slave";
    hj["state"] = ShownHealth(h);
    hj["network_heartbeat"] = h.network_heartbeat_alive ? "alive" : "lost";
    hj["datastore_heartbeat"] = ShownDatastoreHeartbeat(h);
    hj["judged_since_unix_ns"] = h.judged ? h.judged->since_unix_ns : 0;
    hj["lease_remaining_s"] = h.lease_remaining_s;
    hj["since_keepalive_s"] = h.since_keepalive_s;
    hj["free_memory_bytes"] = h.record.free_memory_bytes;
    hj["heartbeat_datastores"] = h.record.heartbeat_datastore_ids;
    j["hosts"].push_back(hj);
  }
  j["protected_vms"] = nlohmann::ordered_json::array();
  for (const auto& vm : s.vms) {
    j["protected_vms"].push_back(nlohmann::ordered_json::parse(ToJson(vm)));
  }
  j["events"] = nlohmann::ordered_json::array();
  for (const auto& e : s.events) j["events"].push_back(nlohmann::ordered_json::parse(ToJson(e)));
  return j.dump();
}

}  // namespace ferry::cluster
