// Must show 2 and 3: the same host in YAML and in libvirt gives the same findings; CPU masks and
// baselines decide whether a VM can move.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/host/cpu_model.h"
#include "engine/host/disk_access.h"
#include "engine/host/datastore_id.h"
#include "engine/host/host_file.h"
#include "engine/host/local_host.h"
#include "engine/precheck/precheck.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

std::string CodesOf(const std::vector<Finding>& fs) {
  std::string s;
  for (const Finding& f : fs) s += std::string(FindingCodeName(f.code)) + "(" + f.subject + ") ";
  return s;
}

std::vector<Finding> Check(const VmSpec& vm, const HostFacts& src, HostFacts dst) {
  ProbeDiskAccess(dst, vm, src);
  return RunPrechecks(vm, src, dst);
}

class HostSources : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
};

TEST_F(HostSources, YamlAndLibvirtDescriptionsOfOneHostGiveTheSameFindings) {
  std::string shared = tmp_.Dir("shared");
  std::string only_src = tmp_.Dir("src-local");
  std::string dst_local = tmp_.Dir("dst-local");
  // Identified, as the agents of hosts mounting them would (loading host facts only reads ids).
  for (const std::string& ds : {shared, only_src, dst_local}) ASSERT_TRUE(DatastoreUuid(ds).ok());
  tmp_.Write("shared/vm/disk0.img", std::string(4096, 'x'));
  tmp_.Write("src-local/vm/disk1.img", std::string(4096, 'x'));
  tmp_.Write("shared/vm/rdm.map", "m");

  // The destination, as libvirt sees it...
  testing::LibvirtNode node;
  node.memory_kib = 2 << 20;
  node.pools = {{"shared", shared}, {"dst-local", dst_local}};
  node.nets = {{"uplinked", "bridge", "br0", {"VM Network"}}, {"internal", "", "virbr5", {"backplane"}}};
  node.block_devices = {"/dev/sdb"};
  node.iface_ip = "192.168.10.2";
  node.iface_speed = 100;
  std::string xml = tmp_.Write("dst.xml", testing::LibvirtNodeXml(node));
  absl::StatusOr<HostFacts> from_libvirt = LoadHostFacts("libvirt:test://" + xml);
  ASSERT_TRUE(from_libvirt.ok()) << from_libvirt.status();

  // ... and as a YAML host file.
  absl::StatusOr<HostFacts> from_yaml = LoadHostFacts(tmp_.Write("dst.yaml", "name: " + from_libvirt->name + R"(
memory: {total: 2GiB}
datastores:
  - {name: shared, path: )" + shared + R"(}
  - {name: dst-local, path: )" + dst_local + R"(}
vswitches:
  - {name: uplinked, uplinks: [br0], port_groups: [VM Network]}
  - {name: internal, port_groups: [backplane]}
rdm_devices: [/dev/sdb]
migration_interface: {address: 192.168.10.2, link_speed_mbps: 100}
)"));
  ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();

  absl::StatusOr<HostFacts> src = LoadHostFacts(tmp_.Write("src.yaml", R"(
name: src
memory: {total: 16GiB}
datastores:
  - {name: shared, path: )" + shared + R"(}
  - {name: src-local, path: )" + only_src + R"(}
vswitches: [{name: vs0, uplinks: [eno1], port_groups: [VM Network, backplane, prod]}]
rdm_devices: [/dev/sdb, /dev/sdc]
migration_interface: {address: 192.168.10.1, link_speed_mbps: 10000}
)"));
  ASSERT_TRUE(src.ok()) << src.status();

  VmSpec troubled;
  troubled.name = "troubled";
  troubled.memory_bytes = 4ull << 30;  // more than the destination has
  troubled.disks = {{DiskKind::kFile, shared + "/vm/disk0.img", "", 4096},
                    {DiskKind::kFile, only_src + "/vm/disk1.img", "", 4096},
                    {DiskKind::kRdm, shared + "/vm/rdm.map", "/dev/sdc", 0}};
  troubled.nics = {{"52:54:00:00:00:01", "VM Network"}, {"52:54:00:00:00:02", "backplane"},
                   {"52:54:00:00:00:03", "prod"}};
  std::vector<Finding> via_yaml = Check(troubled, *src, *from_yaml);
  std::vector<Finding> via_libvirt = Check(troubled, *src, *from_libvirt);
  EXPECT_EQ(via_yaml, via_libvirt) << "yaml: " << CodesOf(via_yaml) << "\nlibvirt: " << CodesOf(via_libvirt);
  std::string codes = CodesOf(via_libvirt);
  for (const char* code : {"INSUFFICIENT_MEMORY", "DATASTORE_NOT_SHARED", "RDM_NOT_VISIBLE", "PORTGROUP_NO_UPLINK",
                           "PORTGROUP_MISSING", "MIGRATION_LINK_SLOW"}) {
    EXPECT_THAT(codes, HasSubstr(code));
  }

  VmSpec fine;
  fine.name = "fine";
  fine.backend = Backend::kSynthetic;
  fine.memory_bytes = 1ull << 30;
  fine.disks = {{DiskKind::kFile, shared + "/vm/disk0.img", "", 4096}};
  fine.nics = {{"52:54:00:00:00:01", "VM Network"}};
  via_yaml = Check(fine, *src, *from_yaml);
  via_libvirt = Check(fine, *src, *from_libvirt);
  EXPECT_EQ(via_yaml, via_libvirt) << CodesOf(via_yaml) << " vs " << CodesOf(via_libvirt);
  ASSERT_EQ(via_libvirt.size(), 1u) << CodesOf(via_libvirt);
  EXPECT_EQ(via_libvirt[0].code, FindingCode::kMigrationLinkSlow);  // the 100 Mbit/s link, a warning only
}

TEST_F(HostSources, VmGivenSse41CannotMoveToAHostThatMasksIt) {
  LocalCpu local = ProbeLocalCpu();
  if (std::find(local.features.begin(), local.features.end(), "sse4.1") == local.features.end()) {
    GTEST_SKIP() << "this machine's KVM does not offer sse4.1 to guests, so there is nothing to mask "
                    "(SseMaskedHostRefusesVmGivenSse41 covers this without KVM)";
  }
  auto src = LoadHostFacts(tmp_.Write("a.yaml", "name: a\nmemory: {total: 4GiB}\n"));
  auto dst = LoadHostFacts(tmp_.Write("b.yaml", "name: b\nmemory: {total: 4GiB}\ncpu: {mask: [sse4.1]}\n"));
  ASSERT_TRUE(src.ok() && dst.ok());
  src->migration_interface = dst->migration_interface = MigrationInterfaceFacts{"10.0.0.1", 10000};
  src->kvm_capabilities = dst->kvm_capabilities = RequiredKvmCapabilityNames();

  VmSpec vm;
  vm.name = "v";
  vm.cpu.features = {"sse4.1"};
  ASSERT_TRUE(ResolveVmCpu(vm, "vm").ok());
  std::vector<Finding> f = RunPrechecks(vm, *src, *dst);
  ASSERT_EQ(f.size(), 1u) << CodesOf(f);
  EXPECT_EQ(f[0].code, FindingCode::kCpuFeatureMissing);
  EXPECT_EQ(f[0].severity, Severity::kError);
  EXPECT_EQ(f[0].subject, "sse4.1");

  // The same VM with no cpu section gets the source's set, sse4.1 included: refused too.
  VmSpec unpinned;
  unpinned.name = "u";
  EXPECT_EQ(CodesOf(RunPrechecks(unpinned, *src, *dst)), "CPU_FEATURE_MISSING(sse4.1) ");

  // Pinned to the baseline of both hosts, it moves.
  absl::StatusOr<CpuBaseline> b = BaselineCpu({*src, *dst});
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_FALSE(b->model.empty());
  VmSpec pinned;
  pinned.name = "p";
  pinned.cpu.model = b->model;
  ASSERT_TRUE(ResolveVmCpu(pinned, "vm").ok());
  std::vector<Finding> clean = RunPrechecks(pinned, *src, *dst);
  EXPECT_TRUE(clean.empty()) << b->model << ": " << CodesOf(clean);
}

TEST_F(HostSources, SseMaskedHostRefusesVmGivenSse41) {
  auto src = LoadHostFacts(tmp_.Write("a.yaml", "name: a\nmemory: {total: 4GiB}\ncpu: {model: Nehalem}\n"));
  auto dst = LoadHostFacts(tmp_.Write("b.yaml", "name: b\nmemory: {total: 4GiB}\ncpu: {model: Nehalem, mask: [sse4.1]}\n"));
  ASSERT_TRUE(src.ok() && dst.ok()) << src.status() << dst.status();
  for (HostFacts* h : {&*src, &*dst}) {
    h->migration_interface = MigrationInterfaceFacts{"10.0.0.1", 10000};
    h->kvm_capabilities = RequiredKvmCapabilityNames();
  }
  VmSpec vm;
  vm.cpu.features = {"sse4.1"};
  ASSERT_TRUE(ResolveVmCpu(vm, "vm").ok());
  EXPECT_EQ(CodesOf(RunPrechecks(vm, *src, *dst)), "CPU_FEATURE_MISSING(sse4.1) ");
  absl::StatusOr<CpuBaseline> b = BaselineCpu({*src, *dst});
  ASSERT_TRUE(b.ok()) << b.status();
  VmSpec pinned;
  pinned.cpu.model = b->model;
  ASSERT_TRUE(ResolveVmCpu(pinned, "vm").ok());
  EXPECT_EQ(CodesOf(RunPrechecks(pinned, *src, *dst)), "") << b->model;
}

TEST_F(HostSources, ModelPinnedVmMovesBetweenHostsThatBothSupportIt) {
  // Hermetic: hosts described by models, the older one masked further.
  auto newer = LoadHostFacts(tmp_.Write("n.yaml", "name: n\nmemory: {total: 4GiB}\ncpu: {model: Haswell-noTSX}\n"));
  auto older = LoadHostFacts(tmp_.Write("o.yaml", "name: o\nmemory: {total: 4GiB}\ncpu: {model: Nehalem, mask: [sse4.1]}\n"));
  ASSERT_TRUE(newer.ok() && older.ok()) << newer.status() << older.status();
  for (HostFacts* h : {&*newer, &*older}) {
    h->migration_interface = MigrationInterfaceFacts{"10.0.0.1", 10000};
    h->kvm_capabilities = RequiredKvmCapabilityNames();
  }
  VmSpec haswell;
  haswell.cpu.model = "Haswell-noTSX";
  ASSERT_TRUE(ResolveVmCpu(haswell, "vm").ok());
  std::string codes = CodesOf(RunPrechecks(haswell, *newer, *older));
  EXPECT_THAT(codes, HasSubstr("CPU_FEATURE_MISSING(avx2)"));
  EXPECT_THAT(codes, HasSubstr("CPU_FEATURE_MISSING(sse4.1)"));

  absl::StatusOr<CpuBaseline> b = BaselineCpu({*newer, *older});
  ASSERT_TRUE(b.ok()) << b.status();
  VmSpec pinned;
  pinned.cpu.model = b->model;
  ASSERT_TRUE(ResolveVmCpu(pinned, "vm").ok());
  EXPECT_EQ(CodesOf(RunPrechecks(pinned, *newer, *older)), "") << b->model;
  EXPECT_EQ(CodesOf(RunPrechecks(pinned, *older, *newer)), "") << b->model;
}

}  // namespace
}  // namespace ferry
