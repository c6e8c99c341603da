#pragma once
// The destination's side of one migration's data connections: a thread per connection receives
// frames into guest memory (plaintext) or opens sealed records into it (round 1 through the
// memfd, later rounds straight into the mapping), and enforces the ordering rule: a connection
// that reaches the end of round N waits until every connection has, before it applies anything of
// round N+1 (docs/wire_protocol.md "Ordering"). A storage migration's disk frames are written
// into the destination's disk files (IncomingDisks) under the same rule.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/guest_memory.h"
#include "engine/migration/page_sender.h"
#include "engine/transport/data_handshake.h"
#include "engine/transport/data_wire.h"

namespace ferry {

struct IncomingOptions {
  std::string migration_id;
  std::string secret;  // the DataPathOffer's secret
  uint32_t connections = 1;
  bool encrypted = true;
  int64_t stall_timeout_ms = 30000;  // a frame that started must finish within this
  // Round 1's pages land in memory nobody touched yet: write them through the memfd (the page
  // cache allocates them without a page fault each) instead of through the mapping. Off: every
  // round writes through the mapping (tests compare the two).
  bool fresh_pages_through_file = true;
  // A storage migration: the new disk files disk frames are written into (owned by the
  // receiver, alive until Close; or set by ReceiveDisksInto). Null: a disk frame fails the data
  // path.
  IncomingDisks* disks = nullptr;
  // Called once, from a connection thread, when the data path fails (the agent answers the source).
  std::function<void(const absl::Status&)> on_error;
  // Test seams (never set in production): run before a connection applies a batch (e.g. to delay
  // one connection); and switch the round barrier off to show what it prevents.
  std::function<void(uint32_t connection, uint32_t round)> before_apply;
  bool disable_round_barrier = false;
  // Test seam (never set in production): an error refuses the batch about to be applied, failing
  // the data path as a bad frame would (tests/fault_agent: a destination that refuses a round).
  std::function<absl::Status(uint32_t connection, uint32_t round)> refuse_batch;
};

class IncomingSession : public IncomingPages {
 public:
  IncomingSession(IncomingOptions options, GuestMemory& mem);
  ~IncomingSession() override;

  const std::string& migration_id() const { return options_.migration_id; }
  const std::string& secret() const { return options_.secret; }
  // Takes a proven connection (moving `fd` only then), answers it kAccepted and starts its
  // receiving thread. kBadConnection if the index is out of range or already taken.
  DataVerdict Attach(uint32_t index, UniqueFd& fd);

  absl::Status WaitRoundComplete(uint32_t round, int64_t timeout_ms) override;
  void Close() override;
  uint64_t pages_received() const override { return pages_.load(); }
  void ReceiveDisksInto(IncomingDisks* disks) override;
  absl::Status status() const;

 private:
  struct Conn;
  void Receive(Conn& c);
  absl::Status ReceiveLoop(Conn& c);
  absl::Status ReadTable(Conn& c, uint8_t* table, size_t& table_bytes, bool& eof);
  absl::Status WriteRunsThroughFile(const std::vector<WireRun>& runs, const uint8_t* data);
  // A disk frame whose header and run table were read: checks its runs against the disk,
  // receives its data and writes it into the disk file.
  absl::Status ReceiveDiskFrame(Conn& c, const FrameHeader& h, const uint8_t* run_table, uint32_t round,
                                std::vector<WireRun>& runs);
  void Fail(const absl::Status& st);
  void RoundDone(Conn& c, uint32_t round);

  IncomingOptions options_;
  GuestMemory& mem_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> conns_;
  absl::Status error_;
  bool closing_ = false;
  uint64_t progress_ = 0;  // frames received by all connections (for stall detection)
  std::atomic<uint64_t> pages_{0};
  std::atomic<bool> error_reported_{false};
};

}  // namespace ferry
