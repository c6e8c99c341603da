#pragma once
// A cluster's HA configuration, stored as JSON at /ferry/clusters/<cluster>/config and validated
// on every read and write. See docs/cluster.md.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ferry::cluster {

// What an isolated host does with its VMs so they can be restarted elsewhere.
enum class IsolationResponse { kLeaveRunning = 1, kShutdown, kPowerOff };
// VM component protection: the response to a datastore's permanent device loss.
enum class PdlResponse { kDisabled = 1, kIssueEvents, kPowerOffRestart };
// ...and to all-paths-down, after apd_delay_s.
enum class ApdResponse { kDisabled = 1, kIssueEvents, kRestartConservative, kRestartAggressive };

struct ClusterConfig {
  uint32_t heartbeat_interval_ms = 1000;  // keep-alive period of each host's lease
  uint32_t heartbeat_misses = 3;          // lease TTL = interval x misses
  IsolationResponse isolation_response = IsolationResponse::kLeaveRunning;
  uint32_t heartbeat_datastores = 2;  // 2..5 datastores each host heartbeats on
  PdlResponse vmcp_pdl = PdlResponse::kIssueEvents;
  ApdResponse vmcp_apd = ApdResponse::kIssueEvents;
  uint32_t vmcp_apd_delay_s = 180;
  uint32_t max_protected_vms_per_datastore = 64;

  // etcd leases are whole seconds: interval x misses, rounded up, at least 1.
  int64_t LeaseTtlSeconds() const;
};

// Errors name the field and its allowed range.
absl::Status Validate(const ClusterConfig& config);
std::string ToJson(const ClusterConfig& config);
// Unknown fields and bad values are errors; missing fields keep their defaults.
absl::StatusOr<ClusterConfig> ConfigFromJson(const std::string& json);
// `migrate cluster config --set FIELD=VALUE`: the JSON field names, enums by their names.
absl::Status SetConfigField(ClusterConfig& config, const std::string& field, const std::string& value);

std::string IsolationResponseName(IsolationResponse r);
std::string PdlResponseName(PdlResponse r);
std::string ApdResponseName(ApdResponse r);

}  // namespace ferry::cluster
