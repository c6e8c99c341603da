// Untrusted input over real agent processes: bad VM names through the Agent API and through a
// Peer start, a start asking for more memory than the host has or CPU features it lacks, and a
// memory batch over the documented size. Each is refused with a short, clear error; the agent keeps
// serving, a VM already running keeps running, and no file is left in or created outside the data dir.
#include <unistd.h>

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/tls_config.h"
#include "engine/migration/protocol.h"
#include "proto/ferry/v1/peer.grpc.pb.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

namespace fs = std::filesystem;

constexpr size_t kShortError = 400;  // bytes: an error that quotes a name still fits a terminal line

class UntrustedInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = cli::LocalCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    std::string certs = cluster_->dir() + "/certs/";
    TlsConfig tls{certs + "ca.crt", certs + "host-a.crt", certs + "host-a.key", false};
    auto ch = MakeChannel(cluster_->address(1), "host-b", tls);
    ASSERT_TRUE(ch.ok()) << ch.status();
    peer_ = v1::Peer::NewStub(*ch);
    auto stub = cluster_->Stub(1);
    ASSERT_TRUE(stub.ok()) << stub.status();
    agent_ = std::move(*stub);
    // A VM that must keep running through everything below.
    ASSERT_TRUE(CreateVm(*agent_, GuestSpec("keeper", v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1)).ok());
    before_ = Tree();
  }

  void TearDown() override {
    if (!cluster_) return;
    for (const std::string& p : Escapes()) {
      EXPECT_FALSE(fs::exists(p)) << p << " was created outside the data dir";
    }
    EXPECT_EQ(Tree(), before_) << "files appeared or stayed under the agent's data dir";
  }

  // Every path under host-b's data dir (the console log's size is left out: it grows).
  std::set<std::string> Tree() const {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(cluster_->dir() + "/host-b", ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      out.insert(it->path().string());
    }
    return out;
  }

  // Where a name used as a path would have escaped to.
  std::vector<std::string> Escapes() const {
    const std::string tag = absl::StrCat("ferry-escape-", getpid());
    return {cluster_->dir() + "/" + tag, fs::path(cluster_->dir()).parent_path().string() + "/" + tag,
            "/tmp/" + tag, cluster_->dir() + "/host-b/" + tag};
  }

  std::vector<std::string> BadNames() const {
    const std::string tag = absl::StrCat("ferry-escape-", getpid());
    return {"a/b", "..", ".", absl::StrCat("../../../", tag), absl::StrCat("../../", tag), absl::StrCat("../", tag),
            absl::StrCat("/tmp/", tag), std::string(10000, 'a'), "bad\x01name", "line\nbreak", "tab\there",
            "-leading-dash", "a..b", std::string("nul\0x", 5)};
  }

  v1::PeerMessage Start(const v1::VmSpec& spec) {
    v1::PeerMessage m;
    m.mutable_start()->set_protocol_version(1);
    m.mutable_start()->set_migration_id(absl::StrCat("test-", ++starts_));
    *m.mutable_start()->mutable_spec() = spec;
    return m;
  }

  // Sends `msgs` on one Peer stream; returns the error the destination answered with.
  v1::PeerError ErrorFor(const std::vector<v1::PeerMessage>& msgs) {
    grpc::ClientContext ctx;
    auto stream = peer_->Migrate(&ctx);
    v1::PeerReply reply;
    v1::PeerError error;
    for (const auto& m : msgs) {
      if (!stream->Write(m)) break;
      if (m.has_start()) {
        if (!stream->Read(&reply)) break;
        if (reply.has_error()) {
          error = reply.error();
          break;
        }
      }
    }
    if (error.code() == v1::PEER_ERROR_CODE_UNSPECIFIED) {
      stream->WritesDone();
      while (stream->Read(&reply)) {
        if (reply.has_error()) error = reply.error();
      }
    }
    grpc::Status st = stream->Finish();
    EXPECT_FALSE(st.ok()) << "a refused stream must not end OK";
    EXPECT_LE(st.error_message().size(), kShortError);
    return error;
  }

  void ExpectKeeperRunsAndAgentServes() {
    v1::VmInfo info;
    ASSERT_TRUE(GetVm(*agent_, "keeper", &info).ok());
    EXPECT_EQ(info.state(), v1::VM_POWER_STATE_RUNNING);
    const uint64_t beats = info.health().heartbeats();
    EXPECT_TRUE(WaitForHeartbeats(*agent_, "keeper", beats + 2, 10)) << "the running VM stopped beating";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (ListVms(*agent_).vms_size() != 1 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(ListVms(*agent_).vms_size(), 1) << "a refused VM stayed registered";
  }

  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<v1::Peer::Stub> peer_;
  std::unique_ptr<v1::Agent::Stub> agent_;
  std::set<std::string> before_;
  int starts_ = 0;
};

