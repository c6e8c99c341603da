// Where a host's facts come from, and what a host file argument must look like: libvirt hosts are
// named from their description, libvirt URIs mistyped in the two common ways get an error that
// says how to write them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "engine/host/host_file.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class HostNaming : public ::testing::Test {
 protected:
  std::string NodeXml(const std::string& file) { return tmp_.Write(file, testing::LibvirtNodeXml({})); }
  std::string Error(const std::string& spec) {
    absl::StatusOr<HostFacts> h = LoadHostFacts(spec);
    EXPECT_FALSE(h.ok()) << spec;
    return h.ok() ? "" : std::string(h.status().message());
  }
  testing::TempDir tmp_;
};

TEST_F(HostNaming, LibvirtHostsAreNamedFromTheirDescriptionNotThisMachine) {
  absl::StatusOr<HostFacts> a = LoadHostFacts("libvirt:test://" + NodeXml("esx-a.xml"));
  absl::StatusOr<HostFacts> b = LoadHostFacts("libvirt:test://" + NodeXml("esx-b.xml"));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->name, "esx-a");
  EXPECT_EQ(b->name, "esx-b");
}

TEST_F(HostNaming, FactsRememberTheArgumentTheyWereLoadedFrom) {
  std::string yaml = tmp_.Write("h.yaml", "name: h\nmemory: {total: 1GiB}\n");
  std::string uri = "libvirt:test://" + NodeXml("n.xml");
  EXPECT_EQ(LoadHostFacts(yaml)->origin, yaml);
  EXPECT_EQ(LoadHostFacts(uri)->origin, uri);
}

TEST_F(HostNaming, RelativeTestDriverPathSaysHowToWriteItInsteadOfAskingForACertificate) {
  std::string msg = Error("libvirt:test://relative/path.xml");
  EXPECT_THAT(msg, Not(HasSubstr("CA certificate")));
  EXPECT_THAT(msg, HasSubstr("test:///"));
  EXPECT_THAT(msg, HasSubstr("absolute"));
}

TEST_F(HostNaming, RelativeTestDriverPathToAnExistingFileSuggestsTheFullUri) {
  std::string xml = NodeXml("rel/node.xml");
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(chdir(tmp_.path().c_str()), 0);
  std::string msg = Error("libvirt:test://rel/node.xml");
  ASSERT_EQ(chdir(cwd), 0);
  EXPECT_THAT(msg, HasSubstr("libvirt:test://" + xml));
}

TEST_F(HostNaming, LibvirtUriWithoutThePrefixSaysToAddIt) {
  std::string xml = NodeXml("node.xml");
  EXPECT_THAT(Error("test://" + xml), HasSubstr("libvirt:test://" + xml));
  EXPECT_THAT(Error("qemu:///system"), HasSubstr("libvirt:qemu:///system"));
}

TEST_F(HostNaming, LibvirtDescriptionGivenAsAHostFileSaysToUseTheTestDriver) {
  std::string xml = NodeXml("node.xml");
  EXPECT_THAT(Error(xml), HasSubstr("libvirt:test://" + xml));
}

TEST_F(HostNaming, MissingDescriptionFileIsNamed) {
  std::string msg = Error("libvirt:test://" + tmp_.Sub("missing.xml"));
  EXPECT_THAT(msg, HasSubstr("missing.xml"));
  EXPECT_THAT(msg, HasSubstr("No such file"));
}

TEST_F(HostNaming, LoadingAHostFileNeverWritesIntoItsDatastores) {
  std::string ds = tmp_.Dir("fresh-ds");
  std::string yaml = tmp_.Write("h.yaml", "name: h\nmemory: {total: 1GiB}\ndatastores: [{name: d, path: " + ds + "}]\n");
  absl::StatusOr<HostFacts> read = LoadHostFacts(yaml);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->datastores.size(), 1u);
  EXPECT_EQ(read->datastores[0].uuid, "") << "unidentified, and said so";
  EXPECT_TRUE(std::filesystem::is_empty(ds));
  // The agent, which owns its host's datastores, creates the id.
  absl::StatusOr<HostFacts> owned = LoadHostFacts(yaml, DatastoreIdPolicy::kCreateIfMissing);
  ASSERT_TRUE(owned.ok()) << owned.status();
  EXPECT_EQ(owned->datastores[0].uuid.size(), 36u);
  EXPECT_EQ(LoadHostFacts(yaml)->datastores[0].uuid, owned->datastores[0].uuid);
}

}  // namespace
}  // namespace ferry
