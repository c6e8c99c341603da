#pragma once
// Datastore heartbeats: each host of a cluster writes, every heartbeat interval, a small record to
// <datastore>/.ferry-ha/<cluster>/hosts/<host>.hb on each of its heartbeat datastores (folders
// 0700, files 0600, root only). The master reads them for a host whose lease lapsed: a record
// still moving means the host is alive but isolated or partitioned, a still one that it failed.
// Format (text, one field a line, the last a checksum of all before it):
//   ferry-ha-heartbeat 1 / cluster C / host H / sequence N / time_unix_ns T / [own_view V] / fnv1a64 HEX
// `own_view` is written only while the host has lost its network heartbeat: `isolated` (no
// isolation address answers) or `partitioned` (one does). The master, which cannot reach such a
// host over the network, reads from it which of the two the host is (as vSphere HA reads an
// isolated host's marker on the heartbeat datastores). A record without it was written by a
// connected host (or an older one).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ferry::cluster {

struct HeartbeatRecord {
  std::string cluster;
  std::string host;
  uint64_t sequence = 0;      // +1 on every write: what "moving" means
  int64_t time_unix_ns = 0;   // for people reading it; never compared across hosts
  std::string own_view;       // "", "isolated" or "partitioned" (see above)
};

std::string HeartbeatPath(const std::string& datastore_root, const std::string& cluster, const std::string& host);

// Creates the folders (0700) as needed and replaces the file atomically (0600).
absl::Status WriteHeartbeat(const std::string& datastore_root, const HeartbeatRecord& record);

// DATA_LOSS for a torn or corrupted record, FAILED_PRECONDITION for one that names another host
// or cluster or whose file or folder is open to others than its owner: reported, never trusted.
absl::StatusOr<HeartbeatRecord> ReadHeartbeat(const std::string& datastore_root, const std::string& cluster,
                                              const std::string& host);

std::string EncodeHeartbeat(const HeartbeatRecord& record);
absl::StatusOr<HeartbeatRecord> DecodeHeartbeat(const std::string& text);

// A host whose network heartbeat (lease) is lost, judged by two reads of its datastore heartbeat
// one interval or more apart.
enum class LostHostVerdict { kFailed = 1, kIsolatedOrPartitioned, kUnknown };
// `before`/`after` not ok (no datastore reachable, corrupted record): unknown.
LostHostVerdict ClassifyLostHost(const absl::StatusOr<HeartbeatRecord>& before,
                                 const absl::StatusOr<HeartbeatRecord>& after);

}  // namespace ferry::cluster
