// FaultMatrix: a live migration between two real agents with one fault injected at one phase.
// Afterwards the VM runs on exactly one host (none when the source agent itself was killed — and
// then the destination holds nothing), the guest reports no corruption, no guest stood paused past
// the bound, and the outcome reported to the user is the true one. Synthetic guests, short
// bounds, the gRPC stream transport (so the proxy between the agents carries every byte).
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/tcp_proxy.h"

namespace ferry::e2e {
namespace {

using cli::LocalCluster;
using cli::LocalClusterOptions;

enum class Phase { kSetup, kRoundOne, kLaterRound, kStopAndCopy };
enum class Fault { kCancel, kKillSource, kKillDestination, kCutLink, kStallLink, kDestinationRefuses };

struct Cell {
  Phase phase;
  Fault fault;
};

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kSetup: return "Setup";
    case Phase::kRoundOne: return "RoundOne";
    case Phase::kLaterRound: return "LaterRound";
    case Phase::kStopAndCopy: return "StopAndCopy";
  }
  return "?";
}
const char* FaultName(Fault f) {
  switch (f) {
    case Fault::kCancel: return "Cancel";
    case Fault::kKillSource: return "KillSource";
    case Fault::kKillDestination: return "KillDestination";
    case Fault::kCutLink: return "CutLink";
    case Fault::kStallLink: return "StallLink";
    case Fault::kDestinationRefuses: return "DestinationRefuses";
  }
  return "?";
}

constexpr uint32_t kMaxPauseMs = 3000;

bool Reached(Phase phase, const v1::MigrationEvent& e) {
  switch (phase) {
    case Phase::kSetup: return e.phase() == v1::MIGRATION_PHASE_SETUP;
    case Phase::kRoundOne: return e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() == 1;
    case Phase::kLaterRound: return e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() >= 2;
    case Phase::kStopAndCopy: return e.phase() == v1::MIGRATION_PHASE_STOP_AND_COPY;
  }
  return false;
}

bool HasVm(v1::Agent::Stub& stub, const std::string& name) {
  v1::VmInfo info;
  return GetVm(stub, name, &info).ok();
}

// The guest runs here: running, its heartbeats grow, no corruption, and it never stood still
// longer than the pause bound (plus scheduling slack on a loaded host).
// `bounded`: false only where a commit was truly sent and unanswered (then the guest waits for
// the answer, as it must).
void ExpectRunsHere(v1::Agent::Stub& stub, const std::string& name, bool bounded = true) {
  v1::VmInfo a, b;
  ASSERT_TRUE(GetVm(stub, name, &a).ok()) << name << " is not on this agent";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_TRUE(GetVm(stub, name, &b).ok());
  EXPECT_EQ(b.state(), v1::VM_POWER_STATE_RUNNING);
  EXPECT_GT(b.health().heartbeats(), a.health().heartbeats()) << "the guest does not run";
  EXPECT_EQ(b.health().corruptions(), 0u) << (b.health().corruption_reports_size() ? b.health().corruption_reports(0) : "");
  if (bounded) {
    EXPECT_LT(b.health().max_heartbeat_gap_ms(), kMaxPauseMs + 2000) << "the guest stood still past the bound";
  }
}

class FaultMatrix : public ::testing::TestWithParam<Cell> {};

