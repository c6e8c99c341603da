#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/host/cpu_model.h"
#include "engine/host/datastore_id.h"
#include "engine/host/host_facts_proto.h"
#include "engine/host/host_file.h"
#include "engine/host/local_host.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class HostFileTest : public ::testing::Test {
 protected:
  std::string Yaml(const std::string& body) { return tmp_.Write("host.yaml", body); }
  std::string LoadError(const std::string& body) {
    absl::StatusOr<HostFacts> h = LoadHostFacts(Yaml(body));
    EXPECT_FALSE(h.ok());
    return std::string(h.status().message());
  }
  testing::TempDir tmp_;
};

TEST_F(HostFileTest, YamlGivesEveryFact) {
  std::string ds = tmp_.Dir("ds1");
  ASSERT_TRUE(DatastoreUuid(ds).ok());  // identified, as an agent of a host mounting it would
  absl::StatusOr<HostFacts> h = LoadHostFacts(Yaml(R"(
name: esx-a
cpu: {model: Nehalem, features: [avx], mask: [popcnt], vendor: GenuineIntel}
memory: {total: 64GiB, free: 48GiB}
datastores:
  - {name: shared, path: )" + ds + R"(}
vswitches:
  - {name: vSwitch0, uplinks: [eno1], port_groups: [VM Network, prod]}
  - {name: internal, port_groups: [backplane]}
rdm_devices: [/dev/sdb]
migration_interface: {address: 10.0.0.1, link_speed_mbps: 10000}
kvm_capabilities: [KVM_CAP_XSAVE]
)"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->name, "esx-a");
  EXPECT_EQ(h->cpu_vendor, "GenuineIntel");
  EXPECT_THAT(h->cpu_features, Contains("sse4.2"));
  EXPECT_THAT(h->cpu_features, Contains("avx"));
  EXPECT_THAT(h->cpu_features, Not(Contains("popcnt")));
  EXPECT_EQ(h->memory_total_bytes, 64ull << 30);
  EXPECT_EQ(h->memory_free_bytes, 48ull << 30);
  ASSERT_EQ(h->datastores.size(), 1u);
  EXPECT_EQ(h->datastores[0].uuid, *DatastoreUuid(ds));
  ASSERT_EQ(h->vswitches.size(), 2u);
  EXPECT_THAT(h->vswitches[0].port_groups, ElementsAre("VM Network", "prod"));
  EXPECT_TRUE(h->vswitches[1].uplinks.empty());
  EXPECT_THAT(h->rdm_devices, ElementsAre("/dev/sdb"));
  ASSERT_TRUE(h->migration_interface.has_value());
  EXPECT_EQ(h->migration_interface->link_speed_mbps, 10000u);
  EXPECT_THAT(h->kvm_capabilities, ElementsAre("KVM_CAP_XSAVE"));
}

TEST_F(HostFileTest, DefaultCpuIsThisMachinesMinusTheMask) {
  absl::StatusOr<HostFacts> h = LoadHostFacts(Yaml("name: a\nmemory: {total: 1GiB}\ncpu: {mask: [sse4.1]}\n"));
  ASSERT_TRUE(h.ok()) << h.status();
  LocalCpu local = ProbeLocalCpu();
  EXPECT_EQ(h->cpu_vendor, local.vendor);
  EXPECT_THAT(h->cpu_features, Not(Contains("sse4.1")));
  EXPECT_EQ(h->cpu_features.size() + (std::count(local.features.begin(), local.features.end(), "sse4.1")),
            local.features.size());
  EXPECT_FALSE(h->migration_interface.has_value());
}

TEST_F(HostFileTest, MalformedYamlNamesFileAndLine) {
  std::string msg = LoadError("name: a\nmemory: {total: 1GiB\n");
  EXPECT_THAT(msg, HasSubstr("host.yaml"));
  EXPECT_THAT(msg, HasSubstr("line"));
}

TEST_F(HostFileTest, MissingFieldIsNamed) {
  EXPECT_THAT(LoadError("name: a\n"), HasSubstr("host.yaml: memory: missing"));
  EXPECT_THAT(LoadError("memory: {total: 1GiB}\n"), HasSubstr("host.yaml: name: missing"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\ndatastores: [{name: x}]\n"),
              HasSubstr("host.yaml: datastores[0].path: missing"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\nmigration_interface: {address: 1.2.3.4}\n"),
              HasSubstr("migration_interface.link_speed_mbps: missing"));
}

TEST_F(HostFileTest, BadValuesAreNamed) {
  EXPECT_THAT(LoadError("name: a\nmemory: {total: lots}\n"), HasSubstr("memory.total: not a size"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\ncpu: {model: Nehalemm}\n"),
              HasSubstr("host.yaml: cpu.model: unknown CPU model 'Nehalemm'"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\ncpu: {mask: [sse5]}\n"), HasSubstr("cpu.mask[0]"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\ndatastores: [{name: x, path: " + tmp_.Sub("none") + "}]\n"),
              HasSubstr("datastores[0].path"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\nvswitch: []\n"), HasSubstr("vswitch: unknown field"));
  EXPECT_THAT(LoadError("name: a\nmemory: {total: 1GiB}\nkvm_capabilities: [KVM_CAP_NOPE]\n"),
              HasSubstr("kvm_capabilities[0]"));
}

TEST_F(HostFileTest, UnreadableFileIsNamed) {
  absl::StatusOr<HostFacts> h = LoadHostFacts(tmp_.Sub("absent.yaml"));
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("absent.yaml"));
}

TEST_F(HostFileTest, LibvirtTestDriverGivesDatastoresSwitchesMemoryRdmAndInterface) {
  testing::LibvirtNode node;
  node.memory_kib = 4 << 20;
  node.pools = {{"shared", tmp_.Dir("shared")}};
  ASSERT_TRUE(DatastoreUuid(tmp_.Sub("shared")).ok());
  node.nets = {{"vswitch0", "bridge", "br0", {"VM Network", "prod"}}, {"internal", "", "virbr9", {"isolated"}}};
  node.block_devices = {"/dev/sdb"};
  node.iface_ip = "192.168.0.5";
  node.iface_speed = 10000;
  std::string xml = tmp_.Write("node.xml", testing::LibvirtNodeXml(node));
  absl::StatusOr<HostFacts> h = LoadHostFacts("libvirt:test://" + xml);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->memory_total_bytes, 4ull << 30);
  EXPECT_EQ(h->memory_free_bytes, 4ull << 30);
  ASSERT_EQ(h->datastores.size(), 1u);
  EXPECT_EQ(h->datastores[0].name, "shared");
  EXPECT_EQ(h->datastores[0].uuid, *DatastoreUuid(tmp_.Sub("shared")));
  ASSERT_EQ(h->vswitches.size(), 2u);
  for (const VirtualSwitchFacts& sw : h->vswitches) {
    if (sw.name == "vswitch0") {
      EXPECT_THAT(sw.uplinks, ElementsAre("br0"));
      EXPECT_THAT(sw.port_groups, ElementsAre("VM Network", "prod"));
    } else {
      EXPECT_TRUE(sw.uplinks.empty()) << "an isolated network has no uplink";
      EXPECT_THAT(sw.port_groups, ElementsAre("isolated"));
    }
  }
  EXPECT_THAT(h->rdm_devices, ElementsAre("/dev/sdb"));
  ASSERT_TRUE(h->migration_interface.has_value());
  EXPECT_EQ(h->migration_interface->address, "192.168.0.5");
  EXPECT_EQ(h->migration_interface->link_speed_mbps, 10000u);
}

TEST_F(HostFileTest, LibvirtBadUriIsAnError) {
  absl::StatusOr<HostFacts> h = LoadHostFacts("libvirt:test://" + tmp_.Sub("missing.xml"));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("missing.xml"));
}

TEST_F(HostFileTest, ProtoRoundTripKeepsEveryFact) {
  HostFacts f;
  f.name = "h";
  f.cpu_vendor = "AuthenticAMD";
  f.cpu_features = {"avx", "sse4.1"};
  f.memory_total_bytes = 10;
  f.memory_free_bytes = 5;
  f.datastores = {{"ds", "/ds", "uuid-1"}};
  f.vswitches = {{"sw", {"eno1"}, {"pg1", "pg2"}}};
  f.rdm_devices = {"/dev/sdc"};
  f.migration_interface = MigrationInterfaceFacts{"10.0.0.2", 25000};
  f.kvm_capabilities = {"KVM_CAP_XSAVE"};
  f.disk_access = {{"/ds/a.img", false, "no such file"}};
  HostFacts back = HostFactsFromProto(HostFactsToProto(f));
  EXPECT_EQ(HostFactsToProto(back).SerializeAsString(), HostFactsToProto(f).SerializeAsString());
  EXPECT_EQ(back.migration_interface->link_speed_mbps, 25000u);
  EXPECT_EQ(back.vswitches[0].port_groups, f.vswitches[0].port_groups);
  EXPECT_FALSE(HostFactsFromProto(v1::HostFacts()).migration_interface.has_value());
}

}  // namespace
}  // namespace ferry
