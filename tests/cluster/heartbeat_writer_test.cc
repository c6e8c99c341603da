// Where a host heartbeats (ChooseHeartbeatDatastores) and that its HeartbeatWriter keeps the
// record moving on real files, which is what the master's failed-vs-isolated verdict reads.
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/time/clock.h"
#include "engine/cluster/datastore_heartbeat.h"
#include "engine/cluster/heartbeat_writer.h"

namespace ferry::cluster {
namespace {

std::vector<std::string> Uuids(const std::vector<MountedDatastore>& v) {
  std::vector<std::string> out;
  for (const auto& d : v) out.push_back(d.uuid);
  return out;
}

TEST(HaDatastoreHeartbeatWriter, ChoiceFavoursSharedDatastoresOnDistinctDevices) {
  std::vector<MountedDatastore> mounted = {
      {"u-local", "/l", false, 1}, {"u-shared1", "/s1", false, 2}, {"u-shared2", "/s2", false, 2},
      {"u-shared3", "/s3", false, 3}, {"u-ro", "/ro", true, 4}, {"", "/noid", false, 5},
  };
  std::map<std::string, int> seeing = {{"u-shared1", 3}, {"u-shared2", 3}, {"u-shared3", 2}, {"u-ro", 3}};
  // shared2 shares shared1's device: shared3 (another device) comes before it.
  EXPECT_EQ(Uuids(ChooseHeartbeatDatastores(mounted, seeing, 2)), (std::vector<std::string>{"u-shared1", "u-shared3"}));
  // With more wanted than devices, the same-device one fills in; read-only and id-less never.
  EXPECT_EQ(Uuids(ChooseHeartbeatDatastores(mounted, seeing, 5)),
            (std::vector<std::string>{"u-shared1", "u-shared3", "u-local", "u-shared2"}));
  EXPECT_TRUE(ChooseHeartbeatDatastores({{"u-ro", "/ro", true, 4}}, seeing, 2).empty());
}

TEST(HaDatastoreHeartbeatWriter, WriterKeepsTheRecordMovingUntilStopped) {
  namespace fs = std::filesystem;
  fs::path ds = fs::temp_directory_path() / ("ferry-hbw-" + std::to_string(getpid()));
  fs::remove_all(ds);
  fs::create_directories(ds);
  absl::StatusOr<HeartbeatRecord> before = absl::NotFoundError("none yet");
  {
    HeartbeatWriter writer("c1", "host-a", absl::Milliseconds(100));
    writer.SetDatastores({{"u1", ds.string(), false, 1}});
    for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end && !before.ok();) {
      absl::SleepFor(absl::Milliseconds(50));
      before = ReadHeartbeat(ds.string(), "c1", "host-a");
    }
    ASSERT_TRUE(before.ok()) << before.status();
    absl::StatusOr<HeartbeatRecord> after = before;
    for (absl::Time end = absl::Now() + absl::Seconds(10);
         absl::Now() < end && after.ok() && after->sequence == before->sequence;) {
      absl::SleepFor(absl::Milliseconds(50));
      after = ReadHeartbeat(ds.string(), "c1", "host-a");
    }
    EXPECT_EQ(ClassifyLostHost(before, after), LostHostVerdict::kIsolatedOrPartitioned);
  }
  // Stopped (as a killed host): the record stays still, the verdict is failed.
  auto stopped = ReadHeartbeat(ds.string(), "c1", "host-a");
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(ClassifyLostHost(stopped, ReadHeartbeat(ds.string(), "c1", "host-a")), LostHostVerdict::kFailed);
  fs::remove_all(ds);
}

}  // namespace
}  // namespace ferry::cluster
