// Mutual TLS between agents and from orchestrator clients, over real gRPC on 127.0.0.1:0.
#include <grpcpp/create_channel.h>

#include "absl/strings/match.h"
#include "engine/agent/certs.h"
#include "engine/agent/tls_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/tls_test_util.h"

namespace ferry {
namespace {

using ::ferry::testing::CallGetHostInfo;
using ::ferry::testing::GrpcLogCapture;
using ::ferry::testing::StartServer;
using ::ferry::testing::TestPki;
using ::testing::AnyOf;
using ::testing::HasSubstr;

std::shared_ptr<grpc::ServerCredentials> ServerCreds(const TlsConfig& config) {
  auto creds = MakeServerCredentials(config);
  EXPECT_TRUE(creds.ok()) << creds.status();
  return *creds;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address, const std::string& expected,
                                       const TlsConfig& config) {
  auto channel = MakeChannel(address, expected, config);
  EXPECT_TRUE(channel.ok()) << channel.status();
  return *channel;
}

// Credentials straight from PEM files, bypassing LoadTlsConfig's own checks (which would refuse
// an expired certificate before it ever reached the wire).
std::string Pem(const std::string& path) {
  auto s = ReadWholeFile(path);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

std::shared_ptr<grpc::Channel> RawChannel(const std::string& address, const std::string& expected,
                                          const TlsConfig& config, bool with_cert = true) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = Pem(config.ca_cert_path);
  if (with_cert) {
    options.pem_private_key = Pem(config.key_path);
    options.pem_cert_chain = Pem(config.cert_path);
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(expected);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

class TlsGrpcTest : public ::testing::Test {
 protected:
  TestPki pki_;
  GrpcLogCapture logs_;
};

TEST_F(TlsGrpcTest, HostsWithCertificatesFromTheClusterCaConnect) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  ferry::v1::HostInfo info;
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Host("host-b")), &info);
  ASSERT_TRUE(st.ok()) << st.error_code() << ": " << st.error_message();
  EXPECT_EQ(info.agent_name(), "host-a");
  PeerIdentity peer = server->service->last_peer();
  EXPECT_TRUE(peer.authenticated);
  EXPECT_EQ(peer.common_name, "host-b");
  EXPECT_EQ(peer.role, kHostRole);
  EXPECT_THAT(peer.dns_names, ::testing::Contains("host-b"));
}

// Server side of a refused connection: the service was never reached, and gRPC's log (which the
// agent forwards with RouteGrpcLogsToSpdlog) names the OpenSSL reason, which we explain.
void ExpectServerRefused(ferry::testing::TestServer& server, GrpcLogCapture& logs,
                         const std::string& openssl_reason, const std::string& explanation) {
  EXPECT_EQ(server.service->calls(), 0) << "the RPC reached the service";
  std::string line;
  ASSERT_TRUE(logs.WaitFor(openssl_reason, &line)) << "server log lacks '" << openssl_reason
                                                   << "'; it has:\n" << line;
  EXPECT_THAT(ExplainHandshakeFailure(line), HasSubstr(explanation));
}

// Client side: the RPC fails at connection time, and DescribeRpcFailure says why.
absl::Status ExpectClientRefused(const grpc::Status& st, const std::string& address,
                                 const std::string& expected, const TlsConfig& config) {
  EXPECT_FALSE(st.ok()) << "connection was accepted";
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  return DescribeRpcFailure(st, address, expected, config);
}

TEST_F(TlsGrpcTest, OrchestratorClientCertificateIsAcceptedAndIsNotAHost) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Client("admin")));
  ASSERT_TRUE(st.ok()) << st.error_message();
  PeerIdentity peer = server->service->last_peer();
  EXPECT_TRUE(peer.authenticated);
  EXPECT_EQ(peer.common_name, "admin");
  EXPECT_EQ(peer.role, kClientRole);
}

TEST_F(TlsGrpcTest, PeerOnlyCallRefusesOrchestratorClientButAcceptsHost) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a", /*require_host=*/true);
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Client("admin")));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("not a host certificate"));
  EXPECT_THAT(st.error_message(), HasSubstr("admin"));
  st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Host("host-b")));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(TlsGrpcTest, ClientCertificateFromAnotherCaIsRefused) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  TlsConfig rogue = pki_.HostFromOtherCa("host-x");
  grpc::Status st = CallGetHostInfo(RawChannel(server->address(), "host-a", rogue));
  absl::Status described = ExpectClientRefused(st, server->address(), "host-a", rogue);
  EXPECT_EQ(described.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(described.message()), HasSubstr("refused our certificate"));
  ExpectServerRefused(*server, logs_, "certificate verify failed", "not signed by the cluster CA");
}

