// The protocol-2 data path end to end in one process: a DataListener on loopback, an
// IncomingSession writing into real guest memory, a DataSender (or a hand-driven raw client that
// completes the real handshake) on the other side. Covers byte-exact delivery across rounds and
// connection counts, every bad-input rule of a data connection, a destination that goes away
// mid-round, and the round barrier that keeps a stale copy from overwriting a newer one. A
// storage migration's disk frames: blocks land in the destination's disk file byte for byte
// beside the pages, and a block outside the disk is refused before anything is written.
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/unique_fd.h"
#include "engine/memory/dirty_bitmap.h"
#include "engine/memory/guest_memory.h"
#include "engine/memory/page.h"
#include "engine/migration/disk_copy.h"
#include "engine/transport/data_handshake.h"
#include "engine/transport/data_listener.h"
#include "engine/transport/data_receiver.h"
#include "engine/transport/data_sender.h"
#include "engine/transport/data_wire.h"
#include "engine/transport/sealed_stream.h"
#include "engine/transport/uring_socket.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kId = "vm-17-migration-3";

// 32 bytes: the proof's HMAC key and, for sealed connections, the migration key.
std::string Secret(char c = 's') { return std::string(32, c); }

std::unique_ptr<GuestMemory> NewMemory(uint64_t pages) {
  auto m = GuestMemory::Create(pages * kPageSize);
  if (!m.ok()) {
    ADD_FAILURE() << m.status();
    std::abort();
  }
  return std::move(*m);
}

// Every word of a data page names its generation and page, so a stale or misplaced page shows.
void WritePage(GuestMemory& m, uint64_t page, uint32_t gen) {
  auto* w = reinterpret_cast<uint64_t*>(m.page(page));
  for (uint64_t i = 0; i < kPageSize / 8; ++i) w[i] = (uint64_t{gen} << 40) | (page << 10) | i;
}

uint32_t GenerationOf(const GuestMemory& m, uint64_t page) {
  uint64_t w;
  std::memcpy(&w, m.page(page), 8);
  return static_cast<uint32_t>(w >> 40);
}

std::vector<uint8_t> PageData(uint64_t first_page, uint32_t count, uint32_t gen) {
  auto tmp = NewMemory(first_page + count);
  std::vector<uint8_t> out;
  for (uint64_t p = first_page; p < first_page + count; ++p) {
    WritePage(*tmp, p, gen);
    out.insert(out.end(), tmp->page(p), tmp->page(p) + kPageSize);
  }
  return out;
}

IncomingOptions Incoming(uint32_t connections, bool encrypted) {
  IncomingOptions o;
  o.migration_id = kId;
  o.secret = Secret();
  o.connections = connections;
  o.encrypted = encrypted;
  return o;
}

DataSenderOptions Outgoing(uint32_t connections, bool encrypted) {
  DataSenderOptions o;
  o.migration_id = kId;
  o.secret = Secret();
  o.connections = connections;
  o.encrypted = encrypted;
  return o;
}

std::unique_ptr<DataListener> StartListener() {
  auto l = DataListener::Start("127.0.0.1", 0);
  if (!l.ok()) {
    ADD_FAILURE() << l.status();
    std::abort();
  }
  EXPECT_NE((*l)->port(), 0);
  return std::move(*l);
}

// Collects what a session reports through on_error. Declare it before the session it watches.
class ErrorLog {
 public:
  std::function<void(const absl::Status&)> Callback() {
    return [this](const absl::Status& st) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        errors_.push_back(st);
      }
      cv_.notify_all();
    };
  }
  absl::Status WaitFirst(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !errors_.empty(); });
    return errors_.empty() ? absl::OkStatus() : errors_.front();
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> errors_;
};

// --- raw clients: the real handshake, then hand-made frames --------------------------------

