#include "engine/cluster/datastore_heartbeat.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace ferry::cluster {
namespace {

class HaDatastoreHeartbeat : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-hb-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  int ModeOf(const std::string& p) {
    struct stat st{};
    return stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
  }
  std::string root_;
};

TEST_F(HaDatastoreHeartbeat, WrittenRecordReadsBackWithRootOnlyModes) {
  ASSERT_TRUE(WriteHeartbeat(root_, {"c1", "host-a", 7, 123, ""}).ok());
  auto r = ReadHeartbeat(root_, "c1", "host-a");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequence, 7u);
  EXPECT_EQ(ModeOf(root_ + "/.ferry-ha"), 0700);
  EXPECT_EQ(ModeOf(root_ + "/.ferry-ha/c1"), 0700);
  EXPECT_EQ(ModeOf(root_ + "/.ferry-ha/c1/hosts"), 0700);
  EXPECT_EQ(ModeOf(HeartbeatPath(root_, "c1", "host-a")), 0600);
}

TEST_F(HaDatastoreHeartbeat, CorruptedRecordIsReportedNotTrusted) {
  ASSERT_TRUE(WriteHeartbeat(root_, {"c1", "host-a", 7, 123, ""}).ok());
  const std::string path = HeartbeatPath(root_, "c1", "host-a");
  std::string text = EncodeHeartbeat({"c1", "host-a", 7, 123, ""});
  text[text.find("sequence 7") + 9] = '8';  // a flipped digit, checksum left as it was
  std::ofstream(path, std::ios::trunc) << text;
  auto r = ReadHeartbeat(root_, "c1", "host-a");
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  std::ofstream(path, std::ios::trunc) << "garbage";
  EXPECT_TRUE(absl::IsDataLoss(ReadHeartbeat(root_, "c1", "host-a").status()));
}

// A host cut off from etcd says on its datastores whether it is isolated or partitioned; a
// connected host's record carries no such line (the format older readers know).
TEST_F(HaDatastoreHeartbeat, OwnViewOfACutOffHostReadsBackAndIsCheckedLikeTheRest) {
  EXPECT_EQ(EncodeHeartbeat({"c1", "host-a", 3, 9, ""}).find("own_view"), std::string::npos);
  for (const char* view : {"isolated", "partitioned"}) {
    ASSERT_TRUE(WriteHeartbeat(root_, {"c1", "host-a", 4, 10, view}).ok());
    auto r = ReadHeartbeat(root_, "c1", "host-a");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->own_view, view);
    EXPECT_EQ(r->sequence, 4u);
  }
  // Any other value in that line, even under a valid checksum, is not trusted.
  const std::string text = EncodeHeartbeat({"c1", "host-a", 5, 11, "partitioned"});
  const std::string body = text.substr(0, text.find("own_view")) + "own_view connected\n";
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64, as the record's last line
  for (unsigned char c : body) h = (h ^ c) * 1099511628211ull;
  auto forged = DecodeHeartbeat(body + absl::StrFormat("fnv1a64 %016x\n", h));
  EXPECT_TRUE(absl::IsDataLoss(forged.status())) << forged.status();
  EXPECT_NE(std::string(forged.status().message()).find("own_view"), std::string::npos) << forged.status();
}

TEST_F(HaDatastoreHeartbeat, ForeignRecordOrOpenModeIsReportedNotTrusted) {
  ASSERT_TRUE(WriteHeartbeat(root_, {"c1", "host-b", 1, 1, ""}).ok());
  // host-b's record copied over host-a's name: valid checksum, wrong host.
  std::filesystem::copy_file(HeartbeatPath(root_, "c1", "host-b"), HeartbeatPath(root_, "c1", "host-a"));
  auto r = ReadHeartbeat(root_, "c1", "host-a");
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  chmod(HeartbeatPath(root_, "c1", "host-b").c_str(), 0644);
  r = ReadHeartbeat(root_, "c1", "host-b");
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("0644"), std::string::npos) << r.status();
}

TEST_F(HaDatastoreHeartbeat, MovingRecordMeansIsolatedStillOneMeansFailed) {
  HeartbeatRecord a{"c1", "host-a", 1, 1, ""};
  HeartbeatRecord b = a;
  b.sequence = 2;
  EXPECT_EQ(ClassifyLostHost(a, b), LostHostVerdict::kIsolatedOrPartitioned);
  EXPECT_EQ(ClassifyLostHost(a, a), LostHostVerdict::kFailed);
  EXPECT_EQ(ClassifyLostHost(absl::DataLossError("x"), a), LostHostVerdict::kUnknown);
}

}  // namespace
}  // namespace ferry::cluster
