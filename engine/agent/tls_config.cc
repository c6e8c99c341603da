#include "engine/agent/tls_config.h"

#include <grpc/grpc_security_constants.h>
#include <grpc/support/log.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/auth_context.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <ctime>

#include "absl/strings/match.h"
#include "engine/agent/peer_keepalive.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/agent/certs.h"
#include "engine/agent/openssl_util.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no ", what, " file given (TLS is on; pass --insecure only for local debugging)"));
  }
  auto contents = ReadWholeFile(path);
  if (!contents.ok()) {
    return absl::Status(contents.status().code(),
                        absl::StrCat(what, " file: ", contents.status().message()));
  }
  return contents;
}

std::string TimeString(const ASN1_TIME* t) {
  struct tm tm;
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string RoleOf(X509* cert) {
  std::string ou = SubjectEntry(cert, NID_organizationalUnitName);
  uint32_t eku = X509_get_extended_key_usage(cert);
  bool server = (eku & XKU_SSL_SERVER) != 0, client = (eku & XKU_SSL_CLIENT) != 0;
  if (ou == kHostRole && server && client) return kHostRole;
  if (ou == kClientRole && client) return kClientRole;
  return "";
}

// Our own certificate checked against the CA now, so a misconfigured agent fails at start-up
// naming the files, instead of every peer failing handshakes later.
absl::Status VerifyAgainstCa(X509* cert, X509* ca, const TlsConfig& config) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                        X509_STORE_CTX_free);
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) != 1) {
    return OpenSslError("setting up certificate verification");
  }
  if (X509_verify_cert(ctx.get()) == 1) return absl::OkStatus();
  int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  std::string detail = X509_verify_cert_error_string(err);
  if (err == X509_V_ERR_CERT_HAS_EXPIRED) {
    absl::StrAppend(&detail, " (not after ", TimeString(X509_get0_notAfter(cert)), ")");
  } else if (err == X509_V_ERR_CERT_NOT_YET_VALID) {
    absl::StrAppend(&detail, " (not before ", TimeString(X509_get0_notBefore(cert)), ")");
  }
  return absl::InvalidArgumentError(absl::StrCat("certificate ", config.cert_path,
                                                 " does not verify against CA ",
                                                 config.ca_cert_path, ": ", detail));
}

}  // namespace

absl::StatusOr<TlsMaterial> LoadTlsConfig(const TlsConfig& config) {
  TlsMaterial m;
  m.config = config;
  if (config.insecure) return m;
  ASSIGN_OR_RETURN(m.ca_pem, ReadPemFile(config.ca_cert_path, "CA certificate"));
  ASSIGN_OR_RETURN(m.cert_pem, ReadPemFile(config.cert_path, "certificate"));
  ASSIGN_OR_RETURN(m.key_pem, ReadPemFile(config.key_path, "private key"));
  ASSIGN_OR_RETURN(X509Ptr ca, CertFromPem(m.ca_pem, absl::StrCat("CA certificate ", config.ca_cert_path)));
  ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(m.cert_pem, absl::StrCat("certificate ", config.cert_path)));
  ASSIGN_OR_RETURN(EvpPkeyPtr key, KeyFromPem(m.key_pem, absl::StrCat("private key ", config.key_path)));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("private key ", config.key_path,
                                                   " does not match certificate ", config.cert_path));
  }
  RETURN_IF_ERROR(VerifyAgainstCa(cert.get(), ca.get(), config));
  m.common_name = SubjectEntry(cert.get(), NID_commonName);
  m.role = RoleOf(cert.get());
  return m;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& config) {
  if (config.insecure) {
    spdlog::warn(
        "*** INSECURE: serving plaintext gRPC with no authentication (--insecure). Anyone who can "
        "reach this port can read and forge guest memory. Local debugging only. ***");
    return grpc::InsecureServerCredentials();
  }
  ASSIGN_OR_RETURN(TlsMaterial m, LoadTlsConfig(config));
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = m.ca_pem;
  options.pem_key_cert_pairs.push_back({m.key_pem, m.cert_pem});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsConfig& config) {
  if (config.insecure) {
    spdlog::warn("*** INSECURE: connecting over plaintext gRPC with no authentication (--insecure) ***");
    return grpc::InsecureChannelCredentials();
  }
  ASSIGN_OR_RETURN(TlsMaterial m, LoadTlsConfig(config));
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = m.ca_pem;
  options.pem_private_key = m.key_pem;
  options.pem_cert_chain = m.cert_pem;
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const std::string& expected_peer_name,
                                                           const TlsConfig& config) {
  if (address.empty()) return absl::InvalidArgumentError("no address to connect to");
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds, MakeChannelCredentials(config));
  grpc::ChannelArguments args;
  AddPeerKeepalive(args);  // a silent peer or link breaks the call instead of stalling it
  if (!config.insecure) {
    if (expected_peer_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("connecting to ", address, ": no expected peer name to check its certificate against"));
    }
    args.SetSslTargetNameOverride(expected_peer_name);
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

