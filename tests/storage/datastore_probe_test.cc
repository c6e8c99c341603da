// DatastoreProbe over a plain directory and over ferry-faultfs: healthy, APD (blocked I/O, and a
// probe that never returns to its caller later than its deadline), PDL, and recovery.

#include "engine/storage/datastore_probe.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "engine/base/clock.h"
#include "tests/faultfs/faultfs_fixture.h"

namespace ferry {
namespace {

using faultfs::FaultFsMount;

// The deadline the probes get over FUSE: short, so an APD test takes well under a second.
constexpr absl::Duration kProbeDeadline = absl::Milliseconds(300);

std::unique_ptr<DatastoreProbe> MakeProbe(const std::string& root, absl::Duration deadline = kProbeDeadline) {
  absl::StatusOr<std::unique_ptr<DatastoreProbe>> probe = DatastoreProbe::Create({root, "host-a", deadline});
  EXPECT_TRUE(probe.ok()) << probe.status();
  return probe.ok() ? std::move(*probe) : nullptr;
}

// Probe() until a probe finishes: on a loaded host (or under TSan) a healthy probe over FUSE may
// outlast the short deadline; the stuck-or-slow probe's outcome is then the next answer.
DatastoreProbeResult ProbeUntilFinished(DatastoreProbe& probe) {
  DatastoreProbeResult result = probe.Probe();
  for (int i = 0; i < 100 && result.timed_out; ++i) result = probe.Probe();
  return result;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ferry-probe-XXXXXX";
    path_ = mkdtemp(tmpl) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(HaVmcpProbe, APlainDirectoryIsHealthyAndItsProbeFileIsRootOnly) {
  TempDir dir;
  std::unique_ptr<DatastoreProbe> probe = MakeProbe(dir.path(), absl::Seconds(10));
  ASSERT_NE(probe, nullptr);
  EXPECT_EQ(probe->last().health, DatastoreHealth::kUnknown);
  int64_t before = MonotonicNanos();
  DatastoreProbeResult result = probe->Probe();
  EXPECT_EQ(result.health, DatastoreHealth::kHealthy) << result.detail;
  EXPECT_GE(result.since_nanos, before);
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/.ferry-ha").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir.path() + "/.ferry-ha/probe-host-a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  DatastoreProbeResult again = probe->Probe();
  EXPECT_EQ(again.health, DatastoreHealth::kHealthy);
  EXPECT_EQ(again.since_nanos, result.since_nanos) << "the state has not changed, so neither has its start";
}

TEST(HaVmcpProbe, RefusesBadOptionsNamingThem) {
  EXPECT_NE(DatastoreProbe::Create({"relative/ds", "h", absl::Seconds(1)}).status().message().find("absolute"),
            absl::string_view::npos);
  EXPECT_NE(DatastoreProbe::Create({"", "h", absl::Seconds(1)}).status().message().find("absolute"),
            absl::string_view::npos);
  for (const char* host : {"", "a/b", "..", "host a"}) {
    EXPECT_NE(DatastoreProbe::Create({"/ds", host, absl::Seconds(1)}).status().message().find("host name"),
              absl::string_view::npos)
        << host;
  }
  EXPECT_NE(DatastoreProbe::Create({"/ds", std::string(65, 'h'), absl::Seconds(1)}).status().message().find("1-64"),
            absl::string_view::npos);
  EXPECT_NE(DatastoreProbe::Create({"/ds", "h", absl::ZeroDuration()}).status().message().find("deadline"),
            absl::string_view::npos);
}

TEST(HaVmcpProbe, AMissingDatastoreRootIsApdNamingTheFolder) {
  TempDir dir;
  std::unique_ptr<DatastoreProbe> probe = MakeProbe(dir.path() + "/not-mounted", absl::Seconds(10));
  ASSERT_NE(probe, nullptr);
  DatastoreProbeResult result = probe->Probe();
  EXPECT_EQ(result.health, DatastoreHealth::kApd);
  EXPECT_EQ(result.error, ENOENT);
  EXPECT_FALSE(result.timed_out);
  EXPECT_NE(result.detail.find("not-mounted/.ferry-ha"), std::string::npos) << result.detail;
}

class HaVmcpProbeFaultFs : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = FaultFsMount::UnavailableReason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    absl::StatusOr<std::unique_ptr<FaultFsMount>> started = FaultFsMount::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    fs_ = std::move(*started);
    probe_ = MakeProbe(fs_->mount_dir());
    ASSERT_NE(probe_, nullptr);
  }
  void TearDown() override {
    if (fs_ != nullptr) {
      EXPECT_TRUE(fs_->Stop().ok());  // releases a probe left stuck in an APD
    }
  }
  std::unique_ptr<FaultFsMount> fs_;
  std::unique_ptr<DatastoreProbe> probe_;
};

TEST_F(HaVmcpProbeFaultFs, ClassifiesHealthyApdPdlAndRecovery) {
  DatastoreProbeResult healthy = ProbeUntilFinished(*probe_);
  ASSERT_EQ(healthy.health, DatastoreHealth::kHealthy) << healthy.detail;

  // APD: the probe's I/O hangs; Probe() returns anyway, and the stuck probe stays the only one.
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  DatastoreProbeResult apd = probe_->Probe();
  EXPECT_EQ(apd.health, DatastoreHealth::kApd);
  EXPECT_TRUE(apd.timed_out);
  EXPECT_GT(apd.since_nanos, healthy.since_nanos);
  EXPECT_NE(apd.detail.find("did not finish within 300ms"), std::string::npos) << apd.detail;
  EXPECT_TRUE(probe_->probe_outstanding());
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  DatastoreProbeResult still_apd = probe_->Probe();
  EXPECT_EQ(still_apd.health, DatastoreHealth::kApd);
  EXPECT_EQ(still_apd.since_nanos, apd.since_nanos);
  absl::StatusOr<faultfs::FaultFsStatus> status = fs_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->blocked, 1) << "a second probe started while the first was stuck";

