#pragma once
// What the master publishes in etcd for `migrate cluster status` (docs/cluster.md "Status"):
//  - host-health/<host>: its judgement of each host, from the host's network heartbeat (lease) and
//    its datastore heartbeat as the master reads it: alive, judging (lease lost, verdict pending),
//    failed, isolated, partitioned, unknown. Rewritten only when it changes.
//  - events/<time>-<host>: the latest kMaxClusterEvents events (hosts lost and judged, restarts),
//    oldest first. `time` is the writer's clock, for people and for measurements on one machine;
//    no decision ever compares it across hosts.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cluster/etcd_client.h"

namespace ferry::cluster {

inline constexpr int kMaxClusterEvents = 64;

struct ClusterEvent {
  int64_t time_unix_ns = 0;
  std::string by;       // the host that saw it (the master)
  std::string kind;     // host_lost, host_verdict, vm_restart_needed, vm_restarted, ...
  std::string subject;  // the host or VM it is about
  std::string detail;
};
std::string ToJson(const ClusterEvent& e);
absl::StatusOr<ClusterEvent> ClusterEventFromJson(const std::string& json);

// Appends `e` (time now when 0) and drops the oldest events beyond kMaxClusterEvents.
absl::Status RecordClusterEvent(EtcdClient& etcd, const std::string& cluster, ClusterEvent e);
// Oldest first; records that do not parse are skipped.
absl::StatusOr<std::vector<ClusterEvent>> ReadClusterEvents(EtcdClient& etcd, const std::string& cluster);

// alive        its lease is live
// judging      lease lost; the master is reading its datastore heartbeats (kVerdictIntervals)
// failed       lease lost and its datastore heartbeats stopped: its VMs are restarted
// isolated     lease lost, datastore heartbeats moving, and its agent does not answer the master
// partitioned  lease lost, datastore heartbeats moving, its agent answers: cut from etcd only
// unknown      lease lost and no heartbeat datastore both can read
enum class HostHealth { kAlive = 1, kJudging, kFailed, kIsolated, kPartitioned, kUnknown };
std::string HostHealthName(HostHealth h);
absl::StatusOr<HostHealth> ParseHostHealth(const std::string& text);

// The host's datastore heartbeat as the master reads it: alive (its sequence moved within the last
// kVerdictIntervals + 1 intervals), stopped, unreadable (no record the master could trust), or
// none (they share no heartbeat datastore).
enum class DatastoreHeartbeatState { kAlive = 1, kStopped, kUnreadable, kNone };
std::string DatastoreHeartbeatStateName(DatastoreHeartbeatState s);
absl::StatusOr<DatastoreHeartbeatState> ParseDatastoreHeartbeatState(const std::string& text);

struct HostHealthRecord {
  std::string host;
  HostHealth health = HostHealth::kAlive;
  DatastoreHeartbeatState datastore_heartbeat = DatastoreHeartbeatState::kNone;
  std::string by;             // the master that judged it
  int64_t since_unix_ns = 0;  // when it entered this health
};
std::string ToJson(const HostHealthRecord& r);
absl::StatusOr<HostHealthRecord> HostHealthRecordFromJson(const std::string& json);

}  // namespace ferry::cluster
