// The sealed data path: AES-256-GCM records with per-connection keys and strict counters.
#include "engine/transport/sealed_stream.h"

#include <sys/socket.h>

#include <numeric>
#include <thread>

#include "engine/base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

constexpr auto kOut = SealDirection::kSourceToDestination;
constexpr auto kBack = SealDirection::kDestinationToSource;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

struct Pair {
  RecordSealer sealer;
  RecordOpener opener;
};

Pair MakePair(const MigrationKey& key, uint32_t connection = 0, SealDirection d = kOut) {
  auto s = RecordSealer::Create(key, connection, d);
  auto o = RecordOpener::Create(key, connection, d);
  EXPECT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(o.ok()) << o.status();
  return Pair{std::move(*s), std::move(*o)};
}

MigrationKey NewKey() {
  auto key = MigrationKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  return *key;
}

TEST(SealedStreamTest, RecordsRoundTripInOrder) {
  Pair p = MakePair(NewKey(), 3);
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{1} << 20}) {
    std::vector<uint8_t> plain = Pattern(size, static_cast<uint8_t>(size));
    std::vector<uint8_t> record, out;
    ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), record).ok());
    ASSERT_EQ(record.size(), plain.size() + kSealOverheadBytes);
    auto total = SealedRecordSize(record.data(), record.size());
    ASSERT_TRUE(total.ok());
    EXPECT_EQ(*total, record.size());
    if (size >= 64) {
      // Ciphertext, not plaintext, is on the wire.
      EXPECT_NE(0, memcmp(record.data() + kSealHeaderBytes, plain.data(), 64));
    }
    absl::Status st = p.opener.Open(record.data(), record.size(), out);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_EQ(out, plain);
  }
  EXPECT_EQ(p.sealer.records_sealed(), 4u);
  EXPECT_EQ(p.opener.records_opened(), 4u);
}

TEST(SealedStreamTest, InPlaceSealAndOpenRoundTrip) {
  Pair p = MakePair(NewKey());
  std::vector<uint8_t> plain = Pattern(65536, 9);
  std::vector<uint8_t> buf(kSealOverheadBytes + plain.size());
  memcpy(buf.data() + kSealHeaderBytes, plain.data(), plain.size());
  ASSERT_TRUE(p.sealer.SealInPlace(buf.data(), plain.size()).ok());
  auto n = p.opener.OpenInPlace(buf.data(), buf.size());
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, plain.size());
  EXPECT_EQ(0, memcmp(buf.data() + kSealHeaderBytes, plain.data(), plain.size()));
}

TEST(SealedStreamTest, FlippedBitAnywhereFailsAuthentication) {
  MigrationKey key = NewKey();
  std::vector<uint8_t> plain = Pattern(1000, 1);
  std::vector<uint8_t> clean;
  ASSERT_TRUE(MakePair(key).sealer.Seal(plain.data(), plain.size(), clean).ok());
  // In the ciphertext, in the tag, and in the counter part of the nonce (which still names
  // counter 0 only when the flipped bit is elsewhere).
  for (size_t at : {kSealHeaderBytes + 10, clean.size() - 1, kSealHeaderBytes - 1}) {
    Pair p = MakePair(key);
    std::vector<uint8_t> record = clean, out;
    record[at] ^= 0x01;
    absl::Status st = p.opener.Open(record.data(), record.size(), out);
    ASSERT_FALSE(st.ok()) << "bit flipped at byte " << at << " was accepted";
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
    // A flip in the counter shows up as a reordering; elsewhere as an authentication failure.
    EXPECT_THAT(std::string(st.message()),
                at == kSealHeaderBytes - 1 ? HasSubstr("out-of-order") : HasSubstr("failed authentication"));
  }
}

TEST(SealedStreamTest, FlippedLengthFieldIsRejected) {
  Pair p = MakePair(NewKey());
  std::vector<uint8_t> plain = Pattern(100, 2), record, out;
  ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), record).ok());
  record[3] ^= 0x04;  // length 100 -> 96: the record no longer matches its header
  absl::Status st = p.opener.Open(record.data(), record.size(), out);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("header says"));
}

