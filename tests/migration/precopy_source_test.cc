// The source's state machine end to end against a real receiver, in process: ordering, cancel
// at every phase, a link cut or frozen at every phase, a refused commit and a commit whose answer
// was lost. Afterwards exactly one side runs the guest and its workload reports no corruption.
#include "engine/migration/precopy_source.h"

#include <chrono>
#include <thread>

#include "engine/base/clock.h"
#include "engine/migration/migration_receiver.h"
#include "engine/vm/synthetic_vm.h"
#include "gtest/gtest.h"
#include "tests/migration/fault_channel.h"
#include "tests/migration/forwarding_vm.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;

VmSpec GuestSpec(double dirty_mibps) {
  VmSpec s;
  s.name = "handover-test";
  s.backend = Backend::kSynthetic;
  s.memory_bytes = 16ull << 20;
  s.vcpus = 1;
  s.workload.working_set_bytes = 4ull << 20;
  s.workload.dirty_rate_mibps = dirty_mibps;
  s.workload.pattern = "random";
  return s;
}

// Where the guest runs after a migration, and whether its workload is intact there.
void ExpectRunsIntactOn(Vm& vm) {
  ASSERT_EQ(vm.run_state(), VmRunState::kRunning);
  uint64_t before = vm.health().heartbeats;
  std::this_thread::sleep_for(milliseconds(150));
  GuestHealth h = vm.health();
  EXPECT_GT(h.heartbeats, before) << "the guest does not make progress";
  EXPECT_EQ(h.corruptions, 0u) << (h.corruption_reports.empty() ? "" : h.corruption_reports[0]);
}

class Handover : public ::testing::Test {
 protected:
  void SetUp() override { StartSource(40); }
  void TearDown() override {
    if (source_) (void)source_->Stop();
    if (arrived_) (void)arrived_->Stop();
  }

  void StartSource(double dirty_mibps) {
    if (source_) (void)source_->Stop();
    auto vm = CreateSyntheticVm(GuestSpec(dirty_mibps), /*for_restore=*/false);
    ASSERT_TRUE(vm.ok()) << vm.status();
    source_ = std::move(*vm);
    ASSERT_TRUE(source_->Start().ok());
    // Let the workload fill its working set, so round 1 carries data and later rounds have
    // pages to send.
    std::this_thread::sleep_for(milliseconds(200));
  }

  ReceiverHooks Hooks() {
    ReceiverHooks h;
    h.agent_name = "destination";
    h.create_vm = [this](const VmSpec& spec) -> absl::StatusOr<std::unique_ptr<Vm>> {
      auto vm = CreateSyntheticVm(spec, /*for_restore=*/true);
      if (!vm.ok()) return vm.status();
      auto wrapped = std::make_unique<ForwardingVm>(std::move(*vm));
      wrapped->fail_start.store(fail_start_at_destination_);
      return std::unique_ptr<Vm>(std::move(wrapped));
    };
    h.adopt_vm = [this](std::unique_ptr<Vm> vm, const v1::StartMigration&) { arrived_ = std::move(vm); };
    return h;
  }

  SourceConfig Config() {
    SourceConfig c;
    c.migration_id = "mig-test";
    c.source_agent = "source";
    c.options.set_max_pause_ms(400);
    c.reply_timeout = milliseconds(2000);
    c.resolve_timeout = milliseconds(600);
    c.resolve_retry = milliseconds(50);
    return c;
  }

  // Runs one migration with `fault` deciding each message's fate.
  SourceResult Migrate(FaultChannel::FaultFn fault, SourceConfig config, FaultChannel::ReplyFn on_reply = nullptr,
                       bool cancel_first = false) {
    receiver_ = std::make_unique<MigrationReceiver>(Hooks());
    channel_ = std::make_unique<FaultChannel>(*receiver_, std::move(fault), std::move(on_reply));
    if (!config.ask_destination_runs_vm) {
      // The in-process stand-in for Peer.QueryMigration: the receiver's own state.
      config.ask_destination_runs_vm = [this]() -> absl::StatusOr<bool> {
        return receiver_->state() == MigrationReceiver::State::kResumed;
      };
    }
    source_engine_ = std::make_unique<PrecopySource>(*source_, *channel_, std::move(config),
                                                     [this](const v1::MigrationEvent& e) { events_.push_back(e); });
    if (cancel_first) {
      EXPECT_TRUE(source_engine_->TryCancel().ok());
    }
    int64_t t0 = MonotonicNanos();
    SourceResult r = source_engine_->Run();
    run_ms_ = NanosToMillis(MonotonicNanos() - t0);
    receiver_state_ = receiver_->state();
    return r;
  }

