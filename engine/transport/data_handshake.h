#pragma once
// Proving that a data connection belongs to a migration (docs/wire_protocol.md "Data
// connections"). The destination speaks first with a fresh random challenge; the source answers
// with the migration id, its connection index and HMAC-SHA256(secret, label | challenge | index |
// id), where the secret travelled in the mutually authenticated control stream. The destination
// answers one verdict byte and, unless it is kAccepted, closes the connection before reading
// anything else from it.

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ferry {

inline constexpr size_t kChallengeBytes = 32;
inline constexpr size_t kProofBytes = 32;
inline constexpr size_t kMaxMigrationIdBytes = 64;
inline constexpr size_t kServerHelloBytes = 8 + kChallengeBytes;
inline constexpr size_t kClientHelloBytes = 16 + kMaxMigrationIdBytes + kProofBytes;
inline constexpr uint32_t kDataProtocolVersion = 2;

enum class DataVerdict : uint8_t {
  kAccepted = 0,
  kUnknownMigration = 1,
  kBadProof = 2,
  kBadConnection = 3,  // index out of range or already connected
  kMalformed = 4,
  kBusy = 5,           // too many handshakes in progress
};
const char* DataVerdictText(DataVerdict v);

using Challenge = std::array<uint8_t, kChallengeBytes>;
using Proof = std::array<uint8_t, kProofBytes>;

struct ClientHello {
  uint32_t version = kDataProtocolVersion;
  uint32_t connection = 0;
  std::string migration_id;
  Proof proof{};
};

absl::StatusOr<Challenge> NewChallenge();
absl::StatusOr<Proof> ComputeProof(const std::string& secret, const Challenge& challenge, uint32_t connection,
                                   const std::string& migration_id);
bool ProofsEqual(const Proof& a, const Proof& b);  // constant time

void EncodeServerHello(const Challenge& c, uint8_t* out);
absl::StatusOr<Challenge> DecodeServerHello(const uint8_t* in);
void EncodeClientHello(const ClientHello& h, uint8_t* out);
absl::StatusOr<ClientHello> DecodeClientHello(const uint8_t* in);

// Blocking exact reads and writes with the socket's own timeouts (handshakes only: pages travel
// on UringSocket). `what` names the step in errors; a peer closing is Unavailable.
absl::Status ReadExactly(int fd, uint8_t* p, size_t n, const char* what);
absl::Status WriteExactly(int fd, const uint8_t* p, size_t n, const char* what);

// Blocking, with the socket's own timeouts: the source's side of the handshake on a connected
// socket. Errors name the verdict the destination gave.
absl::Status ClientHandshake(int fd, const std::string& secret, uint32_t connection, const std::string& migration_id);

}  // namespace ferry