UniqueFd Dial(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

UniqueFd Join(uint16_t port, uint32_t index, const std::string& secret = Secret()) {
  UniqueFd fd = Dial(port);
  absl::Status st = ClientHandshake(fd.get(), secret, index, kId);
  EXPECT_TRUE(st.ok()) << st;
  return fd;
}

bool SendBytes(int fd, const std::vector<uint8_t>& b, size_t n = SIZE_MAX) {
  n = std::min(n, b.size());
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::send(fd, b.data() + done, n - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

// True once the destination has closed (or reset) the connection, within `timeout`.
bool PeerClosed(int fd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    uint8_t b[64];
    ssize_t r = ::recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
  return false;
}

std::vector<uint8_t> Table(FrameType type, uint32_t round, uint64_t index, const std::vector<WireRun>& runs,
                           uint32_t data_pages) {
  FrameHeader h;
  h.type = type;
  h.run_count = static_cast<uint16_t>(runs.size());
  h.round = round;
  h.data_pages = data_pages;
  h.index = index;
  std::vector<uint8_t> t(kDataHeaderBytes + runs.size() * kDataRunBytes);
  EncodeFrameHeader(h, t.data());
  for (size_t i = 0; i < runs.size(); ++i) EncodeRun(runs[i], t.data() + kDataHeaderBytes + i * kDataRunBytes);
  return t;
}

std::vector<uint8_t> PlainFrame(uint32_t round, uint64_t index, const std::vector<WireRun>& runs,
                                const std::vector<uint8_t>& data) {
  std::vector<uint8_t> f = Table(FrameType::kBatch, round, index, runs, static_cast<uint32_t>(data.size() / kPageSize));
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

std::vector<uint8_t> RoundEnd(uint32_t round, uint64_t index) {
  return Table(FrameType::kRoundEnd, round, index, {}, 0);
}

RecordSealer SealerFor(uint32_t connection) {
  auto key = MigrationKey::FromString(Secret());
  EXPECT_TRUE(key.ok());
  auto s = RecordSealer::Create(*key, connection, SealDirection::kSourceToDestination);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

// A sealed frame: the table as one record, the page data as a second one. `table_record` and
// `data_record` (when given) receive the two records separately.
std::vector<uint8_t> SealedFrame(RecordSealer& sealer, uint32_t round, uint64_t index, const std::vector<WireRun>& runs,
                                 const std::vector<uint8_t>& data, std::vector<uint8_t>* table_record = nullptr,
                                 std::vector<uint8_t>* data_record = nullptr) {
  std::vector<uint8_t> table =
      Table(FrameType::kBatch, round, index, runs, static_cast<uint32_t>(data.size() / kPageSize));
  std::vector<uint8_t> a, b;
  EXPECT_TRUE(sealer.Seal(table.data(), table.size(), a).ok());
  if (!data.empty()) {
    EXPECT_TRUE(sealer.Seal(data.data(), data.size(), b).ok());
  }
  if (table_record) *table_record = a;
  if (data_record) *data_record = b;
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// --- byte-exact delivery -----------------------------------------------------------------

struct PathCase {
  const char* name;
  uint32_t connections;
  bool encrypted;
  bool zero_copy;
  bool assume_no_zero_copy;
  bool round1_through_mapping = false;  // IncomingOptions::fresh_pages_through_file off
};

class DataPathDeliveryTest : public ::testing::TestWithParam<PathCase> {};

// Overhead bounds for a round: at least a round-end frame per connection and one batch header
// (plus the record overhead when sealed); at most a header, a run and two records per page.
void ExpectWireBytes(const RoundCounters& c, uint32_t connections, bool encrypted) {
  uint64_t frame = kDataHeaderBytes + (encrypted ? kSealOverheadBytes : 0);
  EXPECT_GE(c.wire_bytes, c.data_bytes + frame * (connections + 1) + kDataRunBytes);
  EXPECT_LE(c.wire_bytes, c.data_bytes + c.pages * (frame + kDataRunBytes + kSealOverheadBytes) +
                              connections * frame);
  EXPECT_EQ((c.wire_bytes - c.data_bytes) % 16, 0u);  // headers, runs and record overhead
}

TEST_P(DataPathDeliveryTest, ThreeRoundsArriveByteForByte) {
  const PathCase& pc = GetParam();
  constexpr uint64_t kPages = 2048 + 77;  // 9 chunks, the last one partial
  auto src = NewMemory(kPages);
  auto dst = NewMemory(kPages);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(pc.connections, pc.encrypted);
  in.on_error = errors.Callback();
  in.fresh_pages_through_file = !pc.round1_through_mapping;
  auto session = listener->Expect(in, *dst);
  DataSenderOptions out = Outgoing(pc.connections, pc.encrypted);
  out.zero_copy = pc.zero_copy;
  out.assume_no_zero_copy = pc.assume_no_zero_copy;
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), out);
  ASSERT_TRUE(sender.ok()) << sender.status();
  EXPECT_EQ((*sender)->connections(), pc.connections);
  EXPECT_EQ((*sender)->encrypted(), pc.encrypted);
  if (pc.zero_copy && !pc.assume_no_zero_copy && !pc.encrypted) {
    EXPECT_EQ((*sender)->zero_copy(), KernelHasSendZeroCopy());
  } else {
    EXPECT_FALSE((*sender)->zero_copy());
  }

  // Round 1: data, explicit zero pages, and never-touched holes (single pages and long ranges).
  std::vector<bool> touched(kPages, false);
  uint64_t data = 0, zeros = 0;
  auto put = [&](uint64_t p, uint32_t gen) {
    WritePage(*src, p, gen);
    touched[p] = true;
  };
  auto zero = [&](uint64_t p) {
    std::memset(src->page(p), 0, kPageSize);
    touched[p] = true;
  };
  for (uint64_t p = 0; p < 600; ++p) {
    if (p % 7 == 3) {
      zero(p);
    } else {
      put(p, 1);
    }
  }
  for (uint64_t p = 1000; p < 1500; p += 2) put(p, 1);  // odd pages stay holes
  put(kPages - 1, 1);
  for (uint64_t p = 0; p < kPages; ++p) {
    if (!touched[p]) continue;
    if (IsZeroPage(src->page(p))) {
      ++zeros;
    } else {
      ++data;
    }
  }
  const uint64_t holes = kPages - data - zeros;
  DirtyBitmap populated(kPages);
  src->MarkPopulatedPages(populated);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(populated.Test(p), touched[p]) << "page " << p;
  DirtyBitmap all(kPages);
  all.SetAll();
  RoundCounters c1;
  absl::Status st = (*sender)->SendRound(*src, all, 1, &populated, {}, c1);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(c1.pages, kPages);
  EXPECT_EQ(c1.hole_pages, holes);
  EXPECT_EQ(c1.zero_pages, holes + zeros);
  EXPECT_EQ(c1.data_bytes, data * kPageSize);
  ExpectWireBytes(c1, pc.connections, pc.encrypted);
  // Holes travel unread: the source's memfd still has them.
  DirtyBitmap after(kPages);
  src->MarkPopulatedPages(after);
  EXPECT_EQ(after.Count(), data + zeros);
  // The destination holds exactly round 1's data pages: zero pages and holes allocate nothing,
  // whichever way the pages were written.
  DirtyBitmap landed(kPages);
  dst->MarkPopulatedPages(landed);
  EXPECT_EQ(landed.Count(), data);

  // Round 2: new data, data turned to zero, holes filled, a hole written with zeros.
  DirtyBitmap d2(kPages);
  uint64_t data2 = 0, zeros2 = 0;
  auto write2 = [&](uint64_t p) {
    WritePage(*src, p, 2);
    d2.Set(p);
    ++data2;
  };
  auto zero2 = [&](uint64_t p) {
    std::memset(src->page(p), 0, kPageSize);
    d2.Set(p);
    ++zeros2;
  };
  for (uint64_t p = 0; p < 100; ++p) write2(p);
  for (uint64_t p = 100; p < 150; ++p) zero2(p);
  for (uint64_t p = 600; p < 620; ++p) write2(p);
  zero2(1001);
  write2(kPages - 1);
  RoundCounters c2;
  st = (*sender)->SendRound(*src, d2, 2, nullptr, {}, c2);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(c2.pages, data2 + zeros2);
  EXPECT_EQ(c2.zero_pages, zeros2);
  EXPECT_EQ(c2.hole_pages, 0u);
  EXPECT_EQ(c2.data_bytes, data2 * kPageSize);
  ExpectWireBytes(c2, pc.connections, pc.encrypted);

  // Round 3: zero what round 2 wrote, rewrite what it zeroed, resend an unchanged page.
  DirtyBitmap d3(kPages);
  for (uint64_t p = 0; p < 10; ++p) {
    std::memset(src->page(p), 0, kPageSize);
    d3.Set(p);
  }
  for (uint64_t p = 100; p < 110; ++p) {
    WritePage(*src, p, 3);
    d3.Set(p);
  }
  d3.Set(300);
  WritePage(*src, 2000, 3);
  d3.Set(2000);
  RoundCounters c3;
  st = (*sender)->SendRound(*src, d3, 3, nullptr, {}, c3);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(c3.pages, 22u);
  EXPECT_EQ(c3.zero_pages, 10u);
  EXPECT_EQ(c3.data_bytes, 12 * kPageSize);

  st = session->WaitRoundComplete(3, 10000);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(session->pages_received(), c1.pages + c2.pages + c3.pages);
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(0, std::memcmp(src->page(p), dst->page(p), kPageSize)) << "page " << p;
  }
  EXPECT_EQ(errors.count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Paths, DataPathDeliveryTest,
    ::testing::Values(PathCase{"Plain1", 1, false, false, false}, PathCase{"Plain2", 2, false, false, false},
                      PathCase{"Plain4", 4, false, false, false}, PathCase{"Sealed1", 1, true, false, false},
                      PathCase{"Sealed2", 2, true, false, false}, PathCase{"Sealed4", 4, true, false, false},
                      PathCase{"ZeroCopy1", 1, false, true, false}, PathCase{"ZeroCopy4", 4, false, true, false},
                      PathCase{"ZeroCopyFallback2", 2, false, true, true},
                      // zero_copy is plaintext only: asking for it sealed copies.
                      PathCase{"ZeroCopySealed2", 2, true, true, false},
                      // round 1 received straight into the mapping, as later rounds are
                      PathCase{"Plain2Mapped", 2, false, false, false, true},
                      PathCase{"Sealed2Mapped", 2, true, false, false, true}),
    [](const ::testing::TestParamInfo<PathCase>& i) { return std::string(i.param.name); });

// --- connections that do not belong ---------------------------------------------------------

// The listener counts a refusal after it sent the verdict; the client may read it first.
bool WaitRefused(const DataListener& l, uint64_t n) {
  auto deadline = Clock::now() + 3s;
  while (l.refused() < n && Clock::now() < deadline) std::this_thread::sleep_for(2ms);
  return l.refused() == n;
}

// One round of a few pages over a fresh sender, checked byte for byte: the session still works.
void ExpectSessionWorks(DataListener& l, IncomingPages& session, GuestMemory& dst, bool encrypted) {
  auto src = NewMemory(dst.num_pages());
  for (uint64_t p = 0; p < dst.num_pages(); p += 3) WritePage(*src, p, 9);
  auto sender = DataSender::Connect("127.0.0.1", l.port(), Outgoing(1, encrypted));
  ASSERT_TRUE(sender.ok()) << sender.status();
  DirtyBitmap all(dst.num_pages());
  all.SetAll();
  RoundCounters c;
  ASSERT_TRUE((*sender)->SendRound(*src, all, 1, nullptr, {}, c).ok());
  absl::Status st = session.WaitRoundComplete(1, 5000);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(0, std::memcmp(src->data(), dst.data(), dst.size()));
}

TEST(DataPathTest, WrongSecretIsRefusedNamingTheProofAndDeliversNothing) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, true);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  DataSenderOptions out = Outgoing(1, true);
  out.secret = Secret('w');
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), out);
  ASSERT_FALSE(sender.ok());
  EXPECT_EQ(sender.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(sender.status().message(), HasSubstr("refused data connection 0"));
  EXPECT_THAT(sender.status().message(), HasSubstr("proof of the migration secret is wrong"));
  EXPECT_TRUE(WaitRefused(*listener, 1));
  EXPECT_EQ(session->pages_received(), 0u);
  EXPECT_EQ(errors.count(), 0u);
  ExpectSessionWorks(*listener, *session, *dst, true);
}

TEST(DataPathTest, UnknownMigrationIsRefused) {
  auto dst = NewMemory(64);
  auto listener = StartListener();
  auto session = listener->Expect(Incoming(1, false), *dst);
  DataSenderOptions out = Outgoing(1, false);
  out.migration_id = "some-other-migration";
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), out);
  ASSERT_FALSE(sender.ok());
  EXPECT_EQ(sender.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(sender.status().message(), HasSubstr("no such migration is expecting data connections"));
  EXPECT_TRUE(WaitRefused(*listener, 1));

  // Once its handle is gone, the migration is unknown too.
  session.reset();
  sender = DataSender::Connect("127.0.0.1", listener->port(), Outgoing(1, false));
  ASSERT_FALSE(sender.ok());
  EXPECT_THAT(sender.status().message(), HasSubstr("no such migration"));
  EXPECT_TRUE(WaitRefused(*listener, 2));
}