  // The outcome "the VM still runs on the source only".
  void ExpectRolledBack(const SourceResult& r, SourceOutcome want) {
    EXPECT_EQ(r.outcome, want) << r.status;
    EXPECT_FALSE(r.status.ok());
    EXPECT_EQ(source_engine_->state(), SourceState::kRolledBack);
    EXPECT_EQ(receiver_state_, MigrationReceiver::State::kAborted);
    EXPECT_EQ(arrived_, nullptr);
    ExpectRunsIntactOn(*source_);
  }

  void ExpectHandedOver(const SourceResult& r) {
    EXPECT_EQ(r.outcome, SourceOutcome::kCompleted) << r.status;
    EXPECT_EQ(source_engine_->state(), SourceState::kCompleted);
    EXPECT_EQ(source_->run_state(), VmRunState::kStopped);
    ASSERT_NE(arrived_, nullptr);
    ExpectRunsIntactOn(*arrived_);
  }

  std::unique_ptr<Vm> source_;
  std::unique_ptr<Vm> arrived_;
  bool fail_start_at_destination_ = false;
  std::unique_ptr<MigrationReceiver> receiver_;
  MigrationReceiver::State receiver_state_ = MigrationReceiver::State::kEstablished;
  std::unique_ptr<FaultChannel> channel_;
  std::unique_ptr<PrecopySource> source_engine_;
  std::vector<v1::MigrationEvent> events_;
  double run_ms_ = 0;
};

bool IsLaterRound(const v1::PeerMessage& m) { return m.has_memory() && m.memory().round() >= 2; }

TEST(SourceStateTable, OnlyTheTableMoves) {
  EXPECT_TRUE(SourceTransitionAllowed(SourceState::kStopAndCopy, SourceState::kRolledBack));
  EXPECT_TRUE(SourceTransitionAllowed(SourceState::kCommitting, SourceState::kRolledBack));
  EXPECT_TRUE(SourceTransitionAllowed(SourceState::kCommitting, SourceState::kResolving));
  EXPECT_TRUE(SourceTransitionAllowed(SourceState::kResolving, SourceState::kCommitUnconfirmed));
  // Once the answer is known nothing moves; nothing skips the stop-and-copy or the commit.
  EXPECT_FALSE(SourceTransitionAllowed(SourceState::kCompleted, SourceState::kRolledBack));
  EXPECT_FALSE(SourceTransitionAllowed(SourceState::kRolledBack, SourceState::kStarting));
  EXPECT_FALSE(SourceTransitionAllowed(SourceState::kPrecopy, SourceState::kCommitting));
  EXPECT_FALSE(SourceTransitionAllowed(SourceState::kStopAndCopy, SourceState::kCompleted));
  EXPECT_FALSE(SourceTransitionAllowed(SourceState::kCommitUnconfirmed, SourceState::kRolledBack));
}

TEST_F(Handover, CompletesWithMessagesInOrderAndTheGuestIntact) {
  std::vector<v1::PeerMessage::BodyCase> order;
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        if (order.empty() || order.back() != m.body_case()) order.push_back(m.body_case());
        return LinkFault::kNone;
      },
      Config());
  ExpectHandedOver(r);
  std::vector<v1::PeerMessage::BodyCase> want = {v1::PeerMessage::kStart, v1::PeerMessage::kMemory,
                                                 v1::PeerMessage::kDeviceState, v1::PeerMessage::kCommit};
  EXPECT_EQ(order, want);
  ASSERT_FALSE(events_.empty());
  EXPECT_EQ(events_.back().progress(), 1.0);
  EXPECT_GT(r.stats.precopy_ms(), 0);
}

