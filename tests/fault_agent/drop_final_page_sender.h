#pragma once
// Test-only fault (the lost-page negative control): a PageSender wrapper that leaves out one page
// of the final (stop-and-copy) round whose destination copy is really stale, so the guest must
// notice. It hashes each page before and after its round went out: only a page whose copy at the
// destination is exactly known counts as stale (a dirty page re-sent unchanged is harmless).

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "engine/migration/page_sender.h"
#include "engine/vm/vm.h"

namespace ferry {

class DropFinalPageSender : public PageSender {
 public:
  DropFinalPageSender(std::unique_ptr<PageSender> inner, Vm& vm) : inner_(std::move(inner)), vm_(vm) {}

  absl::Status SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                         const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                         RoundCounters& out) override;
  bool carries_disk_blocks() const override { return inner_->carries_disk_blocks(); }
  void Cancel() override { inner_->Cancel(); }
  void SetMaxBandwidth(double mibps) override { inner_->SetMaxBandwidth(mibps); }
  uint32_t connections() const override { return inner_->connections(); }
  bool encrypted() const override { return inner_->encrypted(); }
  bool zero_copy() const override { return inner_->zero_copy(); }

 private:
  uint64_t PageHash(const GuestMemory& mem, uint64_t page) const;

  std::unique_ptr<PageSender> inner_;
  Vm& vm_;  // paused during the final round: that is how the wrapper tells it apart
  std::unordered_map<uint64_t, uint64_t> sent_hashes_;
  bool dropped_ = false;
};

}  // namespace ferry
