#pragma once
// A VM defined on a datastore: the directory <datastore>/<name>/ holding vm.yaml (vm_config.h), its
// disks (raw sparse files), console.log and vm.lock (vm_lock.h). Every refusal leaves the files as
// they were: a failed create removes only what it made; a bad config or a missing disk changes nothing.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/host/host_facts.h"
#include "engine/storage/vm_lock.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// Space kept beside the disks for vm.yaml, the console log and the lock file.
inline constexpr uint64_t kVmDirectoryOverheadBytes = 1ull << 20;

struct DatastoreVm {
  std::string datastore;  // its name on this host
  std::string dir;        // <datastore path>/<name>
  VmSpec spec;            // disk paths absolute, console log in dir
  std::string lock_path() const;
};

// Makes <ds.path>/<spec.name>/ with one new raw sparse disk per entry of `disk_bytes` (disk0.raw,
// disk1.raw, ...) appended to spec.disks, and vm.yaml. Refused before anything is written when the
// name is not a single safe path component, the directory exists, the datastore is read-only or has
// less free space than the disks need, or spec already names a file disk (their files live outside).
absl::StatusOr<DatastoreVm> CreateDatastoreVm(const DatastoreFacts& ds, VmSpec spec,
                                              const std::vector<uint64_t>& disk_bytes);

// Reads `dir` (a directory directly in datastore `ds`): its vm.yaml and every file disk it names
// (present, a regular file of the size recorded). Reads only.
absl::StatusOr<DatastoreVm> OpenDatastoreVm(const DatastoreFacts& ds, const std::string& dir);

// The names of the VM directories (those holding a vm.yaml) directly in `ds`, sorted.
absl::StatusOr<std::vector<std::string>> ListDatastoreVms(const DatastoreFacts& ds);

// The datastore VM named `name` on any of `host`'s datastores (NotFound if none; error if two).
absl::StatusOr<DatastoreVm> FindDatastoreVm(const HostFacts& host, const std::string& name);

// The datastore of `host` whose mount path is the parent directory of `dir`; NotFound otherwise.
absl::StatusOr<DatastoreFacts> DatastoreHoldingVmDirectory(const HostFacts& host, const std::string& dir);

// Removes the VM's directory and everything in it. Takes the VM's lock first (as `me`), so a
// running VM (here or on any host sharing the datastore) is refused, naming who runs it.
absl::Status DeleteDatastoreVm(const DatastoreVm& vm, const VmLockHolder& me);

}  // namespace ferry
