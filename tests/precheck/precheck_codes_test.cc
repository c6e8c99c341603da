// One test per finding code: the condition produces exactly that finding, and the same VM passes
// once the condition is fixed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/host/datastore_id.h"
#include "engine/host/disk_access.h"
#include "engine/host/local_host.h"
#include "engine/precheck/finding_proto.h"
#include "engine/precheck/precheck.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class PrecheckCodes : public ::testing::Test {
 protected:
  void SetUp() override {
    shared_ = tmp_.Dir("shared");
    local_ = tmp_.Dir("local-src");
    disk_ = tmp_.Write("shared/vm1/disk0.img", std::string(1 << 16, 'x'));
    DatastoreFacts shared{"shared", shared_, *DatastoreUuid(shared_)};
    src_.name = "src";
    src_.cpu_vendor = "GenuineIntel";
    src_.cpu_features = {"fpu", "lm", "popcnt", "sse2", "sse4.1", "sse4.2"};
    src_.memory_total_bytes = src_.memory_free_bytes = 8ull << 30;
    src_.datastores = {shared, {"local", local_, *DatastoreUuid(local_)}};
    src_.vswitches = {{"vSwitch0", {"eno1"}, {"VM Network"}}};
    src_.rdm_devices = {"/dev/sdc"};
    src_.migration_interface = MigrationInterfaceFacts{"10.0.0.1", 10000};
    src_.kvm_capabilities = RequiredKvmCapabilityNames();
    dst_ = src_;
    dst_.name = "dst";
    dst_.datastores = {shared};
    dst_.migration_interface = MigrationInterfaceFacts{"10.0.0.2", 10000};

    vm_.name = "vm1";
    vm_.memory_bytes = 256ull << 20;
    vm_.disks = {{DiskKind::kFile, disk_, "", 1 << 16}};
    vm_.nics = {{"52:54:00:00:00:01", "VM Network"}};
  }

  std::vector<Finding> Check() {
    HostFacts dst = dst_;
    ProbeDiskAccess(dst, vm_, src_);
    return RunPrechecks(vm_, src_, dst);
  }
  // Exactly one finding, with this code and severity.
  Finding ExpectOnly(FindingCode code, Severity severity) {
    std::vector<Finding> f = Check();
    EXPECT_EQ(f.size(), 1u) << Dump(f);
    if (f.empty()) return {};
    EXPECT_EQ(f[0].code, code) << Dump(f);
    EXPECT_EQ(f[0].severity, severity) << Dump(f);
    return f[0];
  }
  void ExpectClean() {
    std::vector<Finding> f = Check();
    EXPECT_TRUE(f.empty()) << Dump(f);
  }
  static std::string Dump(const std::vector<Finding>& fs) {
    std::string s;
    for (const Finding& f : fs) s += std::string(FindingCodeName(f.code)) + " " + f.subject + ": " + f.message + "\n";
    return s;
  }

  testing::TempDir tmp_;
  std::string shared_, local_, disk_;
  HostFacts src_, dst_;
  VmSpec vm_;
};

TEST_F(PrecheckCodes, WellConfiguredVmHasNoFindings) { ExpectClean(); }

TEST_F(PrecheckCodes, CpuFeatureMissing) {
  dst_.cpu_features = {"fpu", "lm", "popcnt", "sse2", "sse4.2"};
  Finding f = ExpectOnly(FindingCode::kCpuFeatureMissing, Severity::kError);
  EXPECT_EQ(f.subject, "sse4.1");
  EXPECT_THAT(f.message, HasSubstr("cpu-baseline"));
  vm_.cpu.features = {"fpu", "lm", "sse2", "sse4.2"};  // pinned to what both hosts have
  ExpectClean();
}

TEST_F(PrecheckCodes, CpuAdviceNamesTheCommandWithTheHostsOwnArguments) {
  dst_.cpu_features = {"fpu", "lm", "popcnt", "sse2", "sse4.2"};
  src_.origin = "hosts/esx-a.yaml";
  dst_.origin = "libvirt:test:///etc/esx-b.xml";
  Finding f = ExpectOnly(FindingCode::kCpuFeatureMissing, Severity::kError);
  EXPECT_THAT(f.message, HasSubstr("`migrate host cpu-baseline hosts/esx-a.yaml libvirt:test:///etc/esx-b.xml`"));
  // Facts from agents carry no host file: never a command made of host names that fails.
  src_.origin = dst_.origin = "";
  f = ExpectOnly(FindingCode::kCpuFeatureMissing, Severity::kError);
  EXPECT_THAT(f.message, ::testing::Not(HasSubstr("cpu-baseline src dst")));
  // With the model the caller worked out (BaselineCpu), the advice names it.
  HostFacts probed = dst_;
  ProbeDiskAccess(probed, vm_, src_);
  std::vector<Finding> advised = RunPrechecks(vm_, src_, probed, {"x86-64-v2"});
  ASSERT_EQ(advised.size(), 1u) << Dump(advised);
  EXPECT_THAT(advised[0].message, HasSubstr("CPU model x86-64-v2, the newest both hosts support"));
}

