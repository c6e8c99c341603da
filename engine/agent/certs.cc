#include "engine/agent/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "absl/strings/str_cat.h"
#include "engine/agent/openssl_util.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"

namespace ferry {
namespace {

absl::StatusOr<EvpPkeyPtr> NewP256Key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("generating an EC P-256 key");
  return key;
}

absl::Status SetTime(ASN1_TIME* field, absl::Time t) {
  if (ASN1_TIME_set(field, absl::ToTimeT(t)) == nullptr) return OpenSslError("setting validity");
  return absl::OkStatus();
}

// 127 random bits: unique serials without a serial-number database.
absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return OpenSslError("generating a serial number");
  bytes[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(bytes, sizeof(bytes), nullptr), BN_free);
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslError("setting the serial number");
  }
  return absl::OkStatus();
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError(absl::StrCat("making extension ", OBJ_nid2sn(nid), "=", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("adding an extension");
  return absl::OkStatus();
}

absl::Status ValidateName(const std::string& what, const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " name is empty"));
  if (name.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(what, " name '", name, "' is longer than 64 characters"));
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " name '", name, "' may only hold letters, digits, '-', '.' and '_'"));
    }
  }
  return absl::OkStatus();
}

struct Subject {
  std::string cn;
  std::string ou;  // role; empty for the CA
};

absl::StatusOr<X509Ptr> NewCert(const Subject& subject, EVP_PKEY* key,
                                const CertValidity& validity) {
  if (validity.not_after <= validity.not_before) {
    return absl::InvalidArgumentError("certificate validity ends before it starts");
  }
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return OpenSslError("making a certificate");
  RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  RETURN_IF_ERROR(SetTime(X509_getm_notBefore(cert.get()), validity.not_before));
  RETURN_IF_ERROR(SetTime(X509_getm_notAfter(cert.get()), validity.not_after));
  X509_NAME* name = X509_get_subject_name(cert.get());
  auto add = [&](const char* field, const std::string& value) {
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                      0) == 1;
  };
  if (!add("O", "Ferry") || (!subject.ou.empty() && !add("OU", subject.ou)) ||
      !add("CN", subject.cn)) {
    return OpenSslError("setting the subject name");
  }
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslError("setting the public key");
  return cert;
}

absl::Status SignInto(X509* cert, X509* issuer_cert, EVP_PKEY* issuer_key, CertAndKey& out,
                      EVP_PKEY* subject_key) {
  if (X509_set_issuer_name(cert, X509_get_subject_name(issuer_cert)) != 1) {
    return OpenSslError("setting the issuer name");
  }
  if (X509_sign(cert, issuer_key, EVP_sha256()) == 0) return OpenSslError("signing the certificate");
  ASSIGN_OR_RETURN(out.cert_pem, CertToPem(cert));
  ASSIGN_OR_RETURN(out.key_pem, KeyToPem(subject_key));
  return absl::OkStatus();
}

absl::StatusOr<CertAndKey> IssueLeaf(const CertAndKey& ca, const Subject& subject,
                                     const std::string& eku, const std::string& san,
                                     const CertValidity& validity) {
  ASSIGN_OR_RETURN(X509Ptr ca_cert, CertFromPem(ca.cert_pem, "CA certificate"));
  ASSIGN_OR_RETURN(EvpPkeyPtr ca_key, KeyFromPem(ca.key_pem, "CA key"));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CA key does not match the CA certificate");
  }
  ASSIGN_OR_RETURN(EvpPkeyPtr key, NewP256Key());
  ASSIGN_OR_RETURN(X509Ptr cert, NewCert(subject, key.get(), validity));
  RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_ext_key_usage, eku));
  RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (!san.empty()) RETURN_IF_ERROR(AddExt(cert.get(), ca_cert.get(), NID_subject_alt_name, san));
  CertAndKey out;
  RETURN_IF_ERROR(SignInto(cert.get(), ca_cert.get(), ca_key.get(), out, key.get()));
  return out;
}

}  // namespace

CertValidity CertValidity::ForDays(int days) {
  CertValidity v;
  v.not_after = absl::Now() + absl::Hours(24) * days;
  return v;
}

CertValidity CertValidity::Expired() {
  CertValidity v;
  v.not_before = absl::Now() - absl::Hours(48);
  v.not_after = absl::Now() - absl::Hours(24);
  return v;
}

absl::StatusOr<CertAndKey> CreateCa(const std::string& name, const CertValidity& validity) {
  RETURN_IF_ERROR(ValidateName("CA", name));
  ASSIGN_OR_RETURN(EvpPkeyPtr key, NewP256Key());
  ASSIGN_OR_RETURN(X509Ptr cert, NewCert({name, ""}, key.get(), validity));
  RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  CertAndKey out;
  RETURN_IF_ERROR(SignInto(cert.get(), cert.get(), key.get(), out, key.get()));
  return out;
}

absl::StatusOr<CertAndKey> IssueHostCert(const CertAndKey& ca, const std::string& host,
                                         const std::vector<std::string>& ips,
                                         const CertValidity& validity) {
  RETURN_IF_ERROR(ValidateName("host", host));
  std::string san = absl::StrCat("DNS:", host);
  for (const std::string& ip : ips) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("'", ip, "' is not an IP address"));
    }
    absl::StrAppend(&san, ",IP:", ip);
  }
  return IssueLeaf(ca, {host, kHostRole}, "serverAuth,clientAuth", san, validity);
}

absl::StatusOr<CertAndKey> IssueClientCert(const CertAndKey& ca, const std::string& name,
                                           const CertValidity& validity) {
  RETURN_IF_ERROR(ValidateName("client", name));
  return IssueLeaf(ca, {name, kClientRole}, "clientAuth", "", validity);
}

absl::Status WriteFileWithMode(const std::string& path, const std::string& contents, int mode) {
  // Create under a temporary name with the final mode from the start, so a key is never
  // readable by others, not even briefly; then rename over any old file.
  std::string tmp = absl::StrCat(path, ".tmp");
  ::unlink(tmp.c_str());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return ErrnoError(absl::StrCat("creating ", tmp));
  if (::fchmod(fd.get(), mode) != 0) return ErrnoError(absl::StrCat("chmod ", tmp));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(absl::StrCat("writing ", tmp));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return ErrnoError(absl::StrCat("fsync ", tmp));
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(absl::StrCat("renaming to ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError(absl::StrCat("opening ", path));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(absl::StrCat("reading ", path));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1u << 20)) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is larger than 1 MiB; not a PEM file"));
    }
  }
  return out;
}

absl::Status WriteCertAndKey(const CertAndKey& pair, const std::string& dir,
                             const std::string& base) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(absl::StrCat("creating directory ", dir));
  }
  RETURN_IF_ERROR(WriteFileWithMode(absl::StrCat(dir, "/", base, ".key"), pair.key_pem, 0600));
  return WriteFileWithMode(absl::StrCat(dir, "/", base, ".crt"), pair.cert_pem, 0644);
}

absl::StatusOr<CertAndKey> ReadCertAndKey(const std::string& dir, const std::string& base) {
  CertAndKey out;
  ASSIGN_OR_RETURN(out.cert_pem, ReadWholeFile(absl::StrCat(dir, "/", base, ".crt")));
  ASSIGN_OR_RETURN(out.key_pem, ReadWholeFile(absl::StrCat(dir, "/", base, ".key")));
  return out;
}

}  // namespace ferry
