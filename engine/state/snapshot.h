#pragma once
// A snapshot directory: state.bin (the versioned state container), memory.bin (guest RAM, zero
// pages left as holes) and spec.txtpb (the VM's shape). Works for any Vm backend.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine/vm/vm.h"

namespace ferry {

inline constexpr char kSnapshotStateFile[] = "state.bin";
inline constexpr char kSnapshotMemoryFile[] = "memory.bin";
inline constexpr char kSnapshotSpecFile[] = "spec.txtpb";

struct SnapshotStats {
  uint64_t memory_bytes = 0;
  uint64_t pages_written = 0;  // non-zero pages; the rest are holes
  uint64_t state_bytes = 0;
};

// Saves a paused VM into `dir` (created if missing). state.bin is written last, so a directory
// without it is an incomplete snapshot.
absl::StatusOr<SnapshotStats> SaveSnapshot(Vm& vm, const std::string& dir);

// The spec a snapshot was taken with; build a VM for restore from it.
absl::StatusOr<VmSpec> ReadSnapshotSpec(const std::string& dir);

// Fills a VM built for restore (not started) with the snapshot's memory, then its state.
absl::Status RestoreSnapshot(const std::string& dir, Vm& vm);

}  // namespace ferry
