#include "tests/faultfs/fault_policy.h"

#include <gtest/gtest.h>

#include "tests/faultfs/control_channel.h"
#include "tests/faultfs/fault_gate.h"

namespace ferry::faultfs {
namespace {

TEST(FaultFsPolicy, ParsesEveryModeAndDescribesItBack) {
  for (const char* text : {"healthy", "apd", "pdl", "enospc", "readonly", "slow 20", "apd path=/vm1",
                           "slow 0 path=/a/b"}) {
    absl::StatusOr<FaultPolicy> policy = ParsePolicy(text);
    ASSERT_TRUE(policy.ok()) << text << ": " << policy.status();
    EXPECT_EQ(DescribePolicy(*policy), text);
  }
}

TEST(FaultFsPolicy, RefusesBadCommandsNamingTheProblem) {
  EXPECT_NE(ParsePolicy("").status().message().find("empty mode"), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("broken").status().message().find("unknown mode \"broken\""), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("slow").status().message().find("milliseconds"), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("slow -5").status().message().find("milliseconds"), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("slow 999999").status().message().find("milliseconds"), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("apd vm1").status().message().find("\"vm1\""), absl::string_view::npos);
  EXPECT_NE(ParsePolicy("apd path=vm1").status().message().find("starting with '/'"), absl::string_view::npos);
}

TEST(FaultFsPolicy, EachModeActsOnTheOperationsItShould) {
  FaultPolicy pdl{FaultMode::kPdl, 0, ""};
  EXPECT_EQ(Decide(pdl, FsOp::kRead, "/f").error, ENODEV);
  EXPECT_EQ(Decide(pdl, FsOp::kLookup, "/f").error, ENODEV);

  FaultPolicy enospc{FaultMode::kEnospc, 0, ""};
  EXPECT_EQ(Decide(enospc, FsOp::kAllocate, "/f").error, ENOSPC);
  EXPECT_EQ(Decide(enospc, FsOp::kWrite, "/f").verdict, Verdict::kProceed);  // overwrite in place
  EXPECT_EQ(Decide(enospc, FsOp::kModify, "/f").verdict, Verdict::kProceed);  // unlink frees space

  FaultPolicy ro{FaultMode::kReadOnly, 0, ""};
  EXPECT_EQ(Decide(ro, FsOp::kRead, "/f").verdict, Verdict::kProceed);
  EXPECT_EQ(Decide(ro, FsOp::kSync, "/f").verdict, Verdict::kProceed);
  for (FsOp op : {FsOp::kOpenWrite, FsOp::kWrite, FsOp::kAllocate, FsOp::kModify}) {
    EXPECT_EQ(Decide(ro, op, "/f").error, EROFS);
  }

  EXPECT_EQ(Decide({FaultMode::kApd, 0, ""}, FsOp::kLookup, "/").verdict, Verdict::kBlock);
  FaultAction slow = Decide({FaultMode::kSlow, 15, ""}, FsOp::kRead, "/f");
  EXPECT_EQ(slow.verdict, Verdict::kDelay);
  EXPECT_EQ(slow.delay_ms, 15);
}

TEST(FaultFsPolicy, PrefixScopesWholePathComponents) {
  EXPECT_TRUE(PathInScope("/vm1", "/vm1"));
  EXPECT_TRUE(PathInScope("/vm1", "/vm1/disk.raw"));
  EXPECT_TRUE(PathInScope("/vm1/", "/vm1/disk.raw"));
  EXPECT_FALSE(PathInScope("/vm1", "/vm10/disk.raw"));
  EXPECT_FALSE(PathInScope("/vm1", "/"));
  EXPECT_TRUE(PathInScope("", "/anything"));
  EXPECT_TRUE(PathInScope("/", "/anything"));
  FaultPolicy scoped{FaultMode::kPdl, 0, "/vm1"};
  EXPECT_EQ(Decide(scoped, FsOp::kRead, "/vm1/disk").error, ENODEV);
  EXPECT_EQ(Decide(scoped, FsOp::kRead, "/vm2/disk").verdict, Verdict::kProceed);
}

TEST(FaultFsPolicy, ControlRequestsSetAndReportTheMode) {
  FaultGate gate;
  EXPECT_EQ(HandleControlRequest(gate, "set pdl path=/vm1"), "ok pdl path=/vm1");
  EXPECT_EQ(HandleControlRequest(gate, "get"), "ok pdl path=/vm1 blocked=0 failed=0 delayed=0");
  EXPECT_EQ(gate.Admit(FsOp::kRead, "/vm1/x", {}), -ENODEV);
  EXPECT_EQ(HandleControlRequest(gate, "get"), "ok pdl path=/vm1 blocked=0 failed=1 delayed=0");
  EXPECT_EQ(HandleControlRequest(gate, "set nonsense").rfind("error unknown mode", 0), 0u);
  EXPECT_EQ(HandleControlRequest(gate, "frobnicate").rfind("error unknown request", 0), 0u);
  EXPECT_EQ(gate.policy().mode, FaultMode::kPdl);  // a refused request changes nothing
}

}  // namespace
}  // namespace ferry::faultfs
