// Migration jobs over real agent processes (docs/jobs.md): two concurrent migrations, one high
// and one standard, both complete while `migrate migration list/show/set/cancel` work on them
// from another process; an incoming flood beyond the host's limit is refused clearly.
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/agent/tls_config.h"
#include "engine/migration/protocol.h"
#include "proto/ferry/v1/peer.grpc.pb.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/migrate_cli.h"

namespace ferry::e2e {
namespace {

v1::MigrationInfo Info(v1::Agent::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  v1::GetMigrationRequest req;
  req.set_migration_id(id);
  v1::MigrationInfo info;
  (void)stub.GetMigration(&ctx, req, &info);
  return info;
}

// Follows a migration on its own thread, keeping its id and last event.
class Follower {
 public:
  Follower(v1::Agent::Stub& stub, v1::MigrateRequest req)
      : thread_([this, &stub, req] {
          grpc::ClientContext ctx;
          auto reader = stub.Migrate(&ctx, req);
          v1::MigrationEvent e;
          while (reader->Read(&e)) {
            std::lock_guard lock(mu_);
            id_ = e.migration_id();
            last_ = e;
          }
          status_ = reader->Finish();
        }) {}
  ~Follower() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::string id() {
    std::lock_guard lock(mu_);
    return id_;
  }
  v1::MigrationEvent last() {
    std::lock_guard lock(mu_);
    return last_;
  }
  grpc::Status status() const { return status_; }

 private:
  std::mutex mu_;
  std::string id_;
  v1::MigrationEvent last_;
  grpc::Status status_;
  std::thread thread_;
};

bool WaitUntil(const std::function<bool()>& done, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

class JobsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = cli::LocalCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto a = cluster_->Stub(0);
    auto b = cluster_->Stub(1);
    ASSERT_TRUE(a.ok() && b.ok());
    a_ = std::move(*a);
    b_ = std::move(*b);
  }

  void CreateGuest(const std::string& name) {
    ASSERT_TRUE(CreateVm(*a_, GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 128, 16, 2)).ok());
    ASSERT_TRUE(WaitForHeartbeats(*a_, name, 3, 20));
  }

  // Slow enough (a bandwidth cap) that another process sees it run.
  v1::MigrateRequest Slow(const std::string& vm, v1::MigrationPriority priority, double mibps) {
    v1::MigrateRequest req = MigrateTo(*cluster_, 1, vm);
    req.mutable_options()->set_priority(priority);
    req.mutable_options()->set_max_bandwidth_mibps(mibps);
    return req;
  }

  std::unique_ptr<cli::LocalCluster> cluster_;
  std::unique_ptr<v1::Agent::Stub> a_, b_;
};

