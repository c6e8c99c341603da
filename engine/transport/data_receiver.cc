#include "engine/transport/data_receiver.h"

#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/memory/page.h"
#include "engine/transport/data_wire.h"
#include "engine/transport/sealed_stream.h"
#include "engine/transport/uring_socket.h"

namespace ferry {

struct IncomingSession::Conn {
  uint32_t index = 0;
  std::string name;
  UniqueFd fd;
  std::unique_ptr<UringSocket> io;
  std::optional<RecordOpener> opener;
  std::thread thread;
  uint32_t round_done = 0;  // guarded by mu_
  bool ended = false;       // clean end of stream (guarded by mu_)
  uint64_t frames = 0;
  std::vector<uint8_t> table;   // header + run table (plaintext or one sealed record)
  std::vector<uint8_t> record;  // a sealed data record
};

namespace {

// Receives frame `frame`'s sealed data record into `record`, unopened, after checking that its
// length is exactly what the authenticated table announced (`data_bytes` of plaintext).
// Returns the record's length.
absl::StatusOr<size_t> ReceiveSealedDataRecord(UringSocket& io, std::vector<uint8_t>& record, uint64_t frame,
                                               size_t data_bytes) {
  const size_t want = kSealOverheadBytes + data_bytes;
  if (record.size() < want) record.resize(kSealOverheadBytes + size_t{kMaxDataPagesPerFrame} * kPageSize);
  iovec head{record.data(), kSealHeaderBytes};
  RETURN_IF_ERROR(io.RecvAll(&head, 1, kSealHeaderBytes, false, true).status());
  ASSIGN_OR_RETURN(size_t size, SealedRecordSize(record.data(), kSealHeaderBytes));
  if (size != want) {
    return absl::DataLossError(absl::StrCat("frame ", frame, " data record is ", size, " bytes, expected ", want));
  }
  iovec rest{record.data() + kSealHeaderBytes, want - kSealHeaderBytes};
  RETURN_IF_ERROR(io.RecvAll(&rest, 1, rest.iov_len, false, true).status());
  return want;
}

// Receives frame `frame`'s `data_bytes` of data into `record` (sealed: opened in place there, so
// nothing unauthenticated is handed on) and returns where they start.
absl::StatusOr<const uint8_t*> ReceiveDataInRecord(UringSocket& io, RecordOpener* opener,
                                                   std::vector<uint8_t>& record, uint64_t frame,
                                                   size_t data_bytes) {
  if (opener == nullptr) {
    if (record.size() < kSealOverheadBytes + data_bytes) {
      record.resize(kSealOverheadBytes + size_t{kMaxDataPagesPerFrame} * kPageSize);
    }
    iovec bounce{record.data(), data_bytes};
    RETURN_IF_ERROR(io.RecvAll(&bounce, 1, data_bytes, false, true).status());
    return record.data();
  }
  ASSIGN_OR_RETURN(size_t want, ReceiveSealedDataRecord(io, record, frame, data_bytes));
  ASSIGN_OR_RETURN(size_t plain, opener->OpenInPlace(record.data(), want));
  if (plain != data_bytes) return absl::DataLossError(absl::StrCat("frame ", frame, " data record opened short"));
  return record.data() + kSealHeaderBytes;
}

}  // namespace

IncomingSession::IncomingSession(IncomingOptions options, GuestMemory& mem)
    : options_(std::move(options)), mem_(mem) {
  conns_.resize(options_.connections);
}

IncomingSession::~IncomingSession() { Close(); }

absl::Status IncomingSession::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void IncomingSession::ReceiveDisksInto(IncomingDisks* disks) {
  // Connection threads start under mu_ in Attach, after this: they see it.
  std::lock_guard<std::mutex> lock(mu_);
  options_.disks = disks;
}

DataVerdict IncomingSession::Attach(uint32_t index, UniqueFd& fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_ || !error_.ok() || index >= conns_.size() || conns_[index]) return DataVerdict::kBadConnection;
  auto c = std::make_unique<Conn>();
  c->index = index;
  c->name = absl::StrCat("data connection ", index);
  auto io = UringSocket::Create(fd.get(), options_.stall_timeout_ms, "data connection");
  if (!io.ok()) return DataVerdict::kBusy;
  c->io = std::move(*io);
  if (options_.encrypted) {
    auto key = MigrationKey::FromString(options_.secret);
    if (!key.ok()) return DataVerdict::kBadProof;
    auto opener = RecordOpener::Create(*key, index, SealDirection::kSourceToDestination);
    if (!opener.ok()) return DataVerdict::kBusy;
    c->opener.emplace(std::move(*opener));
  }
  c->table.resize(kSealOverheadBytes + kDataHeaderBytes + size_t{kMaxRunsPerFrame} * kDataRunBytes);
  // The verdict goes out before the thread starts; the source sends nothing until it has it.
  uint8_t ok = static_cast<uint8_t>(DataVerdict::kAccepted);
  if (::send(fd.get(), &ok, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) return DataVerdict::kBusy;
  c->fd = std::move(fd);
  Conn* conn = c.get();
  conns_[index] = std::move(c);
  conn->thread = std::thread([this, conn] { Receive(*conn); });
  return DataVerdict::kAccepted;
}

void IncomingSession::Fail(const absl::Status& st) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.ok() || closing_) return;
    error_ = st;
    for (auto& c : conns_) {
      if (c && c->io) c->io->Shutdown();
    }
  }
  cv_.notify_all();
  if (options_.on_error && !error_reported_.exchange(true)) options_.on_error(st);
}