// Cancel at every phase before commit: the source keeps the guest, the destination holds nothing.
TEST_F(Handover, CancelBeforeStart) {
  SourceResult r = Migrate(nullptr, Config(), nullptr, /*cancel_first=*/true);
  ExpectRolledBack(r, SourceOutcome::kCancelled);
}

TEST_F(Handover, CancelInRoundOne) {
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        if (m.has_memory()) source_engine_->Cancel();
        return LinkFault::kNone;
      },
      Config());
  ExpectRolledBack(r, SourceOutcome::kCancelled);
}

TEST_F(Handover, CancelInALaterRound) {
  StartSource(200);
  SourceConfig c = Config();
  c.options.set_max_bandwidth_mibps(40);  // the guest outruns the link: rounds go on
  bool hit = false;
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        if (IsLaterRound(m)) {
          hit = true;
          source_engine_->Cancel();
        }
        return LinkFault::kNone;
      },
      c);
  EXPECT_TRUE(hit) << "no round 2";
  ExpectRolledBack(r, SourceOutcome::kCancelled);
}

TEST_F(Handover, CancelDuringStopAndCopyBeforeTheState) {
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        if (m.has_device_state()) source_engine_->Cancel();
        return LinkFault::kNone;
      },
      Config());
  ExpectRolledBack(r, SourceOutcome::kCancelled);
}

TEST_F(Handover, CancelAfterTheStateLoadedBeforeCommit) {
  SourceResult r = Migrate(nullptr, Config(), [&](const v1::PeerReply& reply) {
    if (reply.has_state_loaded()) source_engine_->Cancel();
  });
  ExpectRolledBack(r, SourceOutcome::kCancelled);
}

TEST_F(Handover, CancelAfterCommitIsRefusedAndTheMigrationCompletes) {
  absl::Status cancel;
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        if (m.has_commit()) cancel = source_engine_->TryCancel();
        return LinkFault::kNone;
      },
      Config());
  EXPECT_TRUE(absl::IsFailedPrecondition(cancel)) << cancel;
  EXPECT_NE(cancel.message().find("can no longer be cancelled"), std::string::npos) << cancel;
  ExpectHandedOver(r);
}

// A link cut at every phase before commit: a failure, the guest stays on the source.
class LinkCut : public Handover, public ::testing::WithParamInterface<const char*> {};

TEST_P(LinkCut, BeforeCommitRollsBack) {
  const std::string phase = GetParam();
  if (phase == "later-round") StartSource(200);
  SourceConfig c = Config();
  if (phase == "later-round") c.options.set_max_bandwidth_mibps(40);
  bool cut = false;
  SourceResult r = Migrate(
      [&](const v1::PeerMessage& m) {
        bool hit = (phase == "setup" && m.has_start()) || (phase == "round-1" && m.has_memory()) ||
                   (phase == "later-round" && IsLaterRound(m)) ||
                   (phase == "stop-and-copy" && m.has_device_state());
        cut = cut || hit;
        return hit ? LinkFault::kCutBefore : LinkFault::kNone;
      },
      c);
  EXPECT_TRUE(cut) << "the phase was never reached";
  ExpectRolledBack(r, SourceOutcome::kFailed);
}

INSTANTIATE_TEST_SUITE_P(EveryPhase, LinkCut, ::testing::Values("setup", "round-1", "later-round", "stop-and-copy"));

TEST_F(Handover, FrozenLinkInStopAndCopyResumesTheGuestWithinTheBound) {
  SourceResult r = Migrate(
      [](const v1::PeerMessage& m) { return m.has_device_state() ? LinkFault::kFreeze : LinkFault::kNone; },
      Config());
  ExpectRolledBack(r, SourceOutcome::kFailed);
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status)) << r.status;
  EXPECT_NE(r.status.message().find("max pause"), std::string::npos) << r.status;
  // The guest stood still about max_pause_ms (400), not the 30 s of a reply deadline.
  EXPECT_LT(run_ms_, 5000);
}