TEST(SealedStreamTest, ReplayedRecordIsRejected) {
  Pair p = MakePair(NewKey());
  std::vector<uint8_t> plain = Pattern(100, 3), first, second, out;
  ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), first).ok());
  ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), second).ok());
  ASSERT_TRUE(p.opener.Open(first.data(), first.size(), out).ok());
  absl::Status st = p.opener.Open(first.data(), first.size(), out);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("replayed"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("counter 0, expected 1"));
  // Poisoned: even the genuine next record is refused now.
  st = p.opener.Open(second.data(), second.size(), out);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SealedStreamTest, SkippedRecordIsRejected) {
  Pair p = MakePair(NewKey());
  std::vector<uint8_t> plain = Pattern(10, 4), first, second, out;
  ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), first).ok());
  ASSERT_TRUE(p.sealer.Seal(plain.data(), plain.size(), second).ok());
  absl::Status st = p.opener.Open(second.data(), second.size(), out);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("out-of-order"));
}

TEST(SealedStreamTest, WrongKeyFailsAuthentication) {
  Pair sender = MakePair(NewKey());
  Pair receiver = MakePair(NewKey());
  std::vector<uint8_t> plain = Pattern(4096, 5), record, out;
  ASSERT_TRUE(sender.sealer.Seal(plain.data(), plain.size(), record).ok());
  absl::Status st = receiver.opener.Open(record.data(), record.size(), out);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("failed authentication"));
}

TEST(SealedStreamTest, RecordFromAnotherConnectionOrDirectionIsRejected) {
  MigrationKey key = NewKey();
  std::vector<uint8_t> plain = Pattern(64, 6), record, out;
  Pair conn0 = MakePair(key, 0, kOut);
  ASSERT_TRUE(conn0.sealer.Seal(plain.data(), plain.size(), record).ok());
  Pair conn1 = MakePair(key, 1, kOut);
  absl::Status st = conn1.opener.Open(record.data(), record.size(), out);
  EXPECT_THAT(std::string(st.message()), HasSubstr("another stream"));
  Pair back = MakePair(key, 0, kBack);
  st = back.opener.Open(record.data(), record.size(), out);
  EXPECT_THAT(std::string(st.message()), HasSubstr("another stream"));
}

TEST(SealedStreamTest, OversizedRecordsAreRefusedOnBothEnds) {
  Pair p = MakePair(NewKey());
  std::vector<uint8_t> record;
  EXPECT_EQ(p.sealer.Seal(nullptr, kMaxSealedPlaintext + 1, record).code(),
            absl::StatusCode::kInvalidArgument);
  uint8_t header[4] = {0xff, 0xff, 0xff, 0xff};
  auto size = SealedRecordSize(header, sizeof(header));
  ASSERT_FALSE(size.ok());
  EXPECT_THAT(std::string(size.status().message()), HasSubstr("maximum"));
}

TEST(SealedStreamTest, MigrationKeyMustBe32Bytes) {
  auto key = MigrationKey::FromString("short");
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("expected 32"));
  MigrationKey a = NewKey();
  auto b = MigrationKey::FromString(a.ToString());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a.bytes, b->bytes);
}

TEST(SealedStreamTest, RecordsCrossARealSocketAndTamperingIsCaught) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  UniqueFd a(fds[0]), b(fds[1]);
  MigrationKey key = NewKey();
  Pair p = MakePair(key, 7);
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 20; ++i) sent.push_back(Pattern(1000 * i + 1, static_cast<uint8_t>(i)));
  std::thread writer([&] {
    for (const auto& m : sent) ASSERT_TRUE(WriteSealedRecord(a.get(), p.sealer, m.data(), m.size()).ok());
    a.Reset();
  });
  std::vector<uint8_t> got;
  for (const auto& m : sent) {
    auto more = ReadSealedRecord(b.get(), p.opener, got);
    ASSERT_TRUE(more.ok()) << more.status();
    ASSERT_TRUE(*more);
    EXPECT_EQ(got, m);
  }
  auto more = ReadSealedRecord(b.get(), p.opener, got);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
  writer.join();

  // A man in the middle flipping one byte on the wire.
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  UniqueFd c(fds[0]), d(fds[1]);
  Pair q = MakePair(key, 8);
  std::vector<uint8_t> record;
  ASSERT_TRUE(q.sealer.Seal(sent[5].data(), sent[5].size(), record).ok());
  record[kSealHeaderBytes + 100] ^= 0x80;
  ASSERT_EQ(write(c.get(), record.data(), record.size()), static_cast<ssize_t>(record.size()));
  more = ReadSealedRecord(d.get(), q.opener, got);
  ASSERT_FALSE(more.ok());
  EXPECT_THAT(std::string(more.status().message()), HasSubstr("failed authentication"));
}

}  // namespace
}  // namespace ferry
