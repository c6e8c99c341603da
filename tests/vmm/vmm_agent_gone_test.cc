// VmmDispatcher::OnAgentGone: what a VMM does with a migration its agent left behind
// (docs/vmm_process.md "An agent that dies mid-migration"). A real synthetic VM in process.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/vm/vm_spec_proto.h"
#include "engine/vmm/vmm_dispatch.h"
#include "engine/vmm/vmm_wire.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = 1ull << 20;

class VmmAgentGone : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("vmm-agent-gone-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    VmSpec s;
    s.name = "vm1";
    s.backend = Backend::kSynthetic;
    s.memory_bytes = 16 * kMiB;
    s.workload.working_set_bytes = 2 * kMiB;
    s.workload.dirty_rate_mibps = 20;
    v1::VmmRequest create;
    *create.mutable_create()->mutable_spec() = VmSpecToProto(s);
    create.mutable_create()->set_mode(v1::VMM_START_MODE_BOOT);
    create.mutable_create()->set_console_log_path((dir_ / "console.log").string());
    ASSERT_EQ(Ask(create).code(), 0) << Ask(create).message();
    ASSERT_EQ(Verb(&v1::VmmRequest::set_start).code(), 0);
  }
  void TearDown() override {
    d_.StopVm();
    fs::remove_all(dir_);
  }
  v1::VmmReply Ask(v1::VmmRequest r) {
    r.set_version(kVmmProtocolVersion);
    std::vector<int> fds;
    return d_.Handle(r, &fds);
  }
  v1::VmmReply Verb(void (v1::VmmRequest::*set)(bool)) {
    v1::VmmRequest r;
    (r.*set)(true);
    return Ask(r);
  }

  fs::path dir_;
  VmmDispatcher d_;
};

TEST_F(VmmAgentGone, AGuestPausedByAMigrationResumesWhenItsAgentGoesBeforeTheCommit) {
  ASSERT_EQ(Verb(&v1::VmmRequest::set_enable_dirty_tracking).code(), 0);
  ASSERT_EQ(Verb(&v1::VmmRequest::set_pause).run_state(), v1::VMM_RUN_STATE_PAUSED);
  d_.OnAgentGone();
  EXPECT_EQ(Verb(&v1::VmmRequest::set_describe).run_state(), v1::VMM_RUN_STATE_RUNNING);
  // Dirty tracking is off again: enabling it anew is accepted.
  EXPECT_EQ(Verb(&v1::VmmRequest::set_enable_dirty_tracking).code(), 0);
}

TEST_F(VmmAgentGone, AGuestWhoseCommitWentOutStaysPaused) {
  ASSERT_EQ(Verb(&v1::VmmRequest::set_enable_dirty_tracking).code(), 0);
  ASSERT_EQ(Verb(&v1::VmmRequest::set_pause).code(), 0);
  ASSERT_EQ(Verb(&v1::VmmRequest::set_handover_committed).code(), 0);
  d_.OnAgentGone();
  EXPECT_EQ(Verb(&v1::VmmRequest::set_describe).run_state(), v1::VMM_RUN_STATE_PAUSED);
}

TEST_F(VmmAgentGone, TheHandoverMarkTellsTheNextAgentWhomToAskUntilTheGuestResumes) {
  ASSERT_EQ(Verb(&v1::VmmRequest::set_enable_dirty_tracking).code(), 0);
  ASSERT_EQ(Verb(&v1::VmmRequest::set_pause).code(), 0);
  v1::VmmRequest mark;
  mark.mutable_handover()->set_migration_id("mig-0000abcd");
  mark.mutable_handover()->set_destination("127.0.0.2:7002");
  mark.mutable_handover()->set_destination_name("host-b");
  ASSERT_EQ(Ask(mark).code(), 0);
  d_.OnAgentGone();
  v1::VmmReply described = Verb(&v1::VmmRequest::set_describe);
  EXPECT_EQ(described.run_state(), v1::VMM_RUN_STATE_PAUSED);
  ASSERT_TRUE(described.has_handover());
  EXPECT_EQ(described.handover().migration_id(), "mig-0000abcd");
  EXPECT_EQ(described.handover().destination(), "127.0.0.2:7002");
  EXPECT_EQ(described.handover().destination_name(), "host-b");
  // The next agent learned the commit never took effect and resumed the guest: no mark any more.
  ASSERT_EQ(Verb(&v1::VmmRequest::set_resume).code(), 0);
  EXPECT_FALSE(Verb(&v1::VmmRequest::set_describe).has_handover());
  // A mark with a target also needs a paused guest.
  EXPECT_NE(Ask(mark).code(), 0);
}

TEST_F(VmmAgentGone, APauseOutsideAMigrationIsNotUndoneAndACommitMarkNeedsAPausedGuest) {
  EXPECT_NE(Verb(&v1::VmmRequest::set_handover_committed).code(), 0);  // running: refused
  ASSERT_EQ(Verb(&v1::VmmRequest::set_pause).code(), 0);
  d_.OnAgentGone();
  EXPECT_EQ(Verb(&v1::VmmRequest::set_describe).run_state(), v1::VMM_RUN_STATE_PAUSED);
}

}  // namespace
}  // namespace ferry