void IncomingSession::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    for (auto& c : conns_) {
      if (c && c->io) c->io->Shutdown();
    }
  }
  cv_.notify_all();
  for (auto& c : conns_) {
    if (c && c->thread.joinable()) c->thread.join();
  }
  // Close the sockets now, not when the session is destroyed: a shut-down socket that is never
  // read keeps a zero window, and the source would wait out its stall timeout instead of
  // seeing the connection reset.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : conns_) {
    if (!c) continue;
    c->io.reset();
    c->fd.Reset();
  }
}

void IncomingSession::Receive(Conn& c) {
  absl::Status st = ReceiveLoop(c);
  if (!st.ok()) {
    bool closing;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing = closing_;
    }
    if (!closing) Fail(absl::Status(st.code(), absl::StrCat(c.name, ": ", st.message())));
  }
}

void IncomingSession::RoundDone(Conn& c, uint32_t round) {
  std::unique_lock<std::mutex> lock(mu_);
  c.round_done = round;
  ++progress_;
  cv_.notify_all();
  if (options_.disable_round_barrier) return;
  // The ordering rule: nothing of round N+1 is applied while another connection may still hold
  // a round-N copy of the same page.
  cv_.wait(lock, [&] {
    if (closing_ || !error_.ok()) return true;
    for (auto& o : conns_) {
      if (!o || o->round_done < round) return false;
    }
    return true;
  });
}

