// The destination's answer to a source whose commit answer was lost: final, and fencing.
#include "engine/agent/incoming_commits.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace ferry {
namespace {

using std::chrono::milliseconds;

TEST(IncomingCommits, AResumedMigrationRunsHere) {
  IncomingCommits c;
  ASSERT_TRUE(c.Begin("m1", [] {}));
  ASSERT_TRUE(c.BeginCommit("m1"));
  c.EndCommit("m1", /*resumed=*/true);
  c.End("m1", true);
  std::string detail;
  EXPECT_EQ(c.Query("m1", milliseconds(10), &detail), v1::COMMIT_OUTCOME_RUNS_HERE) << detail;
}

TEST(IncomingCommits, AQueryBeforeTheCommitFencesTheMigration) {
  IncomingCommits c;
  std::atomic<int> broken{0};
  ASSERT_TRUE(c.Begin("m1", [&] { ++broken; }));
  std::string detail;
  EXPECT_EQ(c.Query("m1", milliseconds(10), &detail), v1::COMMIT_OUTCOME_NOT_HERE);
  EXPECT_EQ(broken.load(), 1) << "the fenced migration's stream was not broken";
  EXPECT_FALSE(c.BeginCommit("m1")) << "a commit arriving after NOT_HERE must be refused";
  EXPECT_EQ(c.Query("m1", milliseconds(10), &detail), v1::COMMIT_OUTCOME_NOT_HERE);
}

TEST(IncomingCommits, AnUnknownMigrationIsNotHereAndCannotStartLater) {
  IncomingCommits c;  // e.g. the agent restarted: its VMs ended with it
  std::string detail;
  EXPECT_EQ(c.Query("m9", milliseconds(10), &detail), v1::COMMIT_OUTCOME_NOT_HERE);
  EXPECT_NE(detail.find("restarted"), std::string::npos) << detail;
  EXPECT_FALSE(c.Begin("m9", [] {})) << "a late start of a fenced migration must be refused";
}

TEST(IncomingCommits, ADiscardedMigrationIsNotHere) {
  IncomingCommits c;
  ASSERT_TRUE(c.Begin("m1", [] {}));
  ASSERT_TRUE(c.BeginCommit("m1"));
  c.EndCommit("m1", /*resumed=*/false);  // the VM could not start: error answered, copy discarded
  c.End("m1", false);
  std::string detail;
  EXPECT_EQ(c.Query("m1", milliseconds(10), &detail), v1::COMMIT_OUTCOME_NOT_HERE);
}

TEST(IncomingCommits, AQueryDuringTheCommitWaitsForItsOutcome) {
  IncomingCommits c;
  ASSERT_TRUE(c.Begin("m1", [] {}));
  ASSERT_TRUE(c.BeginCommit("m1"));
  std::thread commit([&] {
    std::this_thread::sleep_for(milliseconds(100));
    c.EndCommit("m1", /*resumed=*/true);
  });
  std::string detail;
  EXPECT_EQ(c.Query("m1", milliseconds(5000), &detail), v1::COMMIT_OUTCOME_RUNS_HERE) << detail;
  commit.join();
}

TEST(IncomingCommits, ACommitStillBeingAppliedIsNoFinalAnswer) {
  IncomingCommits c;
  ASSERT_TRUE(c.Begin("m1", [] {}));
  ASSERT_TRUE(c.BeginCommit("m1"));
  std::string detail;
  EXPECT_EQ(c.Query("m1", milliseconds(20), &detail), v1::COMMIT_OUTCOME_UNSPECIFIED) << detail;
  c.EndCommit("m1", true);
}

}  // namespace
}  // namespace ferry
