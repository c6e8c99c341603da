// Live migrations between two real ferry-agent processes over mutual TLS, on each transport
// (data connections, the gRPC stream) and each backend.
#include <gtest/gtest.h>

#include <iostream>
#include <tuple>
#include <utility>
#include <vector>

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
void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

class MigrationE2E : public ::testing::TestWithParam<std::tuple<TransportParam, Backend>> {
 protected:
  void SetUp() override {
    if (backend() == v1::BACKEND_KIND_KVM && !KvmUsable()) {
      GTEST_SKIP() << "needs /dev/kvm (not present or not accessible here); the synthetic variant runs instead";
    }
  }
  v1::Transport transport() const { return std::get<0>(GetParam()).kind; }
  v1::BackendKind backend() const { return std::get<1>(GetParam()).kind; }
  // A migration of `vm` from agent 0 to agent 1 on this test's transport.
  v1::MigrateRequest Request(const LocalCluster& c, const std::string& vm) const {
    return WithTransport(MigrateTo(c, 1, vm), transport());
  }
};

TEST_P(MigrationE2E, GuestDirtyingAt100MiBpsArrivesIntactAndLeavesTheSource) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 256, 64, 100)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(**a, Request(*c, "vm1"));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  const auto& s = last.stats();
  ExpectTransport(s, transport(), /*tls=*/true);
  // Progress events name the connections carrying the pages (the CLI's progress line shows them).
  int precopy_events = 0;
  for (const auto& e : events) {
    if (e.phase() != v1::MIGRATION_PHASE_PRECOPY) continue;
    ++precopy_events;
    EXPECT_EQ(e.connections(), s.connections()) << "round " << e.round();
  }
  EXPECT_GT(precopy_events, 0);
  EXPECT_GE(s.rounds(), 2u);
  EXPECT_GT(s.zero_pages(), 0u) << "untouched guest memory should travel as zero markers";
  EXPECT_LT(s.bytes_transferred(), s.guest_memory_bytes()) << "zero pages must not travel as data";
  EXPECT_GT(s.downtime_ms(), 0);
  EXPECT_TRUE(s.downtime_same_clock());
  ExpectGuestHealthy(**b, "vm1", 1.0);
  v1::VmInfo gone;
  EXPECT_EQ(GetVm(**a, "vm1", &gone).error_code(), grpc::StatusCode::NOT_FOUND) << "VM still on the source";
}

TEST_P(MigrationE2E, DroppingOneFinalPageIsCaughtByTheGuest) {
  // Negative control: proves the guest oracle sees a lost dirty page of the last round.
  LocalClusterOptions o;
  o.agent_binary = "ferry-agent-faults";  // tests/fault_agent: the fault lives outside the production agent
  o.extra_args = {{"--fault", "drop-final-page"}, {}};
  auto c = StartCluster(o);
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  // A small working set so the guest re-checks the damaged page soon.
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 64, 2, 20)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto last = MigrateWithProgress(**a, Request(*c, "vm1"), true);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  ExpectTransport(last->stats(), transport(), /*tls=*/true);
  for (const auto& w : last->stats().warnings()) std::cout << "warning: " << w << "\n";
  bool caught = false;
  v1::VmInfo info;
  for (int i = 0; i < 200 && !caught; ++i) {
    ASSERT_TRUE(GetVm(**b, "vm1", &info).ok());
    caught = info.health().corruptions() > 0;
    if (caught) {
      EXPECT_NE(info.health().corruption_reports(0).find("CORRUPTION page="), std::string::npos);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(caught) << "the guest did not notice a page lost in the final round; "
                      << "see the source agent's log for event=test_fault"
                      << "; on the destination: " << info.health().heartbeats() << " heartbeats, last "
                      << info.health().since_last_heartbeat_ms() << " ms ago, state "
                      << v1::VmPowerState_Name(info.state());
}

TEST_P(MigrationE2E, CancelDuringPrecopyLeavesTheSourceRunningAndTheDestinationEmpty) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  // 128 MiB of written working set at a 20 MiB/s cap: round 1 alone takes seconds.
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 256, 128, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 500, 20));
  auto req = Request(*c, "vm1");
  req.mutable_options()->set_max_bandwidth_mibps(20);  // slow enough to cancel mid-round
  grpc::ClientContext ctx;
  auto reader = (*a)->Migrate(&ctx, req);
  v1::MigrationEvent e, last;
  bool cancelled = false;
  while (reader->Read(&e)) {
    last = e;
    if (!cancelled && e.phase() == v1::MIGRATION_PHASE_PRECOPY && e.round() == 1) {
      EXPECT_EQ(e.connections() > 0, transport() == v1::TRANSPORT_DATA) << e.connections() << " connections";
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ASSERT_TRUE(CancelMigration(**a, e.migration_id()).ok());
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
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 256, 128, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 500, 20));
  auto req = Request(*c, "vm1");
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
  EXPECT_FALSE(last.error().empty());
  EXPECT_NE(last.error().find("destination"), std::string::npos) << last.error();
  ExpectGuestHealthy(**a, "vm1", 0.5);
}

