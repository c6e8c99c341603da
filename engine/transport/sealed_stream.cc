#include "engine/transport/sealed_stream.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr char kHkdfSalt[] = "ferry sealed stream v1";

absl::Status CryptoError(absl::string_view what) {
  char buf[256] = "unknown OpenSSL error";
  if (unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, ": ", buf));
}

void PutBe32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint32_t GetBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void PutBe64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint64_t GetBe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

const char* DirectionName(SealDirection d) {
  return d == SealDirection::kSourceToDestination ? "source->destination" : "destination->source";
}

absl::Status CheckEndpoint(uint32_t connection, SealDirection direction) {
  if (connection > kMaxSealedConnection) {
    return absl::InvalidArgumentError(
        absl::StrCat("sealed connection index ", connection, " exceeds ", kMaxSealedConnection));
  }
  if (direction != SealDirection::kSourceToDestination &&
      direction != SealDirection::kDestinationToSource) {
    return absl::InvalidArgumentError("invalid sealed stream direction");
  }
  return absl::OkStatus();
}

// HKDF-SHA256(ikm = migration key, salt, info = "ferry v1 key" | direction | u32 connection):
// a distinct key per connection and direction, so no (key, nonce) pair is ever used twice.
absl::StatusOr<std::array<uint8_t, kSealKeyBytes>> DeriveKey(const MigrationKey& key,
                                                             uint32_t connection,
                                                             SealDirection direction) {
  uint8_t info[12 + 1 + 4];
  std::memcpy(info, "ferry v1 key", 12);
  info[12] = static_cast<uint8_t>(direction);
  PutBe32(info + 13, connection);
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return CryptoError("fetching HKDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return CryptoError("creating an HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(key.bytes.data()),
                                        key.bytes.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(kHkdfSalt),
                                        sizeof(kHkdfSalt) - 1),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info)),
      OSSL_PARAM_construct_end(),
  };
  std::array<uint8_t, kSealKeyBytes> out{};
  int ok = EVP_KDF_derive(ctx, out.data(), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (ok != 1) return CryptoError("deriving a connection key");
  return out;
}

// An AES-256-GCM context keyed once; each record only sets its nonce.
absl::StatusOr<EVP_CIPHER_CTX*> NewGcmContext(const MigrationKey& key, uint32_t connection,
                                              SealDirection direction, bool encrypt) {
  RETURN_IF_ERROR(CheckEndpoint(connection, direction));
  ASSIGN_OR_RETURN(auto derived, DeriveKey(key, connection, direction));
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return CryptoError("creating a cipher context");
  int ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, derived.data(), nullptr, encrypt);
  OPENSSL_cleanse(derived.data(), derived.size());
  if (ok != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return CryptoError("initialising AES-256-GCM");
  }
  return ctx;
}

void WriteNonce(uint8_t* nonce, SealDirection direction, uint32_t connection, uint64_t counter) {
  uint8_t conn[4];
  PutBe32(conn, connection);
  nonce[0] = static_cast<uint8_t>(direction);
  std::memcpy(nonce + 1, conn + 1, 3);
  PutBe64(nonce + 4, counter);
}

}  // namespace

absl::StatusOr<MigrationKey> MigrationKey::Generate() {
  MigrationKey key;
  if (RAND_priv_bytes(key.bytes.data(), static_cast<int>(key.bytes.size())) != 1) {
    return CryptoError("generating a migration key");
  }
  return key;
}

absl::StatusOr<MigrationKey> MigrationKey::FromString(const std::string& raw) {
  if (raw.size() != kSealKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("migration key is ", raw.size(), " bytes, expected ", kSealKeyBytes));
  }
  MigrationKey key;
  std::memcpy(key.bytes.data(), raw.data(), raw.size());
  return key;
}

std::string MigrationKey::ToString() const {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

absl::StatusOr<size_t> SealedRecordSize(const uint8_t* header, size_t n) {
  if (n < kSealLengthBytes) return absl::InvalidArgumentError("sealed record header is truncated");
  uint32_t len = GetBe32(header);
  if (len > kMaxSealedPlaintext) {
    return absl::DataLossError(absl::StrCat("sealed record claims ", len, " bytes, more than the ",
                                            kMaxSealedPlaintext, "-byte maximum"));
  }
  return kSealOverheadBytes + len;
}

absl::StatusOr<RecordSealer> RecordSealer::Create(const MigrationKey& key, uint32_t connection,
                                                  SealDirection direction) {
  ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, NewGcmContext(key, connection, direction, true));
  RecordSealer s;
  s.ctx_.reset(ctx);
  s.connection_ = connection;
  s.direction_ = direction;
  return s;
}

absl::Status RecordSealer::Seal(const uint8_t* plain, size_t n, std::vector<uint8_t>& out) {
  if (n > kMaxSealedPlaintext) {
    return absl::InvalidArgumentError(absl::StrCat("cannot seal ", n, " bytes in one record (max ",
                                                   kMaxSealedPlaintext, ")"));
  }
  size_t at = out.size();
  out.resize(at + kSealOverheadBytes + n);
  if (n > 0) std::memcpy(out.data() + at + kSealHeaderBytes, plain, n);
  absl::Status st = SealInPlace(out.data() + at, n);
  if (!st.ok()) out.resize(at);
  return st;
}