TEST_F(UntrustedInputTest, BadVmNamesAreRefusedThroughTheAgentApi) {
  for (const std::string& name : BadNames()) {
    grpc::Status st = CreateVm(*agent_, GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name.substr(0, 40);
    EXPECT_NE(st.error_message().find("VM name"), std::string::npos) << st.error_message();
    EXPECT_LE(st.error_message().size(), kShortError) << "the error echoes the whole name";
    v1::VmInfo info;
    grpc::Status got = GetVm(*agent_, name, &info);
    EXPECT_EQ(got.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_LE(got.error_message().size(), kShortError);
  }
  ExpectKeeperRunsAndAgentServes();
}

TEST_F(UntrustedInputTest, BadVmNamesAreRefusedInAPeerStart) {
  for (const std::string& name : BadNames()) {
    v1::PeerError e = ErrorFor({Start(GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1))});
    EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE) << name.substr(0, 40);
    EXPECT_NE(e.message().find("VM name"), std::string::npos) << e.message();
    EXPECT_LE(e.message().size(), kShortError);
  }
  ExpectKeeperRunsAndAgentServes();
}

TEST_F(UntrustedInputTest, AStartAskingMoreMemoryThanTheHostHasIsRefused) {
  v1::PeerError e = ErrorFor({Start(GuestSpec("huge", v1::BACKEND_KIND_SYNTHETIC, 64ull << 20, 1, 1))});  // 64 TiB
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_RESOURCE);
  EXPECT_NE(e.message().find("not enough free memory for VM 'huge'"), std::string::npos) << e.message();
  ExpectKeeperRunsAndAgentServes();
}

TEST_F(UntrustedInputTest, AStartAskingCpuFeaturesTheHostLacksIsRefused) {
  v1::VmSpec spec = GuestSpec("alien-cpu", v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1);
  spec.mutable_cpu()->add_features("no-such-feature");
  v1::PeerError e = ErrorFor({Start(spec)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_RESOURCE);
  EXPECT_NE(e.message().find("does not offer CPU feature(s) \"no-such-feature\""), std::string::npos) << e.message();
  ExpectKeeperRunsAndAgentServes();
}

TEST_F(UntrustedInputTest, ABatchOverTheDocumentedSizeIsRefusedAndLeavesNoDirectory) {
  // The VM was created (its directory too) before the batch came: both go with the refusal.
  v1::PeerMessage batch;
  auto* run = batch.mutable_memory()->add_runs();
  run->set_first_page(0);
  const uint32_t pages = static_cast<uint32_t>(kMaxBatchDataBytes / 4096) + 1;
  run->set_count(pages);
  run->set_data(std::string(uint64_t{pages} * 4096, 'x'));
  v1::PeerError e = ErrorFor({Start(GuestSpec("big-batch", v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1)), batch});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_LENGTH_MISMATCH);
  EXPECT_NE(e.message().find("the limit is 1048576"), std::string::npos) << e.message();
  ExpectKeeperRunsAndAgentServes();
}

}  // namespace
}  // namespace ferry::e2e
