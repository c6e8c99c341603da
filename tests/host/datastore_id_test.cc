#include "engine/host/datastore_id.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ferry