TEST_F(TlsGrpcTest, ExpiredClientCertificateIsRefused) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  TlsConfig expired = pki_.Host("host-old", CertValidity::Expired());
  // Our own loader already refuses to present it ...
  auto loaded = MakeChannel(server->address(), "host-a", expired);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("certificate has expired"));
  // ... and a client that presents it anyway is refused by the server.
  grpc::Status st = CallGetHostInfo(RawChannel(server->address(), "host-a", expired));
  absl::Status described = ExpectClientRefused(st, server->address(), "host-a", expired);
  EXPECT_THAT(std::string(described.message()), HasSubstr("expired"));
  ExpectServerRefused(*server, logs_, "certificate verify failed", "expired");
}

TEST_F(TlsGrpcTest, ExpiredServerCertificateIsRefusedByTheClient) {
  TlsConfig expired = pki_.Host("host-a", CertValidity::Expired());
  auto refused = MakeServerCredentials(expired);
  ASSERT_FALSE(refused.ok()) << "an agent must not start with an expired certificate";
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(expired.cert_path));
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = Pem(expired.ca_cert_path);
  o.pem_key_cert_pairs.push_back({Pem(expired.key_path), Pem(expired.cert_path)});
  auto server = StartServer(grpc::SslServerCredentials(o), "host-a");
  TlsConfig client = pki_.Host("host-b");
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", client));
  EXPECT_THAT(st.error_message(), HasSubstr("certificate verify failed"));
  absl::Status described = ExpectClientRefused(st, server->address(), "host-a", client);
  EXPECT_EQ(described.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(described.message()), HasSubstr("not trusted"));
  EXPECT_EQ(server->service->calls(), 0);
}

TEST_F(TlsGrpcTest, ServerPresentingAnotherHostsCertificateIsRefused) {
  // host-b's agent answers at the address where the source expected host-a.
  auto server = StartServer(ServerCreds(pki_.Host("host-b")), "host-b");
  TlsConfig client = pki_.Host("host-c");
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", client));
  EXPECT_THAT(st.error_message(), HasSubstr("Peer name host-a is not in peer certificate"));
  absl::Status described = ExpectClientRefused(st, server->address(), "host-a", client);
  EXPECT_EQ(described.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(described.message()), HasSubstr("does not name host-a"));
  EXPECT_EQ(server->service->calls(), 0);
  std::string line;
  EXPECT_TRUE(logs_.WaitFor("No match found for server name: host-a", &line)) << line;
  EXPECT_THAT(ExplainHandshakeFailure(line), HasSubstr("wrong address"));
}

TEST_F(TlsGrpcTest, DestinationRefusesASourceOtherThanTheOneItExpects) {
  // The handshake accepts host-c (a valid host of this cluster), but this destination was told
  // to expect host-b: the per-call check refuses it.
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a", true, "host-b");
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Host("host-c")));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("expected host host-b"));
  EXPECT_THAT(server->service->last_peer().ToString(), HasSubstr("host-c (host)"));
  st = CallGetHostInfo(Channel(server->address(), "host-a", pki_.Host("host-b")));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(TlsGrpcTest, PlaintextClientToTlsServerIsRefused) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  TlsConfig insecure;
  insecure.insecure = true;
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "host-a", insecure));
  absl::Status described = ExpectClientRefused(st, server->address(), "host-a", insecure);
  EXPECT_THAT(std::string(described.message()), HasSubstr("requires TLS"));
  ExpectServerRefused(*server, logs_, "wrong version number", "plaintext");
}

TEST_F(TlsGrpcTest, ClientWithoutCertificateIsRefused) {
  auto server = StartServer(ServerCreds(pki_.Host("host-a")), "host-a");
  TlsConfig anonymous = pki_.Host("host-b");
  grpc::Status st = CallGetHostInfo(RawChannel(server->address(), "host-a", anonymous, false));
  (void)ExpectClientRefused(st, server->address(), "host-a", anonymous);
  ExpectServerRefused(*server, logs_, "peer did not return a certificate", "no client certificate");
}

TEST_F(TlsGrpcTest, InsecureServerAndClientTalkPlaintext) {
  TlsConfig insecure;
  insecure.insecure = true;
  auto server = StartServer(ServerCreds(insecure), "host-a", /*require_host=*/true);
  grpc::Status st = CallGetHostInfo(Channel(server->address(), "", insecure));
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(server->service->last_peer().authenticated);
}

}  // namespace
}  // namespace ferry