TEST(DataPathTest, ClientThatNeverSendsItsHelloIsDroppedAndHarmsNoSession) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd silent = Dial(listener->port());
  std::vector<uint8_t> hello(kServerHelloBytes);
  ASSERT_EQ(::recv(silent.get(), hello.data(), hello.size(), MSG_WAITALL), static_cast<ssize_t>(hello.size()));
  ASSERT_TRUE(DecodeServerHello(hello.data()).ok());
  // The migration goes on while the silent client waits.
  ExpectSessionWorks(*listener, *session, *dst, false);
  // Dropped after the handshake timeout, without a verdict and without counting as a refusal.
  auto start = Clock::now();
  uint8_t b;
  ssize_t r = -1;
  while (Clock::now() - start < 8s) {
    r = ::recv(silent.get(), &b, 1, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    break;
  }
  EXPECT_EQ(r, 0) << std::strerror(errno);
  EXPECT_LT(Clock::now() - start, 8s);
  EXPECT_EQ(listener->refused(), 0u);
  EXPECT_EQ(errors.count(), 0u);
}

TEST(DataPathTest, DuplicateOrOutOfRangeConnectionIndexIsRefused) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  for (uint32_t index : {0u, 2u, 1000u}) {
    UniqueFd dup = Dial(listener->port());
    absl::Status st = ClientHandshake(dup.get(), Secret(), index, kId);
    EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << index;
    EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("refused data connection ", index)));
    EXPECT_THAT(st.message(), HasSubstr("out of range or already connected"));
  }
  EXPECT_TRUE(WaitRefused(*listener, 3));
  // The first connection 0 is unharmed, and connection 1 can still join.
  UniqueFd c1 = Join(listener->port(), 1);
  ASSERT_TRUE(SendBytes(c0.get(), PlainFrame(1, 0, {{7, 1, 0}}, PageData(7, 1, 4))));
  ASSERT_TRUE(SendBytes(c0.get(), RoundEnd(1, 1)));
  ASSERT_TRUE(SendBytes(c1.get(), RoundEnd(1, 0)));
  absl::Status st = session->WaitRoundComplete(1, 5000);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(GenerationOf(*dst, 7), 4u);
  EXPECT_EQ(errors.count(), 0u);
}

