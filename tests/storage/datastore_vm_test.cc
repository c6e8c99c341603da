#include "engine/storage/datastore_vm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "engine/storage/vm_config.h"
#include "tests/storage/storage_test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

VmSpec SmallVm(const std::string& name) {
  VmSpec spec;
  spec.name = name;
  spec.backend = Backend::kSynthetic;
  spec.memory_bytes = 32u << 20;
  return spec;
}

TEST(VmDirectory, CreateMakesConfigSparseDisksAndLock) {
  testing::TempDir tmp;
  DatastoreFacts ds = testing::Datastore("ds1", tmp.Dir("ds1"));
  absl::StatusOr<DatastoreVm> vm = CreateDatastoreVm(ds, SmallVm("web1"), {64u << 20, 1u << 20});
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->dir, ds.path + "/web1");
  EXPECT_EQ(vm->datastore, "ds1");
  EXPECT_TRUE(fs::exists(vm->dir + "/vm.yaml"));
  EXPECT_TRUE(fs::exists(vm->dir + "/vm.lock"));
  ASSERT_EQ(vm->spec.disks.size(), 2u);
  EXPECT_EQ(vm->spec.disks[0].path, vm->dir + "/disk0.raw");
  struct stat st {};
  ASSERT_EQ(stat(vm->spec.disks[0].path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 64u << 20);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20) << "a new disk is sparse";
  absl::StatusOr<DatastoreVm> reopened = OpenDatastoreVm(ds, vm->dir);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->spec.disks[1].size_bytes, 1u << 20);
  EXPECT_EQ(*ListDatastoreVms(ds), std::vector<std::string>{"web1"});
}

TEST(VmDirectory, CreateRefusesAnExistingDirectoryAndLeavesIt) {
  testing::TempDir tmp;
  DatastoreFacts ds = testing::Datastore("ds1", tmp.Dir("ds1"));
  ASSERT_TRUE(CreateDatastoreVm(ds, SmallVm("web1"), {1u << 20}).ok());
  auto before = testing::FilesUnder(ds.path);
  absl::StatusOr<DatastoreVm> again = CreateDatastoreVm(ds, SmallVm("web1"), {2u << 20});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(testing::FilesUnder(ds.path), before);
}

TEST(VmDirectory, CreateRefusesBadNamesAndSizes) {
  testing::TempDir tmp;
  DatastoreFacts ds = testing::Datastore("ds1", tmp.Dir("ds1"));
  EXPECT_FALSE(CreateDatastoreVm(ds, SmallVm("../escape"), {}).ok());
  absl::StatusOr<DatastoreVm> odd = CreateDatastoreVm(ds, SmallVm("web1"), {1000});
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(std::string(odd.status().message()), HasSubstr("multiple of 512"));
  EXPECT_TRUE(fs::is_empty(ds.path));
}

// `vm create --datastore --disk SIZE --disk-working-set WS`: the disk the workload runs on is made
// with the directory, so the workload is checked against it there, before anything is written.
TEST(VmDirectory, DiskWorkloadIsCheckedAgainstTheDisksCreatedWithTheVm) {
  testing::TempDir tmp;
  DatastoreFacts ds = testing::Datastore("ds1", tmp.Dir("ds1"));
  VmSpec spec = SmallVm("web1");
  spec.backend = Backend::kKvm;
  spec.workload.disk_working_set_bytes = 8u << 20;
  absl::StatusOr<DatastoreVm> vm = CreateDatastoreVm(ds, spec, {16u << 20});
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->spec.workload.disk_working_set_bytes, 8u << 20);
  ASSERT_TRUE(DeleteDatastoreVm(*vm, ThisProcessAsHolder("host-a")).ok());

  absl::StatusOr<DatastoreVm> no_disk = CreateDatastoreVm(ds, spec, {});
  ASSERT_FALSE(no_disk.ok());
  EXPECT_THAT(std::string(no_disk.status().message()), HasSubstr("needs a file disk"));
  absl::StatusOr<DatastoreVm> too_small = CreateDatastoreVm(ds, spec, {4u << 20});
  ASSERT_FALSE(too_small.ok());
  EXPECT_THAT(std::string(too_small.status().message()), HasSubstr("larger than its disk"));
  EXPECT_TRUE(fs::is_empty(ds.path)) << "a refused create writes nothing";
}

