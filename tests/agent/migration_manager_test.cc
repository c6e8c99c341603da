// Migration jobs (engine/agent/migration_manager.h): their own threads, admission and the queue,
// priority, cancel, live settings, watchers and the bounded history.
#include "engine/agent/migration_manager.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace ferry {
namespace {

using namespace std::chrono_literals;

// A gate a job body waits at until the test opens it (or the job is cancelled).
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // True when opened, false when `cancelled()` turned true first.
  bool Wait(MigrationJob& job) {
    for (;;) {
      {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, 5ms, [&] { return open_; })) return true;
      }
      if (job.cancel_requested()) return false;  // never under the gate's lock
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

v1::MigrationEvent Event(v1::MigrationPhase phase, const std::string& message = "") {
  v1::MigrationEvent e;
  e.set_phase(phase);
  e.set_message(message);
  return e;
}

// The body of a job that runs until `gate` opens (COMPLETED) or it is cancelled (CANCELLED).
MigrationManager::Body GatedBody(Gate& gate, std::atomic<int>* started = nullptr) {
  return [&gate, started](MigrationJob& job) {
    if (job.cancel_requested()) return job.Record(Event(v1::MIGRATION_PHASE_CANCELLED, "cancelled while queued"));
    if (started) ++*started;
    job.Record(Event(v1::MIGRATION_PHASE_PRECOPY));
    job.Record(gate.Wait(job) ? Event(v1::MIGRATION_PHASE_COMPLETED) : Event(v1::MIGRATION_PHASE_CANCELLED));
  };
}

JobSpec Spec(const std::string& id, v1::MigrationPriority priority = v1::MIGRATION_PRIORITY_STANDARD) {
  JobSpec s;
  s.id = id;
  s.vm_name = "vm-" + id;
  s.peer = "127.0.0.1:7002";
  s.options.set_priority(priority);
  return s;
}

v1::MigrationPhase PhaseOf(const MigrationManager& m, const std::string& id) {
  auto info = m.Get(id);
  return info.ok() ? info->last_event().phase() : v1::MIGRATION_PHASE_UNSPECIFIED;
}

// Generous: it returns as soon as `done` holds; only a failure waits it out (TSan on a loaded host).
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

bool Finished(const MigrationManager& m, const std::string& id) {
  auto info = m.Get(id);
  return info.ok() && info->finished();
}

class FakeControl : public MigrationControl {
 public:
  absl::Status Cancel() override {
    ++cancels;
    if (past_commit) return absl::FailedPreconditionError("commit was sent; too late to cancel");
    gate->Open();
    return absl::OkStatus();
  }
  void SetMaxBandwidth(double mibps) override { bandwidth = mibps; }
  void SetMaxDowntime(uint32_t ms) override { downtime = ms; }
  Gate* gate = nullptr;
  bool past_commit = false;
  std::atomic<int> cancels{0};
  std::atomic<double> bandwidth{-1};
  std::atomic<uint32_t> downtime{0};
};

TEST(MigrationManager, AJobRunsOnItsOwnThreadAndEndsInTheHistoryWithItsLastEvent) {
  MigrationManager m;
  Gate gate;
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> other_thread{false};
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), [&](MigrationJob& job) {
    other_thread = std::this_thread::get_id() != caller;
    GatedBody(gate)(job);
  }).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "a") == v1::MIGRATION_PHASE_PRECOPY; }));
  EXPECT_EQ(m.ActiveJobOf("vm-a"), "a");
  EXPECT_FALSE(m.Get("a")->finished());
  gate.Open();
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  EXPECT_TRUE(other_thread);
  EXPECT_EQ(PhaseOf(m, "a"), v1::MIGRATION_PHASE_COMPLETED);
  EXPECT_EQ(m.ActiveJobOf("vm-a"), "");
  auto list = m.List();
  ASSERT_EQ(list.migrations_size(), 1);
  EXPECT_EQ(list.migrations(0).vm_name(), "vm-a");
  EXPECT_EQ(list.migrations(0).direction(), v1::MIGRATION_DIRECTION_OUTGOING);
  EXPECT_EQ(list.running(), 0u);
}

