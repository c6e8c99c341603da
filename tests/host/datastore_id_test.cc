#include "engine/host/datastore_id.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "tests/host/test_util.h"

namespace ferry {
namespace {

TEST(DatastoreId, CreatedOnFirstUseAndStable) {
  testing::TempDir tmp;
  std::string ds = tmp.Dir("ds1");
  absl::StatusOr<std::string> first = DatastoreUuid(ds);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 36u);
  EXPECT_TRUE(std::filesystem::exists(ds + "/" + kDatastoreIdFile));
  EXPECT_EQ(*DatastoreUuid(ds), *first);
}

TEST(DatastoreId, SameStorageUnderAnotherPathHasTheSameId) {
  testing::TempDir tmp;
  std::string ds = tmp.Dir("storage");
  std::filesystem::create_directory_symlink(ds, tmp.Sub("mounted-elsewhere"));
  EXPECT_EQ(*DatastoreUuid(ds), *DatastoreUuid(tmp.Sub("mounted-elsewhere")));
}

TEST(DatastoreId, DifferentStorageHasDifferentIds) {
  testing::TempDir tmp;
  EXPECT_NE(*DatastoreUuid(tmp.Dir("a")), *DatastoreUuid(tmp.Dir("b")));
}

TEST(DatastoreId, MissingDirectoryIsAnErrorNamingIt) {
  testing::TempDir tmp;
  absl::StatusOr<std::string> id = DatastoreUuid(tmp.Sub("nope"));
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find("nope"), absl::string_view::npos) << id.status();
}

TEST(DatastoreId, ReadingNeverWritesIntoTheDatastore) {
  testing::TempDir tmp;
  std::string ds = tmp.Dir("fresh");
  absl::StatusOr<DatastoreIdentity> id = IdentifyDatastore(ds, DatastoreIdPolicy::kReadOnly);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->uuid, "") << "a datastore nobody identified yet has no id";
  EXPECT_FALSE(id->read_only);
  EXPECT_TRUE(std::filesystem::is_empty(ds)) << "reading must not create " << kDatastoreIdFile;
}

TEST(DatastoreId, ReadingFindsTheIdAnAgentCreated) {
  testing::TempDir tmp;
  std::string ds = tmp.Dir("ds");
  absl::StatusOr<std::string> created = DatastoreUuid(ds);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(IdentifyDatastore(ds, DatastoreIdPolicy::kReadOnly)->uuid, *created);
}

// A read-only bind mount of a fresh directory (root only; skipped elsewhere).
class ReadOnlyDatastore : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = tmp_.Dir("storage");
    mnt_ = tmp_.Dir("ro-mount");
    if (mount(src_.c_str(), mnt_.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      GTEST_SKIP() << "cannot bind-mount here (" << strerror(errno) << "): needs root";
    }
    mounted_ = true;
    if (mount(nullptr, mnt_.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      GTEST_SKIP() << "cannot remount read-only (" << strerror(errno) << ")";
    }
  }
  void TearDown() override {
    if (mounted_) umount(mnt_.c_str());
  }
  testing::TempDir tmp_;
  std::string src_, mnt_;
  bool mounted_ = false;
};

TEST_F(ReadOnlyDatastore, WithoutAnIdIsReportedReadOnlyNotAnError) {
  for (DatastoreIdPolicy policy : {DatastoreIdPolicy::kReadOnly, DatastoreIdPolicy::kCreateIfMissing}) {
    absl::StatusOr<DatastoreIdentity> id = IdentifyDatastore(mnt_, policy);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(id->uuid, "");
    EXPECT_TRUE(id->read_only);
  }
}

TEST_F(ReadOnlyDatastore, WithAnIdIsIdentifiedAndReadOnly) {
  testing::TempDir other;
  absl::StatusOr<std::string> created = DatastoreUuid(src_);  // written through the writable path
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<DatastoreIdentity> id = IdentifyDatastore(mnt_, DatastoreIdPolicy::kReadOnly);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->uuid, *created);
  EXPECT_TRUE(id->read_only);
}

}  // namespace
}  // namespace ferry