TEST_F(PrecheckCodes, UnexpandedCpuModelIsNeverASilentPass) {
  vm_.cpu.model = "Nehalem";
  Finding f = ExpectOnly(FindingCode::kCpuFeatureMissing, Severity::kError);
  EXPECT_EQ(f.subject, "Nehalem");
  vm_.cpu.features = {"fpu", "sse2"};
  ExpectClean();
}

TEST_F(PrecheckCodes, CpuVendorMismatchIsAWarning) {
  dst_.cpu_vendor = "AuthenticAMD";
  ExpectOnly(FindingCode::kCpuVendorMismatch, Severity::kWarning);
  dst_.cpu_vendor = "GenuineIntel";
  ExpectClean();
}

TEST_F(PrecheckCodes, DatastoreNotShared) {
  dst_.datastores = {{"other", tmp_.Dir("other"), *DatastoreUuid(tmp_.Sub("other"))}};
  Finding f = ExpectOnly(FindingCode::kDatastoreNotShared, Severity::kError);
  EXPECT_EQ(f.subject, disk_);
  // Fixed: the destination mounts the same storage, at another path.
  fs::create_directory_symlink(shared_, tmp_.Sub("mnt-shared"));
  dst_.datastores.push_back({"shared", tmp_.Sub("mnt-shared"), *DatastoreUuid(tmp_.Sub("mnt-shared"))});
  ExpectClean();
}

TEST_F(PrecheckCodes, DatastoreUnidentified) {
  // Nobody has written an id into the datastore yet (the offline precheck never does).
  src_.datastores[0].uuid = "";
  dst_.datastores[0].uuid = "";
  Finding f = ExpectOnly(FindingCode::kDatastoreUnidentified, Severity::kError);
  EXPECT_EQ(f.subject, disk_);
  EXPECT_THAT(f.message, HasSubstr(kDatastoreIdFile));
  EXPECT_THAT(f.message, ::testing::Not(HasSubstr("read-only")));
  src_.datastores[0].read_only = true;
  EXPECT_THAT(ExpectOnly(FindingCode::kDatastoreUnidentified, Severity::kError).message, HasSubstr("read-only"));
  src_.datastores[0].uuid = dst_.datastores[0].uuid = *DatastoreUuid(shared_);
  ExpectClean();
}

TEST_F(PrecheckCodes, SamePathIsNotTheSameDatastore) {
  // Same name and path but different storage (the id inside differs): not shared.
  dst_.datastores[0].uuid = "00000000-0000-4000-8000-000000000000";
  ExpectOnly(FindingCode::kDatastoreNotShared, Severity::kError);
}

TEST_F(PrecheckCodes, DiskOutsideAnyDatastoreIsNotShared) {
  vm_.disks[0].path = tmp_.Write("loose/disk.img", std::string(1 << 16, 'x'));
  ExpectOnly(FindingCode::kDatastoreNotShared, Severity::kError);
  vm_.disks[0].path = disk_;
  ExpectClean();
}

TEST_F(PrecheckCodes, DiskNotAccessible) {
  // The destination's mount carries the datastore's identity but not the disk (a stale mount).
  std::string stale = tmp_.Dir("dst-mount");
  fs::copy_file(shared_ + "/" + kDatastoreIdFile, stale + "/" + kDatastoreIdFile);
  dst_.datastores = {{"shared", stale, *DatastoreUuid(stale)}};
  Finding f = ExpectOnly(FindingCode::kDiskNotAccessible, Severity::kError);
  EXPECT_EQ(f.subject, disk_);
  EXPECT_THAT(f.message, HasSubstr("dst-mount/vm1/disk0.img"));
  // A truncated copy is still not usable: wrong size.
  tmp_.Write("dst-mount/vm1/disk0.img", "short");
  EXPECT_THAT(ExpectOnly(FindingCode::kDiskNotAccessible, Severity::kError).message, HasSubstr("bytes"));
  fs::copy_file(disk_, stale + "/vm1/disk0.img", fs::copy_options::overwrite_existing);
  ExpectClean();
}

TEST_F(PrecheckCodes, DiskAccessNotReportedIsAnError) {
  std::vector<Finding> f = RunPrechecks(vm_, src_, dst_);  // no ProbeDiskAccess
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].code, FindingCode::kDiskNotAccessible);
}

TEST_F(PrecheckCodes, PortGroupMissing) {
  vm_.nics[0].port_group = "prod";
  Finding f = ExpectOnly(FindingCode::kPortGroupMissing, Severity::kError);
  EXPECT_EQ(f.subject, "nic0 52:54:00:00:00:01");
  EXPECT_THAT(f.message, HasSubstr("'prod'"));
  dst_.vswitches[0].port_groups.push_back("prod");
  ExpectClean();
}

TEST_F(PrecheckCodes, PortGroupNoUplink) {
  dst_.vswitches = {{"vSwitch0", {}, {"VM Network"}}};
  ExpectOnly(FindingCode::kPortGroupNoUplink, Severity::kError);
  dst_.vswitches[0].uplinks = {"eno2"};
  ExpectClean();
}

