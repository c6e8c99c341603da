#include "engine/migration/stream_page_sender.h"

#include "engine/migration/bandwidth_limiter.h"
#include "engine/migration/page_batches.h"
#include "engine/migration/protocol.h"

namespace ferry {

absl::Status StreamPageSender::SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                         const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                                         RoundCounters& out) {
  // Disk blocks on this transport are DiskBlocks messages the engine sends itself.
  if (!disks.empty()) return absl::InternalError("disk blocks handed to the control stream's page sender");
  BandwidthLimiter limiter(max_mibps_.load());
  BatchCounters c;
  absl::Status send_status;
  bool ok = EncodeDirtyPages(mem, pages, round, kMaxBatchDataBytes, c, [&](v1::MemoryBatch& b) {
    if (cancel_.load()) {
      send_status = absl::CancelledError("migration cancelled by request");
      return false;
    }
    v1::PeerMessage msg;
    msg.mutable_memory()->Swap(&b);
    uint64_t bytes = msg.ByteSizeLong();
    send_status = channel_.Send(msg);
    if (!send_status.ok()) return false;
    out.wire_bytes += bytes;
    limiter.Consume(bytes);
    return true;
  }, populated);
  if (!ok && send_status.ok()) send_status = absl::InternalError("page encoding stopped");
  out.pages += c.pages;
  out.zero_pages += c.zero_pages;
  out.data_bytes += c.data_bytes;
  if (populated) {
    // Holes went as zero markers unread; count them for the statistics.
    uint64_t holes = 0;
    for (size_t w = 0; w < pages.words().size(); ++w) {
      holes += __builtin_popcountll(pages.words()[w] & ~populated->words()[w]);
    }
    out.hole_pages += holes;
  }
  return send_status;
}

}  // namespace ferry
