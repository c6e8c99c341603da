// FaultMatrix: a live migration between two real agents with one fault injected at one phase.
// Afterwards the VM runs on exactly one host (none when the source agent itself was killed before
// commit — and then the destination holds nothing), the guest reports no corruption, no guest
// stood paused past the bound, and the outcome reported to the user is the true one.
//
// Synthetic guests, short bounds. The link goes through TcpProxy::Mirror (tests/e2e/tcp_proxy.h):
// the control stream and every data connection, so a cut or a stall hits the whole link. Phases
// up to stop-and-copy are reached by following the migration's events; the handover's phases
// (state loaded, commit sent, after resume) by the test-only agent ferry-agent-faults, which holds
// the source there (--hold-at, tests/fault_agent/holding_channel.h) while the fault is injected.
// Where a commit's answer is truly lost the source keeps the guest paused; the cell then settles it
// as an operator would, with Agent.ResolveMigration (`migrate migration resolve ID`).
// "Destination refuses" after setup is the destination's ferry-agent-faults --refuse-at (a round,
// the state, the commit, the step after the resume). After a source SIGKILL the cell restarts the
// source agent: its surviving ferry-vmm must have resumed the guest before the commit, and kept it
// paused from the commit on, marked with the migration and its destination; the restarted agent
// then settles it by itself (docs/vmm_process.md "Adopting a guest paused after a commit"): the
// source's copy stops where the destination runs the VM, and resumes where the destination
// refused the commit (RefuseThenKillSource: the destination refuses the commit, then the source
// agent dies). In CommitSent_KillSource the destination is unreachable while the restarted agent
// first asks: the guest stays paused, listed as an unconfirmed commit, until a retry gets through.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "engine/vmm/vmm_client.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/tcp_proxy.h"

namespace ferry::e2e {
namespace {

namespace fs = std::filesystem;
using cli::LocalCluster;
using cli::LocalClusterOptions;

enum class Phase { kSetup, kRoundOne, kLaterRound, kStopAndCopy, kStateLoaded, kCommitSent, kAfterResume };
// kLoseAnswers: only the destination's answers stall (what the source sends still arrives).
// kRefuseThenKillSource: the destination refuses the commit, then the source agent is SIGKILLed.
enum class Fault {
  kCancel, kKillSource, kKillDestination, kCutLink, kStallLink, kDestinationRefuses, kLoseAnswers, kRefuseThenKillSource
};

struct Cell {
  Phase phase;
  Fault fault;
  v1::Transport transport = v1::TRANSPORT_DATA;
};

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kSetup: return "Setup";
    case Phase::kRoundOne: return "RoundOne";
    case Phase::kLaterRound: return "LaterRound";
    case Phase::kStopAndCopy: return "StopAndCopy";
    case Phase::kStateLoaded: return "StateLoaded";
    case Phase::kCommitSent: return "CommitSent";
    case Phase::kAfterResume: return "AfterResume";
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
    case Fault::kLoseAnswers: return "LoseAnswers";
    case Fault::kRefuseThenKillSource: return "RefuseThenKillSource";
  }
  return "?";
}
// The fault agent's --hold-at name for a handover phase ("" for the phases events reach).
const char* HoldName(Phase p) {
  switch (p) {
    case Phase::kStateLoaded: return "state-loaded";
    case Phase::kCommitSent: return "commit-sent";
    case Phase::kAfterResume: return "resumed";
    default: return "";
  }
}
// The destination fault agent's --refuse-at step for "destination refuses" at a phase ("" at setup:
// there the refusal is real, a VM of that name already runs on the destination).
const char* RefuseStep(Phase p) {
  switch (p) {
    case Phase::kSetup: return "";
    case Phase::kRoundOne: return "round-1";
    case Phase::kLaterRound: return "round-2";
    case Phase::kStopAndCopy: return "state";   // the device state arrives while the guest is paused
    case Phase::kStateLoaded: return "commit";  // the state loaded, then the commit is refused
    case Phase::kCommitSent: return "commit";   // ... with the source held right after sending it
    case Phase::kAfterResume: return "after-resume";
  }
  return "";
}
bool BeforeCommit(Phase p) { return p != Phase::kCommitSent && p != Phase::kAfterResume; }

