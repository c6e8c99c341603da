#pragma once
// Transport security for every gRPC connection an agent makes or accepts: mutual TLS against the
// cluster CA, or plaintext only when explicitly started with --insecure. See docs/security.md.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ferry {

struct TlsConfig {
  std::string ca_cert_path;  // the cluster CA: peers' certificates must chain to it
  std::string cert_path;     // our certificate (a host certificate for agents)
  std::string key_path;      // its private key
  bool insecure = false;     // plaintext, no authentication: local debugging only
};

// The files of a TlsConfig, checked: each exists and parses as PEM, the key matches the
// certificate, and the certificate is currently valid and signed by the CA.
struct TlsMaterial {
  TlsConfig config;
  std::string ca_pem, cert_pem, key_pem;
  std::string common_name;  // our certificate's CN
  std::string role;         // kHostRole, kClientRole or "" (see certs.h)
};

// Errors name the offending file. With insecure set, checks nothing and returns empty material.
absl::StatusOr<TlsMaterial> LoadTlsConfig(const TlsConfig& config);

// Server side: requires a client certificate that chains to the CA (refusing plaintext, other CAs,
// expired certificates, no certificate). Insecure: plaintext, with a loud warning.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& config);

// Client side: presents our certificate and verifies the server's against the CA.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsConfig& config);

// A channel to `address` (HOST:PORT) whose server certificate must name `expected_peer_name`
// (a DNS SAN, or IP SAN when it is an address): the caller checks it reached the host it meant,
// whatever address it dialled.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const std::string& expected_peer_name,
                                                           const TlsConfig& config);

// Who is on the other end of an RPC, from the verified TLS handshake.
struct PeerIdentity {
  bool authenticated = false;  // false for plaintext (--insecure) connections
  std::string common_name;
  std::vector<std::string> dns_names;  // SAN DNS entries
  std::string role;                    // kHostRole, kClientRole or "" when the cert has none
  std::string address;                 // "ipv4:127.0.0.1:1234"

  // "host-a (host) at ipv4:…" or "unauthenticated peer at ipv4:…", for logs and errors.
  std::string ToString() const;
};

PeerIdentity GetPeerIdentity(const grpc::ServerContextBase& context);

// True when the peer presented a verified host certificate (OU=host with serverAuth+clientAuth).
bool PeerIsHost(const grpc::ServerContextBase& context);

// PERMISSION_DENIED unless the peer is a host (and, when `expected_name` is non-empty, one whose
// certificate names it). On a plaintext server (insecure) every peer passes: there is nothing to
// check, and the agent has already warned.
grpc::Status RequireHostPeer(const grpc::ServerContextBase& context,
                             const std::string& expected_name = "");

// Rewrites a failed RPC's status from a MakeChannel channel into an error that says what went
// wrong with the connection's security (untrusted or misnamed server certificate, our
// certificate refused, TLS/plaintext mismatch), naming the address and expected peer. Statuses
// that are not connection failures pass through unchanged.
absl::Status DescribeRpcFailure(const grpc::Status& status, const std::string& address,
                                const std::string& expected_peer_name, const TlsConfig& config);

// For a gRPC server-side log line about a failed TLS handshake, a plain-words cause
// ("the client presented no certificate"); "" for other lines.
std::string ExplainHandshakeFailure(const std::string& grpc_log_line);

// For the same line, a short label for metrics: "untrusted_certificate", "no_client_certificate",
// "plaintext_client", "unknown_server_name" or "other"; "" for other lines.
std::string HandshakeFailureReason(const std::string& grpc_log_line);

// Forwards gRPC's own log lines (TLS handshake failures among them) to spdlog, so the server
// side of a refused connection says why in the agent's log; each failed handshake is also passed
// to `on_handshake_failure` (with its HandshakeFailureReason) when given.
void RouteGrpcLogsToSpdlog(void (*on_handshake_failure)(std::string_view reason) = nullptr);

}  // namespace ferry
