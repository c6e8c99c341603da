#include "engine/vm/vm_spec_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/host/cpu_model.h"
#include "engine/vm/disks.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

class VmSpecFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& body) { return tmp_.Write("vm.yaml", body); }
  std::string LoadError(const std::string& body) {
    absl::StatusOr<VmSpec> vm = LoadVmSpecFile(Write(body));
    EXPECT_FALSE(vm.ok());
    return std::string(vm.status().message());
  }
  testing::TempDir tmp_;
};

TEST_F(VmSpecFileTest, LoadsEveryField) {
  absl::StatusOr<VmSpec> vm = LoadVmSpecFile(Write(R"(
name: web1
memory: 512MiB
vcpus: 2
backend: synthetic
workload: {working_set: 32MiB, dirty_rate: 20MiB/s, pattern: hotcold, seed: 7, tick_ms: 100}
cpu: {model: Nehalem, features: [avx]}
disks:
  - {kind: file, path: /ds/web1/disk0.img, size: 1GiB}
  - {kind: rdm, path: /ds/web1/rdm0.map, device: /dev/sdb}
  - {kind: cdrom}
  - {kind: floppy, path: /ds/fd.img}
nics:
  - {mac: "52:54:00:AB:cd:01", port_group: VM Network}
)"));
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->name, "web1");
  EXPECT_EQ(vm->memory_bytes, 512ull << 20);
  EXPECT_EQ(vm->vcpus, 2u);
  EXPECT_EQ(vm->backend, Backend::kSynthetic);
  EXPECT_EQ(vm->workload.working_set_bytes, 32ull << 20);
  EXPECT_EQ(vm->workload.pattern, "hotcold");
  EXPECT_EQ(vm->workload.tick_ms, 100u);
  EXPECT_EQ(vm->cpu.model, "Nehalem");
  ASSERT_EQ(vm->disks.size(), 4u);
  EXPECT_EQ(vm->disks[0].size_bytes, 1ull << 30);
  EXPECT_EQ(vm->disks[1].kind, DiskKind::kRdm);
  EXPECT_EQ(vm->disks[1].device, "/dev/sdb");
  EXPECT_EQ(vm->disks[2].kind, DiskKind::kCdrom);
  EXPECT_TRUE(vm->disks[2].path.empty());
  ASSERT_EQ(vm->nics.size(), 1u);
  EXPECT_EQ(vm->nics[0].mac, "52:54:00:ab:cd:01");
  EXPECT_EQ(vm->nics[0].port_group, "VM Network");
}

TEST_F(VmSpecFileTest, MalformedYamlNamesFileAndLine) {
  std::string msg = LoadError("name: a\ndisks: [\n");
  EXPECT_THAT(msg, HasSubstr("vm.yaml: line"));
}

TEST_F(VmSpecFileTest, MissingFieldsAreNamed) {
  EXPECT_THAT(LoadError("memory: 1GiB\n"), HasSubstr("vm.yaml: name: missing"));
  EXPECT_THAT(LoadError("name: a\ndisks: [{kind: file}]\n"), HasSubstr("vm.yaml: disks[0].path: missing"));
  EXPECT_THAT(LoadError("name: a\ndisks: [{path: /x}]\n"), HasSubstr("disks[0].kind: missing"));
  EXPECT_THAT(LoadError("name: a\ndisks: [{kind: rdm, path: /ds/m}]\n"), HasSubstr("disks[0].device: missing"));
  EXPECT_THAT(LoadError("name: a\nnics: [{mac: '52:54:00:00:00:01'}]\n"), HasSubstr("nics[0].port_group: missing"));
}

