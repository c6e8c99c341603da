#include "engine/storage/vm_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/storage/datastore_vm.h"
#include "tests/storage/storage_test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

constexpr char kGoodConfig[] = R"(format_version: 1
name: web1
memory: 64MiB
vcpus: 2
backend: synthetic
workload: {working_set: 8MiB, dirty_rate: 5, pattern: sequential, seed: 3}
disks:
  - {kind: file, path: disk0.raw, size: 1MiB}
)";

// A VM directory web1 written by hand, its disk present.
std::string WriteVmDir(const testing::TempDir& tmp, const std::string& config) {
  std::string dir = tmp.Dir("ds/web1");
  tmp.Write("ds/web1/vm.yaml", config);
  std::filesystem::resize_file(tmp.Write("ds/web1/disk0.raw", ""), 1 << 20);
  return dir;
}

// Reading `config` fails with a message containing `expected`, and changes no file.
void ExpectRefused(const std::string& config, const std::string& expected) {
  testing::TempDir tmp;
  std::string dir = WriteVmDir(tmp, config);
  auto before = testing::FilesUnder(dir);
  absl::StatusOr<DatastoreVm> vm = OpenDatastoreVm(testing::Datastore("ds", tmp.Sub("ds")), dir);
  ASSERT_FALSE(vm.ok()) << "accepted:\n" << config;
  EXPECT_THAT(std::string(vm.status().message()), HasSubstr(expected));
  EXPECT_EQ(testing::FilesUnder(dir), before) << "a refused read touched the VM's files";
}

TEST(VmConfig, ReadsTheSpecWithDisksUnderTheDirectory) {
  testing::TempDir tmp;
  std::string dir = WriteVmDir(tmp, kGoodConfig);
  absl::StatusOr<VmSpec> spec = LoadVmConfig(dir);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "web1");
  EXPECT_EQ(spec->memory_bytes, 64u << 20);
  EXPECT_EQ(spec->vcpus, 2u);
  EXPECT_EQ(spec->backend, Backend::kSynthetic);
  EXPECT_EQ(spec->workload.pattern, "sequential");
  ASSERT_EQ(spec->disks.size(), 1u);
  EXPECT_EQ(spec->disks[0].path, dir + "/disk0.raw");
  EXPECT_EQ(spec->console_log_path, dir + "/console.log");
}

TEST(VmConfig, WrittenConfigReadsBackTheSame) {
  testing::TempDir tmp;
  std::string dir = WriteVmDir(tmp, kGoodConfig);
  VmSpec spec = *LoadVmConfig(dir);
  spec.disks[0].path = "disk0.raw";
  spec.cpu.features = {"sse4.1", "avx2"};
  spec.nics.push_back({"52:54:00:00:00:01", "vm-net"});
  ASSERT_TRUE(WriteVmConfig(dir, spec).ok());
  absl::StatusOr<VmSpec> again = LoadVmConfig(dir);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->memory_bytes, spec.memory_bytes);
  EXPECT_EQ(again->workload.dirty_rate_mibps, spec.workload.dirty_rate_mibps);
  EXPECT_EQ(again->cpu.features, spec.cpu.features);
  ASSERT_EQ(again->nics.size(), 1u);
  EXPECT_EQ(again->nics[0].port_group, "vm-net");
  EXPECT_EQ(again->disks[0].size_bytes, 1u << 20);
}

TEST(VmConfig, GuestDiskWorkloadReadsBack) {
  testing::TempDir tmp;
  std::string dir = WriteVmDir(tmp, kGoodConfig);
  VmSpec spec = *LoadVmConfig(dir);
  spec.disks[0].path = "disk0.raw";
  EXPECT_EQ(spec.workload.disk_working_set_bytes, 0u) << "no disk workload unless asked for";
  spec.workload.disk_working_set_bytes = 1u << 20;
  spec.workload.disk_rate_mibps = 2.5;
  ASSERT_TRUE(WriteVmConfig(dir, spec).ok());
  absl::StatusOr<VmSpec> again = LoadVmConfig(dir);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->workload.disk_working_set_bytes, 1u << 20);
  EXPECT_EQ(again->workload.disk_rate_mibps, 2.5);
}

TEST(VmConfig, CorruptYamlIsRefused) { ExpectRefused("format_version: 1\nname: [web1\n", "malformed YAML"); }

TEST(VmConfig, FutureFormatVersionIsRefused) {
  ExpectRefused("format_version: 2\nname: web1\nsnapshots: []\n", "format_version: 2 is not supported");
}

TEST(VmConfig, MissingFormatVersionIsRefused) { ExpectRefused("name: web1\n", "format_version: missing"); }

TEST(VmConfig, UnknownFieldIsRefused) {
  ExpectRefused(std::string(kGoodConfig) + "memroy: 1GiB\n", "memroy");
}

TEST(VmConfig, NameOtherThanTheDirectoryIsRefused) {
  ExpectRefused("format_version: 1\nname: web2\n", "differs from the VM directory's name 'web1'");
}

TEST(VmConfig, DiskPathLeavingTheDirectoryIsRefused) {
  ExpectRefused("format_version: 1\nname: web1\ndisks: [{kind: file, path: ../web2/disk0.raw}]\n",
                "disks[0].path: '../web2/disk0.raw' leaves");
  ExpectRefused("format_version: 1\nname: web1\ndisks: [{kind: file, path: /etc/passwd}]\n",
                "'/etc/passwd' is absolute");
}

TEST(VmConfig, MissingDiskFileIsRefused) {
  ExpectRefused("format_version: 1\nname: web1\ndisks: [{kind: file, path: disk1.raw}]\n", "disk1.raw");
}

TEST(VmConfig, DiskOfTheWrongSizeIsRefused) {
  ExpectRefused("format_version: 1\nname: web1\ndisks: [{kind: file, path: disk0.raw, size: 2MiB}]\n", "disk0.raw");
}

TEST(VmConfig, UnreadableDirectoryIsRefused) {
  testing::TempDir tmp;
  absl::StatusOr<DatastoreVm> vm = OpenDatastoreVm(testing::Datastore("ds", tmp.path()), tmp.Sub("nope"));
  ASSERT_FALSE(vm.ok());
  EXPECT_THAT(std::string(vm.status().message()), HasSubstr("nope"));
}

}  // namespace
}  // namespace ferry