TEST(MigrationManager, JobsBeyondTheLimitQueueVisiblyAndHighPriorityStartsFirst) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  MigrationManager m(o);
  Gate g1, g2, g3;
  ASSERT_TRUE(m.StartOutgoing(Spec("first"), GatedBody(g1)).ok());
  ASSERT_TRUE(m.StartOutgoing(Spec("standard"), GatedBody(g2)).ok());
  ASSERT_TRUE(m.StartOutgoing(Spec("high", v1::MIGRATION_PRIORITY_HIGH), GatedBody(g3)).ok());
  EXPECT_EQ(PhaseOf(m, "standard"), v1::MIGRATION_PHASE_QUEUED);
  EXPECT_EQ(PhaseOf(m, "high"), v1::MIGRATION_PHASE_QUEUED);
  auto list = m.List();
  EXPECT_EQ(list.running(), 1u);
  EXPECT_EQ(list.queued(), 2u);
  EXPECT_EQ(m.Get("high")->link_weight(), 3u);
  EXPECT_EQ(m.Get("standard")->link_weight(), 1u);

  g1.Open();  // the slot frees: the high one, although it came later, takes it
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "high") == v1::MIGRATION_PHASE_PRECOPY; }));
  EXPECT_EQ(PhaseOf(m, "standard"), v1::MIGRATION_PHASE_QUEUED);
  g3.Open();
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "standard") == v1::MIGRATION_PHASE_PRECOPY; }));
  g2.Open();
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "standard"); }));
  // Every admitted job completed.
  for (const char* id : {"first", "high", "standard"}) EXPECT_EQ(PhaseOf(m, id), v1::MIGRATION_PHASE_COMPLETED) << id;
}

TEST(MigrationManager, CancellingAQueuedJobEndsItWithoutTakingASlot) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  MigrationManager m(o);
  Gate g1, g2;
  std::atomic<int> started{0};
  ASSERT_TRUE(m.StartOutgoing(Spec("running"), GatedBody(g1)).ok());
  // Its body runs on its own thread: wait until it holds the slot and says so.
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "running") == v1::MIGRATION_PHASE_PRECOPY; }));
  ASSERT_TRUE(m.StartOutgoing(Spec("queued"), GatedBody(g2, &started)).ok());
  ASSERT_TRUE(m.Cancel("queued").ok());
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "queued"); }));
  EXPECT_EQ(PhaseOf(m, "queued"), v1::MIGRATION_PHASE_CANCELLED);
  EXPECT_EQ(started.load(), 0) << "a job cancelled in the queue never starts migrating";
  EXPECT_EQ(PhaseOf(m, "running"), v1::MIGRATION_PHASE_PRECOPY);
  g1.Open();
}

TEST(MigrationManager, CancelAndSettingsReachTheRunningEngineAndAreRefusedAfterCommit) {
  MigrationManager m;
  Gate gate, attached;
  FakeControl control;
  control.gate = &gate;
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), [&](MigrationJob& job) {
    job.Attach(&control);
    attached.Open();
    job.Record(Event(v1::MIGRATION_PHASE_PRECOPY));
    gate.Wait(job);
    job.Detach();
    job.Record(Event(v1::MIGRATION_PHASE_CANCELLED));
  }).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "a") == v1::MIGRATION_PHASE_PRECOPY; }));

  auto set = m.Set("a", 250.0, 120u);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(control.bandwidth.load(), 250.0);
  EXPECT_EQ(control.downtime.load(), 120u);
  EXPECT_EQ(set->options().max_bandwidth_mibps(), 250.0);
  EXPECT_EQ(set->options().max_downtime_ms(), 120u);
  EXPECT_TRUE(absl::IsInvalidArgument(m.Set("a", -1.0, std::nullopt).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(m.Set("a", std::nullopt, 0u).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(m.Set("a", std::nullopt, std::nullopt).status()));
  EXPECT_TRUE(absl::IsNotFound(m.Set("nope", 1.0, std::nullopt).status()));

  control.past_commit = true;
  auto refused = m.Cancel("a");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  control.past_commit = false;
  ASSERT_TRUE(m.Cancel("a").ok());
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  EXPECT_EQ(control.cancels.load(), 2);
  EXPECT_TRUE(absl::IsFailedPrecondition(m.Cancel("a").status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(m.Set("a", 1.0, std::nullopt).status()));
}

TEST(MigrationManager, ACancelAskedBeforeTheEngineExistsCancelsItWhenAttached) {
  MigrationManager m;
  Gate before_attach, gate;
  FakeControl control;
  control.gate = &gate;
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), [&](MigrationJob& job) {
    job.Record(Event(v1::MIGRATION_PHASE_PRECHECK));
    before_attach.Wait(job);  // returns at once when cancelled
    job.Attach(&control);
    gate.Wait(job);
    job.Detach();
    job.Record(Event(v1::MIGRATION_PHASE_CANCELLED));
  }).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "a") == v1::MIGRATION_PHASE_PRECHECK; }));
  ASSERT_TRUE(m.Set("a", 10.0, std::nullopt).ok());
  ASSERT_TRUE(m.Cancel("a").ok());
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  EXPECT_EQ(control.cancels.load(), 1);
  EXPECT_EQ(control.bandwidth.load(), 10.0) << "a setting made before the engine existed reaches it";
}

