#include "tests/agent/tls_test_util.h"

#include <grpc/support/log.h>
#include <grpcpp/server_builder.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace ferry::testing {
namespace {

std::mutex g_log_mu;
std::vector<std::string>* g_log_lines = nullptr;

void CaptureLog(gpr_log_func_args* args) {
  std::lock_guard<std::mutex> lock(g_log_mu);
  if (g_log_lines != nullptr) g_log_lines->push_back(args->message);
}

}  // namespace

TestPki::TestPki() {
  std::string templ = (std::filesystem::temp_directory_path() / "ferry-tls-XXXXXX").string();
  char* made = mkdtemp(templ.data());
  EXPECT_NE(made, nullptr);
  dir_ = templ;
  auto ca = CreateCa("ferry-test-ca");
  EXPECT_TRUE(ca.ok()) << ca.status();
  ca_ = *ca;
  EXPECT_TRUE(WriteCertAndKey(ca_, dir_, "ca").ok());
}

TestPki::~TestPki() { std::filesystem::remove_all(dir_); }

TlsConfig TestPki::Write(const std::string& name, const CertAndKey& pair) {
  EXPECT_TRUE(WriteCertAndKey(pair, dir_, name).ok());
  return TlsConfig{dir_ + "/ca.crt", dir_ + "/" + name + ".crt", dir_ + "/" + name + ".key"};
}

TlsConfig TestPki::Host(const std::string& name, const CertValidity& validity) {
  auto pair = IssueHostCert(ca_, name, {"127.0.0.1"}, validity);
  EXPECT_TRUE(pair.ok()) << pair.status();
  return Write(name, *pair);
}

TlsConfig TestPki::Client(const std::string& name, const CertValidity& validity) {
  auto pair = IssueClientCert(ca_, name, validity);
  EXPECT_TRUE(pair.ok()) << pair.status();
  return Write(name, *pair);
}

TlsConfig TestPki::HostFromOtherCa(const std::string& name) {
  auto other = CreateCa("some-other-ca");
  EXPECT_TRUE(other.ok()) << other.status();
  auto pair = IssueHostCert(*other, name, {"127.0.0.1"});
  EXPECT_TRUE(pair.ok()) << pair.status();
  return Write(name, *pair);
}

grpc::Status HostInfoService::GetHostInfo(grpc::ServerContext* context,
                                          const ferry::v1::GetHostInfoRequest*,
                                          ferry::v1::HostInfo* out) {
  calls_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_peer_ = GetPeerIdentity(*context);
  }
  if (require_host_) {
    grpc::Status st = RequireHostPeer(*context, expected_peer_);
    if (!st.ok()) return st;
  }
  out->set_agent_name(name_);
  return grpc::Status::OK;
}

PeerIdentity HostInfoService::last_peer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_peer_;
}

std::unique_ptr<TestServer> StartServer(std::shared_ptr<grpc::ServerCredentials> creds,
                                        const std::string& name, bool require_host,
                                        const std::string& expected_peer) {
  auto s = std::make_unique<TestServer>();
  s->service = std::make_unique<HostInfoService>(name, require_host, expected_peer);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", std::move(creds), &s->port);
  builder.RegisterService(s->service.get());
  s->server = builder.BuildAndStart();
  EXPECT_NE(s->server, nullptr);
  EXPECT_GT(s->port, 0);
  return s;
}

grpc::Status CallGetHostInfo(const std::shared_ptr<grpc::Channel>& channel,
                             ferry::v1::HostInfo* out) {
  auto stub = ferry::v1::Agent::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ferry::v1::HostInfo ignored;
  return stub->GetHostInfo(&context, ferry::v1::GetHostInfoRequest(), out ? out : &ignored);
}

GrpcLogCapture::GrpcLogCapture() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  g_log_lines = new std::vector<std::string>();
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
  gpr_set_log_function(CaptureLog);
}

GrpcLogCapture::~GrpcLogCapture() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  gpr_set_log_function(nullptr);
  delete g_log_lines;
  g_log_lines = nullptr;
}

bool GrpcLogCapture::WaitFor(const std::string& needle, std::string* line_out) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(g_log_mu);
      for (const std::string& line : *g_log_lines) {
        if (line.find(needle) != std::string::npos) {
          *line_out = line;
          return true;
        }
      }
      if (std::chrono::steady_clock::now() > deadline) {
        *line_out = absl::StrJoin(*g_log_lines, "\n");
        return false;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace ferry::testing
