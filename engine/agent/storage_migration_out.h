#pragma once
// The source's side of a storage migration ("change both host and datastore",
// docs/storage_migration.md): which VMs may move their disks, the engine's hooks to copy them,
// and the removal of the source's directory once the destination confirmed the commit.

#include <string>

#include "absl/status/status.h"
#include "engine/agent/vm_ownership.h"
#include "engine/migration/precopy_source.h"
#include "engine/vm/vm.h"

namespace ferry {

// A migration of `name` to the destination's datastore `to_datastore`: the VM must be a datastore
// VM this agent runs (and holds the lock of); sets config's storage target and the disks' write log.
absl::Status PrepareStorageMigration(const VmOwnership& ownership, const std::string& name,
                                     const std::string& to_datastore, Vm& vm, SourceConfig& config);

// The destination confirmed the commit (the VM runs there from its new directory): closes the
// source's lock and removes the source's VM directory. Never called on a failure or a cancel.
absl::Status RemoveSourceDirectory(VmOwnership& ownership, const std::string& name, const std::string& agent);

}  // namespace ferry