  // The device goes away: the stuck probe fails with ENODEV and the datastore is PDL.
  ASSERT_TRUE(fs_->SetMode("pdl").ok());
  DatastoreProbeResult pdl = ProbeUntilFinished(*probe_);
  EXPECT_EQ(pdl.health, DatastoreHealth::kPdl) << pdl.detail;
  EXPECT_EQ(pdl.error, ENODEV);
  EXPECT_NE(pdl.detail.find("No such device"), std::string::npos) << pdl.detail;
  DatastoreProbeResult pdl_again = ProbeUntilFinished(*probe_);  // a fresh probe fails the same way
  EXPECT_EQ(pdl_again.health, DatastoreHealth::kPdl);
  EXPECT_EQ(pdl_again.since_nanos, pdl.since_nanos);

  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  DatastoreProbeResult back = ProbeUntilFinished(*probe_);
  EXPECT_EQ(back.health, DatastoreHealth::kHealthy) << back.detail;
  EXPECT_GT(back.since_nanos, pdl.since_nanos);
}

TEST_F(HaVmcpProbeFaultFs, AnApdThatClearsLetsTheStuckProbeFinishHealthy) {
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  EXPECT_EQ(probe_->Probe().health, DatastoreHealth::kApd);
  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  DatastoreProbeResult result = ProbeUntilFinished(*probe_);
  EXPECT_EQ(result.health, DatastoreHealth::kHealthy) << result.detail;
  EXPECT_FALSE(probe_->probe_outstanding());
  // The probe file holds a whole record written through the mount.
  std::string record(512, '\0');
  FILE* f = std::fopen(fs_->BackingPath(".ferry-ha/probe-host-a").c_str(), "rb");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(std::fread(record.data(), 1, record.size(), f), record.size());
  std::fclose(f);
  EXPECT_EQ(record.rfind("ferry datastore probe host=host-a seq=", 0), 0u) << record.substr(0, 60);
}

TEST_F(HaVmcpProbeFaultFs, ATransientErrorIsApdNotPdl) {
  ASSERT_EQ(ProbeUntilFinished(*probe_).health, DatastoreHealth::kHealthy);
  ASSERT_TRUE(fs_->SetMode("readonly").ok());
  DatastoreProbeResult result = ProbeUntilFinished(*probe_);
  EXPECT_EQ(result.health, DatastoreHealth::kApd);
  EXPECT_EQ(result.error, EROFS);
  EXPECT_FALSE(result.timed_out);
}

TEST_F(HaVmcpProbeFaultFs, DestroyingAProbeWhoseIoIsStuckDoesNotWaitForIt) {
  ASSERT_TRUE(fs_->SetMode("apd").ok());
  EXPECT_EQ(probe_->Probe().health, DatastoreHealth::kApd);
  probe_.reset();  // must return although the probe thread is blocked in the mount
  ASSERT_TRUE(fs_->WaitForBlocked(1).ok());
  ASSERT_TRUE(fs_->SetMode("healthy").ok());
  ASSERT_TRUE(fs_->WaitForNoneBlocked().ok());
}

}  // namespace
}  // namespace ferry