absl::Status RecordSealer::SealInPlace(uint8_t* record, size_t n) {
  if (n > kMaxSealedPlaintext) {
    return absl::InvalidArgumentError(absl::StrCat("cannot seal ", n, " bytes in one record (max ",
                                                   kMaxSealedPlaintext, ")"));
  }
  if (counter_ == UINT64_MAX) return absl::ResourceExhaustedError("sealed stream counter exhausted");
  PutBe32(record, static_cast<uint32_t>(n));
  uint8_t* nonce = record + kSealLengthBytes;
  WriteNonce(nonce, direction_, connection_, counter_);
  uint8_t* body = record + kSealHeaderBytes;
  int len = 0;
  // The length field is additional authenticated data, so truncation is caught by the tag.
  if (EVP_EncryptInit_ex(ctx_.get(), nullptr, nullptr, nullptr, nonce) != 1 ||
      EVP_EncryptUpdate(ctx_.get(), nullptr, &len, record, kSealLengthBytes) != 1 ||
      (n > 0 && EVP_EncryptUpdate(ctx_.get(), body, &len, body, static_cast<int>(n)) != 1) ||
      EVP_EncryptFinal_ex(ctx_.get(), body + n, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_GET_TAG, kSealTagBytes, body + n) != 1) {
    return CryptoError("sealing a record");
  }
  ++counter_;
  return absl::OkStatus();
}

absl::Status RecordSealer::SealGather(const iovec* parts, size_t nparts, size_t total, uint8_t* record) {
  if (total > kMaxSealedPlaintext) {
    return absl::InvalidArgumentError(absl::StrCat("cannot seal ", total, " bytes in one record (max ",
                                                   kMaxSealedPlaintext, ")"));
  }
  if (counter_ == UINT64_MAX) return absl::ResourceExhaustedError("sealed stream counter exhausted");
  PutBe32(record, static_cast<uint32_t>(total));
  uint8_t* nonce = record + kSealLengthBytes;
  WriteNonce(nonce, direction_, connection_, counter_);
  uint8_t* body = record + kSealHeaderBytes;
  int len = 0;
  if (EVP_EncryptInit_ex(ctx_.get(), nullptr, nullptr, nullptr, nonce) != 1 ||
      EVP_EncryptUpdate(ctx_.get(), nullptr, &len, record, kSealLengthBytes) != 1) {
    return CryptoError("sealing a record");
  }
  size_t at = 0;
  for (size_t i = 0; i < nparts; ++i) {
    if (parts[i].iov_len == 0) continue;
    if (at + parts[i].iov_len > total) return absl::InvalidArgumentError("sealed parts exceed the record length");
    if (EVP_EncryptUpdate(ctx_.get(), body + at, &len, static_cast<const uint8_t*>(parts[i].iov_base),
                          static_cast<int>(parts[i].iov_len)) != 1) {
      return CryptoError("sealing a record");
    }
    at += parts[i].iov_len;
  }
  if (at != total) return absl::InvalidArgumentError("sealed parts do not add up to the record length");
  if (EVP_EncryptFinal_ex(ctx_.get(), body + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_GET_TAG, kSealTagBytes, body + total) != 1) {
    return CryptoError("sealing a record");
  }
  ++counter_;
  return absl::OkStatus();
}

absl::StatusOr<RecordOpener> RecordOpener::Create(const MigrationKey& key, uint32_t connection,
                                                  SealDirection direction) {
  ASSIGN_OR_RETURN(EVP_CIPHER_CTX * ctx, NewGcmContext(key, connection, direction, false));
  RecordOpener o;
  o.ctx_.reset(ctx);
  o.connection_ = connection;
  o.direction_ = direction;
  return o;
}

absl::Status RecordOpener::CheckRecordLength(size_t n) {
  if (n >= kSealOverheadBytes) return absl::OkStatus();
  failed_ = true;
  return absl::DataLossError(absl::StrCat("sealed record of ", n, " bytes is shorter than ",
                                          kSealOverheadBytes, " bytes of header and tag"));
}

absl::Status RecordOpener::Open(const uint8_t* record, size_t n, std::vector<uint8_t>& plain) {
  RETURN_IF_ERROR(CheckRecordLength(n));
  plain.resize(n - kSealOverheadBytes);
  iovec out{plain.data(), plain.size()};
  return Decrypt(record, n, &out, 1);
}

absl::StatusOr<size_t> RecordOpener::OpenInPlace(uint8_t* record, size_t n) {
  RETURN_IF_ERROR(CheckRecordLength(n));
  iovec out{record + kSealHeaderBytes, n - kSealOverheadBytes};
  RETURN_IF_ERROR(Decrypt(record, n, &out, 1));
  return n - kSealOverheadBytes;
}

