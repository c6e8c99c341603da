#include "tests/fault_agent/disk_fault_sender.h"

#include <unistd.h>

#include <vector>

#include <spdlog/spdlog.h>

#include "engine/memory/page.h"

namespace ferry {

absl::Status DiskFaultSender::SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                        const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                                        RoundCounters& out) {
  if (disks.empty() || used_.load()) return inner_->SendRound(mem, pages, round, populated, disks, out);
  std::vector<RoundDisk> changed(disks.begin(), disks.end());
  std::vector<DirtyBitmap> bitmaps;
  bitmaps.reserve(changed.size());
  if (fault_ == DiskFault::kBlockOutsideDisk) {
    // Disk 0 as one block longer than it is, that block to be sent (it reads as zero).
    RoundDisk& d = changed[0];
    const uint64_t n = d.blocks->num_pages();
    DirtyBitmap longer(n + 1);
    d.blocks->ForEachRun([&](uint64_t first, uint64_t count) { longer.SetRange(first, count); });
    longer.Set(n);
    bitmaps.push_back(std::move(longer));
    d.blocks = &bitmaps.back();
    d.bytes = (n + 1) * kPageSize;
    used_.store(true);
    spdlog::warn("event=test_fault fault=disk-block-outside-disk disk={} block={} round={}", d.disk, n, round);
    return inner_->SendRound(mem, pages, round, populated, changed, out);
  }
  if (vm_.run_state() != VmRunState::kPaused) return inner_->SendRound(mem, pages, round, populated, disks, out);
  // The final round: leave out the first block that holds data.
  std::vector<uint8_t> block(kPageSize);
  for (RoundDisk& d : changed) {
    if (used_.load()) break;
    for (uint64_t b = 0; b < d.blocks->num_pages(); ++b) {
      if (!d.blocks->Test(b)) continue;
      ssize_t r = pread(d.fd, block.data(), kPageSize, static_cast<off_t>(b * kPageSize));
      if (r <= 0 || IsZeroPage(block.data())) continue;
      DirtyBitmap without_one = *d.blocks;
      without_one.Clear(b);
      bitmaps.push_back(std::move(without_one));
      d.blocks = &bitmaps.back();
      used_.store(true);
      spdlog::warn("event=test_fault_dropped_disk_block via=data-connection disk={} block={} round={} "
                   "(a test agent that loses a block)", d.disk, b, round);
      break;
    }
  }
  return inner_->SendRound(mem, pages, round, populated, changed, out);
}

}  // namespace ferry