// --- bad input on a proven connection ----------------------------------------------------------

TEST(DataPathTest, TamperedSealedRecordFailsAuthenticationOnce) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, true);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  UniqueFd c1 = Join(listener->port(), 1);
  RecordSealer s0 = SealerFor(0), s1 = SealerFor(1);
  ASSERT_TRUE(SendBytes(c0.get(), SealedFrame(s0, 1, 0, {{3, 1, 0}}, PageData(3, 1, 1))));
  std::vector<uint8_t> frame = SealedFrame(s1, 1, 0, {{4, 2, 0}}, PageData(4, 2, 1));
  frame[frame.size() - kSealTagBytes - 100] ^= 0x01;  // a ciphertext byte of the data record
  ASSERT_TRUE(SendBytes(c1.get(), frame));

  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("data connection 1"));
  EXPECT_THAT(st.message(), HasSubstr("failed authentication"));
  absl::Status wait = session->WaitRoundComplete(1, 1000);
  EXPECT_EQ(wait, st);
  // Both connections are dropped; the error is reported once.
  EXPECT_TRUE(PeerClosed(c0.get(), 2s));
  EXPECT_TRUE(PeerClosed(c1.get(), 2s));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(errors.count(), 1u);
}

TEST(DataPathTest, ReplayedSealedRecordIsRefused) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, true);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  RecordSealer s0 = SealerFor(0);
  std::vector<uint8_t> table_record;
  ASSERT_TRUE(SendBytes(c0.get(), SealedFrame(s0, 1, 0, {{3, 1, 0}}, PageData(3, 1, 1), &table_record)));
  ASSERT_TRUE(SendBytes(c0.get(), table_record));  // the first frame's table again
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("replayed sealed record on connection 0"));
  EXPECT_EQ(GenerationOf(*dst, 3), 1u);  // the genuine frame was applied
  EXPECT_EQ(session->pages_received(), 1u);
  EXPECT_TRUE(PeerClosed(c0.get(), 2s));
}

TEST(DataPathTest, ReplayedPlaintextFrameIsRefused) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  std::vector<uint8_t> frame = PlainFrame(1, 0, {{3, 1, 0}}, PageData(3, 1, 1));
  ASSERT_TRUE(SendBytes(c0.get(), frame));
  ASSERT_TRUE(SendBytes(c0.get(), frame));
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("frame 0 arrived where frame 1 was expected"));
  EXPECT_EQ(session->pages_received(), 1u);
}

TEST(DataPathTest, RunOutsideGuestMemoryIsRefusedAndWritesNothing) {
  constexpr uint64_t kPages = 64;
  auto dst = NewMemory(kPages);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  ASSERT_TRUE(SendBytes(c0.get(), PlainFrame(1, 0, {{0, 1, 0}}, PageData(0, 1, 1))));
  // A good run first, then one that ends past the last page.
  std::vector<uint8_t> bad = PlainFrame(1, 1, {{5, 1, 0}, {kPages - 1, 2, 0}}, PageData(0, 3, 7));
  SendBytes(c0.get(), bad);  // the destination may drop the connection before all of it is read
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("data connection 0"));
  EXPECT_THAT(st.message(), HasSubstr("pages 63..64 are outside guest memory of 64 pages"));
  EXPECT_EQ(GenerationOf(*dst, 0), 1u);
  for (uint64_t p = 1; p < kPages; ++p) {
    ASSERT_TRUE(IsZeroPage(dst->page(p))) << "page " << p << " was written";
  }
  EXPECT_EQ(session->pages_received(), 1u);
}

