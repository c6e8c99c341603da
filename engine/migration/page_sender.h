#pragma once
// How the source moves one round of pages. Two implementations: StreamPageSender (MemoryBatch
// messages on the control stream, `--transport grpc`) and the data connections of
// engine/transport (the default). The engine only asks for rounds; ordering across connections
// is the sender's business (docs/wire_protocol.md "Ordering").

#include <cstdint>

#include "absl/status/status.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"

namespace ferry {

struct RoundCounters {
  uint64_t pages = 0;       // pages described (data + zero + holes)
  uint64_t zero_pages = 0;  // pages sent as zero markers (holes included)
  uint64_t hole_pages = 0;  // never-touched pages sent as range markers without being read
  uint64_t data_bytes = 0;  // page bytes carried
  uint64_t wire_bytes = 0;  // bytes on the wire: page data, headers, record overhead
};

class PageSender {
 public:
  virtual ~PageSender() = default;
  // Sends every page set in `pages` as round `round` and ends the round. `populated`, when given
  // (round 1), marks the pages that may hold data: the others are holes of the memory file, sent
  // as range markers without being read. Returns once every page is on its way and the round's
  // end is marked on every connection. Adds to `out`.
  virtual absl::Status SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                 const DirtyBitmap* populated, RoundCounters& out) = 0;
  // From any thread: the running SendRound stops at the next batch with a Cancelled error.
  virtual void Cancel() = 0;
  // Caps the send rate (MiB/s, 0 = unlimited); applies from the next batch.
  virtual void SetMaxBandwidth(double mibps) = 0;
  virtual uint32_t connections() const = 0;  // 0: pages travel on the control stream
  virtual bool encrypted() const = 0;
  virtual bool zero_copy() const { return false; }
};

// The destination's side of a data path (engine/transport implements it).
class IncomingPages {
 public:
  virtual ~IncomingPages() = default;
  // Blocks until every connection has delivered the end of round `round` (so every page of that
  // round and before is in guest memory), or fails: a data error, or no progress for
  // `timeout_ms`.
  virtual absl::Status WaitRoundComplete(uint32_t round, int64_t timeout_ms) = 0;
  // Closes the connections and joins their threads; no page is written afterwards.
  virtual void Close() = 0;
  virtual uint64_t pages_received() const = 0;
};

}  // namespace ferry