TEST_F(Handover, DestinationThatCannotStartTheVmAtCommitLeavesItOnTheSource) {
  fail_start_at_destination_ = true;
  SourceResult r = Migrate(nullptr, Config());
  ExpectRolledBack(r, SourceOutcome::kFailed);
  EXPECT_NE(r.status.message().find("refused the commit"), std::string::npos) << r.status;
  EXPECT_NE(r.status.message().find("resumed on the source"), std::string::npos) << r.status;
}

TEST_F(Handover, LostCommitAnswerResolvesToTheDestinationWhenItRunsThere) {
  SourceResult r = Migrate(
      [](const v1::PeerMessage& m) { return m.has_commit() ? LinkFault::kLoseReplyThenCut : LinkFault::kNone; },
      Config());
  ExpectHandedOver(r);
  ASSERT_GT(r.stats.warnings_size(), 0);
  EXPECT_NE(r.stats.warnings(0).find("confirmed that it runs the VM"), std::string::npos);
}

TEST_F(Handover, CommitThatNeverArrivedResolvesToTheSource) {
  SourceResult r = Migrate(
      [](const v1::PeerMessage& m) { return m.has_commit() ? LinkFault::kCutBefore : LinkFault::kNone; }, Config());
  ExpectRolledBack(r, SourceOutcome::kFailed);
  EXPECT_NE(r.status.message().find("does not run the VM"), std::string::npos) << r.status;
}

// The window between the commit decision (handover_committed) and the commit on the wire: a send
// that blocks on a stalled link is bounded too, and the destination (which never saw the commit)
// is asked; the guest resumes on the source.
TEST_F(Handover, CommitStuckInAFrozenLinkIsBoundedAndResolvesToTheSource) {
  SourceResult r = Migrate(
      [](const v1::PeerMessage& m) { return m.has_commit() ? LinkFault::kFreeze : LinkFault::kNone; }, Config());
  ExpectRolledBack(r, SourceOutcome::kFailed);
  EXPECT_NE(r.status.message().find("could not be sent within 400 ms"), std::string::npos) << r.status;
  EXPECT_NE(r.status.message().find("does not run the VM"), std::string::npos) << r.status;
}

TEST_F(Handover, UnansweredCommitWithNobodyToAskKeepsTheGuestPaused) {
  SourceConfig c = Config();
  int asked = 0;
  c.ask_destination_runs_vm = [&]() -> absl::StatusOr<bool> {
    ++asked;
    return absl::UnavailableError("destination unreachable");
  };
  SourceResult r = Migrate(
      [](const v1::PeerMessage& m) { return m.has_commit() ? LinkFault::kLoseReplyThenCut : LinkFault::kNone; }, c);
  EXPECT_EQ(r.outcome, SourceOutcome::kCommitUnconfirmed) << r.status;
  EXPECT_EQ(source_engine_->state(), SourceState::kCommitUnconfirmed);
  EXPECT_EQ(source_->run_state(), VmRunState::kPaused);  // never twice: the destination may run it
  EXPECT_GT(asked, 1);
  EXPECT_NE(r.status.message().find("migrate migration resolve mig-test"), std::string::npos) << r.status;
}

// A guest that outruns the link: progress tells the truth (far from done) and a failure after
// pre-copy reports how long pre-copy ran.
TEST_F(Handover, NonConvergingMigrationShowsItsTrueProgressAndPrecopyTime) {
  StartSource(200);
  SourceConfig c = Config();
  c.options.set_max_bandwidth_mibps(20);
  c.options.set_max_rounds(4);
  c.options.set_max_downtime_ms(20);  // the working set alone takes ~200 ms at 20 MiB/s
  c.options.set_no_auto_converge(true);
  c.options.set_policy(v1::CONVERGENCE_POLICY_CANCEL);
  SourceResult r = Migrate(nullptr, c);
  ExpectRolledBack(r, SourceOutcome::kFailed);
  EXPECT_GT(r.stats.precopy_ms(), 100);
  double highest_later = 0;
  for (const auto& e : events_) {
    if (e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() >= 2) highest_later = std::max(highest_later, e.progress());
  }
  EXPECT_GT(highest_later, 0.0);
  EXPECT_LT(highest_later, 0.9) << "progress near done for a migration that cannot converge";
}

}  // namespace
}  // namespace ferry
