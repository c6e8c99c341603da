// Two agents with --metrics-listen: /metrics, scraped during and after a real migration, moves
// by the migration's own figures (bytes, pages, outcome, downtime, the guest's stall), counts
// the precheck's findings and a client refused at the TLS handshake.
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "engine/precheck/finding.h"
#include "tests/agent/metrics_text.h"
#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using ferry::testing::FreeLoopbackPort;
using ferry::testing::HttpGet;
using ferry::testing::SeriesValue;

class Scraper {
 public:
  explicit Scraper(int port) : url_("http://127.0.0.1:" + std::to_string(port) + "/metrics") {}
  std::string Text() const { return HttpGet(url_).value_or(""); }
  double Value(const std::string& series) const { return Value(Text(), series); }
  static double Value(const std::string& text, const std::string& series) {
    auto v = SeriesValue(text, series);
    EXPECT_TRUE(v.has_value()) << series << " not exposed";
    return v.value_or(-1);
  }

 private:
  std::string url_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(MetricsE2E, CountersMoveByTheMigrationsOwnFigures) {
  const int ports[2] = {FreeLoopbackPort(), FreeLoopbackPort()};
  cli::LocalClusterOptions o;
  for (int port : ports) o.extra_args.push_back({"--metrics-listen", "127.0.0.1:" + std::to_string(port)});
  auto cluster = cli::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  auto& c = **cluster;
  auto src = c.Stub(0);
  auto dst = c.Stub(1);
  ASSERT_TRUE(src.ok() && dst.ok());
  Scraper src_metrics(ports[0]), dst_metrics(ports[1]);

  const v1::BackendKind backend = KvmUsable() ? v1::BACKEND_KIND_KVM : v1::BACKEND_KIND_SYNTHETIC;
  ASSERT_TRUE(CreateVm(**src, GuestSpec("metrics-vm", backend, 256, 64, 16)).ok());
  ASSERT_TRUE(WaitForHeartbeats(**src, "metrics-vm", 3, 20));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the guest touches about half its working set
  EXPECT_EQ(src_metrics.Value(R"(ferry_vms{state="running"})"), 1);
  EXPECT_EQ(src_metrics.Value("ferry_migration_sent_bytes_total"), 0);

  // A 32 MiB/s cap makes round 1 last about a second and round 2 half that: time to scrape.
  v1::MigrateRequest req = MigrateTo(c, 1, "metrics-vm");
  req.mutable_options()->set_max_bandwidth_mibps(32);
  std::vector<v1::MigrationEvent> events;
  std::atomic<bool> done{false};
  std::thread migration([&] {
    events = MigrateCollectingEvents(**src, req);
    done = true;
  });
  double bytes_during = 0;
  bool seen_precopy = false, seen_migrating_out = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(seen_precopy && bytes_during > 0) && !done && std::chrono::steady_clock::now() < deadline) {
    std::string text = src_metrics.Text();
    if (SeriesValue(text, R"(ferry_migrations_running{phase="precopy"})").value_or(0) == 1 &&
        SeriesValue(text, "ferry_migration_bandwidth_mibps").value_or(0) > 0) {
      seen_precopy = true;
      bytes_during = SeriesValue(text, "ferry_migration_sent_bytes_total").value_or(0);
      seen_migrating_out = SeriesValue(text, R"(ferry_vms{state="migrating_out"})").value_or(0) == 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  migration.join();
  ASSERT_FALSE(events.empty());
  ASSERT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
  // The migration's own statistics, as the source agent reports them.
  v1::MigrationInfo info;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!info.last_event().has_stats() && std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext ctx;
    v1::GetMigrationRequest get;
    get.set_migration_id(events.back().migration_id());
    (void)(*src)->GetMigration(&ctx, get, &info);
    if (!info.last_event().has_stats()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(info.last_event().has_stats());
  const v1::MigrationStats s = info.last_event().stats();
  EXPECT_TRUE(seen_precopy) << "no scrape saw the migration in pre-copy with a bandwidth";
  EXPECT_TRUE(seen_migrating_out);
  EXPECT_GT(bytes_during, 0);
  EXPECT_LT(bytes_during, static_cast<double>(s.bytes_transferred())) << "bytes counted during the migration";

  // Source: the counters end exactly at the migration's statistics.
  std::string text = src_metrics.Text();
  EXPECT_EQ(Scraper::Value(text, "ferry_migration_sent_bytes_total"), static_cast<double>(s.bytes_transferred()));
  EXPECT_EQ(Scraper::Value(text, "ferry_migration_sent_pages_total"), static_cast<double>(s.pages_sent()));
  EXPECT_EQ(Scraper::Value(text, R"(ferry_migrations_total{direction="out",outcome="completed"})"), 1);
  EXPECT_EQ(Scraper::Value(text, "ferry_migration_downtime_ms_count"), 1);
  EXPECT_NEAR(Scraper::Value(text, "ferry_migration_downtime_ms_sum"), s.downtime_ms(), 1e-6);
  EXPECT_EQ(Scraper::Value(text, R"(ferry_migrations_running{phase="precopy"})"), 0);
  EXPECT_EQ(Scraper::Value(text, "ferry_migration_bandwidth_mibps"), 0);
  EXPECT_EQ(Scraper::Value(text, R"(ferry_vms{state="running"})"), 0);
  // Every finding of the migration's precheck, by code and severity.
  std::map<std::string, int> findings;
  for (const auto& e : events) {
    for (const auto& f : e.precheck().findings()) {
      std::string code = FindingCodeName(static_cast<FindingCode>(f.code()));
      std::string severity = f.severity() == v1::FINDING_SEVERITY_ERROR ? "error" : "warning";
      ++findings[R"(ferry_precheck_findings_total{code=")" + code + R"(",severity=")" + severity + R"("})"];
    }
  }
  for (const auto& [series, n] : findings) EXPECT_EQ(Scraper::Value(text, series), n) << series;

  // Destination: the VM arrived and runs; every page sent and the state's bytes were counted; the
  // guest's stall was observed once.
  text = dst_metrics.Text();
  EXPECT_EQ(Scraper::Value(text, R"(ferry_migrations_total{direction="in",outcome="completed"})"), 1);
  EXPECT_EQ(Scraper::Value(text, R"(ferry_vms{state="running"})"), 1);
  EXPECT_EQ(Scraper::Value(text, "ferry_migration_received_pages_total"), static_cast<double>(s.pages_sent()));
  EXPECT_GE(Scraper::Value(text, "ferry_migration_received_stream_bytes_total"), static_cast<double>(s.state_bytes()));
  double stalls = 0;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((stalls = dst_metrics.Value("ferry_guest_stall_ms_count")) < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(stalls, 1);
  // The stall is the VM's longest heartbeat gap when it first beat here (a later gap can only
  // make the VM's figure larger).
  v1::VmInfo arrived;
  ASSERT_TRUE(GetVm(**dst, "metrics-vm", &arrived).ok());
  const double stall = dst_metrics.Value("ferry_guest_stall_ms_sum");
  EXPECT_GT(stall, 0);
  EXPECT_LE(stall, arrived.health().max_heartbeat_gap_ms() + 1e-3);

  // A client with no certificate is refused at the handshake, and counted by its reason.
  const std::string no_cert = R"(ferry_tls_handshake_failures_total{reason="no_client_certificate"})";
  EXPECT_FALSE(SeriesValue(src_metrics.Text(), no_cert).has_value());
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(c.client_tls().ca);
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(c.name(0));
  auto channel = grpc::CreateCustomChannel(c.address(0), grpc::SslCredentials(tls), args);
  auto stub = v1::Agent::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListVmsResponse resp;
  EXPECT_FALSE(stub->ListVms(&ctx, v1::ListVmsRequest(), &resp).ok());
  EXPECT_GE(SeriesValue(src_metrics.Text(), no_cert).value_or(0), 1);
}

}  // namespace
}  // namespace ferry::e2e
