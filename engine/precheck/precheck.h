#pragma once
// Whether a VM can move from `source` to `destination`: a pure function of its inputs
// (DESIGN.md). Every code is documented in docs/prechecks.md.
//
// Inputs the caller prepares: the VM's CPU spec resolved to features (ResolveVmCpu; a VM without
// one gets the source host's set), and the destination's disk access (ProbeDiskAccess run on the
// destination).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/host/host_facts.h"
#include "engine/precheck/finding.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// Below this a migration still works but takes long and may not converge.
inline constexpr uint32_t kMinMigrationLinkMbps = 1000;

// What a caller worked out beyond the facts, to make advice concrete (the precheck itself has no
// CPU map).
struct PrecheckAdvice {
  std::string common_cpu_model;  // the newest CPU model both hosts support (BaselineCpu); "" unknown
};

// A storage migration ("change both host and datastore", docs/storage_migration.md): the VM's
// file disks are copied to the destination's datastore `to_datastore`, so they need not be shared
// (no DATASTORE_NOT_SHARED), but that datastore must exist there, be writable and have room.
struct StorageMove {
  std::string to_datastore;
  uint64_t needed_bytes = 0;           // the file disks plus the VM directory's overhead
  std::optional<uint64_t> free_bytes;  // the destination's measure of its free space; unset: unknown
};

std::vector<Finding> RunPrechecks(const VmSpec& vm, const HostFacts& source, const HostFacts& destination,
                                  const PrecheckAdvice& advice = {}, const StorageMove* storage = nullptr);

}  // namespace ferry
