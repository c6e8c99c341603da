// AgentMetrics counts what the services report, ends each migration's counters exactly at its
// own statistics, and serves the exposition over HTTP.
#include "engine/agent/agent_metrics.h"

#include <gtest/gtest.h>

#include "engine/agent/tls_config.h"
#include "tests/agent/metrics_text.h"

namespace ferry {
namespace {

using testing::SeriesValue;

v1::MigrationEvent Event(const std::string& id, v1::MigrationPhase phase, uint64_t transferred, double bandwidth = 0,
                         double dirty = 0) {
  v1::MigrationEvent e;
  e.set_migration_id(id);
  e.set_phase(phase);
  e.set_transferred_bytes(transferred);
  e.set_bandwidth_mibps(bandwidth);
  e.set_dirty_rate_mibps(dirty);
  return e;
}

v1::MigrationEvent Completed(const std::string& id, uint64_t bytes, uint64_t pages, double downtime_ms) {
  v1::MigrationEvent e = Event(id, v1::MIGRATION_PHASE_COMPLETED, bytes);
  e.mutable_stats()->set_bytes_transferred(bytes);
  e.mutable_stats()->set_pages_sent(pages);
  e.mutable_stats()->set_downtime_ms(downtime_ms);
  return e;
}

double Value(const AgentMetrics& m, const std::string& series) {
  auto v = SeriesValue(m.Render(), series);
  EXPECT_TRUE(v.has_value()) << series << " not exposed";
  return v.value_or(-1);
}

TEST(AgentMetrics, RunningMigrationShowsPhaseBandwidthAndBytesSoFar) {
  VmRegistry vms;
  AgentMetrics m(vms);
  m.OnMigrationEvent(Event("m1", v1::MIGRATION_PHASE_PRECOPY, 4096, 300, 20));
  m.OnMigrationEvent(Event("m2", v1::MIGRATION_PHASE_PRECOPY, 1000, 100, 5));
  EXPECT_EQ(Value(m, R"(ferry_migrations_running{phase="precopy"})"), 2);
  EXPECT_EQ(Value(m, "ferry_migration_bandwidth_mibps"), 400);
  EXPECT_EQ(Value(m, "ferry_migration_dirty_rate_mibps"), 25);
  EXPECT_EQ(Value(m, "ferry_migration_sent_bytes_total"), 5096);
  m.OnMigrationEvent(Event("m1", v1::MIGRATION_PHASE_STOP_AND_COPY, 8192, 250, 0));
  EXPECT_EQ(Value(m, R"(ferry_migrations_running{phase="precopy"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_running{phase="stop_and_copy"})"), 1);
  EXPECT_EQ(Value(m, "ferry_migration_sent_bytes_total"), 9192);
}

TEST(AgentMetrics, FinishedMigrationEndsAtItsOwnStatistics) {
  VmRegistry vms;
  AgentMetrics m(vms);
  m.OnMigrationEvent(Event("m1", v1::MIGRATION_PHASE_PRECOPY, 3000, 300, 20));
  // The end comes twice: the engine's, then the agent's with the statistics. Both count once.
  m.OnMigrationEvent(Event("m1", v1::MIGRATION_PHASE_COMPLETED, 9000));
  m.OnMigrationEvent(Completed("m1", 10000, 7, 4.5));
  m.OnMigrationEvent(Completed("m1", 10000, 7, 4.5));
  EXPECT_EQ(Value(m, "ferry_migration_sent_bytes_total"), 10000);
  EXPECT_EQ(Value(m, "ferry_migration_sent_pages_total"), 7);
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="out",outcome="completed"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_running{phase="precopy"})"), 0);
  EXPECT_EQ(Value(m, "ferry_migration_bandwidth_mibps"), 0);
  EXPECT_EQ(Value(m, "ferry_migration_downtime_ms_count"), 1);
  EXPECT_EQ(Value(m, "ferry_migration_downtime_ms_sum"), 4.5);
  EXPECT_EQ(Value(m, R"(ferry_migration_downtime_ms_bucket{le="2"})"), 0);
  EXPECT_EQ(Value(m, R"(ferry_migration_downtime_ms_bucket{le="5"})"), 1);
}

TEST(AgentMetrics, OutcomesAreCountedApartAndRefusalIsNotAFailure) {
  VmRegistry vms;
  AgentMetrics m(vms);
  v1::MigrationEvent refused = Event("r", v1::MIGRATION_PHASE_FAILED, 0);
  refused.mutable_precheck();
  m.OnMigrationEvent(refused);
  m.OnMigrationEvent(Event("f", v1::MIGRATION_PHASE_FAILED, 0));
  m.OnMigrationEvent(Event("c", v1::MIGRATION_PHASE_CANCELLED, 0));
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="out",outcome="refused"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="out",outcome="failed"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="out",outcome="cancelled"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="out",outcome="completed"})"), 0);
  EXPECT_EQ(Value(m, "ferry_migration_downtime_ms_count"), 0) << "only completed migrations have a downtime";
}