TEST_F(VmSpecFileTest, BadMacsAreNamed) {
  for (const char* mac : {"52:54:00:00:00", "52:54:00:00:00:0g", "5254.0000.0001", "01:00:5e:00:00:01",
                          "00:00:00:00:00:00"}) {
    std::string msg = LoadError(std::string("name: a\nnics: [{mac: '") + mac + "', port_group: pg}]\n");
    EXPECT_THAT(msg, HasSubstr("vm.yaml: nics[0].mac")) << mac;
    EXPECT_THAT(msg, HasSubstr(mac));
  }
  EXPECT_THAT(LoadError("name: a\nnics: [{mac: '52:54:00:00:00:01', port_group: a}, "
                        "{mac: '52:54:00:00:00:01', port_group: b}]\n"),
              HasSubstr("nics[1].mac"));
}

TEST_F(VmSpecFileTest, BadValuesAreNamed) {
  EXPECT_THAT(LoadError("name: a\nmemory: lots\n"), HasSubstr("vm.yaml: memory: not a size"));
  EXPECT_THAT(LoadError("name: a\nbackend: xen\n"), HasSubstr("backend: 'xen'"));
  EXPECT_THAT(LoadError("name: a\ndisks: [{kind: tape, path: /x}]\n"), HasSubstr("disks[0].kind: 'tape'"));
  EXPECT_THAT(LoadError("name: a\ndisks: [{kind: file, path: rel.img}]\n"), HasSubstr("disks[0].path"));
  EXPECT_THAT(LoadError("name: a\nnic: []\n"), HasSubstr("vm.yaml: nic: unknown field"));
  EXPECT_THAT(LoadError("name: a\nworkload: {pattern: zigzag}\n"), HasSubstr("workload.pattern"));
}

TEST_F(VmSpecFileTest, UnknownCpuModelNamesFileAndField) {
  std::string path = Write("name: a\ncpu: {model: Haswel}\n");
  absl::StatusOr<VmSpec> vm = LoadVmSpecFile(path);
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::Status st = ResolveVmCpu(*vm, path);
  EXPECT_THAT(std::string(st.message()), HasSubstr("vm.yaml: cpu.model: unknown CPU model 'Haswel'"));
}

TEST_F(VmSpecFileTest, OpenDisksChecksExistenceAndSize) {
  VmSpec vm;
  std::string disk = tmp_.Write("ds/disk.img", std::string(4096, 'x'));
  vm.disks = {{DiskKind::kFile, disk, "", 4096}, {DiskKind::kCdrom, "", "", 0}};
  EXPECT_TRUE(OpenDisks(vm).ok());
  vm.disks[0].size_bytes = 8192;
  absl::Status st = OpenDisks(vm);
  EXPECT_THAT(std::string(st.message()), HasSubstr("disk 0 (file)"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("4096 bytes"));
  vm.disks[0].size_bytes = 0;
  vm.disks[1].path = tmp_.Sub("missing.iso");
  st = OpenDisks(vm);
  EXPECT_THAT(std::string(st.message()), HasSubstr("disk 1 (cdrom)"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("missing.iso"));
}

TEST_F(VmSpecFileTest, OpenDisksRdmNeedsABlockDeviceAndItsMapping) {
  VmSpec vm;
  std::string mapping = tmp_.Write("ds/rdm.map", "m");
  vm.disks = {{DiskKind::kRdm, mapping, tmp_.Sub("no-such-dev"), 0}};
  EXPECT_THAT(std::string(OpenDisks(vm).message()), HasSubstr("no-such-dev"));
  vm.disks[0].device = mapping;  // a regular file is not a block device
  EXPECT_THAT(std::string(OpenDisks(vm).message()), HasSubstr("not a block device"));
  std::string block;
  for (const char* dev : {"/dev/loop0", "/dev/vda", "/dev/sda", "/dev/nvme0n1"}) {
    if (access(dev, R_OK) == 0) {
      block = dev;
      break;
    }
  }
  if (block.empty()) GTEST_SKIP() << "no readable block device to stand in for a LUN";
  vm.disks[0].device = block;
  EXPECT_TRUE(OpenDisks(vm).ok()) << OpenDisks(vm);
  vm.disks[0].path = tmp_.Sub("ds/missing.map");
  EXPECT_THAT(std::string(OpenDisks(vm).message()), HasSubstr("mapping file"));
}

}  // namespace
}  // namespace ferry
