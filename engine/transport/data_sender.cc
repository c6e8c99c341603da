#include "engine/transport/data_sender.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/page.h"
#include "engine/transport/data_handshake.h"
#include "engine/transport/sealed_stream.h"
#include "engine/transport/uring_socket.h"

namespace ferry {
namespace {

constexpr uint64_t kChunkPages = 256;  // 1 MiB of the bitmap per work item
constexpr size_t kTableBytes = kDataHeaderBytes + size_t{kMaxRunsPerFrame} * kDataRunBytes;

absl::StatusOr<UniqueFd> ConnectTcp(const std::string& host, uint16_t port, int64_t timeout_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int rc = getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  absl::Status last = absl::UnavailableError(absl::StrCat("no address for ", host));
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) {
      last = ErrnoError("socket");
      continue;
    }
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = ErrnoError(absl::StrCat("connecting to the data port ", host, ":", port));
      continue;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout_ms));
    int err = 0;
    socklen_t len = sizeof(err);
    if (n == 1) getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (n != 1 || err != 0) {
      last = n == 1 ? ErrnoError(absl::StrCat("connecting to the data port ", host, ":", port), err)
                    : absl::DeadlineExceededError(absl::StrCat("connecting to the data port ", host, ":", port,
                                                               " timed out"));
      continue;
    }
    int flags = fcntl(fd.get(), F_GETFL);
    fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  return last;
}

// Reads `n` bytes of a disk at `offset`; what lies past its end reads as zero.
absl::Status ReadDisk(const RoundDisk& d, uint8_t* buf, size_t n, uint64_t offset) {
  size_t done = 0;
  const size_t in_disk = offset >= d.bytes ? 0 : static_cast<size_t>(std::min<uint64_t>(n, d.bytes - offset));
  while (done < in_disk) {
    ssize_t r = pread(d.fd, buf + done, in_disk - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError(absl::StrCat("cannot read disk ", d.disk, " to send it"));
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  std::memset(buf + done, 0, n - done);
  return absl::OkStatus();
}

void SetTimeouts(int fd, int64_t ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

}  // namespace

// One connection: its socket, ring, sealer, and two frame slots (one in flight, one being built).
struct DataSender::Conn {
  uint32_t index = 0;
  std::string name;
  UniqueFd fd;
  std::unique_ptr<UringSocket> io;
  std::optional<RecordSealer> sealer;
  std::thread thread;
  uint64_t frames = 0;
  struct Slot {
    std::vector<uint8_t> table;   // header + run table (plaintext), or both sealed records
    std::vector<iovec> iov;
    size_t bytes = 0;
    std::vector<uint8_t> disk_data;  // a disk frame's blocks, read from the disk file (1 MiB)
  };
  Slot slots[2];
  int next_slot = 0;
  RoundCounters counters;  // this round's, merged by SendRound
};

// What one round asks of the connections.
struct DataSender::Round {
  const GuestMemory* mem = nullptr;
  const DirtyBitmap* pages = nullptr;
  const DirtyBitmap* populated = nullptr;
  uint32_t round = 0;
  uint64_t num_chunks = 0;
  std::atomic<uint64_t> next_chunk{0};
  std::vector<WireRun> holes;  // sent by connection 0
  std::span<const RoundDisk> disks;
  std::vector<std::pair<uint32_t, uint64_t>> disk_chunks;  // (position in disks, chunk) with blocks to send
  std::atomic<uint64_t> next_disk_chunk{0};
  LinkShareMembership* share = nullptr;  // this round's place in the host's link share
};

DataSender::DataSender(DataSenderOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<DataSender>> DataSender::Connect(const std::string& host, uint16_t port,
                                                                DataSenderOptions options) {
  if (options.connections == 0 || options.connections > 16) {
    return absl::InvalidArgumentError(absl::StrCat("data connections must be 1..16, not ", options.connections));
  }
  std::unique_ptr<DataSender> s(new DataSender(std::move(options)));
  const DataSenderOptions& o = s->options_;
  s->zero_copy_ = o.zero_copy && !o.encrypted && !o.assume_no_zero_copy && KernelHasSendZeroCopy();
  std::optional<MigrationKey> key;
  if (o.encrypted) {
    ASSIGN_OR_RETURN(MigrationKey k, MigrationKey::FromString(o.secret));
    key = k;
  }
  for (uint32_t i = 0; i < o.connections; ++i) {
    auto c = std::make_unique<Conn>();
    c->index = i;
    c->name = absl::StrCat("data connection ", i);
    ASSIGN_OR_RETURN(c->fd, ConnectTcp(host, port, o.connect_timeout_ms));
    int one = 1;
    setsockopt(c->fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SetTimeouts(c->fd.get(), o.connect_timeout_ms);
    RETURN_IF_ERROR(ClientHandshake(c->fd.get(), o.secret, i, o.migration_id));
    SetTimeouts(c->fd.get(), 0);
    if (key) {
      ASSIGN_OR_RETURN(RecordSealer sealer, RecordSealer::Create(*key, i, SealDirection::kSourceToDestination));
      c->sealer.emplace(std::move(sealer));
    }
    ASSIGN_OR_RETURN(c->io, UringSocket::Create(c->fd.get(), o.stall_timeout_ms, "data connection"));
    size_t slot_bytes = o.encrypted ? kTableBytes + 2 * kSealOverheadBytes + kMaxDataPagesPerFrame * kPageSize
                                    : kTableBytes;
    for (auto& slot : c->slots) slot.table.resize(slot_bytes);
    s->conns_.push_back(std::move(c));
  }
  for (auto& c : s->conns_) {
    Conn* conn = c.get();
    DataSender* self = s.get();
    conn->thread = std::thread([self, conn] { self->Loop(*conn); });
  }
  return s;
}

DataSender::~DataSender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& c : conns_) {
    if (c->thread.joinable()) c->thread.join();
  }
  // Sockets close with the Conns: the destination sees end of stream at a frame boundary.
}

void DataSender::Cancel() {
  // Prompt even while a thread waits on the network: the connections are finished either way.
  if (cancel_.exchange(true)) return;
  ShutdownAll();
}

void DataSender::SetMaxBandwidth(double mibps) {
  std::lock_guard<std::mutex> lock(limiter_mu_);
  if (mibps == max_mibps_) return;
  max_mibps_ = mibps;
  limiter_ = mibps > 0 ? std::make_unique<BandwidthLimiter>(mibps) : nullptr;
}

void DataSender::ShutdownAll() {
  for (auto& c : conns_) c->io->Shutdown();
}

void DataSender::Fail(const absl::Status& st) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.ok()) error_ = st;
  }
  ShutdownAll();
}