// Reads one frame's header and run table into c.table (opening it when sealed). eof: the stream
// ended cleanly before the frame.
absl::Status IncomingSession::ReadTable(Conn& c, uint8_t* table, size_t& table_bytes, bool& eof) {
  eof = false;
  if (!c.opener) {
    iovec iov{table, kDataHeaderBytes};
    ASSIGN_OR_RETURN(bool more, c.io->RecvAll(&iov, 1, kDataHeaderBytes, true, false));
    if (!more) {
      eof = true;
      return absl::OkStatus();
    }
    table_bytes = kDataHeaderBytes;
    return absl::OkStatus();
  }
  uint8_t* rec = c.table.data();
  iovec iov{rec, kSealHeaderBytes};
  ASSIGN_OR_RETURN(bool more, c.io->RecvAll(&iov, 1, kSealHeaderBytes, true, false));
  if (!more) {
    eof = true;
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(size_t size, SealedRecordSize(rec, kSealHeaderBytes));
  if (size > c.table.size() || size < kSealOverheadBytes + kDataHeaderBytes) {
    return absl::DataLossError(absl::StrCat("frame table record of ", size, " bytes is out of bounds"));
  }
  iovec rest{rec + kSealHeaderBytes, size - kSealHeaderBytes};
  RETURN_IF_ERROR(c.io->RecvAll(&rest, 1, rest.iov_len, false, true).status());
  ASSIGN_OR_RETURN(table_bytes, c.opener->OpenInPlace(rec, size));
  std::memmove(table, rec + kSealHeaderBytes, table_bytes);
  return absl::OkStatus();
}

absl::Status IncomingSession::ReceiveLoop(Conn& c) {
  std::vector<uint8_t> table(kDataHeaderBytes + size_t{kMaxRunsPerFrame} * kDataRunBytes);
  std::vector<WireRun> runs;
  std::vector<iovec> data;
  uint32_t round = 1;
  for (;;) {
    size_t table_bytes = 0;
    bool eof = false;
    RETURN_IF_ERROR(ReadTable(c, table.data(), table_bytes, eof));
    if (eof) {
      std::lock_guard<std::mutex> lock(mu_);
      c.ended = true;
      cv_.notify_all();
      return absl::OkStatus();
    }
    FrameHeader h;
    RETURN_IF_ERROR(DecodeFrameHeader(table.data(), c.frames, h));
    ++c.frames;
    size_t run_bytes = size_t{h.run_count} * kDataRunBytes;
    if (c.opener) {
      if (table_bytes != kDataHeaderBytes + run_bytes) {
        return absl::DataLossError(absl::StrCat("frame ", h.index, " record holds ", table_bytes,
                                                " bytes for ", h.run_count, " runs"));
      }
    } else if (run_bytes > 0) {
      iovec iov{table.data() + kDataHeaderBytes, run_bytes};
      RETURN_IF_ERROR(c.io->RecvAll(&iov, 1, run_bytes, false, true).status());
    }
    if (h.round != round) {
      return absl::DataLossError(absl::StrCat("frame ", h.index, " belongs to round ", h.round,
                                              " but this connection is in round ", round));
    }
    if (h.type == FrameType::kRoundEnd) {
      RoundDone(c, round);
      uint8_t ack[kAckBytes];
      EncodeAck(round, ack);
      iovec iov{ack, sizeof(ack)};
      RETURN_IF_ERROR(c.io->StartSend(&iov, 1, sizeof(ack), false));
      RETURN_IF_ERROR(c.io->WaitSend());
      ++round;
      continue;
    }
    if (h.type == FrameType::kDiskBatch) {
      RETURN_IF_ERROR(ReceiveDiskFrame(c, h, table.data() + kDataHeaderBytes, round, runs));
      std::lock_guard<std::mutex> lock(mu_);
      ++progress_;
      continue;
    }
    RETURN_IF_ERROR(DecodeRuns(h, table.data() + kDataHeaderBytes, mem_.num_pages(), runs));
    if (options_.before_apply) options_.before_apply(c.index, round);
    if (options_.refuse_batch) RETURN_IF_ERROR(options_.refuse_batch(c.index, round));
    data.clear();
    uint64_t pages = 0;
    for (const WireRun& r : runs) {
      pages += r.count;
      if (r.zero()) {
        // Fresh memory is zero: round 1 writes nothing (and faults nothing in).
        if (round > 1) std::memset(mem_.page(r.first_page), 0, uint64_t{r.count} * kPageSize);
        continue;
      }
      data.push_back(iovec{mem_.page(r.first_page), uint64_t{r.count} * kPageSize});
    }
    size_t data_bytes = size_t{h.data_pages} * kPageSize;
    // Round 1 sends each page once, into memory nobody has touched: written through the memfd,
    // the page cache allocates those pages without a page fault each (docs/data_path.md).
    // Later rounds mostly rewrite pages round 1 mapped: straight into guest memory.
    const bool through_file = round == 1 && options_.fresh_pages_through_file;
    if (data_bytes > 0) {
      RecordOpener* opener = c.opener ? &*c.opener : nullptr;
      if (through_file) {
        ASSIGN_OR_RETURN(const uint8_t* bytes, ReceiveDataInRecord(*c.io, opener, c.record, h.index, data_bytes));
        RETURN_IF_ERROR(WriteRunsThroughFile(runs, bytes));
      } else if (opener) {
        // Opened straight into guest memory.
        ASSIGN_OR_RETURN(size_t want, ReceiveSealedDataRecord(*c.io, c.record, h.index, data_bytes));
        RETURN_IF_ERROR(opener->OpenScatter(c.record.data(), want, data.data(), data.size()));
      } else {
        RETURN_IF_ERROR(c.io->RecvAll(data.data(), data.size(), data_bytes, false, true).status());
      }
    }
    pages_.fetch_add(pages, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu_);
    ++progress_;
  }
}

absl::Status IncomingSession::ReceiveDiskFrame(Conn& c, const FrameHeader& h, const uint8_t* run_table,
                                              uint32_t round, std::vector<WireRun>& runs) {
  IncomingDisks* disks = options_.disks;
  if (disks == nullptr) {
    return absl::DataLossError(absl::StrCat("frame ", h.index, " carries disk blocks, but this migration moves no disk"));
  }
  if (h.disk >= disks->disk_count()) {
    return absl::InvalidArgumentError(absl::StrCat("frame ", h.index, " carries blocks of disk ", h.disk,
                                                   "; the VM has ", disks->disk_count(), " file disks"));
  }
  // Every run inside the disk before anything of the frame is written.
  RETURN_IF_ERROR(DecodeRuns(h, run_table, disks->disk_blocks(h.disk), runs));
  if (options_.before_apply) options_.before_apply(c.index, round);
  if (options_.refuse_batch) RETURN_IF_ERROR(options_.refuse_batch(c.index, round));
  const size_t data_bytes = size_t{h.data_pages} * kPageSize;
  const uint8_t* data = nullptr;
  if (data_bytes > 0) {
    // Opened in place when sealed: nothing unauthenticated reaches the disk.
    ASSIGN_OR_RETURN(data, ReceiveDataInRecord(*c.io, c.opener ? &*c.opener : nullptr, c.record, h.index, data_bytes));
  }
  for (const WireRun& r : runs) {
    RETURN_IF_ERROR(disks->WriteBlocks(h.disk, r.first_page, r.count, r.zero() ? nullptr : data));
    if (!r.zero()) data += uint64_t{r.count} * kPageSize;
  }
  return absl::OkStatus();
}

// `data` holds the data runs' pages back to back, in the order of `runs`.
absl::Status IncomingSession::WriteRunsThroughFile(const std::vector<WireRun>& runs, const uint8_t* data) {
  for (const WireRun& r : runs) {
    if (r.zero()) continue;
    const uint64_t bytes = uint64_t{r.count} * kPageSize;
    RETURN_IF_ERROR(mem_.WriteThroughFile(r.first_page, data, bytes));
    data += bytes;
  }
  return absl::OkStatus();
}

absl::Status IncomingSession::WaitRoundComplete(uint32_t round, int64_t timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t seen = progress_;
  for (;;) {
    if (!error_.ok()) return error_;
    if (closing_) return absl::CancelledError("data path closed");
    bool all = true;
    std::string behind;
    for (size_t i = 0; i < conns_.size(); ++i) {
      const auto& c = conns_[i];
      uint32_t done = c ? c->round_done : 0;
      if (done >= round) continue;
      all = false;
      if (c && c->ended) {
        return absl::DataLossError(absl::StrCat("data connection ", i, " closed after round ", done,
                                                " but the source ended round ", round));
      }
      if (behind.empty()) {
        behind = c ? absl::StrCat("data connection ", i, " is at round ", done + 1)
                   : absl::StrCat("data connection ", i, " never connected");
      }
    }
    if (all) return absl::OkStatus();
    if (cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms)) == std::cv_status::timeout && progress_ == seen) {
      return absl::DeadlineExceededError(absl::StrCat("no page arrived for ", timeout_ms / 1000.0,
                                                      " s waiting for the end of round ", round, " (", behind, ")"));
    }
    seen = progress_;
  }
}

}  // namespace ferry
