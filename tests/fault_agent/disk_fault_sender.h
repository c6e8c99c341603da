#pragma once
// Test-only fault seams for a storage migration whose disk blocks ride the data connections (a
// PageSender wrapper, installed through AgentContext::wrap_page_sender):
//   kDropFinalBlock  leaves out one block of the final round that holds data (the destination
//                    keeps an older copy: the guest's disk workload must report it, the lost-block
//                    negative control of docs/storage_migration.md). Drops once per agent.
//   kBlockOutsideDisk adds, to the first round carrying disk blocks, one block just past the
//                    end of disk 0 (sent as the destination sees a source that lies about its
//                    disk): the destination must refuse it and the migration fail cleanly.
// On the gRPC transport disk blocks do not pass through here (drop_disk_block_channel.h).

#include <atomic>
#include <memory>

#include "engine/migration/page_sender.h"
#include "engine/vm/vm.h"

namespace ferry {

enum class DiskFault { kDropFinalBlock, kBlockOutsideDisk };

class DiskFaultSender : public PageSender {
 public:
  DiskFaultSender(std::unique_ptr<PageSender> inner, Vm& vm, DiskFault fault, std::atomic<bool>& used)
      : inner_(std::move(inner)), vm_(vm), fault_(fault), used_(used) {}

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
  std::unique_ptr<PageSender> inner_;
  Vm& vm_;  // paused during the final round: that is how the wrapper tells it apart
  DiskFault fault_;
  std::atomic<bool>& used_;  // shared by every migration of the agent: once
};

}  // namespace ferry
