// Bad input on the Peer stream: each gets a clear error, and the agent keeps serving.
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/tls_config.h"
#include "engine/migration/protocol.h"
#include "proto/ferry/v1/peer.grpc.pb.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

class PeerProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = cli::LocalCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    // Speak to host-b as host-a would: with host-a's certificate.
    std::string certs = cluster_->dir() + "/certs/";
    TlsConfig tls{certs + "ca.crt", certs + "host-a.crt", certs + "host-a.key", false};
    auto ch = MakeChannel(cluster_->address(1), "host-b", tls);
    ASSERT_TRUE(ch.ok()) << ch.status();
    peer_ = v1::Peer::NewStub(*ch);
  }

  v1::PeerMessage Start(uint32_t version, const std::string& name = "intruder") {
    v1::PeerMessage m;
    m.mutable_start()->set_protocol_version(version);
    m.mutable_start()->set_migration_id("test");
    *m.mutable_start()->mutable_spec() = GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1);
    return m;
  }

  // A protocol-2 start offering data connections (valid unless the caller changes it).
  v1::PeerMessage DataPathStart(uint32_t connections = 2, size_t secret_bytes = 32, bool encrypted = true) {
    v1::PeerMessage m = Start(kProtocolVersion);
    v1::DataPathOffer* d = m.mutable_start()->mutable_data_path();
    d->set_connections(connections);
    d->set_encrypted(encrypted);
    d->set_secret(std::string(secret_bytes, '\x5a'));
    return m;
  }

  // Sends `msgs` on one stream and returns the error the destination answered with.
  v1::PeerError ErrorFor(const std::vector<v1::PeerMessage>& msgs) {
    grpc::ClientContext ctx;
    auto stream = peer_->Migrate(&ctx);
    v1::PeerReply reply;
    v1::PeerError error;
    for (const auto& m : msgs) {
      if (!stream->Write(m)) break;
      if (m.has_start() || m.has_device_state()) {
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
    return error;
  }

  void ExpectAgentStillServes() {
    auto stub = cluster_->Stub(1);
    ASSERT_TRUE(stub.ok());
    grpc::ClientContext ctx;
    v1::HostInfo info;
    ASSERT_TRUE((*stub)->GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
    EXPECT_EQ(ListVms(**stub).vms_size(), 0) << "a refused migration left a VM behind";
  }

  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<v1::Peer::Stub> peer_;
};

v1::PeerMessage Memory(uint64_t first_page, uint32_t count, size_t data_bytes) {
  v1::PeerMessage m;
  auto* run = m.mutable_memory()->add_runs();
  run->set_first_page(first_page);
  run->set_count(count);
  run->set_data(std::string(data_bytes, 'x'));
  return m;
}

TEST_F(PeerProtocolTest, WrongProtocolVersionIsRefused) {
  v1::PeerError e = ErrorFor({Start(kProtocolVersion + 1)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_VERSION);
  EXPECT_NE(e.message().find("protocol version"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, PageOutsideGuestMemoryIsRefused) {
  v1::PeerError e = ErrorFor({Start(kProtocolVersion), Memory(1ull << 30, 1, 4096)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_OUT_OF_RANGE);
  EXPECT_NE(e.message().find("outside guest memory"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DataLengthMismatchIsRefused) {
  v1::PeerError e = ErrorFor({Start(kProtocolVersion), Memory(10, 2, 4096)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_LENGTH_MISMATCH);
  EXPECT_NE(e.message().find("expected 8192"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DeviceStateBeforeMemoryIsRefused) {
  v1::PeerMessage state;
  state.mutable_device_state()->mutable_state()->set_backend(v1::BACKEND_KIND_SYNTHETIC);
  v1::PeerError e = ErrorFor({Start(kProtocolVersion), state});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("device state"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DuplicateStartIsRefused) {
  v1::PeerError e = ErrorFor({Start(kProtocolVersion), Start(kProtocolVersion)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("duplicate start"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

// A version newer than this agent speaks (protocol 3 added storage migration's disk blocks).
TEST_F(PeerProtocolTest, ANewerVersionIsRefusedNamingTheVersionsSpoken) {
  const uint32_t newer = kProtocolVersion + 1;
  v1::PeerError e = ErrorFor({Start(newer)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_VERSION);
  EXPECT_NE(e.message().find(absl::StrCat("protocol version ", newer)), std::string::npos) << e.message();
  EXPECT_NE(e.message().find(absl::StrCat(kOldestProtocolVersion, " to ", kProtocolVersion)), std::string::npos)
      << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, Version1WithoutDataPathIsStillServed) {
  grpc::ClientContext ctx;
  auto stream = peer_->Migrate(&ctx);
  ASSERT_TRUE(stream->Write(Start(1)));
  v1::PeerReply reply;
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_TRUE(reply.has_started()) << reply.DebugString();
  EXPECT_EQ(reply.started().destination_agent(), "host-b");
  EXPECT_FALSE(reply.started().has_data_path()) << "a version-1 source gets no data port";
  // Pages on the stream, as version 1 sends them, are accepted.
  ASSERT_TRUE(stream->Write(Memory(0, 1, 4096)));
  v1::PeerMessage abort;
  abort.mutable_abort()->set_reason("test over");
  ASSERT_TRUE(stream->Write(abort));
  stream->WritesDone();
  while (stream->Read(&reply)) {
    EXPECT_FALSE(reply.has_error()) << reply.error().message();
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(VmsAfterSettling(**cluster_->Stub(1)), 0);
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, Version1WithDataPathIsRefused) {
  v1::PeerMessage m = DataPathStart();
  m.mutable_start()->set_protocol_version(1);
  v1::PeerError e = ErrorFor({m});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("protocol version 2"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DataPathStartIsAnsweredWithAPort) {
  grpc::ClientContext ctx;
  auto stream = peer_->Migrate(&ctx);
  ASSERT_TRUE(stream->Write(DataPathStart(3)));
  v1::PeerReply reply;
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_TRUE(reply.has_started()) << reply.DebugString();
  ASSERT_TRUE(reply.started().has_data_path());
  EXPECT_GT(reply.started().data_path().port(), 0u);
  EXPECT_LE(reply.started().data_path().port(), 65535u);
  EXPECT_EQ(reply.started().data_path().connections(), 3u);
  stream->WritesDone();  // no connection ever dialled: the stream's end discards the VM
  while (stream->Read(&reply)) {
  }
  EXPECT_FALSE(stream->Finish().ok());
  EXPECT_EQ(VmsAfterSettling(**cluster_->Stub(1)), 0);
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DataPathSecretOfWrongLengthIsRefused) {
  for (size_t bytes : {0, 16, 31, 33, 64}) {
    v1::PeerError e = ErrorFor({DataPathStart(2, bytes)});
    EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE) << bytes << " bytes";
    EXPECT_NE(e.message().find("secret"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("32"), std::string::npos) << e.message();
  }
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DataPathConnectionCountOutside1To16IsRefused) {
  for (uint32_t n : {0u, 17u, 1000u}) {
    v1::PeerError e = ErrorFor({DataPathStart(n)});
    EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE) << n << " connections";
    EXPECT_NE(e.message().find("1..16"), std::string::npos) << e.message();
  }
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, PlaintextDataPathOfferToATlsAgentIsRefused) {
  v1::PeerError e = ErrorFor({DataPathStart(2, 32, /*encrypted=*/false)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("only encrypted"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, MemoryBatchOnTheStreamAfterADataPathStartIsRefused) {
  v1::PeerError e = ErrorFor({DataPathStart(), Memory(0, 1, 4096)});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("data connections"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, DeviceStateWithoutFinalRoundAfterADataPathStartIsRefused) {
  v1::PeerMessage state;
  state.mutable_device_state()->mutable_state()->set_backend(v1::BACKEND_KIND_SYNTHETIC);
  v1::PeerError e = ErrorFor({DataPathStart(), state});
  EXPECT_EQ(e.code(), v1::PEER_ERROR_CODE_BAD_MESSAGE);
  EXPECT_NE(e.message().find("final round"), std::string::npos) << e.message();
  ExpectAgentStillServes();
}

TEST_F(PeerProtocolTest, OrchestratorClientCertificateCannotPushAVm) {
  std::string certs = cluster_->dir() + "/certs/";
  TlsConfig tls{certs + "ca.crt", certs + "client.crt", certs + "client.key", false};
  auto ch = MakeChannel(cluster_->address(1), "host-b", tls);
  ASSERT_TRUE(ch.ok());
  auto peer = v1::Peer::NewStub(*ch);
  grpc::ClientContext ctx;
  auto stream = peer->Migrate(&ctx);
  stream->Write(Start(kProtocolVersion));
  stream->WritesDone();
  v1::PeerReply r;
  while (stream->Read(&r)) {
  }
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  ExpectAgentStillServes();
}

}  // namespace
}  // namespace ferry::e2e
