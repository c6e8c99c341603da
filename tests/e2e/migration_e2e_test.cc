// Live migrations between two real ferry-agent processes over mutual TLS.
#include <gtest/gtest.h>

#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using cli::LocalCluster;
using cli::LocalClusterOptions;
using cli::MigrateWithProgress;

std::unique_ptr<LocalCluster> StartCluster(LocalClusterOptions o = {}) {
  auto c = LocalCluster::Start(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

struct Backend {
  v1::BackendKind kind;
  const char* name;
};

class MigrationE2E : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam().kind == v1::BACKEND_KIND_KVM && !KvmUsable()) {
      GTEST_SKIP() << "needs /dev/kvm (not present or not accessible here); the synthetic variant runs instead";
    }
  }
};

TEST_P(MigrationE2E, GuestDirtyingAt100MiBpsArrivesIntactAndLeavesTheSource) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 256, 64, 100)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto last = MigrateWithProgress(**a, MigrateTo(*c, 1, "vm1"), /*quiet=*/true);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  const auto& s = last->stats();
  EXPECT_GE(s.rounds(), 2u);
  EXPECT_GT(s.zero_pages(), 0u) << "untouched guest memory should travel as zero markers";
  EXPECT_LT(s.bytes_transferred(), s.guest_memory_bytes()) << "zero pages must not travel as data";
  EXPECT_GT(s.downtime_ms(), 0);
  EXPECT_TRUE(s.downtime_same_clock());
  EXPECT_EQ(s.transport(), "grpc+tls");
  ExpectGuestHealthy(**b, "vm1", 1.0);
  v1::VmInfo gone;
  EXPECT_EQ(GetVm(**a, "vm1", &gone).error_code(), grpc::StatusCode::NOT_FOUND) << "VM still on the source";
}

TEST_P(MigrationE2E, DroppingOneFinalPageIsCaughtByTheGuest) {
  // Negative control: proves the guest oracle sees a lost dirty page of the last round.
  LocalClusterOptions o;
  o.test_faults = "drop-final-page";
  auto c = StartCluster(o);
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  // A small working set so the guest re-checks the damaged page soon.
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 64, 2, 20)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto last = MigrateWithProgress(**a, MigrateTo(*c, 1, "vm1"), true);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  bool caught = false;
  for (int i = 0; i < 200 && !caught; ++i) {
    v1::VmInfo info;
    ASSERT_TRUE(GetVm(**b, "vm1", &info).ok());
    caught = info.health().corruptions() > 0;
    if (caught) {
      EXPECT_NE(info.health().corruption_reports(0).find("CORRUPTION page="), std::string::npos);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(caught) << "the guest did not notice a page lost in the final round; "
                      << (last->stats().warnings_size() ? last->stats().warnings(0) : "no page was dropped");
}

TEST_P(MigrationE2E, CancelDuringPrecopyLeavesTheSourceRunningAndTheDestinationEmpty) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  // 128 MiB of written working set at a 20 MiB/s cap: round 1 alone takes seconds.
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 256, 128, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 500, 20));
  auto req = MigrateTo(*c, 1, "vm1");
  req.mutable_options()->set_max_bandwidth_mibps(20);  // slow enough to cancel mid-round
  grpc::ClientContext ctx;
  auto reader = (*a)->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool cancelled = false;
  while (reader->Read(&e)) {
    last = e;
    if (!cancelled && e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      grpc::ClientContext cctx;
      v1::CancelMigrationRequest creq;
      creq.set_migration_id(e.migration_id());
      v1::MigrationInfo info;
      ASSERT_TRUE((*a)->CancelMigration(&cctx, creq, &info).ok());
      cancelled = true;
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.phase(), v1::MIGRATION_PHASE_CANCELLED) << last.error();
  ExpectGuestHealthy(**a, "vm1", 0.5);
  EXPECT_EQ(VmsAfterSettling(**b), 0) << "the destination kept a half-received VM";
}

TEST_P(MigrationE2E, DestinationKilledMidTransferLeavesTheSourceRunning) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0);
  ASSERT_TRUE(a.ok());
  // 128 MiB of written working set at a 20 MiB/s cap: round 1 alone takes seconds.
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 256, 128, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 500, 20));
  auto req = MigrateTo(*c, 1, "vm1");
  req.mutable_options()->set_max_bandwidth_mibps(20);
  grpc::ClientContext ctx;
  auto reader = (*a)->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool killed = false;
  while (reader->Read(&e)) {
    last = e;
    if (!killed && e.phase() == v1::MIGRATION_PHASE_PRECOPY) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      c->Kill(1);
      killed = true;
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(last.phase(), v1::MIGRATION_PHASE_FAILED);
  EXPECT_NE(last.error().find("destination"), std::string::npos) << last.error();
  ExpectGuestHealthy(**a, "vm1", 0.5);
}

TEST_P(MigrationE2E, NonConvergingWorkloadIsCancelledByPolicyAndKeepsRunning) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 64, 32, 0)).ok());  // dirty as fast as it can
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto req = MigrateTo(*c, 1, "vm1");
  req.mutable_options()->set_max_bandwidth_mibps(8);
  req.mutable_options()->set_max_downtime_ms(50);
  req.mutable_options()->set_max_rounds(3);
  req.mutable_options()->set_policy(v1::CONVERGENCE_POLICY_CANCEL);
  auto last = MigrateWithProgress(**a, req, true);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->phase(), v1::MIGRATION_PHASE_FAILED);
  EXPECT_NE(last->error().find("did not converge"), std::string::npos) << last->error();
  EXPECT_NE(last->error().find("keeps running on the source"), std::string::npos) << last->error();
  ExpectGuestHealthy(**a, "vm1", 0.5);
  EXPECT_EQ(VmsAfterSettling(**b), 0);
}

TEST_P(MigrationE2E, NonConvergingWorkloadIsForcedOverByPolicyAndArrivesIntact) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", GetParam().kind, 64, 16, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto req = MigrateTo(*c, 1, "vm1");
  req.mutable_options()->set_max_bandwidth_mibps(16);
  req.mutable_options()->set_max_downtime_ms(20);
  req.mutable_options()->set_max_rounds(2);
  req.mutable_options()->set_policy(v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER);
  auto last = MigrateWithProgress(**a, req, true);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  EXPECT_TRUE(last->stats().forced_switchover());
  ASSERT_GT(last->stats().warnings_size(), 0);
  EXPECT_NE(last->stats().warnings(0).find("forcing switch-over"), std::string::npos);
  ExpectGuestHealthy(**b, "vm1", 0.5);
}

INSTANTIATE_TEST_SUITE_P(Backends, MigrationE2E,
                         ::testing::Values(Backend{v1::BACKEND_KIND_SYNTHETIC, "Synthetic"},
                                           Backend{v1::BACKEND_KIND_KVM, "Kvm"}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ferry::e2e