absl::Status DataSender::SendRound(const GuestMemory& mem, const DirtyBitmap& pages, uint32_t round,
                                   const DirtyBitmap* populated, std::span<const RoundDisk> disks,
                                   RoundCounters& out) {
  LinkShareMembership share(options_.link_share, options_.link_weight, options_.migration_id);
  Round r;
  r.share = &share;
  r.mem = &mem;
  r.pages = &pages;
  r.populated = populated;
  r.round = round;
  r.num_chunks = (pages.num_pages() + kChunkPages - 1) / kChunkPages;
  r.disks = disks;
  for (uint32_t i = 0; i < disks.size(); ++i) {
    const auto words = disks[i].blocks->words();
    for (uint64_t w = 0; w < words.size(); w += kChunkPages / 64) {
      bool any = false;
      for (uint64_t k = w; k < std::min<uint64_t>(w + kChunkPages / 64, words.size()) && !any; ++k) any = words[k] != 0;
      if (any) r.disk_chunks.emplace_back(i, w / (kChunkPages / 64));
    }
  }
  if (populated) {
    // Never-touched ranges travel as one zero run each, unread.
    DirtyBitmap holes(pages.num_pages());
    for (size_t w = 0; w < holes.words().size(); ++w) holes.words()[w] = pages.words()[w] & ~populated->words()[w];
    holes.ForEachRun([&](uint64_t first, uint64_t count) {
      for (uint64_t at = first; at < first + count; at += UINT32_MAX) {
        r.holes.push_back(WireRun{at, static_cast<uint32_t>(std::min<uint64_t>(first + count - at, UINT32_MAX)), kRunZero});
      }
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!error_.ok()) return error_;
    for (auto& c : conns_) c->counters = RoundCounters{};
    round_ = &r;
    done_ = 0;
    ++generation_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return done_ == conns_.size(); });
    round_ = nullptr;
    for (auto& c : conns_) {
      out.pages += c->counters.pages;
      out.zero_pages += c->counters.zero_pages;
      out.hole_pages += c->counters.hole_pages;
      out.data_bytes += c->counters.data_bytes;
      out.wire_bytes += c->counters.wire_bytes;
      out.disk_blocks += c->counters.disk_blocks;
      out.disk_zero_blocks += c->counters.disk_zero_blocks;
      out.disk_data_bytes += c->counters.disk_data_bytes;
    }
    if (!error_.ok()) return error_;
  }
  if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
  return absl::OkStatus();
}

void DataSender::Loop(Conn& c) {
  uint64_t seen = 0;
  for (;;) {
    Round* r = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      r = round_;
    }
    bool failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failed = !error_.ok();
    }
    if (!failed) {
      absl::Status st = SendWork(c, *r);
      if (!st.ok()) Fail(st);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++done_;
    }
    cv_.notify_all();
  }
}

