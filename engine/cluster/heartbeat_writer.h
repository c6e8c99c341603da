#pragma once
// Writing this host's datastore heartbeats (datastore_heartbeat.h) every heartbeat interval, on a
// thread of its own so a host cut off from etcd keeps heartbeating on its datastores: that is how
// the master tells an isolated or partitioned host from a failed one. And choosing where:
// `heartbeat_datastores` (2..5) of the datastores the host mounts.

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace ferry::cluster {

// A datastore as this host mounts it.
struct MountedDatastore {
  std::string uuid;  // its identity (equal on every host that sees it)
  std::string path;  // where this host mounts it
  bool read_only = false;
  uint64_t device = 0;  // st_dev of its root: equal devices = the same backing storage
};

// Picks up to `count` writable datastores with an identity: those seen by the most hosts first
// (`hosts_seeing`: uuid -> how many cluster hosts report it), each on a device not yet chosen
// before any second one on the same device, ties by uuid (so hosts seeing the same datastores pick
// the same ones).
std::vector<MountedDatastore> ChooseHeartbeatDatastores(const std::vector<MountedDatastore>& mounted,
                                                        const std::map<std::string, int>& hosts_seeing, int count);

class HeartbeatWriter {
 public:
  HeartbeatWriter(std::string cluster, std::string host, absl::Duration interval);
  ~HeartbeatWriter();  // stops the thread; the files stay (a stopped host's record stops moving)
  HeartbeatWriter(const HeartbeatWriter&) = delete;
  HeartbeatWriter& operator=(const HeartbeatWriter&) = delete;

  // Where to write from the next beat on.
  void SetDatastores(std::vector<MountedDatastore> datastores);
  std::vector<MountedDatastore> datastores() const;
  // What this host sees of itself while its network heartbeat is lost ("isolated" or
  // "partitioned"; "" when connected): written into every record from the next beat on.
  void SetOwnView(std::string view);
  uint64_t sequence() const;

 private:
  void Run();
  void BeatOnce();

  const std::string cluster_;
  const std::string host_;
  const absl::Duration interval_;
  std::map<std::string, std::string> last_error_;  // path -> error, Run's thread only (logged once)

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<MountedDatastore> datastores_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::string own_view_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ferry::cluster
