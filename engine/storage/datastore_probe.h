#pragma once
// DatastoreProbe: is a datastore's storage answering? A probe is a small read+write+fsync of this
// host's probe file in the datastore's HA folder (.ferry-ha/probe-HOST), run on its own thread with a
// deadline. VM component protection (engine/cluster) turns the answer into events and responses:
//   healthy  the probe finished without error
//   APD      all paths down: the probe did not finish within the deadline, or failed with an error
//            that may pass (EIO, ENOENT, EROFS, ENOSPC, ...)
//   PDL      permanent device loss: the probe failed with a device-gone errno (ENODEV, ENXIO)
// The caller never waits longer than the deadline: a probe stuck in I/O is left behind on its own
// thread (never joined on the caller's), and no new probe starts on this datastore until it ends.
// Keep one DatastoreProbe per datastore.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ferry {

// HA's folder at the root of each datastore (root-only: 0700).
inline constexpr char kDatastoreHaFolder[] = ".ferry-ha";

enum class DatastoreHealth {
  kUnknown = 0,  // no probe has finished yet
  kHealthy,
  kApd,
  kPdl,
};

absl::string_view DatastoreHealthName(DatastoreHealth health);  // "healthy", "APD", "PDL", "unknown"

// ENODEV and ENXIO: what a disk that is gone (unplugged, LUN removed) returns. docs/faultfs.md.
bool IsDeviceGoneErrno(int err);

struct DatastoreProbeResult {
  DatastoreHealth health = DatastoreHealth::kUnknown;
  int64_t since_nanos = 0;  // MonotonicNanos() when the datastore entered `health`
  int error = 0;            // errno of the failed step; 0 when healthy or timed out
  bool timed_out = false;   // APD because the probe did not finish within the deadline
  std::string detail;       // "fsync /ds/.ferry-ha/probe-host-a: No such device"
};

struct DatastoreProbeOptions {
  std::string datastore_root;  // absolute path where the datastore is mounted
  std::string host;            // this host's name: names the probe file; [A-Za-z0-9._-], 1-64 chars
  absl::Duration deadline = absl::Seconds(2);
};

class DatastoreProbe {
 public:
  // InvalidArgument naming the bad option. Touches no file (the datastore may be down).
  static absl::StatusOr<std::unique_ptr<DatastoreProbe>> Create(DatastoreProbeOptions options);
  ~DatastoreProbe();  // returns at once, whatever a stuck probe is doing

  // Starts a probe (or, while an earlier one is still stuck, keeps waiting for that one) and returns
  // its classification within the deadline.
  DatastoreProbeResult Probe();

  // The last result Probe() returned (kUnknown before the first).
  DatastoreProbeResult last() const;
  bool probe_outstanding() const;
  const DatastoreProbeOptions& options() const { return options_; }

  struct Shared;  // state shared with the probe threads (datastore_probe.cc)

 private:
  explicit DatastoreProbe(DatastoreProbeOptions options);

  DatastoreProbeOptions options_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace ferry
