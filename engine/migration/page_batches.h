#pragma once
// Guest pages <-> MemoryBatch messages. Zero pages travel as markers, not 4 KiB of zeros.

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

struct BatchCounters {
  uint64_t pages = 0;       // pages described (data + zero)
  uint64_t zero_pages = 0;
  uint64_t data_bytes = 0;  // page bytes carried
};

// Encodes the pages set in `pages` into batches of at most `max_data_bytes` page data each and
// hands each to `emit` (which returns false to stop early, e.g. on cancel or a broken stream).
// Returns false when `emit` stopped it.
// `populated`, when given, marks the pages that may hold data: the others are sent as zero
// markers without being read.
bool EncodeDirtyPages(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                      uint64_t max_data_bytes, BatchCounters& counters,
                      const std::function<bool(v1::MemoryBatch&)>& emit,
                      const DirtyBitmap* populated = nullptr);

// Validates and writes a batch into guest memory. Zero runs of round 1 are not written: a
// receiving VM's memory starts zeroed, and writing zeros would only fault it in.: every run inside guest memory, data length
// exactly count * 4096 (or empty for zero runs). Nothing is written if any run is invalid.
// Errors: OutOfRange (page outside guest memory), InvalidArgument (length mismatch).
absl::Status ApplyMemoryBatch(const v1::MemoryBatch& batch, GuestMemory& mem, BatchCounters* counters);

}  // namespace ferry
