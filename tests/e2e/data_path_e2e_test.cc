// Protocol 2 between real agents: plaintext data connections between --insecure agents, a
// destination dying under the data path, and auto-converge slowing a guest that dirties memory
// faster than the link carries it.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>

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

// Agents started with --insecure: no TLS on the control stream, no AES-GCM on the data path.
class InsecureAgentsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalClusterOptions o;
    o.tls = false;
    cluster_ = StartCluster(o);
    ASSERT_TRUE(cluster_);
    auto a = cluster_->Stub(0), b = cluster_->Stub(1);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    a_ = std::move(*a);
    b_ = std::move(*b);
    ASSERT_TRUE(CreateVm(*a_, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 128, 16, 50)).ok());
    ASSERT_TRUE(WaitForHeartbeats(*a_, "vm1", 5, 20));
  }

  // Migrates vm1 to agent 1 and expects it there, intact.
  v1::MigrationStats MigrateAndExpectArrived(const v1::MigrateRequest& req) {
    auto last = MigrateWithProgress(*a_, req, /*quiet=*/true);
    EXPECT_TRUE(last.ok()) << last.status();
    if (!last.ok()) return {};
    EXPECT_EQ(last->phase(), v1::MIGRATION_PHASE_COMPLETED) << last->error();
    ExpectGuestHealthy(*b_, "vm1", 0.5);
    return last->stats();
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<v1::Agent::Stub> a_, b_;
};

TEST_F(InsecureAgentsE2E, MigrateOverPlaintextDataConnections) {
  auto req = WithTransport(MigrateTo(*cluster_, 1, "vm1"), v1::TRANSPORT_DATA);
  req.mutable_options()->set_connections(2);
  v1::MigrationStats s = MigrateAndExpectArrived(req);
  EXPECT_EQ(s.transport(), "data x2");
  EXPECT_EQ(s.connections(), 2u);
  EXPECT_FALSE(s.encrypted());
  ExpectTransport(s, v1::TRANSPORT_DATA, /*tls=*/false);
}

TEST_F(InsecureAgentsE2E, MigrateOverPlaintextGrpcStream) {
  v1::MigrationStats s = MigrateAndExpectArrived(WithTransport(MigrateTo(*cluster_, 1, "vm1"), v1::TRANSPORT_GRPC));
  ExpectTransport(s, v1::TRANSPORT_GRPC, /*tls=*/false);
}

TEST_F(InsecureAgentsE2E, ZeroCopySendsArriveIntact) {
  // Zero-copy sends need a kernel with IORING_OP_SEND_ZC; without it the pages go by copy. Either
  // way every page must land.
  auto req = WithTransport(MigrateTo(*cluster_, 1, "vm1"), v1::TRANSPORT_DATA);
  req.mutable_options()->set_zero_copy(true);
  v1::MigrationStats s = MigrateAndExpectArrived(req);
  ExpectTransport(s, v1::TRANSPORT_DATA, /*tls=*/false);
  std::cout << "zero-copy sends used: " << (s.zero_copy() ? "yes" : "no (kernel without SEND_ZC)") << "\n";
}

// A guest dirtying 64 MiB as fast as it can over a 100 MiB/s link: unthrottled, every round
// leaves the whole working set dirty (a 640 ms pause against a 300 ms target).
class AutoConvergeE2E : public ::testing::TestWithParam<TransportParam> {
 protected:
  void SetUp() override {
    cluster_ = StartCluster();
    ASSERT_TRUE(cluster_);
    auto a = cluster_->Stub(0), b = cluster_->Stub(1);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    a_ = std::move(*a);
    b_ = std::move(*b);
    ASSERT_TRUE(CreateVm(*a_, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 128, 64, /*rate=*/0)).ok());
    ASSERT_TRUE(WaitForHeartbeats(*a_, "vm1", 5, 20));
  }

  v1::MigrateRequest Request(bool auto_converge, uint32_t max_rounds) const {
    auto req = WithTransport(MigrateTo(*cluster_, 1, "vm1"), GetParam().kind);
    req.mutable_options()->set_max_bandwidth_mibps(100);
    req.mutable_options()->set_max_rounds(max_rounds);
    // Completes either way (a guest that is not slowed is switched over at max_rounds), so each
    // test can say whether the guest was slowed and whether it had to be forced.
    req.mutable_options()->set_policy(v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER);
    req.mutable_options()->set_no_auto_converge(!auto_converge);
    return req;
  }

  static std::string Rounds(const v1::MigrationStats& s) {
    std::string out;
    for (const auto& r : s.round_stats()) {
      out += " r" + std::to_string(r.round()) + ":" + std::to_string(r.dirty_pages_after() >> 8) + "MiB@" +
             std::to_string(r.throttle_percent()) + "%";
    }
    return out;
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<v1::Agent::Stub> a_, b_;
};

TEST_P(AutoConvergeE2E, GuestOutrunningTheLinkIsThrottled) {
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*a_, Request(/*auto_converge=*/true, 20));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  const v1::MigrationStats& s = last.stats();
  std::cout << "rounds (dirty left @ throttle):" << Rounds(s) << "; max throttle " << s.max_throttle_percent()
            << "%, downtime " << s.downtime_ms() << " ms, forced " << s.forced_switchover() << "\n";
  EXPECT_FALSE(s.forced_switchover()) << "auto-converge did not make pre-copy converge:" << Rounds(s);
  EXPECT_GT(s.max_throttle_percent(), 0u);
  EXPECT_TRUE(std::any_of(s.round_stats().begin(), s.round_stats().end(),
                          [](const v1::RoundStats& r) { return r.throttle_percent() > 0; }))
      << Rounds(s);
  EXPECT_TRUE(std::any_of(events.begin(), events.end(),
                          [](const v1::MigrationEvent& e) { return e.throttle_percent() > 0; }))
      << "no progress event showed the throttle";
  for (const auto& r : s.round_stats()) EXPECT_LE(r.throttle_percent(), s.max_throttle_percent());
  ExpectGuestHealthy(*b_, "vm1", 0.5);
}

TEST_P(AutoConvergeE2E, NoAutoConvergeNeverThrottles) {
  std::vector<v1::MigrationEvent> events = MigrateCollectingEvents(*a_, Request(/*auto_converge=*/false, 4));
  ASSERT_FALSE(events.empty());
  const v1::MigrationEvent& last = events.back();
  ASSERT_EQ(last.phase(), v1::MIGRATION_PHASE_COMPLETED) << last.error();
  const v1::MigrationStats& s = last.stats();
  std::cout << "rounds (dirty left @ throttle):" << Rounds(s) << "; downtime " << s.downtime_ms() << " ms\n";
  EXPECT_EQ(s.max_throttle_percent(), 0u);
  for (const auto& r : s.round_stats()) EXPECT_EQ(r.throttle_percent(), 0u) << "round " << r.round();
  for (const auto& e : events) EXPECT_EQ(e.throttle_percent(), 0u) << "event of round " << e.round();
  // The control: unthrottled, this guest cannot converge on this link.
  EXPECT_TRUE(s.forced_switchover()) << "the guest converged without being slowed:" << Rounds(s)
                                     << "; the test's parameters no longer need auto-converge";
  ExpectGuestHealthy(*b_, "vm1", 0.5);
}

INSTANTIATE_TEST_SUITE_P(Transports, AutoConvergeE2E, ::testing::Values(kDataTransport, kGrpcTransport),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ferry::e2e