TEST(DataPathTest, ConnectionStallingInsidePageDataFails) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.stall_timeout_ms = 300;
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  std::vector<uint8_t> frame = PlainFrame(1, 0, {{3, 2, 0}}, PageData(3, 2, 1));
  auto start = Clock::now();
  ASSERT_TRUE(SendBytes(c0.get(), frame, kDataHeaderBytes + kDataRunBytes + 100));
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st.message(), HasSubstr("data connection 0"));
  EXPECT_THAT(st.message(), HasSubstr("no progress for 0.3 s"));
  EXPECT_GE(Clock::now() - start, 250ms);
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_TRUE(PeerClosed(c0.get(), 2s));
}

TEST(DataPathTest, ConnectionStallingInsideFrameHeaderFails) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.stall_timeout_ms = 300;
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  std::vector<uint8_t> frame = PlainFrame(1, 0, {{3, 1, 0}}, PageData(3, 1, 1));
  ASSERT_TRUE(SendBytes(c0.get(), frame, 10));  // a frame started: it must finish
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st.message(), HasSubstr("no progress"));
}

TEST(DataPathTest, IdleConnectionBetweenFramesIsNotAStall) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.stall_timeout_ms = 100;
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  ASSERT_TRUE(SendBytes(c0.get(), PlainFrame(1, 0, {{3, 1, 0}}, PageData(3, 1, 1))));
  std::this_thread::sleep_for(400ms);  // between frames the control stream decides, not the data path
  ASSERT_TRUE(SendBytes(c0.get(), RoundEnd(1, 1)));
  absl::Status st = session->WaitRoundComplete(1, 5000);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(errors.count(), 0u);
}

TEST(DataPathTest, ConnectionClosedInsideFrameFails) {
  for (bool encrypted : {false, true}) {
    SCOPED_TRACE(encrypted ? "sealed" : "plaintext");
    auto dst = NewMemory(64);
    ErrorLog errors;
    auto listener = StartListener();
    IncomingOptions in = Incoming(1, encrypted);
    in.on_error = errors.Callback();
    auto session = listener->Expect(in, *dst);
    UniqueFd c0 = Join(listener->port(), 0);
    RecordSealer s0 = SealerFor(0);
    std::vector<uint8_t> frame = encrypted ? SealedFrame(s0, 1, 0, {{3, 2, 0}}, PageData(3, 2, 1))
                                           : PlainFrame(1, 0, {{3, 2, 0}}, PageData(3, 2, 1));
    ASSERT_TRUE(SendBytes(c0.get(), frame, frame.size() - 1000));
    c0.Reset();
    absl::Status st = errors.WaitFirst(5s);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(st.message(), HasSubstr("data connection 0"));
    EXPECT_THAT(st.message(), HasSubstr("closed the connection in the middle of a frame"));
    EXPECT_EQ(session->pages_received(), 0u);
  }
}

TEST(DataPathTest, CleanCloseBeforeTheRoundEndNamesTheConnection) {
  auto dst = NewMemory(64);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  UniqueFd c1 = Join(listener->port(), 1);
  ASSERT_TRUE(SendBytes(c0.get(), RoundEnd(1, 0)));
  ASSERT_TRUE(SendBytes(c0.get(), RoundEnd(2, 1)));
  ASSERT_TRUE(SendBytes(c1.get(), RoundEnd(1, 0)));
  // Round 1 ended on both: each connection gets the destination's acknowledgement.
  for (int fd : {c0.get(), c1.get()}) {
    uint8_t ack[kAckBytes];
    ASSERT_EQ(::recv(fd, ack, sizeof(ack), MSG_WAITALL), static_cast<ssize_t>(sizeof(ack)));
    absl::Status st = DecodeAck(ack, 1);
    EXPECT_TRUE(st.ok()) << st;
  }
  c1.Reset();  // at a frame boundary: a clean end of stream, but round 2 never ended on it
  absl::Status st = session->WaitRoundComplete(1, 5000);
  EXPECT_TRUE(st.ok()) << st;
  st = session->WaitRoundComplete(2, 5000);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr("data connection 1 closed after round 1 but the source ended round 2"));
}

// --- the destination going away mid-round ------------------------------------------------

