// What HA reads from others is checked, not trusted: a stale VM lock left by a dead host names
// nobody, a corrupted or foreign datastore-health record and one of a host whose lease expired
// count for nothing; and HA logs under its own name (docs/cluster.md "Security").
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "engine/cluster/cluster_member.h"
#include "engine/cluster/cluster_store.h"
#include "engine/cluster/ha_log.h"
#include "engine/cluster/vmcp_monitor.h"
#include "engine/storage/vm_lock.h"
#include "tests/cluster/etcd_fixture.h"

namespace ferry::cluster {
namespace {

TEST(HaSecurity, HaLogsUnderItsOwnNameAndToSyslogWhereThereIsOne) {
  auto log = HaLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->name(), "ferry-ha");
  EXPECT_EQ(spdlog::get("ferry-ha"), log);
  struct stat st{};
  const bool has_syslog = ::stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
  EXPECT_EQ(HaLogHasSyslog(), has_syslog);
  // Every sink of the default logger is one of HA's too (stderr / the agent's log file).
  for (const auto& sink : spdlog::default_logger()->sinks()) {
    EXPECT_NE(std::find(log->sinks().begin(), log->sinks().end(), sink), log->sinks().end());
  }
  EXPECT_EQ(log->sinks().size(), spdlog::default_logger()->sinks().size() + (has_syslog ? 1 : 0));
}

TEST(HaSecurity, AStaleLockOfADeadHostNamesNobodyAndIsTakenOver) {
  char tmpl[] = "/tmp/ferry-ha-stale-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string lock_path = std::string(tmpl) + "/vm.lock";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the "dead host": takes the lock, says so, and waits to be killed
    auto lock = VmLock::Acquire(lock_path, "vm1", ThisProcessAsHolder("host-dead"));
    char c = lock.ok() ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  auto held = VmLock::CurrentHolder(lock_path);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(held->has_value());
  EXPECT_EQ((*held)->agent, "host-dead");
  ::kill(child, SIGKILL);  // the host dies: its record stays in the file
  ::waitpid(child, nullptr, 0);
  std::ifstream in(lock_path);
  std::stringstream record;
  record << in.rdbuf();
  EXPECT_NE(record.str().find("host-dead"), std::string::npos) << "the stale record is still there";
  auto now = VmLock::CurrentHolder(lock_path);
  ASSERT_TRUE(now.ok());
  EXPECT_FALSE(now->has_value()) << "a record nobody holds locked names no one";
  auto taken = VmLock::Acquire(lock_path, "vm1", ThisProcessAsHolder("host-a"));
  EXPECT_TRUE(taken.ok()) << taken.status();
  ::close(ready[0]);
  ::close(ready[1]);
  std::system((std::string("rm -rf ") + tmpl).c_str());
}

ClusterMemberOptions MemberOptions(const std::string& host) {
  ClusterMemberOptions o;
  o.cluster = "c1";
  o.host = host;
  return o;
}

TEST(HaSecurity, CorruptedForeignOrLapsedDatastoreHealthRecordsAreNotTrusted) {
  FERRY_START_ETCD_OR_SKIP(etcd, 1);
  auto client = testing::ClientFor(*etcd, "host-a");
  ASSERT_TRUE(client);
  ClusterConfig config;
  config.heartbeat_interval_ms = 500;
  config.heartbeat_misses = 2;
  ASSERT_TRUE(CreateCluster(*client, "c1", config).ok());
  std::vector<std::unique_ptr<ClusterMember>> members;
  for (const char* h : {"host-b", "host-c", "host-d"}) {
    auto m = ClusterMember::Join(*client, MemberOptions(h));
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*m)->WaitForState(HostState::kSlave, absl::Seconds(10)) ||
                (*m)->WaitForState(HostState::kMaster, absl::Seconds(1)));
    members.push_back(std::move(*m));
  }
  DatastoreHealthRecord healthy{"host-b", {{"ds1", "healthy"}}};
  ASSERT_TRUE(client->Put(DatastoreHealthKey("c1", "host-b"), ToJson(healthy)).ok());
  ASSERT_TRUE(client->Put(DatastoreHealthKey("c1", "host-c"), "{\"host\":\"host-c\",\"datastores\":").ok());
  DatastoreHealthRecord foreign{"host-b", {{"ds1", "healthy"}}};  // written under host-d's key
  ASSERT_TRUE(client->Put(DatastoreHealthKey("c1", "host-d"), ToJson(foreign)).ok());
  auto seeing = HostsSeeingHealthy(*client, "c1", "host-a", "ds1");
  ASSERT_TRUE(seeing.ok()) << seeing.status();
  EXPECT_EQ(*seeing, std::vector<std::string>{"host-b"});
  EXPECT_TRUE(absl::IsDataLoss(DatastoreHealthFromJson("{\"host\":\"x\",\"datastores\":{\"ds1\":1}}").status()));
  // host-b's lease ends (it stops without leaving: its records stay): its record counts no more.
  const std::string lease_key = "/ferry/clusters/c1/hosts/host-b";
  auto record = client->Get(lease_key);
  ASSERT_TRUE(record.ok() && record->has_value());
  auto parsed = HostRecordFromJson((*record)->value);
  ASSERT_TRUE(parsed.ok());
  members[0].reset();  // leaves: deletes hosts/host-b; put it back as a crashed host leaves it
  ASSERT_TRUE(client->Put(lease_key, (*record)->value).ok());
  auto after = HostsSeeingHealthy(*client, "c1", "host-a", "ds1");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->empty());
}

}  // namespace
}  // namespace ferry::cluster
