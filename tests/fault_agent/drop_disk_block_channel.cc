#include "tests/fault_agent/drop_disk_block_channel.h"

#include <spdlog/spdlog.h>

#include "engine/migration/disk_copy.h"

namespace ferry {

absl::Status DropDiskBlockChannel::Send(const v1::PeerMessage& msg) {
  if (!msg.has_disk_blocks() || !msg.disk_blocks().final() || used_.load()) return inner_.Send(msg);
  v1::PeerMessage changed = msg;
  v1::DiskBlocks* b = changed.mutable_disk_blocks();
  for (int i = 0; i < b->runs_size(); ++i) {
    v1::PageRun* r = b->mutable_runs(i);
    if (r->zero()) continue;
    if (used_.exchange(true)) break;
    const uint64_t lost = r->first_page() + r->count() - 1;
    if (r->count() == 1) {
      b->mutable_runs()->DeleteSubrange(i, 1);
    } else {
      r->set_count(r->count() - 1);
      r->mutable_data()->resize(uint64_t{r->count()} * kDiskBlockBytes);
    }
    spdlog::warn("event=test_fault_dropped_disk_block via=control-stream disk={} block={} round={} (a test agent that loses a block)",
                 b->disk(), lost, b->round());
    break;
  }
  return inner_.Send(changed);
}

}  // namespace ferry
