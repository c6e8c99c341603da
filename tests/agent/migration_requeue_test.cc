// A job its destination refuses for now (busy) queues again, visibly, gives its slot away, retries
// with back-off, and ends cleanly when cancelled while queued or refused past the bound
// (MigrationJob::WaitToRetry, docs/jobs.md "Admission and queueing").
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "engine/agent/migration_manager.h"

namespace ferry {
namespace {

using namespace std::chrono_literals;

constexpr char kBusy[] = "destination host-b refused the migration: this host runs 1 of its 1 concurrent migrations";

v1::MigrationEvent Event(v1::MigrationPhase phase, const std::string& error = "") {
  v1::MigrationEvent e;
  e.set_phase(phase);
  e.set_error(error);
  return e;
}

JobSpec Spec(const std::string& id) {
  JobSpec s;
  s.id = id;
  s.vm_name = "vm-" + id;
  s.peer = "127.0.0.1:7002";
  return s;
}

v1::MigrationInfo InfoOf(const MigrationManager& m, const std::string& id) {
  auto info = m.Get(id);
  return info.ok() ? *info : v1::MigrationInfo();
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Refused `refusals` times, then completes; the outcome of a failed wait ends it.
MigrationManager::Body RefusedBody(int refusals, std::atomic<int>& attempts) {
  return [refusals, &attempts](MigrationJob& job) {
    for (;;) {
      if (job.cancel_requested()) return job.Record(Event(v1::MIGRATION_PHASE_CANCELLED));
      job.Record(Event(v1::MIGRATION_PHASE_SETUP));
      if (attempts.fetch_add(1) >= refusals) return job.Record(Event(v1::MIGRATION_PHASE_COMPLETED));
      absl::Status wait = job.WaitToRetry(kBusy);
      if (absl::IsCancelled(wait)) continue;
      if (!wait.ok()) return job.Record(Event(v1::MIGRATION_PHASE_FAILED, std::string(wait.message())));
    }
  };
}

TEST(MigrationRequeue, ARefusedJobQueuesWithTheReasonGivesItsSlotAwayAndRunsOnceOneFrees) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  o.retry_first = 500ms;  // long enough that "other" takes the slot first
  o.retry_max = 500ms;
  MigrationManager m(o);
  std::atomic<int> attempts{0};
  std::atomic<bool> other_may_end{false}, other_ran{false};
  ASSERT_TRUE(m.StartOutgoing(Spec("refused"), RefusedBody(1, attempts)).ok());
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "refused").last_event().phase() == v1::MIGRATION_PHASE_QUEUED; }));
  v1::MigrationInfo queued = InfoOf(m, "refused");
  EXPECT_EQ(queued.last_event().error(), kBusy);
  EXPECT_NE(queued.last_event().message().find("destination is busy"), std::string::npos) << queued.last_event().message();
  // Its slot went back: another job runs while it waits, and it does not run meanwhile.
  ASSERT_TRUE(m.StartOutgoing(Spec("other"), [&](MigrationJob& job) {
                 other_ran = true;
                 while (!other_may_end.load()) std::this_thread::sleep_for(1ms);
                 job.Record(Event(v1::MIGRATION_PHASE_COMPLETED));
               }).ok());
  ASSERT_TRUE(WaitFor([&] { return other_ran.load(); }));
  std::this_thread::sleep_for(700ms);  // its retry is due, but the slot is taken
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_EQ(InfoOf(m, "refused").last_event().phase(), v1::MIGRATION_PHASE_QUEUED);
  EXPECT_EQ(m.List().queued(), 1u);
  other_may_end = true;
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "refused").finished(); }));
  EXPECT_EQ(InfoOf(m, "refused").last_event().phase(), v1::MIGRATION_PHASE_COMPLETED);
  EXPECT_EQ(attempts.load(), 2);
  EXPECT_EQ(m.List().running(), 0u);
}

TEST(MigrationRequeue, ARefusalPastTheBoundFailsTheJobWithTheDestinationsReason) {
  MigrationManagerOptions o;
  o.retry_first = 5ms;
  o.retry_max = 10ms;
  o.busy_retry_for = 100ms;
  MigrationManager m(o);
  std::atomic<int> attempts{0};
  ASSERT_TRUE(m.StartOutgoing(Spec("refused"), RefusedBody(1000000, attempts)).ok());
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "refused").finished(); }));
  v1::MigrationEvent last = InfoOf(m, "refused").last_event();
  EXPECT_EQ(last.phase(), v1::MIGRATION_PHASE_FAILED);
  EXPECT_NE(last.error().find("kept refusing"), std::string::npos) << last.error();
  EXPECT_NE(last.error().find(kBusy), std::string::npos) << last.error();
  EXPECT_GT(attempts.load(), 2);
  EXPECT_EQ(m.List().running(), 0u);
  EXPECT_EQ(m.List().queued(), 0u);
}

TEST(MigrationRequeue, AJobCancelledWhileQueuedAfterARefusalEndsCleanlyAndFreesNothingItDidNotHold) {
  MigrationManagerOptions o;
  o.max_concurrent = 1;
  o.retry_first = 60s;  // it would wait long: only the cancel ends the wait
  MigrationManager m(o);
  std::atomic<int> attempts{0};
  ASSERT_TRUE(m.StartOutgoing(Spec("refused"), RefusedBody(1, attempts)).ok());
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "refused").last_event().phase() == v1::MIGRATION_PHASE_QUEUED; }));
  auto cancelled = m.Cancel("refused");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "refused").finished(); }));
  EXPECT_EQ(InfoOf(m, "refused").last_event().phase(), v1::MIGRATION_PHASE_CANCELLED);
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_EQ(m.List().running(), 0u);
  EXPECT_EQ(m.List().queued(), 0u);
  // The slot is free for the next job.
  std::atomic<int> next_attempts{0};
  ASSERT_TRUE(m.StartOutgoing(Spec("next"), RefusedBody(0, next_attempts)).ok());
  ASSERT_TRUE(WaitFor([&] { return InfoOf(m, "next").finished(); }));
  EXPECT_EQ(InfoOf(m, "next").last_event().phase(), v1::MIGRATION_PHASE_COMPLETED);
}

}  // namespace
}  // namespace ferry
