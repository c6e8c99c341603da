#include "tests/fault_agent/drop_final_page_sender.h"

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "engine/memory/page.h"

namespace ferry {
namespace {
constexpr uint64_t kUnknownHash = ~uint64_t{0};  // the destination's copy is not known exactly
}  // namespace

uint64_t DropFinalPageSender::PageHash(const GuestMemory& mem, uint64_t page) const {
  const uint8_t* p = mem.page(page);
  return IsZeroPage(p) ? 0 : XXH3_64bits(p, kPageSize);
}

absl::Status DropFinalPageSender::SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                            const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                                            RoundCounters& out) {
  if (vm_.run_state() == VmRunState::kPaused && !dropped_) {
    // The final round: forget the highest page whose destination copy is known to be stale.
    DirtyBitmap without_one = pages;
    for (uint64_t p = pages.num_pages(); p-- > 0;) {
      if (!pages.Test(p)) continue;
      auto sent = sent_hashes_.find(p);
      if (sent != sent_hashes_.end() && sent->second == kUnknownHash) continue;
      uint64_t now = PageHash(mem, p);
      if (sent == sent_hashes_.end() ? now != 0 : sent->second != now) {
        without_one.Clear(p);
        dropped_ = true;
        spdlog::warn("event=test_fault fault=drop-final-page page={} round={}", p, round);
        break;
      }
    }
    return inner_->SendRound(mem, without_one, round, populated, disks, out);
  }
  std::unordered_map<uint64_t, uint64_t> before;
  pages.ForEachRun([&](uint64_t first, uint64_t count) {
    for (uint64_t p = first; p < first + count; ++p) {
      if (!populated || populated->Test(p)) before[p] = PageHash(mem, p);
    }
  });
  absl::Status st = inner_->SendRound(mem, pages, round, populated, disks, out);
  for (const auto& [p, h] : before) sent_hashes_[p] = PageHash(mem, p) == h ? h : kUnknownHash;
  // Let the guest dirty a little more after the round, so the final round surely holds a page
  // whose destination copy is stale (a smallest-pause switch-over may otherwise leave it empty).
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return st;
}

}  // namespace ferry