TEST_F(PrecheckCodes, RdmNotVisible) {
  std::string mapping = tmp_.Write("shared/vm1/rdm0.map", "rdm");
  vm_.disks.push_back({DiskKind::kRdm, mapping, "/dev/sdc", 0});
  dst_.rdm_devices = {"/dev/sdd"};
  EXPECT_EQ(ExpectOnly(FindingCode::kRdmNotVisible, Severity::kError).subject, "/dev/sdc");
  dst_.rdm_devices.push_back("/dev/sdc");
  ExpectClean();
}

TEST_F(PrecheckCodes, RdmMappingNotShared) {
  std::string mapping = tmp_.Write("local-src/rdm0.map", "rdm");
  vm_.disks.push_back({DiskKind::kRdm, mapping, "/dev/sdc", 0});
  EXPECT_EQ(ExpectOnly(FindingCode::kRdmMappingNotShared, Severity::kError).subject, mapping);
  vm_.disks.back().path = tmp_.Write("shared/vm1/rdm0.map", "rdm");
  ExpectClean();
}

TEST_F(PrecheckCodes, MediaMounted) {
  std::string iso = tmp_.Write("shared/iso/install.iso", "iso");
  vm_.disks.push_back({DiskKind::kCdrom, iso, "", 0});
  EXPECT_EQ(ExpectOnly(FindingCode::kMediaMounted, Severity::kError).subject, iso);
  vm_.disks.back().path.clear();  // drive stays, image disconnected
  ExpectClean();
  vm_.disks.push_back({DiskKind::kFloppy, tmp_.Write("shared/fd.img", "fd"), "", 0});
  ExpectOnly(FindingCode::kMediaMounted, Severity::kError);
  vm_.disks.back().path.clear();
  ExpectClean();
}

TEST_F(PrecheckCodes, MigrationInterfaceMissingOnEitherHost) {
  src_.migration_interface.reset();
  EXPECT_EQ(ExpectOnly(FindingCode::kMigrationInterfaceMissing, Severity::kError).subject, "src");
  src_.migration_interface = MigrationInterfaceFacts{"10.0.0.1", 10000};
  dst_.migration_interface.reset();
  EXPECT_EQ(ExpectOnly(FindingCode::kMigrationInterfaceMissing, Severity::kError).subject, "dst");
  dst_.migration_interface = MigrationInterfaceFacts{"10.0.0.2", 10000};
  ExpectClean();
}

TEST_F(PrecheckCodes, MigrationLinkSlowIsAWarning) {
  dst_.migration_interface->link_speed_mbps = 100;
  Finding f = ExpectOnly(FindingCode::kMigrationLinkSlow, Severity::kWarning);
  EXPECT_EQ(f.subject, "dst");
  dst_.migration_interface->link_speed_mbps = 1000;  // exactly 1 Gbit/s is fine
  ExpectClean();
}

TEST_F(PrecheckCodes, InsufficientMemory) {
  dst_.memory_free_bytes = 128ull << 20;
  Finding f = ExpectOnly(FindingCode::kInsufficientMemory, Severity::kError);
  EXPECT_THAT(f.message, HasSubstr("256 MiB"));
  dst_.memory_free_bytes = 256ull << 20;
  ExpectClean();
}

TEST_F(PrecheckCodes, KvmCapabilityMissing) {
  dst_.kvm_capabilities.erase(std::find(dst_.kvm_capabilities.begin(), dst_.kvm_capabilities.end(), "KVM_CAP_XSAVE"));
  EXPECT_EQ(ExpectOnly(FindingCode::kKvmCapabilityMissing, Severity::kError).subject, "KVM_CAP_XSAVE");
  dst_.kvm_capabilities.push_back("KVM_CAP_XSAVE");
  ExpectClean();
}

TEST_F(PrecheckCodes, SyntheticVmNeedsNoKvm) {
  dst_.kvm_capabilities.clear();
  vm_.backend = Backend::kSynthetic;
  ExpectClean();
}

TEST_F(PrecheckCodes, FindingsSurviveTheWireAndZeroIsInvalid) {
  dst_.memory_free_bytes = 0;
  dst_.migration_interface->link_speed_mbps = 10;
  std::vector<Finding> f = Check();
  ASSERT_EQ(f.size(), 2u);
  absl::StatusOr<std::vector<Finding>> back = FindingsFromProto(FindingsToProto(f));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, f);
  v1::Finding unspecified;
  EXPECT_FALSE(FindingFromProto(unspecified).ok());
  unspecified.set_severity(v1::FINDING_SEVERITY_ERROR);
  EXPECT_FALSE(FindingFromProto(unspecified).ok()) << "code UNSPECIFIED must be rejected";
  for (int c = 1; c <= static_cast<int>(FindingCode::kLastFindingCode); ++c) {
    EXPECT_EQ(FindingCodeFromName(FindingCodeName(static_cast<FindingCode>(c))).value(), static_cast<FindingCode>(c));
    EXPECT_EQ(v1::FindingCode_Name(static_cast<v1::FindingCode>(c)),
              std::string("FINDING_CODE_") + FindingCodeName(static_cast<FindingCode>(c)));
  }
}

}  // namespace
}  // namespace ferry