// The destination stops applying pages, so the sender blocks on a full socket; then it closes
// (`how`). SendRound must fail well before the 30 s stall timeout.
void ExpectSendRoundFailsPromptly(const std::function<void(std::unique_ptr<DataListener>&,
                                                           std::unique_ptr<IncomingPages>&)>& how) {
  constexpr uint64_t kPages = 64 * 256;  // 64 MiB: far more than the socket buffers hold
  auto src = NewMemory(kPages);
  auto dst = NewMemory(kPages);
  for (uint64_t p = 0; p < kPages; ++p) WritePage(*src, p, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<int> applying{0};
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, false);
  in.before_apply = [&](uint32_t, uint32_t) {
    applying.fetch_add(1);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 10s, [&] { return stop; });
  };
  auto session = listener->Expect(in, *dst);
  DataSenderOptions out = Outgoing(2, false);
  out.stall_timeout_ms = 8000;  // bounds a failing run; a prompt failure needs far less
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), out);
  ASSERT_TRUE(sender.ok()) << sender.status();
  DirtyBitmap all(kPages);
  all.SetAll();
  absl::Status result;
  std::atomic<bool> returned{false};
  Clock::time_point returned_at;
  std::thread round([&] {
    RoundCounters c;
    result = (*sender)->SendRound(*src, all, 1, nullptr, {}, c);
    returned_at = Clock::now();
    returned.store(true);
  });
  auto deadline = Clock::now() + 5s;
  while (applying.load() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(returned.load()) << "the round finished before the destination closed";
  auto closed_at = Clock::now();
  std::thread unblock([&] {
    std::this_thread::sleep_for(50ms);
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
  });
  how(listener, session);
  unblock.join();
  deadline = Clock::now() + 5s;
  while (!returned.load() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  bool prompt = returned.load();
  round.join();  // bounded by the sender's stall timeout
  ASSERT_TRUE(prompt) << "SendRound still running 5 s after the destination closed: " << result;
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_LT(returned_at - closed_at, 3s) << result;
  EXPECT_THAT(result.message(), HasSubstr("data connection")) << result;
}

TEST(DataPathTest, SendRoundFailsPromptlyWhenTheSessionCloses) {
  ExpectSendRoundFailsPromptly([](auto&, std::unique_ptr<IncomingPages>& session) { session->Close(); });
}

TEST(DataPathTest, SendRoundFailsPromptlyWhenTheDestinationGoesAway) {
  ExpectSendRoundFailsPromptly([](std::unique_ptr<DataListener>& listener, std::unique_ptr<IncomingPages>& session) {
    session.reset();
    listener.reset();
  });
}

// --- ordering across connections -------------------------------------------------------------

// Round 1 writes generation 1 to every page, round 2 generation 2, round 3 nothing; connection 1
// is slow through round 1 (30 ms a batch). Every page must end at generation 2.
struct OrderingOutcome {
  uint64_t stale = 0;    // pages not at generation 2 at the end
  uint64_t delayed = 0;  // round-1 batches connection 1 was held back on
  uint64_t unapplied_after_round1 = 0;  // pages not at generation 1 when SendRound(1) returned
};

OrderingOutcome RunOrdering(bool disable_round_barrier) {
  constexpr uint64_t kPages = 16 * 256;  // 16 MiB: 16 chunks shared out between the connections
  auto src = NewMemory(kPages);
  auto dst = NewMemory(kPages);
  std::atomic<uint64_t> delayed{0};
  OrderingOutcome out;
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, false);
  in.disable_round_barrier = disable_round_barrier;
  in.before_apply = [&](uint32_t connection, uint32_t round) {
    if (connection != 1 || round != 1) return;
    delayed.fetch_add(1);
    std::this_thread::sleep_for(30ms);
  };
  auto session = listener->Expect(in, *dst);
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), Outgoing(2, false));
  EXPECT_TRUE(sender.ok()) << sender.status();
  if (!sender.ok()) return out;
  DirtyBitmap all(kPages);
  all.SetAll();
  RoundCounters c;
  for (uint64_t p = 0; p < kPages; ++p) WritePage(*src, p, 1);
  // 5 ms a 1 MiB frame: the connections take chunks in turn, so connection 1 carries part of round 1.
  (*sender)->SetMaxBandwidth(200);
  absl::Status st = (*sender)->SendRound(*src, all, 1, nullptr, {}, c);
  EXPECT_TRUE(st.ok()) << st;
  (*sender)->SetMaxBandwidth(0);
  for (uint64_t p = 0; p < kPages; ++p) out.unapplied_after_round1 += GenerationOf(*dst, p) != 1;
  for (uint64_t p = 0; p < kPages; ++p) WritePage(*src, p, 2);
  st = (*sender)->SendRound(*src, all, 2, nullptr, {}, c);
  EXPECT_TRUE(st.ok()) << st;
  st = (*sender)->SendRound(*src, DirtyBitmap(kPages), 3, nullptr, {}, c);
  EXPECT_TRUE(st.ok()) << st;
  st = session->WaitRoundComplete(3, 10000);
  EXPECT_TRUE(st.ok()) << st;
  out.delayed = delayed.load();
  for (uint64_t p = 0; p < kPages; ++p) out.stale += GenerationOf(*dst, p) != 2;
  return out;
}

TEST(DataPathOrderingTest, DelayedConnectionLeavesNoStaleRoundOneCopy) {
  OrderingOutcome o = RunOrdering(/*disable_round_barrier=*/false);
  EXPECT_GE(o.delayed, 2u) << "connection 1 carried (almost) nothing of round 1: the delay proves nothing";
  EXPECT_EQ(o.stale, 0u);
}

// The source's own half of the ordering rule: a round ends with the destination's
// acknowledgement on every connection, so even with the destination's barrier off the real
// sender never has round-2 pages in flight beside round-1 ones.
TEST(DataPathOrderingTest, SendRoundEndsOnlyWhenEveryConnectionAppliedTheRound) {
  OrderingOutcome o = RunOrdering(/*disable_round_barrier=*/true);
  EXPECT_GE(o.delayed, 2u);
  EXPECT_EQ(o.unapplied_after_round1, 0u);
  EXPECT_EQ(o.stale, 0u);
}

// The race the barrier exists for, from a source that does not wait for acknowledgements (the
// real sender cannot produce it, see above), hand-made so that nothing depends on how chunks are
// shared out: connection 1 carries round 1's copy of pages 0..15 and is held before applying it;
// connection 0 has nothing in round 1 and carries round 2's copy of the same pages. With the
// barrier, connection 0 waits; without it (the negative control), the stale copy wins.
struct RawOrderingOutcome {
  uint64_t stale = 0;
  bool newer_seen_while_held = false;
};

