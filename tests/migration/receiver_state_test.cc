// MigrationReceiver's state table: each message in each state gets the documented answer
// (docs/wire_protocol.md "Errors the destination answers"), and anything but the next step
// discards the half-received VM.
#include <memory>

#include "engine/migration/migration_receiver.h"
#include "engine/migration/protocol.h"
#include "engine/vm/synthetic_vm.h"
#include "engine/vm/vm_spec_proto.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using State = MigrationReceiver::State;

VmSpec SmallSpec() {
  VmSpec s;
  s.name = "receiver-test";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 8ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 1ull << 20;
  return s;
}

class ReceiverStates : public ::testing::Test {
 protected:
  MigrationReceiver& Fresh() {
    ReceiverHooks h;
    h.agent_name = "destination";
    h.create_vm = [this](const VmSpec& spec) -> absl::StatusOr<std::unique_ptr<Vm>> {
      ++created_;
      return CreateSyntheticVm(spec, /*for_restore=*/true);
    };
    receiver_ = std::make_unique<MigrationReceiver>(std::move(h));
    return *receiver_;
  }
  static v1::PeerMessage Start() {
    v1::PeerMessage m;
    m.mutable_start()->set_protocol_version(kProtocolVersion);
    m.mutable_start()->set_migration_id("m1");
    *m.mutable_start()->mutable_spec() = VmSpecToProto(SmallSpec());
    return m;
  }
  static v1::PeerMessage Memory(uint64_t first, uint32_t count, bool zero) {
    v1::PeerMessage m;
    m.mutable_memory()->set_round(1);
    auto* run = m.mutable_memory()->add_runs();
    run->set_first_page(first);
    run->set_count(count);
    run->set_zero(zero);
    if (!zero) run->set_data(std::string(count * 4096, 'x'));
    return m;
  }
  static v1::PeerMessage Commit() {
    v1::PeerMessage m;
    m.mutable_commit();
    return m;
  }
  static v1::PeerMessage Abort() {
    v1::PeerMessage m;
    m.mutable_abort()->set_reason("test");
    return m;
  }
  static v1::PeerErrorCode ErrorOf(const std::optional<v1::PeerReply>& r) {
    return r && r->has_error() ? r->error().code() : v1::PEER_ERROR_CODE_UNSPECIFIED;
  }

  std::unique_ptr<MigrationReceiver> receiver_;
  int created_ = 0;
};

TEST_F(ReceiverStates, StartThenMemoryMovesToReceiving) {
  MigrationReceiver& r = Fresh();
  auto started = r.Handle(Start());
  ASSERT_TRUE(started && started->has_started()) << (started && started->has_error() ? started->error().message() : "");
  EXPECT_EQ(r.state(), State::kStarted);
  EXPECT_FALSE(r.Handle(Memory(0, 2, /*zero=*/false)));
  EXPECT_EQ(r.state(), State::kReceiving);
  EXPECT_EQ(r.counters().pages, 2u);
}

TEST_F(ReceiverStates, OutOfOrderMessagesAreRefusedAndDiscard) {
  MigrationReceiver& r = Fresh();
  EXPECT_EQ(ErrorOf(r.Handle(Memory(0, 1, true))), v1::PEER_ERROR_CODE_BAD_MESSAGE);  // before start
  EXPECT_EQ(r.state(), State::kAborted);

  MigrationReceiver& r2 = Fresh();
  ASSERT_TRUE(r2.Handle(Start()));
  EXPECT_EQ(ErrorOf(r2.Handle(Start())), v1::PEER_ERROR_CODE_BAD_MESSAGE);  // duplicate start
  EXPECT_EQ(r2.state(), State::kAborted);

  MigrationReceiver& r3 = Fresh();
  ASSERT_TRUE(r3.Handle(Start()));
  EXPECT_EQ(ErrorOf(r3.Handle(Commit())), v1::PEER_ERROR_CODE_BAD_MESSAGE);  // commit before state
  EXPECT_EQ(r3.state(), State::kAborted);

  MigrationReceiver& r4 = Fresh();
  EXPECT_EQ(ErrorOf(r4.Handle(v1::PeerMessage())), v1::PEER_ERROR_CODE_BAD_MESSAGE);  // empty
}

TEST_F(ReceiverStates, BadBatchesAreRefusedWithTheirCode) {
  MigrationReceiver& r = Fresh();
  ASSERT_TRUE(r.Handle(Start()));
  const uint64_t pages = SmallSpec().memory_bytes / 4096;
  EXPECT_EQ(ErrorOf(r.Handle(Memory(pages - 1, 2, true))), v1::PEER_ERROR_CODE_OUT_OF_RANGE);
  EXPECT_EQ(r.state(), State::kAborted);

  MigrationReceiver& r2 = Fresh();
  ASSERT_TRUE(r2.Handle(Start()));
  v1::PeerMessage short_data = Memory(0, 2, false);
  short_data.mutable_memory()->mutable_runs(0)->mutable_data()->resize(4096);
  EXPECT_EQ(ErrorOf(r2.Handle(short_data)), v1::PEER_ERROR_CODE_LENGTH_MISMATCH);

  MigrationReceiver& r3 = Fresh();
  ASSERT_TRUE(r3.Handle(Start()));
  EXPECT_EQ(ErrorOf(r3.Handle(Memory(0, 0, true))), v1::PEER_ERROR_CODE_LENGTH_MISMATCH);  // count 0
}

TEST_F(ReceiverStates, UnknownVersionIsRefused) {
  MigrationReceiver& r = Fresh();
  v1::PeerMessage m = Start();
  m.mutable_start()->set_protocol_version(kProtocolVersion + 1);
  EXPECT_EQ(ErrorOf(r.Handle(m)), v1::PEER_ERROR_CODE_BAD_VERSION);
  EXPECT_EQ(created_, 0) << "nothing is allocated for a refused start";
}

TEST_F(ReceiverStates, AbortIsAcceptedInAnyStateBeforeResume) {
  MigrationReceiver& r = Fresh();
  EXPECT_FALSE(r.Handle(Abort()));
  EXPECT_EQ(r.state(), State::kAborted);

  MigrationReceiver& r2 = Fresh();
  ASSERT_TRUE(r2.Handle(Start()));
  ASSERT_FALSE(r2.Handle(Memory(0, 1, true)));
  EXPECT_FALSE(r2.Handle(Abort()));
  EXPECT_EQ(r2.state(), State::kAborted);
  EXPECT_FALSE(r2.Handle(Abort())) << "a second abort is harmless";
  EXPECT_EQ(ErrorOf(r2.Handle(Memory(0, 1, true))), v1::PEER_ERROR_CODE_BAD_MESSAGE) << "nothing after abort";
}

TEST_F(ReceiverStates, StreamEndBeforeResumeDiscards) {
  MigrationReceiver& r = Fresh();
  ASSERT_TRUE(r.Handle(Start()));
  r.OnStreamEnd();
  EXPECT_EQ(r.state(), State::kAborted);
}

}  // namespace
}  // namespace ferry
