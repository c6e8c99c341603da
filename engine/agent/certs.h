#pragma once
// A small cluster's PKI: one CA, a certificate per host (serverAuth + clientAuth, OU=host) and one
// per orchestrator client (clientAuth only, OU=client). Keys are EC P-256. See docs/security.md.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ferry {

inline constexpr char kHostRole[] = "host";
inline constexpr char kClientRole[] = "client";

// Validity window. The default starts a little in the past so clocks slightly behind still accept
// a fresh certificate.
struct CertValidity {
  absl::Time not_before = absl::Now() - absl::Minutes(5);
  absl::Time not_after = absl::Now() + absl::Hours(24 * 365);

  static CertValidity ForDays(int days);
  // Already expired: valid from two days ago until yesterday (tests only).
  static CertValidity Expired();
};

// A certificate and its private key, PEM.
struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
};

absl::StatusOr<CertAndKey> CreateCa(const std::string& name, const CertValidity& validity = {});

// CN=host, SAN DNS:host plus one IP entry per `ips` element (e.g. "127.0.0.1").
absl::StatusOr<CertAndKey> IssueHostCert(const CertAndKey& ca, const std::string& host,
                                         const std::vector<std::string>& ips,
                                         const CertValidity& validity = {});

absl::StatusOr<CertAndKey> IssueClientCert(const CertAndKey& ca, const std::string& name,
                                           const CertValidity& validity = {});

// Writes DIR/BASE.crt (0644) and DIR/BASE.key (0600), creating DIR (0700) if needed.
absl::Status WriteCertAndKey(const CertAndKey& pair, const std::string& dir,
                             const std::string& base);
// Reads DIR/BASE.crt and DIR/BASE.key.
absl::StatusOr<CertAndKey> ReadCertAndKey(const std::string& dir, const std::string& base);

// Writes `contents` to `path` with `mode`, replacing any file there.
absl::Status WriteFileWithMode(const std::string& path, const std::string& contents, int mode);
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace ferry