TEST_P(FaultMatrix, OneHostRunsTheGuestAndTheOutcomeIsTrue) {
  const Cell cell = GetParam();
  auto c = LocalCluster::Start(LocalClusterOptions{});
  ASSERT_TRUE(c.ok()) << c.status();
  auto a = (*c)->Stub(0), b = (*c)->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 64, 32, 6)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 20, 20));
  if (cell.fault == Fault::kDestinationRefuses) {
    // The destination already runs a VM of that name: it refuses the start.
    ASSERT_TRUE(CreateVm(**b, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 16, 4, 1)).ok());
  }
  const std::string destination_port = (*c)->address(1).substr((*c)->address(1).rfind(':') + 1);
  TcpProxy proxy(static_cast<uint16_t>(std::stoi(destination_port)));
  v1::MigrateRequest req = WithTransport(MigrateTo(**c, 1, "vm1"), v1::TRANSPORT_GRPC);
  req.set_destination("127.0.0.1:" + std::to_string(proxy.port()));
  req.mutable_options()->set_max_bandwidth_mibps(10);  // round 1 takes ~0.5 s: time to act in it
  req.mutable_options()->set_max_downtime_ms(1000);    // a final round of MiBs: time to act in stop-and-copy
  req.mutable_options()->set_max_pause_ms(kMaxPauseMs);
  req.mutable_options()->set_skip_prechecks(true);

  grpc::ClientContext ctx;
  auto reader = (*a)->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool injected = false;
  absl::Status cancel_answer;
  while (reader->Read(&e)) {
    last = e;
    if (injected || !Reached(cell.phase, e)) continue;
    injected = true;
    switch (cell.fault) {
      case Fault::kCancel: {
        grpc::ClientContext cctx;
        v1::CancelMigrationRequest creq;
        creq.set_migration_id(e.migration_id());
        v1::MigrationInfo info;
        grpc::Status st = (*a)->CancelMigration(&cctx, creq, &info);
        cancel_answer = st.ok() ? absl::OkStatus() : absl::FailedPreconditionError(st.error_message());
        break;
      }
      case Fault::kKillSource: (*c)->Kill(0); break;
      case Fault::kKillDestination: (*c)->Kill(1); break;
      case Fault::kCutLink: proxy.Cut(); break;
      case Fault::kStallLink: proxy.Freeze(); break;
      case Fault::kDestinationRefuses: break;  // the fault is the VM already there
    }
  }
  grpc::Status finished = reader->Finish();
  ASSERT_TRUE(injected || cell.fault == Fault::kDestinationRefuses) << "the phase was never reached";

  if (cell.fault == Fault::kKillSource) {
    // The source host is gone (its VM with it); the destination must not keep a half copy.
    EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept a half-received VM of a dead source";
    return;
  }
  ASSERT_TRUE(finished.ok()) << finished.error_message();
  std::cout << "[ cell     ] " << PhaseName(cell.phase) << " x " << FaultName(cell.fault) << ": "
            << v1::MigrationPhase_Name(last.phase()) << " " << last.error() << "\n";
  if (last.phase() == v1::MIGRATION_PHASE_FAILED && last.error().find("commit sent but") != std::string::npos) {
    // The fault hit after the commit went out (a loaded host delivers the stop-and-copy event
    // late) and nobody could answer: the source kept the guest paused, as it must. The link comes
    // back; the operator's resolve settles where the VM runs, and it runs on exactly one host.
    EXPECT_EQ(cell.fault, Fault::kStallLink) << last.error();
    proxy.Thaw();
    grpc::ClientContext rctx;
    v1::ResolveMigrationRequest rreq;
    rreq.set_migration_id(last.migration_id());
    v1::ResolveMigrationResponse resolved;
    grpc::Status st = (*a)->ResolveMigration(&rctx, rreq, &resolved);
    ASSERT_TRUE(st.ok()) << st.error_message();
    std::cout << "[ cell     ] resolved: " << resolved.message() << "\n";
    if (resolved.runs_on_destination()) {
      EXPECT_FALSE(HasVm(**a, "vm1"));
      ExpectRunsHere(**b, "vm1", /*bounded=*/false);
    } else {
      ExpectRunsHere(**a, "vm1", /*bounded=*/false);
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0);
    }
    return;
  }
  const bool completed = last.phase() == v1::MIGRATION_PHASE_COMPLETED;
  if (completed) {
    // Only a cancel that came after the commit may lose the race; then it was refused and the
    // VM truly left.
    EXPECT_EQ(cell.fault, Fault::kCancel) << "completed despite " << FaultName(cell.fault);
    EXPECT_FALSE(cancel_answer.ok());
    EXPECT_NE(cancel_answer.message().find("commit"), std::string::npos) << cancel_answer;
    for (int i = 0; i < 40 && HasVm(**a, "vm1"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(HasVm(**a, "vm1")) << "the source still holds the VM after completing";
    ExpectRunsHere(**b, "vm1");
    return;
  }
  EXPECT_EQ(last.phase(), cell.fault == Fault::kCancel ? v1::MIGRATION_PHASE_CANCELLED : v1::MIGRATION_PHASE_FAILED)
      << last.error();
  EXPECT_FALSE(last.error().empty());
  ExpectRunsHere(**a, "vm1");
  if (cell.fault == Fault::kKillDestination) {
    EXPECT_NE(last.error().find("destination"), std::string::npos) << last.error();
    return;
  }
  if (cell.fault == Fault::kStallLink && cell.phase == Phase::kStopAndCopy) {
    EXPECT_NE(last.error().find("max pause"), std::string::npos) << last.error();
  }
  if (cell.fault == Fault::kDestinationRefuses) {
    EXPECT_NE(last.error().find("EXISTS"), std::string::npos) << last.error();
    EXPECT_EQ(ListVms(**b).vms_size(), 1) << "the destination kept more than its own VM";
    return;
  }
  // The destination discarded its copy (abort, stream end, or keepalive on a frozen link).
  EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept a half-received VM";
}

std::string CellName(const ::testing::TestParamInfo<Cell>& info) {
  return std::string(PhaseName(info.param.phase)) + "_" + FaultName(info.param.fault);
}

INSTANTIATE_TEST_SUITE_P(
    Cells, FaultMatrix,
    ::testing::Values(Cell{Phase::kSetup, Fault::kCancel}, Cell{Phase::kRoundOne, Fault::kCancel},
                      Cell{Phase::kLaterRound, Fault::kCancel}, Cell{Phase::kStopAndCopy, Fault::kCancel},
                      Cell{Phase::kRoundOne, Fault::kKillSource}, Cell{Phase::kLaterRound, Fault::kKillSource},
                      Cell{Phase::kRoundOne, Fault::kKillDestination},
                      Cell{Phase::kStopAndCopy, Fault::kKillDestination}, Cell{Phase::kRoundOne, Fault::kCutLink},
                      Cell{Phase::kStopAndCopy, Fault::kCutLink}, Cell{Phase::kRoundOne, Fault::kStallLink},
                      Cell{Phase::kStopAndCopy, Fault::kStallLink},
                      Cell{Phase::kSetup, Fault::kDestinationRefuses}),
    CellName);

}  // namespace
}  // namespace ferry::e2e
