#pragma once
// A datastore as this host sees it: a directory named in the host's facts (host file, or a libvirt
// storage pool), whose identity is the UUID stored inside it (engine/host/datastore_id.h).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/host/host_facts.h"

namespace ferry {

// The datastore called `name` in `host`; NotFound listing the names there are.
absl::StatusOr<DatastoreFacts> DatastoreByName(const HostFacts& host, const std::string& name);

// OK when `ds` is mounted writable here and has `needed_bytes` free (statvfs, what an unprivileged
// writer may use). FailedPrecondition for a read-only datastore, ResourceExhausted when space is short;
// both name the datastore, what is needed and what there is.
absl::Status CheckDatastoreWritable(const DatastoreFacts& ds, uint64_t needed_bytes);

// What a storage migration's precheck asks of a destination datastore (statvfs).
struct DatastoreSpace {
  uint64_t free_bytes = 0;  // what an unprivileged writer may use
  bool read_only = false;   // mounted read-only here
};
absl::StatusOr<DatastoreSpace> MeasureDatastoreSpace(const DatastoreFacts& ds);

}  // namespace ferry