std::string PeerIdentity::ToString() const {
  if (!authenticated) return absl::StrCat("unauthenticated peer at ", address);
  return absl::StrCat(common_name, " (", role.empty() ? "no role" : role, ") at ", address);
}

PeerIdentity GetPeerIdentity(const grpc::ServerContextBase& context) {
  PeerIdentity id;
  id.address = context.peer();
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return id;
  for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
    id.common_name.assign(v.data(), v.size());
  }
  for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    id.dns_names.emplace_back(v.data(), v.size());
  }
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return id;
  // The handshake already verified the chain; parsing here only reads the role out of it.
  auto cert = CertFromPem(std::string(pem[0].data(), pem[0].size()), "peer certificate");
  if (!cert.ok()) return id;
  id.authenticated = true;
  id.role = RoleOf(cert->get());
  return id;
}

bool PeerIsHost(const grpc::ServerContextBase& context) {
  return GetPeerIdentity(context).role == kHostRole;
}

grpc::Status RequireHostPeer(const grpc::ServerContextBase& context,
                             const std::string& expected_name) {
  PeerIdentity id = GetPeerIdentity(context);
  if (!id.authenticated) {
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    bool tls = false;
    if (auth != nullptr) {
      for (const grpc::string_ref& v :
           auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
        tls = tls || std::string(v.data(), v.size()) == GRPC_SSL_TRANSPORT_SECURITY_TYPE;
      }
    }
    if (!tls) return grpc::Status::OK;  // --insecure server: nothing to check
    spdlog::warn("refused {}: no verified certificate", id.ToString());
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("refused ", id.ToString(), ": no verified certificate"));
  }
  if (id.role != kHostRole) {
    spdlog::warn("refused {}: peer calls need a host certificate", id.ToString());
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("refused ", id.ToString(),
                                     ": this call is for agents; the certificate is not a host "
                                     "certificate (OU=host, serverAuth+clientAuth)"));
  }
  if (!expected_name.empty()) {
    bool named = false;
    for (const std::string& dns : id.dns_names) named = named || dns == expected_name;
    if (!named) {
      spdlog::warn("refused {}: expected host {}", id.ToString(), expected_name);
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("refused ", id.ToString(), ": its certificate names ",
                                       absl::StrJoin(id.dns_names, ", "), ", expected host ",
                                       expected_name));
    }
  }
  return grpc::Status::OK;
}