TEST(MigrationManager, IncomingMigrationsBeyondTheLimitAreRefusedClearly) {
  MigrationManagerOptions o;
  o.max_concurrent = 2;
  MigrationManager m(o);
  Gate gate;
  ASSERT_TRUE(m.StartOutgoing(Spec("out"), GatedBody(gate)).ok());
  auto in1 = m.AdmitIncoming(Spec("in1"));
  ASSERT_TRUE(in1.ok());
  auto in2 = m.AdmitIncoming(Spec("in2"));
  ASSERT_TRUE(absl::IsResourceExhausted(in2.status()));
  EXPECT_NE(in2.status().message().find("2 of its 2 concurrent migrations"), std::string::npos) << in2.status();
  EXPECT_TRUE(absl::IsAlreadyExists(m.AdmitIncoming(Spec("in1")).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(m.Cancel("in1").status())) << "an incoming job is cancelled on its source";

  (*in1)->Record(Event(v1::MIGRATION_PHASE_COMPLETED));
  m.FinishIncoming(**in1);
  EXPECT_EQ(PhaseOf(m, "in1"), v1::MIGRATION_PHASE_COMPLETED);
  auto again = m.AdmitIncoming(Spec("in1"));
  ASSERT_TRUE(again.ok()) << "an id that only the history holds may come in again (a source retrying)";
  m.FinishIncoming(**again);
  auto in3 = m.AdmitIncoming(Spec("in3"));
  ASSERT_TRUE(in3.ok()) << "a finished job frees its slot";
  m.FinishIncoming(**in3);  // ended without resuming: reported as failed
  EXPECT_EQ(PhaseOf(m, "in3"), v1::MIGRATION_PHASE_FAILED);
  gate.Open();
}

TEST(MigrationManager, AWatcherFromAnyThreadSeesEveryEventToTheEnd) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  MigrationManager m(o);
  Gate g1, g2;
  ASSERT_TRUE(m.StartOutgoing(Spec("first"), GatedBody(g1)).ok());
  ASSERT_TRUE(m.StartOutgoing(Spec("second"), GatedBody(g2)).ok());
  std::vector<v1::MigrationPhase> seen;
  std::thread watcher([&] {
    absl::Status st = m.Watch("second", /*from_start=*/true, [&](const v1::MigrationEvent& e) {
      seen.push_back(e.phase());
      return true;
    }, nullptr);
    EXPECT_TRUE(st.ok()) << st;
  });
  g1.Open();
  g2.Open();
  watcher.join();
  EXPECT_EQ(seen, (std::vector<v1::MigrationPhase>{v1::MIGRATION_PHASE_QUEUED, v1::MIGRATION_PHASE_PRECOPY,
                                                   v1::MIGRATION_PHASE_COMPLETED}));
  // A watcher of a finished job gets its last event and returns.
  int events = 0;
  ASSERT_TRUE(m.Watch("first", false, [&](const v1::MigrationEvent& e) {
    ++events;
    EXPECT_EQ(e.phase(), v1::MIGRATION_PHASE_COMPLETED);
    return true;
  }, nullptr).ok());
  EXPECT_EQ(events, 1);
  EXPECT_TRUE(absl::IsNotFound(m.Watch("nope", false, [](const v1::MigrationEvent&) { return true; }, nullptr)));
}

