#pragma once
// Owners and PEM helpers for the OpenSSL objects certs.cc and tls_config.cc use.

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

// "what: <OpenSSL's error queue>", clearing the queue.
absl::Status OpenSslError(absl::string_view what);

// `what` names the source in errors (e.g. a file path).
absl::StatusOr<X509Ptr> CertFromPem(const std::string& pem, absl::string_view what);
absl::StatusOr<EvpPkeyPtr> KeyFromPem(const std::string& pem, absl::string_view what);
absl::StatusOr<std::string> CertToPem(X509* cert);
absl::StatusOr<std::string> KeyToPem(EVP_PKEY* key);

// The first entry of `nid` (e.g. NID_commonName) in the subject, or "".
std::string SubjectEntry(X509* cert, int nid);

}  // namespace ferry
