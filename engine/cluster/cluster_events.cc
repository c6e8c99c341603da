#include "engine/cluster/cluster_events.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/cluster/cluster_keys.h"

namespace ferry::cluster {
namespace {

constexpr std::pair<HostHealth, const char*> kHealthNames[] = {
    {HostHealth::kAlive, "alive"},       {HostHealth::kJudging, "judging"},
    {HostHealth::kFailed, "failed"},     {HostHealth::kIsolated, "isolated"},
    {HostHealth::kPartitioned, "partitioned"}, {HostHealth::kUnknown, "unknown"},
};
constexpr std::pair<DatastoreHeartbeatState, const char*> kDatastoreNames[] = {
    {DatastoreHeartbeatState::kAlive, "alive"},
    {DatastoreHeartbeatState::kStopped, "stopped"},
    {DatastoreHeartbeatState::kUnreadable, "unreadable"},
    {DatastoreHeartbeatState::kNone, "none"},
};

template <typename Enum, size_t N>
std::string NameOf(const std::pair<Enum, const char*> (&table)[N], Enum v) {
  for (const auto& [value, name] : table) {
    if (value == v) return name;
  }
  return "unknown";
}

template <typename Enum, size_t N>
absl::StatusOr<Enum> Parse(const std::pair<Enum, const char*> (&table)[N], const std::string& text, const char* what) {
  for (const auto& [value, name] : table) {
    if (text == name) return value;
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " '", text, "' is unknown"));
}

std::string StringField(const nlohmann::json& j, const char* name) {
  return j.contains(name) && j[name].is_string() ? j[name].get<std::string>() : std::string();
}

int64_t IntField(const nlohmann::json& j, const char* name) {
  return j.contains(name) && j[name].is_number_integer() ? j[name].get<int64_t>() : 0;
}

}  // namespace

std::string HostHealthName(HostHealth h) { return NameOf(kHealthNames, h); }
absl::StatusOr<HostHealth> ParseHostHealth(const std::string& text) {
  return Parse(kHealthNames, text, "host health");
}
std::string DatastoreHeartbeatStateName(DatastoreHeartbeatState s) { return NameOf(kDatastoreNames, s); }
absl::StatusOr<DatastoreHeartbeatState> ParseDatastoreHeartbeatState(const std::string& text) {
  return Parse(kDatastoreNames, text, "datastore heartbeat state");
}

std::string ToJson(const ClusterEvent& e) {
  nlohmann::ordered_json j;
  j["time_unix_ns"] = e.time_unix_ns;
  j["by"] = e.by;
  j["kind"] = e.kind;
  j["subject"] = e.subject;
  j["detail"] = e.detail;
  return j.dump();
}

absl::StatusOr<ClusterEvent> ClusterEventFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || StringField(j, "kind").empty()) {
    return absl::DataLossError("event record is not {time_unix_ns, by, kind, subject, detail} JSON");
  }
  return ClusterEvent{IntField(j, "time_unix_ns"), StringField(j, "by"), StringField(j, "kind"),
                      StringField(j, "subject"), StringField(j, "detail")};
}

absl::Status RecordClusterEvent(EtcdClient& etcd, const std::string& cluster, ClusterEvent e) {
  if (e.time_unix_ns == 0) e.time_unix_ns = absl::GetCurrentTimeNanos();
  ClusterKeys keys(cluster);
  // Zero-padded time first: etcd's key order is then the events' order.
  const std::string key = absl::StrCat(keys.events(), absl::StrFormat("%020d", e.time_unix_ns), "-", e.by);
  auto put = etcd.Put(key, ToJson(e));
  if (!put.ok()) return put.status();
  auto all = etcd.GetPrefix(keys.events());
  if (!all.ok()) return all.status();
  for (size_t i = 0; i + kMaxClusterEvents < all->size(); ++i) (void)etcd.Delete((*all)[i].key);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ClusterEvent>> ReadClusterEvents(EtcdClient& etcd, const std::string& cluster) {
  auto all = etcd.GetPrefix(ClusterKeys(cluster).events());
  if (!all.ok()) return all.status();
  std::vector<ClusterEvent> out;
  for (const auto& kv : *all) {
    auto e = ClusterEventFromJson(kv.value);
    if (e.ok()) out.push_back(*e);
  }
  return out;
}

std::string ToJson(const HostHealthRecord& r) {
  nlohmann::ordered_json j;
  j["host"] = r.host;
  j["health"] = HostHealthName(r.health);
  j["datastore_heartbeat"] = DatastoreHeartbeatStateName(r.datastore_heartbeat);
  j["by"] = r.by;
  j["since_unix_ns"] = r.since_unix_ns;
  return j.dump();
}

absl::StatusOr<HostHealthRecord> HostHealthRecordFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || StringField(j, "host").empty()) {
    return absl::DataLossError("host health record is not {host, health, datastore_heartbeat, by, since} JSON");
  }
  auto health = ParseHostHealth(StringField(j, "health"));
  if (!health.ok()) return absl::DataLossError(health.status().message());
  auto ds = ParseDatastoreHeartbeatState(StringField(j, "datastore_heartbeat"));
  if (!ds.ok()) return absl::DataLossError(ds.status().message());
  return HostHealthRecord{StringField(j, "host"), *health, *ds, StringField(j, "by"), IntField(j, "since_unix_ns")};
}

}  // namespace ferry::cluster
