#pragma once
// Shared by the TLS tests: a throwaway PKI in a temp dir, a tiny Agent service that answers
// GetHostInfo over real gRPC on 127.0.0.1:0, and a capture of gRPC's own log lines.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "engine/agent/certs.h"
#include "engine/agent/tls_config.h"
#include "proto/ferry/v1/agent.grpc.pb.h"

namespace ferry::testing {

// CA "ferry-test-ca" in DIR/ca.{crt,key}; leaf certs in DIR/NAME.{crt,key}.
class TestPki {
 public:
  TestPki();
  ~TestPki();
  const std::string& dir() const { return dir_; }
  const CertAndKey& ca() const { return ca_; }

  // Issue and write a certificate; returns a config presenting it and trusting our CA.
  TlsConfig Host(const std::string& name, const CertValidity& validity = {});
  TlsConfig Client(const std::string& name, const CertValidity& validity = {});
  // A host certificate from a different CA (written as NAME.*; the config still trusts ours).
  TlsConfig HostFromOtherCa(const std::string& name);

 private:
  TlsConfig Write(const std::string& name, const CertAndKey& pair);
  std::string dir_;
  CertAndKey ca_;
};

// Answers GetHostInfo with its name; remembers who called.
class HostInfoService final : public ferry::v1::Agent::Service {
 public:
  // require_host: answer only peers with a host certificate (naming expected_peer if given).
  HostInfoService(std::string name, bool require_host, std::string expected_peer)
      : name_(std::move(name)), require_host_(require_host), expected_peer_(std::move(expected_peer)) {}
  grpc::Status GetHostInfo(grpc::ServerContext* context, const ferry::v1::GetHostInfoRequest*,
                           ferry::v1::HostInfo* out) override;
  int calls() const { return calls_.load(); }
  PeerIdentity last_peer() const;

 private:
  std::string name_;
  bool require_host_;
  std::string expected_peer_;
  std::atomic<int> calls_{0};
  mutable std::mutex mu_;
  PeerIdentity last_peer_;
};

struct TestServer {
  std::unique_ptr<HostInfoService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

std::unique_ptr<TestServer> StartServer(std::shared_ptr<grpc::ServerCredentials> creds,
                                        const std::string& name, bool require_host = false,
                                        const std::string& expected_peer = "");

// One GetHostInfo over `channel` with a 20 s deadline (generous: TSan on a loaded host).
grpc::Status CallGetHostInfo(const std::shared_ptr<grpc::Channel>& channel,
                             ferry::v1::HostInfo* out = nullptr);

// Captures gRPC's log lines (where handshake failures are reported on the server side).
class GrpcLogCapture {
 public:
  GrpcLogCapture();
  ~GrpcLogCapture();
  // Waits up to 15 s for a line containing `needle`. Sets *line to it, or on failure to every
  // captured line (for the test's message).
  bool WaitFor(const std::string& needle, std::string* line);
};

}  // namespace ferry::testing