TEST(AgentMetrics, IncomingMigrationsFindingsAndHandshakeFailures) {
  VmRegistry vms;
  AgentMetrics m(vms);
  m.OnIncomingMigrationEnd({true, 300, 5000});
  m.OnIncomingMigrationEnd({false, 20, 100});
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="in",outcome="completed"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_migrations_total{direction="in",outcome="failed"})"), 1);
  EXPECT_EQ(Value(m, "ferry_migration_received_pages_total"), 320);
  EXPECT_EQ(Value(m, "ferry_migration_received_stream_bytes_total"), 5100);

  m.OnPrecheckFindings({{Severity::kWarning, FindingCode::kMediaMounted, "cd0", "x"},
                        {Severity::kWarning, FindingCode::kMediaMounted, "cd1", "y"},
                        {Severity::kError, FindingCode::kCpuFeatureMissing, "avx2", "z"}});
  EXPECT_EQ(Value(m, R"(ferry_precheck_findings_total{code="MEDIA_MOUNTED",severity="warning"})"), 2);
  EXPECT_EQ(Value(m, R"(ferry_precheck_findings_total{code="CPU_FEATURE_MISSING",severity="error"})"), 1);

  m.OnTlsHandshakeFailure(HandshakeFailureReason("Handshake failed ... certificate verify failed"));
  m.OnTlsHandshakeFailure(HandshakeFailureReason("Handshake failed with fatal error SSL_ERROR_SSL: wrong version number"));
  EXPECT_EQ(Value(m, R"(ferry_tls_handshake_failures_total{reason="untrusted_certificate"})"), 1);
  EXPECT_EQ(Value(m, R"(ferry_tls_handshake_failures_total{reason="plaintext_client"})"), 1);
}

TEST(AgentMetrics, EveryVmStateHasASeriesEvenWithNoVms) {
  VmRegistry vms;
  AgentMetrics m(vms);
  for (const char* s : {"created", "running", "paused", "stopped", "migrating_out", "migrating_in"}) {
    EXPECT_EQ(Value(m, std::string(R"(ferry_vms{state=")") + s + R"("})"), 0) << s;
  }
}

TEST(AgentMetrics, ServesTheExpositionOverHttp) {
  VmRegistry vms;
  AgentMetrics m(vms);
  ASSERT_TRUE(m.Serve("127.0.0.1:0").ok());
  ASSERT_GT(m.port(), 0);
  m.OnMigrationEvent(Completed("m1", 123456, 30, 2));
  auto body = testing::HttpGet("http://127.0.0.1:" + std::to_string(m.port()) + "/metrics");
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(SeriesValue(*body, "ferry_migration_sent_bytes_total"), 123456);
}

TEST(AgentMetrics, AnAddressItCannotBindIsNamed) {
  VmRegistry vms;
  AgentMetrics first(vms);
  ASSERT_TRUE(first.Serve("127.0.0.1:0").ok());
  AgentMetrics second(vms);
  std::string taken = "127.0.0.1:" + std::to_string(first.port());
  absl::Status st = second.Serve(taken);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find(taken), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ferry
