#pragma once
// PageSender over the control stream: MemoryBatch messages of at most kMaxBatchDataBytes
// (`--transport grpc`, and every protocol-1 peer).

#include <atomic>

#include "engine/migration/migration_channel.h"
#include "engine/migration/page_sender.h"

namespace ferry {

class StreamPageSender : public PageSender {
 public:
  explicit StreamPageSender(MigrationChannel& channel) : channel_(channel) {}
  absl::Status SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                         const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                         RoundCounters& out) override;
  void Cancel() override { cancel_.store(true); }
  void SetMaxBandwidth(double mibps) override { max_mibps_.store(mibps); }
  uint32_t connections() const override { return 0; }
  bool encrypted() const override { return channel_.encrypted(); }

 private:
  MigrationChannel& channel_;
  std::atomic<bool> cancel_{false};
  std::atomic<double> max_mibps_{0};
};

}  // namespace ferry
