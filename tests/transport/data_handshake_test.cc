// Proving a data connection: the HMAC proof binds secret, challenge, connection index and
// migration id; hellos round-trip and malformed ones are refused with a reason.
#include "engine/transport/data_handshake.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

const std::string kSecret(32, 'k');
const std::string kId = "migration-7";

Challenge NewOrDie() {
  auto c = NewChallenge();
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

Proof ProofOrDie(const std::string& secret, const Challenge& c, uint32_t index, const std::string& id) {
  auto p = ComputeProof(secret, c, index, id);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(DataHandshakeTest, ProofVerifiesAndBindsEveryInput) {
  Challenge c = NewOrDie();
  Proof good = ProofOrDie(kSecret, c, 3, kId);
  EXPECT_TRUE(ProofsEqual(good, ProofOrDie(kSecret, c, 3, kId)));

  std::string other_secret = kSecret;
  other_secret[31] ^= 1;
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(other_secret, c, 3, kId)));
  Challenge other_c = c;
  other_c[0] ^= 1;
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(kSecret, other_c, 3, kId)));
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(kSecret, c, 4, kId)));
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(kSecret, c, 3, kId + "x")));
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(kSecret, c, 3, "migration-8")));

  // Fresh challenges differ, so a recorded proof cannot be replayed on a new connection.
  Challenge c2 = NewOrDie();
  EXPECT_NE(c, c2);
  EXPECT_FALSE(ProofsEqual(good, ProofOrDie(kSecret, c2, 3, kId)));
}

TEST(DataHandshakeTest, ShortSecretIsRefused) {
  auto p = ComputeProof(std::string(15, 'k'), NewOrDie(), 0, kId);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("shorter than 16 bytes"));
}

TEST(DataHandshakeTest, ServerHelloRoundTrips) {
  Challenge c = NewOrDie();
  uint8_t b[kServerHelloBytes];
  EncodeServerHello(c, b);
  auto out = DecodeServerHello(b);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, c);
}

TEST(DataHandshakeTest, MalformedServerHelloIsRefused) {
  uint8_t b[kServerHelloBytes];
  EncodeServerHello(NewOrDie(), b);
  b[0] ^= 1;
  auto magic = DecodeServerHello(b);
  EXPECT_EQ(magic.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(magic.status().message(), HasSubstr("did not answer with a Ferry data-path hello"));

  EncodeServerHello(NewOrDie(), b);
  uint32_t v = 3;
  std::memcpy(b + 4, &v, 4);
  auto version = DecodeServerHello(b);
  EXPECT_EQ(version.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(version.status().message(), HasSubstr("speaks version 3, this agent 2"));
}

TEST(DataHandshakeTest, ClientHelloRoundTrips) {
  for (const std::string& id : {std::string("m"), kId, std::string(kMaxMigrationIdBytes, 'z')}) {
    ClientHello in;
    in.connection = 15;
    in.migration_id = id;
    in.proof = ProofOrDie(kSecret, NewOrDie(), 15, id);
    uint8_t b[kClientHelloBytes];
    EncodeClientHello(in, b);
    auto out = DecodeClientHello(b);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->version, kDataProtocolVersion);
    EXPECT_EQ(out->connection, 15u);
    EXPECT_EQ(out->migration_id, id);
    EXPECT_TRUE(ProofsEqual(out->proof, in.proof));
  }
}

TEST(DataHandshakeTest, MalformedClientHelloIsRefused) {
  ClientHello in;
  in.migration_id = kId;
  uint8_t good[kClientHelloBytes];
  EncodeClientHello(in, good);

  uint8_t b[kClientHelloBytes];
  std::memcpy(b, good, sizeof(b));
  b[3] ^= 0x80;
  auto magic = DecodeClientHello(b);
  EXPECT_EQ(magic.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(magic.status().message(), HasSubstr("not a Ferry data-path hello"));

  std::memcpy(b, good, sizeof(b));
  uint32_t v = 1;
  std::memcpy(b + 4, &v, 4);
  auto version = DecodeClientHello(b);
  EXPECT_EQ(version.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(version.status().message(), HasSubstr("data-path version 1 is not supported"));

  for (uint32_t len : {0u, uint32_t{kMaxMigrationIdBytes} + 1, 0xffffffffu}) {
    std::memcpy(b, good, sizeof(b));
    std::memcpy(b + 12, &len, 4);
    auto id = DecodeClientHello(b);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << len;
    EXPECT_THAT(id.status().message(), HasSubstr(absl::StrCat("migration id of ", len, " bytes"))) << len;
  }
}

TEST(DataHandshakeTest, VerdictsHaveText) {
  EXPECT_THAT(DataVerdictText(DataVerdict::kBadProof), HasSubstr("proof"));
  EXPECT_THAT(DataVerdictText(DataVerdict::kUnknownMigration), HasSubstr("no such migration"));
  EXPECT_THAT(DataVerdictText(DataVerdict::kBadConnection), HasSubstr("already connected"));
  EXPECT_THAT(DataVerdictText(static_cast<DataVerdict>(77)), HasSubstr("unknown verdict"));
}

}  // namespace
}  // namespace ferry