// Builds frames into slots and keeps one send in flight while the next frame is built.
absl::Status DataSender::SendWork(Conn& c, Round& r) {
  const bool sealed = c.sealer.has_value();
  std::vector<WireRun> runs;
  runs.reserve(kMaxRunsPerFrame);
  uint32_t data_pages = 0;
  uint32_t frame_disk = 0;  // the disk whose blocks the frame being built holds (disk frames)

  auto emit = [&](FrameType type) -> absl::Status {
    if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
    Conn::Slot& slot = c.slots[c.next_slot];
    c.next_slot ^= 1;
    FrameHeader h;
    h.type = type;
    h.run_count = static_cast<uint16_t>(runs.size());
    h.round = r.round;
    h.data_pages = data_pages;
    h.index = c.frames++;
    h.disk = frame_disk;
    // Header and run table, in plaintext at the start of the slot (or past the record header).
    uint8_t* table = slot.table.data() + (sealed ? kSealHeaderBytes : 0);
    EncodeFrameHeader(h, table);
    for (size_t i = 0; i < runs.size(); ++i) EncodeRun(runs[i], table + kDataHeaderBytes + i * kDataRunBytes);
    size_t table_bytes = kDataHeaderBytes + runs.size() * kDataRunBytes;
    slot.iov.clear();
    std::vector<iovec> data;
    size_t data_bytes = size_t{data_pages} * kPageSize;
    if (type == FrameType::kDiskBatch) {
      // The blocks were read into this slot's buffer back to back, in the order of the runs.
      if (data_bytes > 0) data.push_back(iovec{slot.disk_data.data(), data_bytes});
    } else {
      for (const WireRun& run : runs) {
        if (run.zero()) continue;
        data.push_back(iovec{const_cast<uint8_t*>(r.mem->page(run.first_page)), run.count * kPageSize});
      }
    }
    if (sealed) {
      RETURN_IF_ERROR(c.sealer->SealInPlace(slot.table.data(), table_bytes));
      size_t at = kSealOverheadBytes + table_bytes;
      if (data_bytes > 0) {
        RETURN_IF_ERROR(c.sealer->SealGather(data.data(), data.size(), data_bytes, slot.table.data() + at));
        at += kSealOverheadBytes + data_bytes;
      }
      slot.iov.push_back(iovec{slot.table.data(), at});
      slot.bytes = at;
    } else {
      slot.iov.push_back(iovec{slot.table.data(), table_bytes});
      slot.iov.insert(slot.iov.end(), data.begin(), data.end());
      slot.bytes = table_bytes + data_bytes;
    }
    r.share->Acquire(slot.bytes);  // concurrent migrations take turns by weight
    {
      std::lock_guard<std::mutex> lock(limiter_mu_);
      if (limiter_) limiter_->Consume(slot.bytes);
    }
    RETURN_IF_ERROR(c.io->WaitSend());
    RETURN_IF_ERROR(c.io->StartSend(slot.iov.data(), slot.iov.size(), slot.bytes, zero_copy_ && data_bytes > 0));
    c.counters.wire_bytes += slot.bytes;
    (type == FrameType::kDiskBatch ? c.counters.disk_data_bytes : c.counters.data_bytes) += data_bytes;
    runs.clear();
    data_pages = 0;
    return absl::OkStatus();
  };
  auto add_run = [&](WireRun run) -> absl::Status {
    while (run.count > 0) {
      uint32_t take = run.count;
      if (!run.zero()) take = std::min(take, kMaxDataPagesPerFrame - data_pages);
      if (take == 0 || runs.size() == kMaxRunsPerFrame) {
        RETURN_IF_ERROR(emit(FrameType::kBatch));
        continue;
      }
      if (!runs.empty() && runs.back().flags == run.flags &&
          runs.back().first_page + runs.back().count == run.first_page &&
          uint64_t{runs.back().count} + take <= UINT32_MAX) {
        runs.back().count += take;  // contiguous with the last run: extend it
      } else {
        runs.push_back(WireRun{run.first_page, take, run.flags});
      }
      c.counters.pages += take;
      if (run.zero()) c.counters.zero_pages += take;
      if (!run.zero()) data_pages += take;
      run.first_page += take;
      run.count -= take;
    }
    return absl::OkStatus();
  };

  // Disk blocks first: read from the disk files into the slot being built, zero blocks kept as
  // markers, at most one frame's worth per read (a frame never spans two disks).
  for (;;) {
    uint64_t item = r.next_disk_chunk.fetch_add(1, std::memory_order_relaxed);
    if (item >= r.disk_chunks.size()) break;
    if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
    const RoundDisk& d = r.disks[r.disk_chunks[item].first];
    if (!runs.empty() && frame_disk != d.disk) RETURN_IF_ERROR(emit(FrameType::kDiskBatch));
    frame_disk = d.disk;
    const uint64_t num_blocks = d.blocks->num_pages();
    const uint64_t chunk_end = std::min(num_blocks, (r.disk_chunks[item].second + 1) * kChunkPages);
    uint64_t blk = r.disk_chunks[item].second * kChunkPages;
    while (blk < chunk_end) {
      if (!d.blocks->Test(blk)) {
        ++blk;
        continue;
      }
      uint64_t end = blk + 1;
      while (end < chunk_end && d.blocks->Test(end)) ++end;
      while (blk < end) {
        // Each block adds at most one run: never more than the frame still holds.
        uint64_t take = std::min<uint64_t>({end - blk, kMaxDataPagesPerFrame - data_pages, kMaxRunsPerFrame - runs.size()});
        if (take == 0) {
          RETURN_IF_ERROR(emit(FrameType::kDiskBatch));
          continue;
        }
        std::vector<uint8_t>& buf = c.slots[c.next_slot].disk_data;
        if (buf.size() < size_t{kMaxDataPagesPerFrame} * kPageSize) buf.resize(size_t{kMaxDataPagesPerFrame} * kPageSize);
        uint8_t* at = buf.data() + size_t{data_pages} * kPageSize;
        RETURN_IF_ERROR(ReadDisk(d, at, take * kPageSize, blk * kPageSize));
        for (uint64_t i = 0; i < take; ++i) {
          const uint8_t* block = at + i * kPageSize;
          const bool zero = IsZeroPage(block);
          uint8_t* dst = buf.data() + size_t{data_pages} * kPageSize;
          if (!zero && dst != block) std::memmove(dst, block, kPageSize);
          const uint32_t flags = zero ? kRunZero : 0u;
          if (!runs.empty() && runs.back().flags == flags && runs.back().first_page + runs.back().count == blk + i) {
            ++runs.back().count;
          } else {
            runs.push_back(WireRun{blk + i, 1, flags});
          }
          ++c.counters.disk_blocks;
          if (zero) ++c.counters.disk_zero_blocks;
          if (!zero) ++data_pages;
        }
        blk += take;
      }
    }
  }
  if (!runs.empty()) RETURN_IF_ERROR(emit(FrameType::kDiskBatch));

  if (c.index == 0) {
    for (const WireRun& hole : r.holes) {
      c.counters.hole_pages += hole.count;
      RETURN_IF_ERROR(add_run(hole));
    }
  }
  const auto words = r.pages->words();
  const uint64_t num_pages = r.pages->num_pages();
  for (;;) {
    uint64_t chunk = r.next_chunk.fetch_add(1, std::memory_order_relaxed);
    if (chunk >= r.num_chunks) break;
    if (cancel_.load()) return absl::CancelledError("migration cancelled by request");
    for (uint64_t w = chunk * (kChunkPages / 64); w < std::min<uint64_t>((chunk + 1) * (kChunkPages / 64), words.size()); ++w) {
      uint64_t bits = words[w];
      if (r.populated) bits &= r.populated->words()[w];
      while (bits != 0) {
        // One run of set bits within this word, then split it by zero pages.
        int lo = __builtin_ctzll(bits);
        uint64_t shifted = bits >> lo;
        int len = shifted == ~0ull ? 64 - lo : __builtin_ctzll(~shifted);
        uint64_t first = w * 64 + lo;
        uint64_t end = std::min<uint64_t>(first + len, num_pages);
        bits &= len == 64 ? 0 : ~(((1ull << len) - 1) << lo);
        uint64_t p = first;
        while (p < end) {
          bool zero = IsZeroPage(r.mem->page(p));
          uint64_t q = p + 1;
          while (q < end && IsZeroPage(r.mem->page(q)) == zero) ++q;
          RETURN_IF_ERROR(add_run(WireRun{p, static_cast<uint32_t>(q - p), zero ? kRunZero : 0u}));
          p = q;
        }
      }
    }
  }
  if (!runs.empty()) RETURN_IF_ERROR(emit(FrameType::kBatch));
  RETURN_IF_ERROR(emit(FrameType::kRoundEnd));
  RETURN_IF_ERROR(c.io->WaitSend());
  // The round ends when the destination has applied it on every connection.
  uint8_t ack[kAckBytes];
  iovec iov{ack, sizeof(ack)};
  RETURN_IF_ERROR(c.io->RecvAll(&iov, 1, sizeof(ack), false, true).status());
  return DecodeAck(ack, r.round);
}

}  // namespace ferry