absl::Status RecordOpener::OpenScatter(const uint8_t* record, size_t n, const iovec* out, size_t nout) {
  RETURN_IF_ERROR(CheckRecordLength(n));
  size_t total = 0;
  for (size_t i = 0; i < nout; ++i) total += out[i].iov_len;
  if (total != n - kSealOverheadBytes) {
    failed_ = true;
    return absl::DataLossError(absl::StrCat("sealed record carries ", n - kSealOverheadBytes,
                                            " bytes where ", total, " were expected"));
  }
  return Decrypt(record, n, out, nout);
}

absl::Status RecordOpener::Decrypt(const uint8_t* record, size_t n, const iovec* out, size_t nout) {
  if (failed_) {
    return absl::FailedPreconditionError(
        "sealed stream already failed authentication; the connection must be dropped");
  }
  failed_ = true;  // cleared only on success
  auto size = SealedRecordSize(record, n);
  if (!size.ok()) return size.status();
  if (*size != n) {
    return absl::DataLossError(absl::StrCat("sealed record is ", n, " bytes but its header says ",
                                            *size));
  }
  size_t len = n - kSealOverheadBytes;
  const uint8_t* nonce = record + kSealLengthBytes;
  uint8_t expected[kSealNonceBytes];
  WriteNonce(expected, direction_, connection_, counter_);
  if (std::memcmp(nonce, expected, 4) != 0) {
    return absl::DataLossError(absl::StrCat(
        "sealed record belongs to another stream (direction ", nonce[0], ", connection ",
        (uint32_t{nonce[1]} << 16) | (uint32_t{nonce[2]} << 8) | nonce[3], "); this is connection ",
        connection_, " ", DirectionName(direction_)));
  }
  uint64_t counter = GetBe64(nonce + 4);
  if (counter != counter_) {
    return absl::DataLossError(absl::StrCat(
        counter < counter_ ? "replayed" : "out-of-order", " sealed record on connection ",
        connection_, " ", DirectionName(direction_), ": counter ", counter, ", expected ",
        counter_));
  }
  const uint8_t* body = record + kSealHeaderBytes;
  uint8_t tag[kSealTagBytes];
  std::memcpy(tag, body + len, kSealTagBytes);
  int out_len = 0;
  bool ok = EVP_DecryptInit_ex(ctx_.get(), nullptr, nullptr, nullptr, nonce) == 1 &&
            EVP_DecryptUpdate(ctx_.get(), nullptr, &out_len, record, kSealLengthBytes) == 1;
  size_t at = 0;
  for (size_t i = 0; ok && i < nout; ++i) {
    if (out[i].iov_len == 0) continue;
    ok = EVP_DecryptUpdate(ctx_.get(), static_cast<uint8_t*>(out[i].iov_base), &out_len, body + at,
                           static_cast<int>(out[i].iov_len)) == 1;
    at += out[i].iov_len;
  }
  uint8_t final_block[16];
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_GCM_SET_TAG, kSealTagBytes, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx_.get(), final_block, &out_len) == 1;
  if (!ok) {
    ERR_clear_error();
    // never hand out unauthenticated plaintext
    for (size_t i = 0; i < nout; ++i) OPENSSL_cleanse(out[i].iov_base, out[i].iov_len);
    return absl::DataLossError(absl::StrCat(
        "sealed record ", counter, " on connection ", connection_, " ", DirectionName(direction_),
        " failed authentication: it was modified in transit or sealed with another key"));
  }
  ++counter_;
  failed_ = false;
  return absl::OkStatus();
}

namespace {

absl::Status WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoError("writing a sealed record");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// Reads exactly n bytes; returns false if the stream ended before the first byte.
absl::StatusOr<bool> ReadAll(int fd, uint8_t* p, size_t n, bool eof_ok) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::read(fd, p + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError("reading a sealed record");
    if (r == 0) {
      if (done == 0 && eof_ok) return false;
      return absl::DataLossError("sealed stream ended in the middle of a record");
    }
    done += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

absl::Status WriteSealedRecord(int fd, RecordSealer& sealer, const uint8_t* plain, size_t n) {
  std::vector<uint8_t> record;
  record.reserve(kSealOverheadBytes + n);
  RETURN_IF_ERROR(sealer.Seal(plain, n, record));
  return WriteAll(fd, record.data(), record.size());
}

absl::StatusOr<bool> ReadSealedRecord(int fd, RecordOpener& opener, std::vector<uint8_t>& plain) {
  uint8_t header[kSealLengthBytes];
  ASSIGN_OR_RETURN(bool more, ReadAll(fd, header, sizeof(header), true));
  if (!more) return false;
  ASSIGN_OR_RETURN(size_t size, SealedRecordSize(header, sizeof(header)));
  std::vector<uint8_t> record(size);
  std::memcpy(record.data(), header, sizeof(header));
  ASSIGN_OR_RETURN(bool complete, ReadAll(fd, record.data() + sizeof(header), size - sizeof(header), false));
  (void)complete;
  RETURN_IF_ERROR(opener.Open(record.data(), record.size(), plain));
  return true;
}

}  // namespace ferry