TEST(VmDirectory, FullDatastoreIsRefusedBeforeAnythingIsWritten) {
  testing::TempDir tmp;
  testing::TestMount small;
  std::string why = small.Tmpfs(tmp.Dir("small"), "4m");
  if (!why.empty()) GTEST_SKIP() << why;
  DatastoreFacts ds = testing::Datastore("small", tmp.Sub("small"));
  absl::StatusOr<DatastoreVm> vm = CreateDatastoreVm(ds, SmallVm("web1"), {64u << 20});
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(vm.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(vm.status().message()), HasSubstr("datastore small"));
  EXPECT_THAT(std::string(vm.status().message()), HasSubstr("the VM needs 65 MiB"));
  EXPECT_TRUE(fs::is_empty(ds.path));
  EXPECT_TRUE(CreateDatastoreVm(ds, SmallVm("web1"), {1u << 20}).ok()) << "what fits is created";
}

TEST(VmDirectory, ReadOnlyDatastoreRefusesCreateAndLockButReadsTheVm) {
  testing::TempDir tmp;
  DatastoreFacts rw = testing::Datastore("ds1", tmp.Dir("storage"));
  absl::StatusOr<DatastoreVm> made = CreateDatastoreVm(rw, SmallVm("web1"), {1u << 20});
  ASSERT_TRUE(made.ok()) << made.status();
  testing::TestMount ro;
  std::string why = ro.BindReadOnly(rw.path, tmp.Dir("ro"));
  if (!why.empty()) GTEST_SKIP() << why;
  DatastoreFacts ds = testing::Datastore("ds1-ro", tmp.Sub("ro"));
  auto before = testing::FilesUnder(rw.path);

  absl::StatusOr<DatastoreVm> created = CreateDatastoreVm(ds, SmallVm("web2"), {1u << 20});
  ASSERT_FALSE(created.ok());
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("mounted read-only"));

  absl::StatusOr<DatastoreVm> vm = OpenDatastoreVm(ds, ds.path + "/web1");
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<VmLock> lock = VmLock::Acquire(vm->lock_path(), "web1", ThisProcessAsHolder("host-a"));
  ASSERT_FALSE(lock.ok());
  EXPECT_THAT(std::string(lock.status().message()), HasSubstr("read-only datastore"));
  EXPECT_FALSE(DeleteDatastoreVm(*vm, ThisProcessAsHolder("host-a")).ok());
  EXPECT_EQ(testing::FilesUnder(rw.path), before);
}

TEST(VmDirectory, DeleteIsRefusedWhileTheVmIsLockedThenRemovesIt) {
  testing::TempDir tmp;
  DatastoreFacts ds = testing::Datastore("ds1", tmp.Dir("ds1"));
  absl::StatusOr<DatastoreVm> vm = CreateDatastoreVm(ds, SmallVm("web1"), {1u << 20});
  ASSERT_TRUE(vm.ok()) << vm.status();
  {
    absl::StatusOr<VmLock> running = VmLock::Acquire(vm->lock_path(), "web1", ThisProcessAsHolder("host-a"));
    ASSERT_TRUE(running.ok());
    absl::Status refused = DeleteDatastoreVm(*vm, ThisProcessAsHolder("host-b"));
    EXPECT_THAT(std::string(refused.message()), HasSubstr("locked by agent host-a"));
    EXPECT_TRUE(fs::exists(vm->dir + "/disk0.raw"));
  }
  ASSERT_TRUE(DeleteDatastoreVm(*vm, ThisProcessAsHolder("host-b")).ok());
  EXPECT_FALSE(fs::exists(vm->dir));
}

TEST(VmDirectory, FindLooksOnEveryDatastoreAndNamesTheHolder) {
  testing::TempDir tmp;
  HostFacts host;
  host.name = "host-a";
  host.datastores = {testing::Datastore("ds1", tmp.Dir("ds1")), testing::Datastore("ds2", tmp.Dir("ds2"))};
  ASSERT_TRUE(CreateDatastoreVm(host.datastores[1], SmallVm("db1"), {}).ok());
  absl::StatusOr<DatastoreVm> found = FindDatastoreVm(host, "db1");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->datastore, "ds2");
  EXPECT_EQ(FindDatastoreVm(host, "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DatastoreHoldingVmDirectory(host, tmp.Sub("ds2/db1"))->name, "ds2");
  EXPECT_FALSE(DatastoreHoldingVmDirectory(host, tmp.Sub("elsewhere/db1")).ok());
}

}  // namespace
}  // namespace ferry