RawOrderingOutcome RunRawOrdering(bool disable_round_barrier) {
  constexpr uint64_t kPages = 64;
  constexpr uint32_t kHot = 16;
  auto dst = NewMemory(kPages);
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  RawOrderingOutcome out;
  auto listener = StartListener();
  IncomingOptions in = Incoming(2, false);
  in.disable_round_barrier = disable_round_barrier;
  in.before_apply = [&](uint32_t connection, uint32_t round) {
    if (connection != 1 || round != 1) return;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 10s, [&] { return released; });
  };
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  UniqueFd c1 = Join(listener->port(), 1);
  std::vector<uint8_t> one = PlainFrame(1, 0, {{0, kHot, 0}}, PageData(0, kHot, 1));
  std::vector<uint8_t> e = RoundEnd(1, 1), e2 = RoundEnd(2, 2);
  one.insert(one.end(), e.begin(), e.end());
  one.insert(one.end(), e2.begin(), e2.end());
  std::vector<uint8_t> zero = RoundEnd(1, 0);
  std::vector<uint8_t> b = PlainFrame(2, 1, {{0, kHot, 0}}, PageData(0, kHot, 2));
  e = RoundEnd(2, 2);
  zero.insert(zero.end(), b.begin(), b.end());
  zero.insert(zero.end(), e.begin(), e.end());
  std::thread w1([&] { EXPECT_TRUE(SendBytes(c1.get(), one)); });
  std::thread w0([&] { EXPECT_TRUE(SendBytes(c0.get(), zero)); });
  auto deadline = Clock::now() + (disable_round_barrier ? 3s : 300ms);
  while (Clock::now() < deadline && !out.newer_seen_while_held) {
    for (uint64_t p = 0; p < kHot; ++p) out.newer_seen_while_held |= GenerationOf(*dst, p) == 2;
    std::this_thread::sleep_for(1ms);
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
  }
  cv.notify_all();
  w0.join();
  w1.join();
  absl::Status st = session->WaitRoundComplete(2, 5000);
  EXPECT_TRUE(st.ok()) << st;
  for (uint64_t p = 0; p < kHot; ++p) {
    if (GenerationOf(*dst, p) != 2) ++out.stale;
  }
  return out;
}

TEST(DataPathOrderingTest, HandMadeStaleCopyIsHeldBackByTheBarrier) {
  RawOrderingOutcome o = RunRawOrdering(false);
  EXPECT_FALSE(o.newer_seen_while_held);
  EXPECT_EQ(o.stale, 0u);
}

TEST(DataPathOrderingTest, HandMadeStaleCopyWinsWithoutTheBarrier) {
  RawOrderingOutcome o = RunRawOrdering(true);
  EXPECT_TRUE(o.newer_seen_while_held);
  EXPECT_EQ(o.stale, 16u);
}

// --- disk frames (a storage migration's blocks on the data connections) -----------------------

namespace fs = std::filesystem;

// A disk file of `bytes` in a fresh directory, and the receiver writing into it.
class DiskFiles {
 public:
  explicit DiskFiles(uint64_t bytes) : bytes_(bytes) {
    static int n = 0;
    dir_ = fs::path(::testing::TempDir()) / ("ferry-data-disk-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* name : {"src.raw", "dst.raw"}) {
      std::ofstream(dir_ / name).close();
      fs::resize_file(dir_ / name, bytes);
    }
    src_fd_ = UniqueFd(open((dir_ / "src.raw").c_str(), O_RDWR | O_CLOEXEC));
    EXPECT_TRUE(src_fd_.valid());
    VmSpec spec;
    spec.name = "vm1";
    spec.disks.push_back(DiskSpec{DiskKind::kFile, (dir_ / "dst.raw").string(), "", bytes});
    auto r = DiskCopyReceiver::Open(spec, {bytes});
    EXPECT_TRUE(r.ok()) << r.status();
    receiver_ = std::move(*r);
  }
  ~DiskFiles() { fs::remove_all(dir_); }

