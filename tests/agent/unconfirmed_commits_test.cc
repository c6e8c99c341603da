// UnconfirmedCommits (engine/agent/unconfirmed_commits.h): a commit settled by whoever asked the
// destination wakes the background job awaiting it; a stopping agent wakes it too.
#include "engine/agent/unconfirmed_commits.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace ferry {
namespace {

using namespace std::chrono_literals;

TEST(UnconfirmedCommits, AnAwaitedCommitSettledElsewhereWakesItsWaiterWithTheOutcome) {
  UnconfirmedCommits commits;
  commits.Add("mig-1", {"vm1", "127.0.0.2:7002", "host-b"}, /*awaited=*/true);
  ASSERT_TRUE(commits.Find("mig-1").has_value());
  EXPECT_FALSE(commits.AwaitSettled("mig-1", 0ms).has_value());  // not settled yet
  std::thread resolver([&] {
    std::this_thread::sleep_for(20ms);
    commits.Settle("mig-1", {"vm1", true, "VM 'vm1' runs on 127.0.0.2:7002"});
  });
  // Generous: returns as soon as the other thread settles it.
  std::optional<CommitSettlement> how = commits.AwaitSettled("mig-1", 30s);
  resolver.join();
  ASSERT_TRUE(how.has_value());
  EXPECT_TRUE(how->runs_on_destination);
  EXPECT_EQ(how->vm_name, "vm1");
  EXPECT_FALSE(commits.Find("mig-1").has_value());
  EXPECT_FALSE(commits.AwaitSettled("mig-1", 0ms).has_value());  // taken once
}

TEST(UnconfirmedCommits, ACommitNobodyAwaitsLeavesNoSettlementBehind) {
  UnconfirmedCommits commits;
  commits.Add("mig-2", {"vm2", "127.0.0.2:7002", "host-b"});
  commits.Settle("mig-2", {"vm2", false, "resumed here"});
  EXPECT_FALSE(commits.Find("mig-2").has_value());
  EXPECT_FALSE(commits.AwaitSettled("mig-2", 0ms).has_value());
}

TEST(UnconfirmedCommits, StoppingWakesAWaiterWithoutAnOutcome) {
  UnconfirmedCommits commits;
  commits.Add("mig-3", {"vm3", "127.0.0.2:7002", "host-b"}, /*awaited=*/true);
  std::thread stopper([&] {
    std::this_thread::sleep_for(20ms);
    commits.Stop();
  });
  EXPECT_FALSE(commits.AwaitSettled("mig-3", 30s).has_value());
  stopper.join();
  EXPECT_TRUE(commits.stopping());
  EXPECT_TRUE(commits.Find("mig-3").has_value());  // still unconfirmed: the VM stays paused
}

}  // namespace
}  // namespace ferry
