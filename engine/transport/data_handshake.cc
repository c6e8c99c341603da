#include "engine/transport/data_handshake.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr uint32_t kServerMagic = 0x48504446;  // "FDPH"
constexpr uint32_t kClientMagic = 0x43504446;  // "FDPC"
constexpr char kProofLabel[] = "ferry data-path proof v2";

void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
uint32_t Get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

}  // namespace

absl::Status ReadExactly(int fd, uint8_t* p, size_t n, const char* what) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::recv(fd, p + done, n - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError(what);
    if (r == 0) return absl::UnavailableError(absl::StrCat(what, ": the peer closed the connection"));
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status WriteExactly(int fd, const uint8_t* p, size_t n, const char* what) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::send(fd, p + done, n - done, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoError(what);
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

const char* DataVerdictText(DataVerdict v) {
  switch (v) {
    case DataVerdict::kAccepted: return "accepted";
    case DataVerdict::kUnknownMigration: return "no such migration is expecting data connections";
    case DataVerdict::kBadProof: return "the connection's proof of the migration secret is wrong";
    case DataVerdict::kBadConnection: return "connection index out of range or already connected";
    case DataVerdict::kMalformed: return "malformed handshake";
    case DataVerdict::kBusy: return "too many data-connection handshakes in progress";
  }
  return "unknown verdict";
}

absl::StatusOr<Challenge> NewChallenge() {
  Challenge c;
  if (RAND_bytes(c.data(), static_cast<int>(c.size())) != 1) return absl::InternalError("RAND_bytes failed");
  return c;
}

absl::StatusOr<Proof> ComputeProof(const std::string& secret, const Challenge& challenge, uint32_t connection,
                                   const std::string& migration_id) {
  if (secret.size() < 16) return absl::InvalidArgumentError("data-path secret is shorter than 16 bytes");
  std::string msg(kProofLabel, sizeof(kProofLabel) - 1);
  msg.append(reinterpret_cast<const char*>(challenge.data()), challenge.size());
  uint8_t idx[4];
  Put32(idx, connection);
  msg.append(reinterpret_cast<const char*>(idx), 4);
  msg.append(migration_id);
  Proof out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const uint8_t*>(msg.data()), msg.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    return absl::InternalError("HMAC-SHA256 failed");
  }
  return out;
}

bool ProofsEqual(const Proof& a, const Proof& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

void EncodeServerHello(const Challenge& c, uint8_t* out) {
  Put32(out, kServerMagic);
  Put32(out + 4, kDataProtocolVersion);
  std::memcpy(out + 8, c.data(), c.size());
}

absl::StatusOr<Challenge> DecodeServerHello(const uint8_t* in) {
  if (Get32(in) != kServerMagic) {
    return absl::DataLossError("the destination's data port did not answer with a Ferry data-path hello");
  }
  if (Get32(in + 4) != kDataProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat("the destination's data path speaks version ", Get32(in + 4),
                                                      ", this agent ", kDataProtocolVersion));
  }
  Challenge c;
  std::memcpy(c.data(), in + 8, c.size());
  return c;
}

void EncodeClientHello(const ClientHello& h, uint8_t* out) {
  std::memset(out, 0, kClientHelloBytes);
  Put32(out, kClientMagic);
  Put32(out + 4, h.version);
  Put32(out + 8, h.connection);
  Put32(out + 12, static_cast<uint32_t>(h.migration_id.size()));
  std::memcpy(out + 16, h.migration_id.data(), std::min(h.migration_id.size(), kMaxMigrationIdBytes));
  std::memcpy(out + 16 + kMaxMigrationIdBytes, h.proof.data(), h.proof.size());
}

absl::StatusOr<ClientHello> DecodeClientHello(const uint8_t* in) {
  if (Get32(in) != kClientMagic) return absl::InvalidArgumentError("not a Ferry data-path hello");
  ClientHello h;
  h.version = Get32(in + 4);
  if (h.version != kDataProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("data-path version ", h.version, " is not supported"));
  }
  h.connection = Get32(in + 8);
  uint32_t id_len = Get32(in + 12);
  if (id_len == 0 || id_len > kMaxMigrationIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("migration id of ", id_len, " bytes"));
  }
  h.migration_id.assign(reinterpret_cast<const char*>(in + 16), id_len);
  std::memcpy(h.proof.data(), in + 16 + kMaxMigrationIdBytes, h.proof.size());
  return h;
}

absl::Status ClientHandshake(int fd, const std::string& secret, uint32_t connection, const std::string& migration_id) {
  if (migration_id.empty() || migration_id.size() > kMaxMigrationIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("migration id must be 1..", kMaxMigrationIdBytes, " bytes"));
  }
  uint8_t server[kServerHelloBytes];
  RETURN_IF_ERROR(ReadExactly(fd, server, sizeof(server), "reading the data port's hello"));
  ASSIGN_OR_RETURN(Challenge challenge, DecodeServerHello(server));
  ClientHello hello;
  hello.connection = connection;
  hello.migration_id = migration_id;
  ASSIGN_OR_RETURN(hello.proof, ComputeProof(secret, challenge, connection, migration_id));
  uint8_t out[kClientHelloBytes];
  EncodeClientHello(hello, out);
  RETURN_IF_ERROR(WriteExactly(fd, out, sizeof(out), "sending the data-connection hello"));
  uint8_t verdict = 0xff;
  RETURN_IF_ERROR(ReadExactly(fd, &verdict, 1, "reading the data-connection verdict"));
  if (verdict != static_cast<uint8_t>(DataVerdict::kAccepted)) {
    return absl::PermissionDeniedError(absl::StrCat("the destination refused data connection ", connection, ": ",
                                                    DataVerdictText(static_cast<DataVerdict>(verdict))));
  }
  return absl::OkStatus();
}

}  // namespace ferry