  // Block `b` of the source: a pattern naming (block, gen), or zeros when gen is 0.
  void WriteSource(uint64_t b, uint32_t gen) { Write(src_fd_.get(), b, gen); }
  void WriteDestination(uint64_t b, uint32_t gen) {
    UniqueFd fd(open((dir_ / "dst.raw").c_str(), O_RDWR | O_CLOEXEC));
    Write(fd.get(), b, gen);
  }
  std::string Read(const char* name) {
    std::ifstream in(dir_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  RoundDisk Disk(const DirtyBitmap& blocks) const { return RoundDisk{0, src_fd_.get(), bytes_, &blocks}; }
  DiskCopyReceiver& receiver() { return *receiver_; }
  uint64_t blocks() const { return (bytes_ + kPageSize - 1) / kPageSize; }

 private:
  void Write(int fd, uint64_t b, uint32_t gen) {
    std::vector<uint64_t> w(kPageSize / 8, 0);
    for (uint64_t i = 0; gen != 0 && i < w.size(); ++i) w[i] = (uint64_t{gen} << 40) | (b << 10) | i;
    const uint64_t n = std::min<uint64_t>(kPageSize, bytes_ - b * kPageSize);
    ASSERT_EQ(pwrite(fd, w.data(), n, static_cast<off_t>(b * kPageSize)), static_cast<ssize_t>(n));
  }

  uint64_t bytes_;
  fs::path dir_;
  UniqueFd src_fd_;
  std::unique_ptr<DiskCopyReceiver> receiver_;
};

struct DiskCase {
  const char* name;
  uint32_t connections;
  bool encrypted;
};

class DataPathDiskTest : public ::testing::TestWithParam<DiskCase> {};

// Two rounds of a disk whose last block is partial, beside guest pages: the destination's file
// ends up equal to the source's (data blocks written, zero blocks punched, holes untouched), and
// the counters add up.
TEST_P(DataPathDiskTest, DiskBlocksRideTheRoundsIntoTheDiskFile) {
  const DiskCase& dc = GetParam();
  constexpr uint64_t kPages = 64;
  DiskFiles disk(699 * kPageSize + 1000);  // 700 blocks, 3 chunks of the bitmap
  auto src = NewMemory(kPages);
  auto dst = NewMemory(kPages);
  for (uint64_t p = 0; p < kPages; p += 2) WritePage(*src, p, 1);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(dc.connections, dc.encrypted);
  in.on_error = errors.Callback();
  in.disks = &disk.receiver();
  auto session = listener->Expect(in, *dst);
  auto sender = DataSender::Connect("127.0.0.1", listener->port(), Outgoing(dc.connections, dc.encrypted));
  ASSERT_TRUE(sender.ok()) << sender.status();
  EXPECT_TRUE((*sender)->carries_disk_blocks());

  // Round 1: blocks 0..399 (every fifth one written as zeros) and the partial last block; block
  // 2 of the destination holds old data that the zero marker must remove.
  DirtyBitmap r1(disk.blocks());
  uint64_t zeros = 0;
  for (uint64_t b = 0; b < 400; ++b) {
    disk.WriteSource(b, b % 5 == 2 ? 0 : 1);
    zeros += b % 5 == 2;
    r1.Set(b);
  }
  disk.WriteSource(699, 1);
  r1.Set(699);
  disk.WriteDestination(2, 7);
  DirtyBitmap all(kPages);
  all.SetAll();
  std::vector<RoundDisk> disks{disk.Disk(r1)};
  RoundCounters c1;
  absl::Status st = (*sender)->SendRound(*src, all, 1, nullptr, disks, c1);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(session->WaitRoundComplete(1, 5000).ok());
  EXPECT_EQ(c1.disk_blocks, 401u);
  EXPECT_EQ(c1.disk_zero_blocks, zeros);
  EXPECT_EQ(c1.disk_data_bytes, (401 - zeros) * kPageSize);
  EXPECT_EQ(c1.pages, kPages);
  EXPECT_GE(c1.wire_bytes, c1.data_bytes + c1.disk_data_bytes);
  EXPECT_EQ(disk.Read("dst.raw"), disk.Read("src.raw"));
  EXPECT_EQ(0, std::memcmp(src->data(), dst->data(), dst->size()));

  // Round 2: a rewritten range and a block that became zero.
  DirtyBitmap r2(disk.blocks());
  for (uint64_t b = 10; b < 20; ++b) {
    disk.WriteSource(b, 2);
    r2.Set(b);
  }
  disk.WriteSource(30, 0);
  r2.Set(30);
  disks = {disk.Disk(r2)};
  RoundCounters c2;
  st = (*sender)->SendRound(*src, DirtyBitmap(kPages), 2, nullptr, disks, c2);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(session->WaitRoundComplete(2, 5000).ok());
  EXPECT_EQ(c2.disk_blocks, 11u);
  EXPECT_EQ(c2.disk_zero_blocks, 1u);
  EXPECT_EQ(disk.Read("dst.raw"), disk.Read("src.raw"));
  EXPECT_EQ(disk.receiver().blocks_written(), 412u);
  EXPECT_EQ(errors.count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Paths, DataPathDiskTest,
                         ::testing::Values(DiskCase{"Plain1", 1, false}, DiskCase{"Sealed2", 2, true},
                                           DiskCase{"Plain4", 4, false}),
                         [](const ::testing::TestParamInfo<DiskCase>& i) { return std::string(i.param.name); });

std::vector<uint8_t> DiskFrame(uint32_t disk, uint32_t round, uint64_t index, const std::vector<WireRun>& runs,
                               const std::vector<uint8_t>& data) {
  FrameHeader h;
  h.type = FrameType::kDiskBatch;
  h.disk = disk;
  h.run_count = static_cast<uint16_t>(runs.size());
  h.round = round;
  h.data_pages = static_cast<uint32_t>(data.size() / kPageSize);
  h.index = index;
  std::vector<uint8_t> f(kDataHeaderBytes + runs.size() * kDataRunBytes);
  EncodeFrameHeader(h, f.data());
  for (size_t i = 0; i < runs.size(); ++i) EncodeRun(runs[i], f.data() + kDataHeaderBytes + i * kDataRunBytes);
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

TEST(DataPathTest, DiskBlockOutsideTheDiskIsRefusedAndWritesNothing) {
  DiskFiles disk(10 * kPageSize + 100);  // 11 blocks, the last one partial
  auto dst = NewMemory(16);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.on_error = errors.Callback();
  in.disks = &disk.receiver();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  // A good run first, then one that ends a block past the disk: nothing of the frame is written.
  SendBytes(c0.get(), DiskFrame(0, 1, 0, {{0, 1, 0}, {10, 2, 0}}, PageData(0, 3, 5)));
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(st.message(), HasSubstr("data connection 0"));
  EXPECT_THAT(st.message(), HasSubstr("disk blocks 10..11 are outside disk 0 of 11 blocks"));
  EXPECT_EQ(disk.Read("dst.raw"), std::string(10 * kPageSize + 100, '\0'));
  EXPECT_EQ(disk.receiver().blocks_written(), 0u);
  EXPECT_FALSE(session->WaitRoundComplete(1, 1000).ok());
}

TEST(DataPathTest, DiskFrameOfAnUnknownDiskOrWithoutStorageIsRefused) {
  {
    DiskFiles disk(4 * kPageSize);
    auto dst = NewMemory(16);
    ErrorLog errors;
    auto listener = StartListener();
    IncomingOptions in = Incoming(1, false);
    in.on_error = errors.Callback();
    in.disks = &disk.receiver();
    auto session = listener->Expect(in, *dst);
    UniqueFd c0 = Join(listener->port(), 0);
    SendBytes(c0.get(), DiskFrame(1, 1, 0, {{0, 1, 0}}, PageData(0, 1, 5)));
    absl::Status st = errors.WaitFirst(5s);
    EXPECT_THAT(st.message(), HasSubstr("carries blocks of disk 1; the VM has 1 file disks"));
    EXPECT_EQ(disk.receiver().blocks_written(), 0u);
  }
  auto dst = NewMemory(16);
  ErrorLog errors;
  auto listener = StartListener();
  IncomingOptions in = Incoming(1, false);
  in.on_error = errors.Callback();
  auto session = listener->Expect(in, *dst);
  UniqueFd c0 = Join(listener->port(), 0);
  SendBytes(c0.get(), DiskFrame(0, 1, 0, {{0, 1, 0}}, PageData(0, 1, 5)));
  absl::Status st = errors.WaitFirst(5s);
  EXPECT_THAT(st.message(), HasSubstr("carries disk blocks, but this migration moves no disk"));
}

}  // namespace
}  // namespace ferry