TEST(MigrationManager, AWatcherThatGoesAwayLeavesTheJobRunning) {
  MigrationManager m;
  Gate gate;
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), GatedBody(gate)).ok());
  absl::Status st = m.Watch("a", true, [](const v1::MigrationEvent&) { return false; }, nullptr);
  EXPECT_TRUE(absl::IsCancelled(st));
  EXPECT_FALSE(Finished(m, "a"));
  gate.Open();
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  EXPECT_EQ(PhaseOf(m, "a"), v1::MIGRATION_PHASE_COMPLETED);
}

TEST(MigrationManager, TheHistoryKeepsOnlyTheNewestFinishedJobs) {
  MigrationManagerOptions o;
  o.history = 3;
  MigrationManager m(o);
  for (int i = 0; i < 5; ++i) {
    std::string id = "j" + std::to_string(i);
    ASSERT_TRUE(m.StartOutgoing(Spec(id), [](MigrationJob& job) { job.Record(Event(v1::MIGRATION_PHASE_COMPLETED)); }).ok());
    ASSERT_TRUE(WaitFor([&] { return Finished(m, id); }));
  }
  auto list = m.List();
  ASSERT_EQ(list.migrations_size(), 3);
  EXPECT_EQ(list.migrations(0).migration_id(), "j4") << "newest first";
  EXPECT_EQ(list.migrations(2).migration_id(), "j2");
  EXPECT_TRUE(absl::IsNotFound(m.Get("j0").status()));
}

TEST(MigrationManager, ABodyThatReportsNoOutcomeEndsFailed) {
  MigrationManager m;
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), [](MigrationJob&) {}).ok());
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  EXPECT_EQ(PhaseOf(m, "a"), v1::MIGRATION_PHASE_FAILED);
}

TEST(MigrationManager, ShutdownCancelsQueuedAndRunningJobsAndRefusesNewOnes) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  MigrationManager m(o);
  Gate g1, g2;
  ASSERT_TRUE(m.StartOutgoing(Spec("running"), GatedBody(g1)).ok());
  ASSERT_TRUE(m.StartOutgoing(Spec("queued"), GatedBody(g2)).ok());
  m.Shutdown();
  EXPECT_EQ(PhaseOf(m, "running"), v1::MIGRATION_PHASE_CANCELLED);
  EXPECT_EQ(PhaseOf(m, "queued"), v1::MIGRATION_PHASE_CANCELLED);
  EXPECT_TRUE(absl::IsUnavailable(m.StartOutgoing(Spec("late"), GatedBody(g1))));
  EXPECT_TRUE(absl::IsUnavailable(m.AdmitIncoming(Spec("late-in")).status()));
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

TEST(MigrationManager, ASettleJobRunsAtOnceOutsideTheSlotsAndLeavesThemToMigrations) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  MigrationManager m(o);
  Gate running, settling;
  ASSERT_TRUE(m.StartOutgoing(Spec("a"), GatedBody(running)).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "a") == v1::MIGRATION_PHASE_PRECOPY; }));
  // The one slot is busy, yet the settle job runs at once.
  ASSERT_TRUE(m.StartSettling(Spec("s"), [&](MigrationJob& job) {
    job.Record(Event(v1::MIGRATION_PHASE_COMMIT, "commit unconfirmed"));
    job.Record(settling.Wait(job) ? Event(v1::MIGRATION_PHASE_COMPLETED) : Event(v1::MIGRATION_PHASE_FAILED));
  }).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "s") == v1::MIGRATION_PHASE_COMMIT; }));
  EXPECT_EQ(m.List().running(), 1u);  // it holds no slot
  EXPECT_FALSE(m.StartSettling(Spec("s"), [](MigrationJob&) {}).ok());  // a known id
  running.Open();
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "a"); }));
  // A migration queued meanwhile gets the slot although the settle job still runs.
  Gate next;
  ASSERT_TRUE(m.StartOutgoing(Spec("b"), GatedBody(next)).ok());
  ASSERT_TRUE(WaitFor([&] { return PhaseOf(m, "b") == v1::MIGRATION_PHASE_PRECOPY; }));
  next.Open();
  settling.Open();
  ASSERT_TRUE(WaitFor([&] { return Finished(m, "s") && Finished(m, "b"); }));
  EXPECT_EQ(PhaseOf(m, "s"), v1::MIGRATION_PHASE_COMPLETED);
}

}  // namespace
}  // namespace ferry
