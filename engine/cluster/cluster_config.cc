#include "engine/cluster/cluster_config.h"

#include <array>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ferry::cluster {
namespace {

constexpr std::array<std::pair<IsolationResponse, const char*>, 3> kIsolation = {{
    {IsolationResponse::kLeaveRunning, "leave-running"},
    {IsolationResponse::kShutdown, "shutdown"},
    {IsolationResponse::kPowerOff, "power-off"},
}};
constexpr std::array<std::pair<PdlResponse, const char*>, 3> kPdl = {{
    {PdlResponse::kDisabled, "disabled"},
    {PdlResponse::kIssueEvents, "issue-events"},
    {PdlResponse::kPowerOffRestart, "power-off-restart"},
}};
constexpr std::array<std::pair<ApdResponse, const char*>, 4> kApd = {{
    {ApdResponse::kDisabled, "disabled"},
    {ApdResponse::kIssueEvents, "issue-events"},
    {ApdResponse::kRestartConservative, "restart-conservative"},
    {ApdResponse::kRestartAggressive, "restart-aggressive"},
}};

template <typename E, size_t N>
std::string NameOf(const std::array<std::pair<E, const char*>, N>& table, E value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "unknown";
}

template <typename E, size_t N>
absl::Status Parse(const std::array<std::pair<E, const char*>, N>& table, const std::string& field,
                   const std::string& text, E& out) {
  std::vector<std::string> names;
  for (const auto& [v, name] : table) {
    if (text == name) {
      out = v;
      return absl::OkStatus();
    }
    names.push_back(name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cluster config ", field, ": '", text, "' is not one of ", absl::StrJoin(names, ", ")));
}

absl::Status CheckRange(const char* field, uint64_t value, uint64_t lo, uint64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster config ", field, ": ", value, " is outside ", lo, "..", hi));
  }
  return absl::OkStatus();
}

absl::Status ParseUint(const std::string& field, const std::string& text, uint32_t& out) {
  if (!absl::SimpleAtoi(text, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config ", field, ": '", text, "' is not a number"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string IsolationResponseName(IsolationResponse r) { return NameOf(kIsolation, r); }
std::string PdlResponseName(PdlResponse r) { return NameOf(kPdl, r); }
std::string ApdResponseName(ApdResponse r) { return NameOf(kApd, r); }

int64_t ClusterConfig::LeaseTtlSeconds() const {
  uint64_t ms = static_cast<uint64_t>(heartbeat_interval_ms) * heartbeat_misses;
  int64_t s = static_cast<int64_t>((ms + 999) / 1000);
  return s < 1 ? 1 : s;
}

absl::Status Validate(const ClusterConfig& c) {
  if (auto st = CheckRange("heartbeat_interval_ms", c.heartbeat_interval_ms, 100, 60000); !st.ok()) return st;
  if (auto st = CheckRange("heartbeat_misses", c.heartbeat_misses, 2, 60); !st.ok()) return st;
  if (auto st = CheckRange("heartbeat_datastores", c.heartbeat_datastores, 2, 5); !st.ok()) return st;
  if (auto st = CheckRange("vmcp_apd_delay_s", c.vmcp_apd_delay_s, 0, 3600); !st.ok()) return st;
  if (auto st = CheckRange("max_protected_vms_per_datastore", c.max_protected_vms_per_datastore, 1, 4096); !st.ok()) {
    return st;
  }
  // A lease shorter than etcd's own leader election could expire during a normal re-election.
  if (c.LeaseTtlSeconds() > 600) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config: heartbeat_interval_ms x heartbeat_misses = ",
                                                   c.LeaseTtlSeconds(), " s is above 600 s"));
  }
  return absl::OkStatus();
}

std::string ToJson(const ClusterConfig& c) {
  nlohmann::ordered_json j;
  j["heartbeat_interval_ms"] = c.heartbeat_interval_ms;
  j["heartbeat_misses"] = c.heartbeat_misses;
  j["isolation_response"] = IsolationResponseName(c.isolation_response);
  j["heartbeat_datastores"] = c.heartbeat_datastores;
  j["vmcp_pdl"] = PdlResponseName(c.vmcp_pdl);
  j["vmcp_apd"] = ApdResponseName(c.vmcp_apd);
  j["vmcp_apd_delay_s"] = c.vmcp_apd_delay_s;
  j["max_protected_vms_per_datastore"] = c.max_protected_vms_per_datastore;
  return j.dump();
}

absl::Status SetConfigField(ClusterConfig& c, const std::string& field, const std::string& value) {
  if (field == "heartbeat_interval_ms") return ParseUint(field, value, c.heartbeat_interval_ms);
  if (field == "heartbeat_misses") return ParseUint(field, value, c.heartbeat_misses);
  if (field == "heartbeat_datastores") return ParseUint(field, value, c.heartbeat_datastores);
  if (field == "vmcp_apd_delay_s") return ParseUint(field, value, c.vmcp_apd_delay_s);
  if (field == "max_protected_vms_per_datastore") return ParseUint(field, value, c.max_protected_vms_per_datastore);
  if (field == "isolation_response") return Parse(kIsolation, field, value, c.isolation_response);
  if (field == "vmcp_pdl") return Parse(kPdl, field, value, c.vmcp_pdl);
  if (field == "vmcp_apd") return Parse(kApd, field, value, c.vmcp_apd);
  return absl::InvalidArgumentError(absl::StrCat("cluster config has no field '", field, "'"));
}

absl::StatusOr<ClusterConfig> ConfigFromJson(const std::string& json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("cluster config is not a JSON object");
  ClusterConfig c;
  for (const auto& [field, v] : j.items()) {
    std::string text;
    if (v.is_string()) {
      text = v.get<std::string>();
    } else if (v.is_number_unsigned()) {
      text = std::to_string(v.get<uint64_t>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat("cluster config ", field, ": not a string or unsigned number"));
    }
    if (auto st = SetConfigField(c, field, text); !st.ok()) return st;
  }
  if (auto st = Validate(c); !st.ok()) return st;
  return c;
}

}  // namespace ferry::cluster