constexpr uint32_t kMaxPauseMs = 3000;
constexpr int kResolveTimeoutMs = 1500;  // the fault agent's: commit-unconfirmed comes quickly

bool Reached(Phase phase, const v1::MigrationEvent& e) {
  switch (phase) {
    case Phase::kSetup: return e.phase() == v1::MIGRATION_PHASE_SETUP;
    case Phase::kRoundOne: return e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() == 1;
    case Phase::kLaterRound: return e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() >= 2;
    case Phase::kStopAndCopy: return e.phase() == v1::MIGRATION_PHASE_STOP_AND_COPY;
    default: return false;  // held by the fault agent instead
  }
}

bool HasVm(v1::Agent::Stub& stub, const std::string& name) {
  v1::VmInfo info;
  return GetVm(stub, name, &info).ok();
}

// The destination's data port, from its start-up log line (event=agent_listening ... data_port=N).
int DataPort(const LocalCluster& c, int i) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::ifstream in(c.log_path(i));
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    size_t at = s.find("data_port=");
    if (at != std::string::npos) return std::atoi(s.c_str() + at + 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
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

// Waits (up to `timeout_s`) until the VM runs on this agent.
bool WaitRunning(v1::Agent::Stub& stub, const std::string& name, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    v1::VmInfo info;
    if (GetVm(stub, name, &info).ok() && info.state() == v1::VM_POWER_STATE_RUNNING) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// The source's VMM for `vm`, asked directly (no agent in between): its describe reply.
absl::StatusOr<v1::VmmReply> DescribeFromVmm(const LocalCluster& c, int agent, const std::string& vm) {
  auto conn = VmmConnection::Connect(c.dir() + "/" + c.name(agent) + "/vms/" + vm + "/vmm.sock", 2000);
  if (!conn.ok()) return conn.status();
  v1::VmmRequest describe;
  describe.set_describe(true);
  return conn->Call(describe, 5000);
}

pid_t VmmPid(const LocalCluster& c, int agent, const std::string& vm) {
  std::ifstream in(c.dir() + "/" + c.name(agent) + "/vms/" + vm + "/vmm.pid");
  pid_t pid = -1;
  in >> pid;
  return pid;
}

// Whether process `pid` ended (gone, or a zombie nobody reaped yet), waiting up to `timeout_s`.
bool ProcessEnded(pid_t pid, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const size_t paren = text.rfind(')');
    if (text.empty() || (paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] == 'Z')) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// The job `id` on this agent once `done` says so (up to `timeout_s`); its last state otherwise.
v1::MigrationInfo WaitForJob(v1::Agent::Stub& stub, const std::string& id, double timeout_s,
                             const std::function<bool(const v1::MigrationInfo&)>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  v1::MigrationInfo info;
  for (;;) {
    grpc::ClientContext ctx;
    v1::GetMigrationRequest req;
    req.set_migration_id(id);
    if (stub.GetMigration(&ctx, req, &info).ok() && done(info)) return info;
    if (std::chrono::steady_clock::now() >= deadline) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Agent.ResolveMigration, what `migrate migration resolve ID` asks.
grpc::Status Resolve(v1::Agent::Stub& stub, const std::string& id, v1::ResolveMigrationResponse* out) {
  grpc::ClientContext ctx;
  v1::ResolveMigrationRequest req;
  req.set_migration_id(id);
  v1::ResolveMigrationResponse ignored;
  return stub.ResolveMigration(&ctx, req, out ? out : &ignored);
}

class FaultMatrix : public ::testing::TestWithParam<Cell> {};

TEST_P(FaultMatrix, OneHostRunsTheGuestAndTheOutcomeIsTrue) {
  const Cell cell = GetParam();
  const std::string hold = HoldName(cell.phase);
  const std::string hold_file =
      (fs::path(::testing::TempDir()) / ("ferry-hold-" + std::to_string(::getpid()) + "-" + PhaseName(cell.phase)))
          .string();
  fs::remove(hold_file);
  LocalClusterOptions options;
  if (!hold.empty()) {
    // The source is the test-only agent, holding the handover at the phase.
    options.agent_binary = "ferry-agent-faults";
    options.extra_args = {{"--hold-at", hold, "--hold-file", hold_file, "--resolve-timeout-ms",
                           std::to_string(kResolveTimeoutMs)}};
  }
  const std::string refuse =
      cell.fault == Fault::kDestinationRefuses || cell.fault == Fault::kRefuseThenKillSource ? RefuseStep(cell.phase) : "";
  if (!refuse.empty()) {
    // The destination is the test-only agent, refusing one step (tests/fault_agent/refusing_destination.h).
    options.agent_binary = "ferry-agent-faults";
    options.extra_args.resize(2);
    options.extra_args[1] = {"--refuse-at", refuse};
  }
  auto c = LocalCluster::Start(options);
  ASSERT_TRUE(c.ok()) << c.status();
  auto a = (*c)->Stub(0), b = (*c)->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 64, 32, 6)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 20, 20));
  if (cell.fault == Fault::kDestinationRefuses && refuse.empty()) {
    // The destination already runs a VM of that name: it refuses the start.
    ASSERT_TRUE(CreateVm(**b, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 16, 4, 1)).ok());
  }
  // The destination seen through the proxy: 127.0.0.2 at its own control and data ports.
  const std::string address = (*c)->address(1);
  const auto control_port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  const int data_port = DataPort(**c, 1);
  ASSERT_GT(data_port, 0) << "no data_port in " << (*c)->log_path(1);
  auto proxy = TcpProxy::Mirror("127.0.0.2", {control_port, static_cast<uint16_t>(data_port)});
  ASSERT_TRUE(proxy->ok()) << "cannot listen on 127.0.0.2 at the destination's ports";
  v1::MigrateRequest req = WithTransport(MigrateTo(**c, 1, "vm1"), cell.transport);
  req.set_destination("127.0.0.2:" + std::to_string(control_port));
  req.mutable_options()->set_max_bandwidth_mibps(10);  // round 1 takes seconds: time to act in it
  req.mutable_options()->set_max_downtime_ms(1000);    // a final round of MiBs: time to act in stop-and-copy
  req.mutable_options()->set_max_pause_ms(kMaxPauseMs);
  req.mutable_options()->set_skip_prechecks(true);

  std::string migration_id;
  std::mutex id_mu;
  absl::Status cancel_answer;
  auto inject = [&](const std::string& id) {
    switch (cell.fault) {
      case Fault::kCancel: {
        grpc::Status st = CancelMigration(**a, id);
        cancel_answer = st.ok() ? absl::OkStatus() : absl::FailedPreconditionError(st.error_message());
        break;
      }
      case Fault::kKillSource: (*c)->Kill(0); break;
      case Fault::kRefuseThenKillSource:
        // The destination refused the commit and discarded its copy; the source has not read the
        // refusal yet (held) and dies.
        EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept the VM whose commit it refused";
        (*c)->Kill(0);
        break;
      case Fault::kKillDestination: (*c)->Kill(1); break;
      case Fault::kCutLink:
        if (cell.phase == Phase::kCommitSent) {
          // The commit surely arrived: the destination runs the VM; only the answer gets lost.
          EXPECT_TRUE(WaitRunning(**b, "vm1", 10)) << "the destination never ran the committed VM";
        }
        proxy->Cut();
        break;
      case Fault::kStallLink: proxy->Freeze(); break;
      case Fault::kLoseAnswers: proxy->FreezeAnswers(); break;
      case Fault::kDestinationRefuses: break;  // the fault is the VM already there
    }
  };
  // Handover phases: the fault agent holds the source there and says so with the hold file.
  std::atomic<bool> ended{false}, injected{false};
  std::thread holder;
  if (!hold.empty()) {
    holder = std::thread([&] {
      while (!ended.load() && !fs::exists(hold_file)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (ended.load()) return;
      std::string id;
      for (int i = 0; i < 200 && id.empty(); ++i) {
        {
          std::lock_guard lock(id_mu);
          id = migration_id;
        }
        if (id.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      inject(id);
      injected.store(true);
      fs::remove(hold_file);  // let the source go on
    });
  }

  grpc::ClientContext ctx;
  auto reader = (*a)->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  while (reader->Read(&e)) {
    last = e;
    {
      std::lock_guard lock(id_mu);
      migration_id = e.migration_id();
    }
    if (injected.load() || !hold.empty() || !Reached(cell.phase, e)) continue;
    inject(e.migration_id());
    injected.store(true);
  }
  grpc::Status finished = reader->Finish();
  ended.store(true);
  if (holder.joinable()) holder.join();
  fs::remove(hold_file);
  ASSERT_TRUE(injected.load() || cell.fault == Fault::kDestinationRefuses) << "the phase was never reached";
  if (cell.transport == v1::TRANSPORT_DATA && cell.phase != Phase::kSetup && cell.fault != Fault::kDestinationRefuses) {
    EXPECT_GT(proxy->connections(static_cast<uint16_t>(data_port)), 0) << "the data connections bypassed the proxy";
  }

  if (cell.fault == Fault::kKillSource || cell.fault == Fault::kRefuseThenKillSource) {
    // The source's VM outlives its agent in its ferry-vmm process. The rule (docs/vmm_process.md
    // "An agent that dies mid-migration"): before the commit the VMM ends the migration and
    // resumes a guest it paused; from the commit on it keeps the guest paused (it may run on the
    // destination). A restarted source agent adopts the VMM and shows which.
    bool on_destination = false;
    if (cell.fault == Fault::kRefuseThenKillSource) {
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept the VM whose commit it refused";
    } else if (BeforeCommit(cell.phase)) {
      // The destination must not keep a half copy of a dead source's migration.
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept a half-received VM of a dead source";
    } else if (cell.phase == Phase::kAfterResume || WaitRunning(**b, "vm1", 5)) {
      // The commit arrived: the VM lives on at the destination.
      ExpectRunsHere(**b, "vm1", /*bounded=*/false);
      on_destination = true;
    } else {
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept a VM it never committed";
    }
    if (BeforeCommit(cell.phase)) {
      ASSERT_TRUE((*c)->Restart(0).ok());
      auto restarted = (*c)->Stub(0);
      ASSERT_TRUE(restarted.ok());
      v1::VmInfo kept;
      ASSERT_TRUE(GetVm(**restarted, "vm1", &kept).ok()) << "the source's VMM did not survive its agent";
      ExpectRunsHere(**restarted, "vm1");  // resumed by its VMM, within the pause bound
      return;
    }
    // From the commit on: the VMM kept the guest paused, marked with where the commit went.
    std::string id;
    {
      std::lock_guard lock(id_mu);
      id = migration_id;
    }
    auto described = DescribeFromVmm(**c, 0, "vm1");
    ASSERT_TRUE(described.ok()) << "the source's VMM did not survive its agent: " << described.status();
    EXPECT_EQ(described->run_state(), v1::VMM_RUN_STATE_PAUSED) << "the source's VMM resumed a committed guest";
    EXPECT_EQ(described->handover().migration_id(), id);
    EXPECT_EQ(described->handover().destination(), req.destination());
    const pid_t source_vmm = VmmPid(**c, 0, "vm1");
    // CommitSent: the restarted agent first finds the destination unreachable.
    const bool unreachable_first = cell.phase == Phase::kCommitSent && cell.fault == Fault::kKillSource;
    if (unreachable_first) proxy->Cut();
    ASSERT_TRUE((*c)->Restart(0).ok());
    auto restarted = (*c)->Stub(0);
    ASSERT_TRUE(restarted.ok());
    if (unreachable_first) {
      v1::MigrationInfo waiting = WaitForJob(**restarted, id, 30, [](const v1::MigrationInfo& m) {
        return m.finished() || !m.last_event().error().empty();
      });
      std::cout << "[ cell     ] unreachable: " << waiting.last_event().message() << " / "
                << waiting.last_event().error() << "\n";
      EXPECT_FALSE(waiting.finished()) << "settled without an answer: " << waiting.last_event().message();
      EXPECT_EQ(waiting.last_event().phase(), v1::MIGRATION_PHASE_COMMIT);
      EXPECT_NE(waiting.last_event().message().find("migrate migration resolve " + id), std::string::npos)
          << waiting.last_event().message();
      v1::VmInfo held;
      ASSERT_TRUE(GetVm(**restarted, "vm1", &held).ok()) << "the source let go of a VM nobody confirmed";
      EXPECT_EQ(held.state(), v1::VM_POWER_STATE_PAUSED) << "resumed blindly";
      proxy->Restore();  // the next retry gets through
    }
    v1::MigrationInfo settled = WaitForJob(**restarted, id, 60, [](const v1::MigrationInfo& m) { return m.finished(); });
    std::cout << "[ cell     ] settled: " << v1::MigrationPhase_Name(settled.last_event().phase()) << " "
              << settled.last_event().message() << "\n";
    ASSERT_TRUE(settled.finished()) << "the restarted agent never settled the commit: " << settled.last_event().message();
    if (on_destination) {
      // Exactly one host: the destination. The source's copy stopped and its VMM is gone.
      EXPECT_EQ(settled.last_event().phase(), v1::MIGRATION_PHASE_COMPLETED) << settled.last_event().error();
      EXPECT_FALSE(HasVm(**restarted, "vm1")) << "the source still lists the VM the destination runs";
      EXPECT_TRUE(source_vmm <= 0 || ProcessEnded(source_vmm, 20)) << "the source's VMM (pid " << source_vmm
                                                                   << ") still runs";
      ExpectRunsHere(**b, "vm1", /*bounded=*/false);
    } else {
      // The commit never took effect: the guest resumes on the source, and only there.
      EXPECT_EQ(settled.last_event().phase(), v1::MIGRATION_PHASE_FAILED);
      EXPECT_NE(settled.last_event().message().find("resumed here"), std::string::npos) << settled.last_event().message();
      ExpectRunsHere(**restarted, "vm1", /*bounded=*/false);
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0);
    }
    return;
  }
  ASSERT_TRUE(finished.ok()) << finished.error_message();
  std::cout << "[ cell     ] " << PhaseName(cell.phase) << " x " << FaultName(cell.fault) << ": "
            << v1::MigrationPhase_Name(last.phase()) << " " << last.error() << "\n";

  if (last.phase() == v1::MIGRATION_PHASE_FAILED && last.error().find("commit sent but") != std::string::npos) {
    // The commit went out and nobody could answer: the source kept the guest paused, as it must,
    // and runs it nowhere else. Only a fault at or after the commit decision may lead here.
    EXPECT_TRUE(cell.fault == Fault::kStallLink || cell.fault == Fault::kCutLink ||
                cell.fault == Fault::kKillDestination || cell.fault == Fault::kLoseAnswers)
        << last.error();
    EXPECT_NE(last.error().find("migrate migration resolve " + last.migration_id()), std::string::npos)
        << "the error does not tell the operator what to run: " << last.error();
    v1::VmInfo held;
    ASSERT_TRUE(GetVm(**a, "vm1", &held).ok()) << "the source let go of a VM nobody confirmed";
    EXPECT_NE(held.state(), v1::VM_POWER_STATE_RUNNING) << "the source resumed a VM the destination may run";
    if (cell.fault == Fault::kKillDestination) {
      // Nobody can answer: resolve says so and the VM stays held (never twice), not running here.
      grpc::Status r = Resolve(**a, last.migration_id(), nullptr);
      EXPECT_EQ(r.error_code(), grpc::StatusCode::UNAVAILABLE) << r.error_message();
      std::cout << "[ cell     ] resolve: " << r.error_message() << "\n";
      EXPECT_NE(r.error_message().find("stays paused here"), std::string::npos) << r.error_message();
      ASSERT_TRUE(GetVm(**a, "vm1", &held).ok());
      EXPECT_NE(held.state(), v1::VM_POWER_STATE_RUNNING);
      return;
    }
    // The link comes back; the operator's resolve settles where the VM runs: exactly one host.
    proxy->Thaw();
    proxy->Restore();
    v1::ResolveMigrationResponse resolved;
    grpc::Status r = Resolve(**a, last.migration_id(), &resolved);
    ASSERT_TRUE(r.ok()) << r.error_message();
    std::cout << "[ cell     ] resolved: " << resolved.message() << "\n";
    const bool on_destination = resolved.runs_on_destination();
    if (cell.fault == Fault::kCutLink && cell.phase == Phase::kStateLoaded) {
      EXPECT_FALSE(on_destination) << "cut before the commit went out, yet it arrived: " << resolved.message();
    }
    if (cell.fault == Fault::kLoseAnswers) {
      EXPECT_TRUE(on_destination) << "the commit arrived, only its answer was lost: " << resolved.message();
    }
    if (on_destination) {
      EXPECT_FALSE(HasVm(**a, "vm1"));
      ExpectRunsHere(**b, "vm1", /*bounded=*/false);
    } else {
      ExpectRunsHere(**a, "vm1", /*bounded=*/false);
      EXPECT_EQ(VmsAfterSettling(**b, 10), 0);
    }
    // Settled once: a second resolve finds nothing to do.
    grpc::Status again = Resolve(**a, last.migration_id(), nullptr);
    EXPECT_EQ(again.error_code(), grpc::StatusCode::NOT_FOUND) << again.error_message();
    return;
  }
  const bool completed = last.phase() == v1::MIGRATION_PHASE_COMPLETED;
  if (completed) {
    // Completing despite the fault is right only once the commit was decided: a cancel then is
    // refused, and a lost link after it is settled by asking the destination.
    EXPECT_TRUE(cell.fault == Fault::kCancel || !BeforeCommit(cell.phase)) << "completed despite " << FaultName(cell.fault);
    if (cell.fault == Fault::kCancel) {
      EXPECT_FALSE(cancel_answer.ok());
      EXPECT_NE(cancel_answer.message().find("commit"), std::string::npos) << cancel_answer;
    }
    for (int i = 0; i < 40 && HasVm(**a, "vm1"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(HasVm(**a, "vm1")) << "the source still holds the VM after completing";
    if (cell.fault == Fault::kKillDestination) return;  // it ran there; that host died after
    ExpectRunsHere(**b, "vm1", /*bounded=*/cell.fault == Fault::kCancel);
    return;
  }
  EXPECT_TRUE(cell.phase != Phase::kAfterResume) << "the VM ran on the destination, yet the source says "
                                                  << v1::MigrationPhase_Name(last.phase());
  EXPECT_EQ(last.phase(), cell.fault == Fault::kCancel ? v1::MIGRATION_PHASE_CANCELLED : v1::MIGRATION_PHASE_FAILED)
      << last.error();
  EXPECT_FALSE(last.error().empty());
  if (last.error().find("resumed on the source") == std::string::npos || cell.fault == Fault::kCancel) {
    ExpectRunsHere(**a, "vm1");
  } else {
    // Rolled back after asking the destination: the guest waited for that answer.
    ExpectRunsHere(**a, "vm1", /*bounded=*/false);
  }
  if (cell.fault == Fault::kKillDestination) {
    EXPECT_NE(last.error().find("destination"), std::string::npos) << last.error();
    return;
  }
  if (cell.fault == Fault::kStallLink && cell.phase == Phase::kStopAndCopy) {
    EXPECT_NE(last.error().find("max pause"), std::string::npos) << last.error();
  }
  if (cell.fault == Fault::kStallLink && cell.transport == v1::TRANSPORT_DATA &&
      (cell.phase == Phase::kRoundOne || cell.phase == Phase::kLaterRound)) {
    // A frozen data connection is dead after the keepalive's bound, not the transport's 30 s.
    EXPECT_NE(last.error().find("no progress for 4.0 s"), std::string::npos) << last.error();
  }
  if (cell.fault == Fault::kDestinationRefuses && refuse.empty()) {
    EXPECT_NE(last.error().find("EXISTS"), std::string::npos) << last.error();
    EXPECT_EQ(ListVms(**b).vms_size(), 1) << "the destination kept more than its own VM";
    return;
  }
  if (cell.fault == Fault::kDestinationRefuses) {
    EXPECT_NE(last.error().find("test fault: this destination refuses"), std::string::npos) << last.error();
  }
  // The destination discarded its copy (abort, stream end, or keepalive on a frozen link).
  proxy->Thaw();
  EXPECT_EQ(VmsAfterSettling(**b, 10), 0) << "the destination kept a half-received VM";
}

std::string CellName(const ::testing::TestParamInfo<Cell>& info) {
  return std::string(PhaseName(info.param.phase)) + "_" + FaultName(info.param.fault) +
         (info.param.transport == v1::TRANSPORT_GRPC ? "_Grpc" : "");
}

constexpr v1::Transport kGrpc = v1::TRANSPORT_GRPC;

INSTANTIATE_TEST_SUITE_P(
    Cells, FaultMatrix,
    ::testing::Values(
        // Before commit: the guest runs on the source afterwards (or nowhere if its host died).
        Cell{Phase::kSetup, Fault::kCancel}, Cell{Phase::kRoundOne, Fault::kCancel},
        Cell{Phase::kLaterRound, Fault::kCancel}, Cell{Phase::kStopAndCopy, Fault::kCancel},
        Cell{Phase::kSetup, Fault::kKillSource}, Cell{Phase::kRoundOne, Fault::kKillSource},
        Cell{Phase::kLaterRound, Fault::kKillSource}, Cell{Phase::kStopAndCopy, Fault::kKillSource},
        Cell{Phase::kSetup, Fault::kKillDestination}, Cell{Phase::kRoundOne, Fault::kKillDestination},
        Cell{Phase::kLaterRound, Fault::kKillDestination}, Cell{Phase::kStopAndCopy, Fault::kKillDestination},
        Cell{Phase::kSetup, Fault::kCutLink}, Cell{Phase::kRoundOne, Fault::kCutLink},
        Cell{Phase::kLaterRound, Fault::kCutLink}, Cell{Phase::kStopAndCopy, Fault::kCutLink},
        Cell{Phase::kSetup, Fault::kStallLink}, Cell{Phase::kRoundOne, Fault::kStallLink},
        Cell{Phase::kLaterRound, Fault::kStallLink}, Cell{Phase::kStopAndCopy, Fault::kStallLink},
        Cell{Phase::kSetup, Fault::kDestinationRefuses}, Cell{Phase::kRoundOne, Fault::kDestinationRefuses},
        Cell{Phase::kLaterRound, Fault::kDestinationRefuses}, Cell{Phase::kStopAndCopy, Fault::kDestinationRefuses},
        // The gRPC stream carrying the pages too (StopAndCopy_StallLink: tests/migration's Handover).
        Cell{Phase::kRoundOne, Fault::kCutLink, kGrpc},
        // The handover, held there by the test-only agent.
        Cell{Phase::kStateLoaded, Fault::kCancel}, Cell{Phase::kStateLoaded, Fault::kKillSource},
        Cell{Phase::kStateLoaded, Fault::kKillDestination}, Cell{Phase::kStateLoaded, Fault::kCutLink},
        Cell{Phase::kStateLoaded, Fault::kStallLink}, Cell{Phase::kStateLoaded, Fault::kDestinationRefuses},
        Cell{Phase::kCommitSent, Fault::kCancel}, Cell{Phase::kCommitSent, Fault::kKillSource},
        Cell{Phase::kCommitSent, Fault::kKillDestination}, Cell{Phase::kCommitSent, Fault::kCutLink},
        Cell{Phase::kCommitSent, Fault::kStallLink}, Cell{Phase::kCommitSent, Fault::kDestinationRefuses},
        Cell{Phase::kAfterResume, Fault::kCancel}, Cell{Phase::kAfterResume, Fault::kKillSource},
        Cell{Phase::kAfterResume, Fault::kKillDestination}, Cell{Phase::kAfterResume, Fault::kCutLink},
        Cell{Phase::kAfterResume, Fault::kStallLink}, Cell{Phase::kAfterResume, Fault::kDestinationRefuses},
        // The commit arrives and runs, its answer is lost: settled by the operator's resolve.
        Cell{Phase::kStateLoaded, Fault::kLoseAnswers},
        // The destination refuses the commit and the source agent dies before it hears so: the
        // restarted agent asks and resumes the guest.
        Cell{Phase::kCommitSent, Fault::kRefuseThenKillSource}),
    CellName);

}  // namespace
}  // namespace ferry::e2e