TEST_F(JobsE2E, HighAndStandardRunTogetherAndBothCompleteWhileTheCliListsShowsAndSetsThem) {
  CreateGuest("vm-high");
  CreateGuest("vm-std");
  Follower high(*a_, Slow("vm-high", v1::MIGRATION_PRIORITY_HIGH, 1));
  Follower standard(*a_, Slow("vm-std", v1::MIGRATION_PRIORITY_STANDARD, 1));
  ASSERT_TRUE(WaitUntil([&] { return !high.id().empty() && !standard.id().empty(); }, 20));

  // Another process lists both jobs while they run.
  Cli list = RunMigrate(*cluster_, "migration list --json");
  ASSERT_EQ(list.exit_code, 0) << list.out;
  nlohmann::json j = Json(list);
  ASSERT_TRUE(j.contains("migrations")) << j.dump();
  std::map<std::string, nlohmann::json> by_id;
  for (const auto& m : j["migrations"]) by_id[m["migration_id"].get<std::string>()] = m;
  ASSERT_TRUE(by_id.count(high.id()) && by_id.count(standard.id())) << j.dump(2);
  EXPECT_EQ(by_id[high.id()]["options"]["priority"], "MIGRATION_PRIORITY_HIGH");
  EXPECT_EQ(by_id[high.id()]["link_weight"], 3);
  EXPECT_EQ(by_id[standard.id()]["link_weight"], 1);
  EXPECT_EQ(by_id[standard.id()]["vm_name"], "vm-std");
  EXPECT_EQ(j["max_concurrent"], 4);

  // The VM names its job.
  v1::VmInfo vm;
  ASSERT_TRUE(GetVm(*a_, "vm-std", &vm).ok());
  EXPECT_EQ(vm.migration_id(), standard.id());

  // Lift the standard one's cap from another process: the job's options change live.
  Cli set = RunMigrate(*cluster_, "migration set " + standard.id() + " --max-bandwidth 0 --max-downtime 250 --json");
  ASSERT_EQ(set.exit_code, 0) << set.out;
  nlohmann::json s = Json(set);
  EXPECT_EQ(s["options"]["max_downtime_ms"], 250);
  EXPECT_EQ(s["options"]["max_bandwidth_mibps"], 0);

  Cli show = RunMigrate(*cluster_, "migration show " + high.id());
  EXPECT_EQ(show.exit_code, 0) << show.out;
  EXPECT_NE(show.out.find("vm-high"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("high (link weight 3)"), std::string::npos) << show.out;

  // And the high one's: both run to their end.
  Cli lift = RunMigrate(*cluster_, "migration set " + high.id() + " --max-bandwidth 0");
  EXPECT_EQ(lift.exit_code, 0) << lift.out;
  high.Join();
  standard.Join();
  ASSERT_TRUE(high.status().ok()) << high.status().error_message();
  EXPECT_EQ(high.last().phase(), v1::MIGRATION_PHASE_COMPLETED) << high.last().error();
  EXPECT_EQ(standard.last().phase(), v1::MIGRATION_PHASE_COMPLETED) << standard.last().error();
  ExpectGuestHealthy(*b_, "vm-high", 0.5);
  ExpectGuestHealthy(*b_, "vm-std", 0.2);

  // Finished jobs stay in the history with their statistics, on both hosts.
  v1::MigrationInfo done = Info(*a_, standard.id());
  EXPECT_TRUE(done.finished());
  EXPECT_GT(done.last_event().stats().bytes_transferred(), 0u);
  grpc::ClientContext ctx;
  v1::ListMigrationsResponse incoming;
  ASSERT_TRUE(b_->ListMigrations(&ctx, v1::ListMigrationsRequest(), &incoming).ok());
  int completed_in = 0;
  for (const auto& m : incoming.migrations()) {
    EXPECT_EQ(m.direction(), v1::MIGRATION_DIRECTION_INCOMING);
    completed_in += m.last_event().phase() == v1::MIGRATION_PHASE_COMPLETED;
  }
  EXPECT_EQ(completed_in, 2);

  // Cancelling a finished job is refused clearly.
  Cli late = RunMigrate(*cluster_, "migration cancel " + high.id() + " --json");
  EXPECT_EQ(late.exit_code, 1);
  EXPECT_NE(late.out.find("already ended"), std::string::npos) << late.out;
}

TEST_F(JobsE2E, CancelFromAnotherProcessEndsTheJobAndTheVmKeepsRunningHere) {
  CreateGuest("vm-slow");
  Follower slow(*a_, Slow("vm-slow", v1::MIGRATION_PRIORITY_STANDARD, 1));
  ASSERT_TRUE(WaitUntil([&] { return slow.last().phase() == v1::MIGRATION_PHASE_PRECOPY; }, 20));
  // A watcher from another process sees the end.
  Cli watch;
  std::thread watcher([&] { watch = RunMigrate(*cluster_, "migration watch " + slow.id() + " --json"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Cli cancel = RunMigrate(*cluster_, "migration cancel " + slow.id());
  EXPECT_EQ(cancel.exit_code, 0) << cancel.out;
  slow.Join();
  watcher.join();
  EXPECT_EQ(slow.last().phase(), v1::MIGRATION_PHASE_CANCELLED);
  EXPECT_EQ(watch.exit_code, 1) << watch.out;
  EXPECT_NE(watch.out.find("MIGRATION_PHASE_CANCELLED"), std::string::npos) << watch.out;
  ExpectGuestHealthy(*a_, "vm-slow", 0.3);
  EXPECT_EQ(VmsAfterSettling(*b_), 0);

  Cli unknown = RunMigrate(*cluster_, "migration show mig-nope --json");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.out.find("no migration 'mig-nope'"), std::string::npos) << unknown.out;
}

// 50 sources start at once: the destination admits its limit, refuses the rest clearly, keeps
// serving, and nothing is left behind.
TEST_F(JobsE2E, FiftyConcurrentPeerStartsBeyondTheLimitAreRefusedClearly) {
  std::string certs = cluster_->dir() + "/certs/";
  TlsConfig tls{certs + "ca.crt", certs + "host-a.crt", certs + "host-a.key", false};
  auto ch = MakeChannel(cluster_->address(1), "host-b", tls);
  ASSERT_TRUE(ch.ok()) << ch.status();
  auto peer = v1::Peer::NewStub(*ch);
  constexpr int kStarts = 50;
  std::atomic<int> started{0}, refused_clearly{0}, other{0};
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStarts; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext ctx;
      auto stream = peer->Migrate(&ctx);
      v1::PeerMessage m;
      m.mutable_start()->set_protocol_version(kProtocolVersion);
      m.mutable_start()->set_migration_id("flood-" + std::to_string(i));
      m.mutable_start()->set_source_agent("host-a");
      *m.mutable_start()->mutable_spec() = GuestSpec("flood" + std::to_string(i), v1::BACKEND_KIND_SYNTHETIC, 16, 1, 1);
      v1::PeerReply reply;
      if (stream->Write(m) && stream->Read(&reply)) {
        if (reply.has_started()) {
          ++started;
        } else if (reply.has_error() && reply.error().code() == v1::PEER_ERROR_CODE_RESOURCE &&
                   reply.error().message().find("concurrent migrations") != std::string::npos &&
                   reply.error().message().size() < 200) {
          ++refused_clearly;
        } else {
          ++other;
        }
      } else {
        ++other;
      }
      // Hold every admitted start until all have had their answer, so the limit is really hit.
      ++arrived;
      while (arrived.load() < kStarts) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      stream->WritesDone();
      while (stream->Read(&reply)) {
      }
      (void)stream->Finish();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(started.load() + refused_clearly.load(), kStarts) << "other answers: " << other.load();
  EXPECT_LE(started.load(), 4) << "the default limit is 4 concurrent migrations";
  EXPECT_GE(started.load(), 1);
  // The agent keeps serving and holds nothing of them.
  EXPECT_EQ(VmsAfterSettling(*b_), 0);
  ASSERT_TRUE(WaitUntil([&] {
    grpc::ClientContext ctx;
    v1::ListMigrationsResponse r;
    return b_->ListMigrations(&ctx, v1::ListMigrationsRequest(), &r).ok() && r.running() == 0;
  }, 10));
  CreateGuest("after-flood");  // on agent 0; and agent 1 still takes a migration
  auto events = MigrateCollectingEvents(*a_, MigrateTo(*cluster_, 1, "after-flood"));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().phase(), v1::MIGRATION_PHASE_COMPLETED) << events.back().error();
}

// The destination has one slot and it is busy: a second migration to it queues on the source,
// visibly with the destination's reason (`migration list/show`), retries by itself and completes
// once the slot frees; a third, cancelled while queued, ends CANCELLED and its VM runs on here.
TEST(JobsQueueE2E, ADestinationWithItsSlotBusyQueuesTheNextJobVisiblyUntilItFrees) {
  cli::LocalClusterOptions options;
  options.extra_args = {{}, {"--max-migrations", "1"}};
  auto c = cli::LocalCluster::Start(options);
  ASSERT_TRUE(c.ok()) << c.status();
  auto a = (*c)->Stub(0), b = (*c)->Stub(1);
  ASSERT_TRUE(a.ok() && b.ok());
  for (const char* name : {"vm-first", "vm-second", "vm-cancel"}) {
    ASSERT_TRUE(CreateVm(**a, GuestSpec(name, v1::BACKEND_KIND_SYNTHETIC, 64, 8, 1)).ok());
    ASSERT_TRUE(WaitForHeartbeats(**a, name, 3, 20));
  }
  v1::MigrateRequest slow = MigrateTo(**c, 1, "vm-first");
  slow.mutable_options()->set_max_bandwidth_mibps(1);  // holds the destination's only slot
  slow.mutable_options()->set_skip_prechecks(true);
  Follower first(**a, slow);
  ASSERT_TRUE(WaitUntil([&] { return first.last().phase() == v1::MIGRATION_PHASE_PRECOPY; }, 20));
  v1::MigrateRequest next = MigrateTo(**c, 1, "vm-second");
  next.mutable_options()->set_skip_prechecks(true);
  Follower second(**a, next);
  v1::MigrateRequest doomed = MigrateTo(**c, 1, "vm-cancel");
  doomed.mutable_options()->set_skip_prechecks(true);
  Follower cancelled(**a, doomed);
  auto queued_by_destination = [&](Follower& f) {
    v1::MigrationInfo info = Info(**a, f.id());
    return !f.id().empty() && info.last_event().phase() == v1::MIGRATION_PHASE_QUEUED &&
           info.last_event().error().find("refused the migration") != std::string::npos;
  };
  ASSERT_TRUE(WaitUntil([&] { return queued_by_destination(second) && queued_by_destination(cancelled); }, 30))
      << Info(**a, second.id()).DebugString();

  // Another process sees why they wait.
  Cli show = RunMigrate(**c, "migration show " + second.id() + " --json");
  ASSERT_EQ(show.exit_code, 0) << show.out;
  nlohmann::json s = Json(show);
  EXPECT_EQ(s["last_event"]["phase"], "MIGRATION_PHASE_QUEUED") << s.dump(2);
  EXPECT_NE(s["last_event"]["error"].get<std::string>().find("1 of its 1 concurrent migrations"), std::string::npos)
      << s.dump(2);
  Cli list = RunMigrate(**c, "migration list");
  ASSERT_EQ(list.exit_code, 0) << list.out;
  EXPECT_NE(list.out.find("destination is busy"), std::string::npos) << list.out;

  // Cancelled while queued: it ends at once and cleanly; its VM never left.
  Cli cancel = RunMigrate(**c, "migration cancel " + cancelled.id());
  EXPECT_EQ(cancel.exit_code, 0) << cancel.out;
  cancelled.Join();
  EXPECT_EQ(cancelled.last().phase(), v1::MIGRATION_PHASE_CANCELLED) << cancelled.last().error();
  v1::VmInfo kept;
  ASSERT_TRUE(GetVm(**a, "vm-cancel", &kept).ok());
  EXPECT_TRUE(kept.migration_id().empty()) << "the cancelled job still holds its VM";
  EXPECT_EQ(kept.state(), v1::VM_POWER_STATE_RUNNING);

  // The slot frees: the queued job retries by itself and completes.
  Cli lift = RunMigrate(**c, "migration set " + first.id() + " --max-bandwidth 0");
  EXPECT_EQ(lift.exit_code, 0) << lift.out;
  first.Join();
  second.Join();
  EXPECT_EQ(first.last().phase(), v1::MIGRATION_PHASE_COMPLETED) << first.last().error();
  ASSERT_TRUE(second.status().ok()) << second.status().error_message();
  EXPECT_EQ(second.last().phase(), v1::MIGRATION_PHASE_COMPLETED) << second.last().error();
  ExpectGuestHealthy(**b, "vm-first", 0.2);
  ExpectGuestHealthy(**b, "vm-second", 0.2);
  ExpectGuestHealthy(**a, "vm-cancel", 0.2);
  v1::VmInfo gone;
  EXPECT_FALSE(GetVm(**a, "vm-second", &gone).ok());
  EXPECT_FALSE(GetVm(**b, "vm-cancel", &gone).ok());
}

}  // namespace
}  // namespace ferry::e2e
