#pragma once
// The source's data connections (DESIGN.md "Data path", docs/wire_protocol.md "Data
// connections"): N TCP connections to the destination's data port, each proven to belong to the
// migration, each driven by its own thread and io_uring. A round is cut into 1 MiB chunks of the
// dirty bitmap that the connection threads take in turn; each thread detects zero pages, builds
// batches of page runs, and sends a header followed by the page data straight from guest memory
// (plaintext) or sealed from guest memory into one record (AES-256-GCM, per-connection keys).
// Every round ends with a round-end frame on every connection. A storage migration's disk blocks
// of a round go first, as disk frames read from the source's disk files, spread over the
// connections the same way (1 MiB chunks of each disk's block bitmap).

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/migration/bandwidth_limiter.h"
#include "engine/migration/link_share.h"
#include "engine/migration/page_sender.h"
#include "engine/transport/data_wire.h"

namespace ferry {

struct DataSenderOptions {
  std::string migration_id;
  std::string secret;  // the DataPathOffer's 32 bytes
  uint32_t connections = 2;
  bool encrypted = true;
  bool zero_copy = false;  // plaintext only; falls back to copying sends where the kernel lacks it
  int64_t stall_timeout_ms = 30000;
  int64_t connect_timeout_ms = 5000;
  // Test seam: behave as on a kernel without IORING_OP_SENDMSG_ZC.
  bool assume_no_zero_copy = false;
  // The host's share of the link among concurrent migrations (docs/jobs.md); null: not shared.
  LinkShare* link_share = nullptr;
  uint32_t link_weight = 1;
};

class DataSender : public PageSender {
 public:
  // Connects and proves every connection; fails naming the connection and the destination's
  // verdict.
  static absl::StatusOr<std::unique_ptr<DataSender>> Connect(const std::string& host, uint16_t port,
                                                             DataSenderOptions options);
  ~DataSender() override;

  absl::Status SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                         const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                         RoundCounters& out) override;
  bool carries_disk_blocks() const override { return true; }
  void Cancel() override;
  void SetMaxBandwidth(double mibps) override;
  uint32_t connections() const override { return static_cast<uint32_t>(conns_.size()); }
  bool encrypted() const override { return options_.encrypted; }
  bool zero_copy() const override { return zero_copy_; }

 private:
  struct Conn;
  struct Round;
  explicit DataSender(DataSenderOptions options);
  void Loop(Conn& c);
  absl::Status SendWork(Conn& c, Round& r);
  void Fail(const absl::Status& st);
  void ShutdownAll();

  DataSenderOptions options_;
  bool zero_copy_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // bumped per round; threads wait for it
  uint32_t done_ = 0;        // connections done with the current round
  bool stop_ = false;
  absl::Status error_;       // the first error; the sender is unusable after it
  Round* round_ = nullptr;
  std::atomic<bool> cancel_{false};
  std::mutex limiter_mu_;
  std::unique_ptr<BandwidthLimiter> limiter_;
  double max_mibps_ = 0;
};

}  // namespace ferry