TEST_P(MigrationE2E, NonConvergingWorkloadIsCancelledByPolicyAndKeepsRunning) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 64, 32, 0)).ok());  // dirty as fast as it can
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto req = Request(*c, "vm1");
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
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 64, 16, 0)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto req = Request(*c, "vm1");
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

TEST_P(MigrationE2E, PauseIsReportedByItsParts) {
  auto c = StartCluster();
  ASSERT_TRUE(c);
  auto a = c->Stub(0), b = c->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", backend(), 128, 16, 20)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  auto last = MigrateWithProgress(**a, Request(*c, "vm1"), true);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
  const v1::MigrationStats& s = last->stats();
  ASSERT_TRUE(s.has_pause());
  const v1::PauseBreakdown& p = s.pause();
  const std::vector<std::pair<const char*, double>> parts = {
      {"vcpu_pause", p.vcpu_pause_ms()},         {"dirty_log", p.dirty_log_ms()},
      {"final_pages", p.final_pages_ms()},       {"state_save", p.state_save_ms()},
      {"state_transfer", p.state_transfer_ms()}, {"wait_final_pages", p.wait_final_pages_ms()},
      {"state_load", p.state_load_ms()},         {"resume", p.resume_ms()}};
  double sum = 0;
  std::string shown;
  for (const auto& [name, ms] : parts) {
    EXPECT_GE(ms, 0) << name;
    sum += ms;
    shown += std::string(" ") + name + "=" + std::to_string(ms);
  }
  EXPECT_GE(p.first_instruction_ms(), 0);
  std::cout << "downtime " << s.downtime_ms() << " ms, parts:" << shown << "\n";
  // Each of these is real work that takes some time on every backend.
  EXPECT_GT(p.vcpu_pause_ms(), 0) << shown;
  EXPECT_GT(p.state_save_ms(), 0) << shown;
  EXPECT_GT(p.state_load_ms(), 0) << shown;
  // The parts happen one after another inside the pause: together they are the downtime, give or
  // take the clock reads between them (the first guest instruction comes after the resume).
  EXPECT_LE(sum, s.downtime_ms() * 1.1 + 5) << "downtime " << s.downtime_ms() << " ms, parts:" << shown;
  EXPECT_GE(sum, s.downtime_ms() * 0.5) << "the parts miss most of the pause: downtime " << s.downtime_ms()
                                         << " ms, parts:" << shown;
  ExpectGuestHealthy(**b, "vm1", 0.5);
}

INSTANTIATE_TEST_SUITE_P(TransportsAndBackends, MigrationE2E,
                         ::testing::Combine(::testing::Values(kDataTransport, kGrpcTransport),
                                            ::testing::Values(Backend{v1::BACKEND_KIND_SYNTHETIC, "Synthetic"},
                                                              Backend{v1::BACKEND_KIND_KVM, "Kvm"})),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + std::get<1>(info.param).name;
                         });

}  // namespace
}  // namespace ferry::e2e