absl::Status DescribeRpcFailure(const grpc::Status& status, const std::string& address,
                                const std::string& expected_peer_name, const TlsConfig& config) {
  if (status.ok()) return absl::OkStatus();
  const std::string& msg = status.error_message();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (!absl::StrContains(msg, "failed to connect")) return absl::Status(code, msg);
  std::string why;
  if (absl::StrContains(msg, "is not in peer certificate")) {
    code = absl::StatusCode::kUnauthenticated;
    why = absl::StrCat("the server's certificate does not name ", expected_peer_name,
                       ": this address is not the host we meant to reach (another host's agent?)");
  } else if (absl::StrContains(msg, "certificate verify failed")) {
    code = absl::StatusCode::kUnauthenticated;
    why = absl::StrCat("the server's certificate is not trusted: not signed by CA ",
                       config.ca_cert_path, ", or expired / not yet valid");
  } else if (absl::StrContains(msg, "Socket closed") || absl::StrContains(msg, "Connection reset")) {
    if (config.insecure) {
      why = "the server closed the connection: it most likely requires TLS and we connected in "
            "plaintext (--insecure)";
    } else {
      code = absl::StatusCode::kUnauthenticated;
      why = absl::StrCat("the server closed the connection during the TLS handshake: it most "
                         "likely refused our certificate ", config.cert_path,
                         " (not signed by its CA, expired, or missing); its log says why");
    }
  } else if (absl::StrContains(msg, "Ssl handshake failed") ||
             absl::StrContains(msg, "Handshake failed")) {
    code = absl::StatusCode::kUnauthenticated;
    why = "the TLS handshake failed (does the server speak TLS? with --insecure on one side only, "
          "it cannot)";
  }
  std::string out = absl::StrCat("connecting to ", expected_peer_name.empty() ? "" : expected_peer_name,
                                 expected_peer_name.empty() ? "" : " at ", address, ": ");
  if (!why.empty()) absl::StrAppend(&out, why, " [grpc: ", msg, "]");
  else absl::StrAppend(&out, msg);
  return absl::Status(code, out);
}

std::string ExplainHandshakeFailure(const std::string& line) {
  if (absl::StrContains(line, "certificate verify failed")) {
    return "refused a TLS client: its certificate is not signed by the cluster CA, or is expired "
           "or not yet valid";
  }
  if (absl::StrContains(line, "peer did not return a certificate")) {
    return "refused a TLS client: it presented no client certificate";
  }
  if (absl::StrContains(line, "wrong version number") || absl::StrContains(line, "http request") ||
      absl::StrContains(line, "packet length too long")) {
    return "refused a client speaking plaintext (a client started with --insecure?)";
  }
  if (absl::StrContains(line, "No match found for server name")) {
    return "a client asked for a host name this agent's certificate does not carry (it dialled "
           "the wrong address?)";
  }
  if (absl::StrContains(line, "Handshake failed")) return "refused a connection: TLS handshake failed";
  return "";
}

std::string HandshakeFailureReason(const std::string& line) {
  if (absl::StrContains(line, "certificate verify failed")) return "untrusted_certificate";
  if (absl::StrContains(line, "peer did not return a certificate")) return "no_client_certificate";
  if (absl::StrContains(line, "wrong version number") || absl::StrContains(line, "http request") ||
      absl::StrContains(line, "packet length too long")) {
    return "plaintext_client";
  }
  if (absl::StrContains(line, "No match found for server name")) return "unknown_server_name";
  if (absl::StrContains(line, "Handshake failed")) return "other";
  return "";
}

namespace {
std::atomic<void (*)(std::string_view)> handshake_failure_hook{nullptr};
}  // namespace

void RouteGrpcLogsToSpdlog(void (*on_handshake_failure)(std::string_view reason)) {
  handshake_failure_hook.store(on_handshake_failure);
  gpr_set_log_function([](gpr_log_func_args* args) {
    std::string hint = ExplainHandshakeFailure(args->message);
    if (!hint.empty()) {
      spdlog::warn("{} (grpc: {})", hint, args->message);
      if (auto hook = handshake_failure_hook.load()) hook(HandshakeFailureReason(args->message));
      return;
    }
    switch (args->severity) {
      case GPR_LOG_SEVERITY_ERROR:
        spdlog::error("grpc: {} ({}:{})", args->message, args->file, args->line);
        break;
      case GPR_LOG_SEVERITY_INFO:
        spdlog::info("grpc: {}", args->message);
        break;
      default:
        spdlog::debug("grpc: {}", args->message);
    }
  });
}

}  // namespace ferry
