#include "engine/cluster/protected_vm.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/cluster/cluster_keys.h"

namespace ferry::cluster {
namespace {

struct StateName {
  ProtectedVmState state;
  const char* name;
};
constexpr StateName kStateNames[] = {
    {ProtectedVmState::kRunning, "running"},
    {ProtectedVmState::kPoweredOff, "powered_off"},
    {ProtectedVmState::kRestartRequested, "restart_requested"},
    {ProtectedVmState::kRestarting, "restarting"},
    {ProtectedVmState::kHeld, "held"},
    {ProtectedVmState::kWaitingCapacity, "waiting_capacity"},
    {ProtectedVmState::kRestartFailed, "restart_failed"},
};

std::string StringField(const nlohmann::json& j, const char* name) {
  return j.contains(name) && j[name].is_string() ? j[name].get<std::string>() : std::string();
}

}  // namespace

absl::StatusOr<RestartPriority> ParseRestartPriority(const std::string& text) {
  if (text == "high") return RestartPriority::kHigh;
  if (text == "medium") return RestartPriority::kMedium;
  if (text == "low") return RestartPriority::kLow;
  return absl::InvalidArgumentError(absl::StrCat("restart priority '", text, "' is not high, medium or low"));
}

std::string RestartPriorityName(RestartPriority p) {
  switch (p) {
    case RestartPriority::kHigh: return "high";
    case RestartPriority::kMedium: return "medium";
    case RestartPriority::kLow: return "low";
  }
  return "unknown";
}

std::string ProtectedVmStateName(ProtectedVmState s) {
  for (const auto& n : kStateNames) {
    if (n.state == s) return n.name;
  }
  return "unknown";
}

absl::StatusOr<ProtectedVmState> ParseProtectedVmState(const std::string& text) {
  for (const auto& n : kStateNames) {
    if (text == n.name) return n.state;
  }
  return absl::InvalidArgumentError(absl::StrCat("protected-VM state '", text, "' is unknown"));
}

std::string ToJson(const ProtectedVm& vm) {
  nlohmann::ordered_json j;
  j["vm"] = vm.vm;
  j["restart_priority"] = RestartPriorityName(vm.priority);
  j["host"] = vm.host;
  j["datastore"] = vm.datastore;
  j["datastore_id"] = vm.datastore_id;
  j["dir"] = vm.dir;
  j["memory_bytes"] = vm.memory_bytes;
  j["state"] = ProtectedVmStateName(vm.state);
  j["exclude_host"] = vm.exclude_host;
  j["target"] = vm.target;
  j["attempts"] = vm.attempts;
  j["detail"] = vm.detail;
  return j.dump();
}

absl::StatusOr<ProtectedVm> ProtectedVmFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("vm") || !j["vm"].is_string()) {
    return absl::DataLossError("not a protected-VM record");
  }
  ProtectedVm vm;
  vm.vm = j["vm"].get<std::string>();
  if (std::string p = StringField(j, "restart_priority"); !p.empty()) {
    auto parsed = ParseRestartPriority(p);
    if (!parsed.ok()) return parsed.status();
    vm.priority = *parsed;
  }
  if (std::string s = StringField(j, "state"); !s.empty()) {
    auto parsed = ParseProtectedVmState(s);
    if (!parsed.ok()) return parsed.status();
    vm.state = *parsed;
  }
  vm.host = StringField(j, "host");
  vm.datastore = StringField(j, "datastore");
  vm.datastore_id = StringField(j, "datastore_id");
  vm.dir = StringField(j, "dir");
  vm.exclude_host = StringField(j, "exclude_host");
  vm.target = StringField(j, "target");
  vm.detail = StringField(j, "detail");
  if (j.contains("memory_bytes") && j["memory_bytes"].is_number_unsigned()) {
    vm.memory_bytes = j["memory_bytes"].get<uint64_t>();
  }
  if (j.contains("attempts") && j["attempts"].is_number_integer()) vm.attempts = j["attempts"].get<int>();
  return vm;
}

absl::StatusOr<ProtectedVm> UpdateProtectedVm(EtcdClient& etcd, const std::string& cluster, const std::string& vm,
                                              const std::function<bool(ProtectedVm&)>& change) {
  const std::string key = ClusterKeys(cluster).vm(vm);
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto kv = etcd.Get(key);
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) return absl::NotFoundError(absl::StrCat("vm ", vm, " is not protected in cluster ", cluster));
    auto record = ProtectedVmFromJson((*kv)->value);
    if (!record.ok()) return absl::DataLossError(absl::StrCat(key, ": ", record.status().message()));
    if (!change(*record)) return record;
    auto put = etcd.PutIfModRevision(key, ToJson(*record), (*kv)->mod_revision);
    if (!put.ok()) return put.status();
    if (*put) return record;
  }
  return absl::AbortedError(absl::StrCat("vm ", vm, ": its protected-VM record kept changing under this update"));
}

absl::Status RequestRestart(EtcdClient& etcd, const std::string& cluster, const std::string& vm,
                            const std::string& exclude_host, const std::string& reason) {
  auto updated = UpdateProtectedVm(etcd, cluster, vm, [&](ProtectedVm& r) {
    r.state = ProtectedVmState::kRestartRequested;
    r.exclude_host = exclude_host;
    r.target.clear();
    r.attempts = 0;
    r.detail = reason;
    return true;
  });
  if (!updated.ok()) return updated.status();
  spdlog::info("ha: event=restart_requested cluster={} vm={} exclude_host={} reason=\"{}\"", cluster, vm,
               exclude_host, reason);
  return absl::OkStatus();
}

}  // namespace ferry::cluster
