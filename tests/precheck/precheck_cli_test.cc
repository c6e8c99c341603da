// The offline CLI: `migrate precheck --vm --source --destination [--json]` and
// `migrate host cpu-baseline`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/host/datastore_id.h"
#include "tests/host/test_util.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

struct CliRun {
  int exit_code;
  std::string out;  // stdout + stderr
};

CliRun Migrate(const std::string& args) {
  const char* bin = getenv("FERRY_BIN_DIR");
  std::string cmd = std::string(bin ? bin : ".") + "/migrate " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  CliRun r{-1, ""};
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class PrecheckCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string shared = tmp_.Dir("shared");
    EXPECT_TRUE(DatastoreUuid(shared).ok());  // identified, as the agent of a host mounting it would
    tmp_.Write("shared/vm1/disk0.img", std::string(8192, 'x'));
    std::string host = R"(
memory: {total: 8GiB}
cpu: {model: Westmere}
datastores: [{name: shared, path: )" + shared + R"(}]
vswitches: [{name: vs0, uplinks: [eno1], port_groups: [VM Network]}]
)";
    src_ = tmp_.Write("src.yaml", "name: src" + host + "migration_interface: {address: 10.0.0.1, link_speed_mbps: 10000}\n");
    dst_ = tmp_.Write("dst.yaml", "name: dst" + host + "migration_interface: {address: 10.0.0.2, link_speed_mbps: 100}\n");
    vm_ = tmp_.Write("vm.yaml", "name: vm1\nbackend: synthetic\ncpu: {model: Nehalem}\n"
                                "disks: [{kind: file, path: " + shared + "/vm1/disk0.img, size: 8KiB}]\n"
                                "nics: [{mac: '52:54:00:00:00:01', port_group: VM Network}]\n");
  }
  std::string Args(const std::string& vm) { return "precheck --vm " + vm + " --source " + src_ + " --destination " + dst_; }
  testing::TempDir tmp_;
  std::string src_, dst_, vm_;
};

TEST_F(PrecheckCli, WarningsOnlyExitZeroAndPrintATable) {
  CliRun r = Migrate(Args(vm_));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("MIGRATION_LINK_SLOW"));
  EXPECT_THAT(r.out, HasSubstr("0 error(s), 1 warning(s)"));
  EXPECT_EQ(r.out.find("\033["), std::string::npos) << "no color when stdout is not a terminal";
}

TEST_F(PrecheckCli, ErrorsExitThreeAndJsonListsFindings) {
  std::string vm = tmp_.Write("bad-vm.yaml", "name: vm2\nbackend: synthetic\ncpu: {model: Haswell-noTSX}\n"
                                             "disks: [{kind: cdrom, path: /isos/x.iso}]\n");
  CliRun r = Migrate(Args(vm) + " --json");
  ASSERT_EQ(r.exit_code, 3) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out);
  std::set<std::string> codes;
  for (const auto& f : j.at("findings")) {
    codes.insert(f.at("code").get<std::string>());
    EXPECT_TRUE(f.at("severity") == "error" || f.at("severity") == "warning");
    EXPECT_FALSE(f.at("subject").get<std::string>().empty());
    EXPECT_FALSE(f.at("message").get<std::string>().empty());
  }
  EXPECT_TRUE(codes.count("CPU_FEATURE_MISSING"));
  EXPECT_TRUE(codes.count("MEDIA_MOUNTED"));
  EXPECT_TRUE(codes.count("MIGRATION_LINK_SLOW"));
}

TEST_F(PrecheckCli, MalformedInputsNameFileAndFieldAndExitTwo) {
  CliRun r = Migrate(Args(tmp_.Write("mac.yaml", "name: v\nnics: [{mac: '52:54:00:zz:00:01', port_group: p}]\n")));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("mac.yaml: nics[0].mac"));
  r = Migrate(Args(tmp_.Write("model.yaml", "name: v\ncpu: {model: Skylake-Turbo}\n")));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("model.yaml: cpu.model: unknown CPU model 'Skylake-Turbo'"));
  r = Migrate("precheck --vm " + vm_ + " --source " + tmp_.Write("broken.yaml", "name: [\n") + " --destination " + dst_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("broken.yaml: line"));
  r = Migrate("precheck --vm " + vm_ + " --source " + src_ + " --destination " + tmp_.Write("nomem.yaml", "name: d\n"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("nomem.yaml: memory: missing"));
}

TEST_F(PrecheckCli, LibvirtHostFileWorksAsDestination) {
  testing::LibvirtNode node;
  node.pools = {{"shared", tmp_.Sub("shared")}};
  node.nets = {{"vs0", "bridge", "br0", {"VM Network"}}};
  node.iface_ip = "10.0.0.3";
  node.iface_speed = 25000;
  std::string xml = tmp_.Write("dst.xml", testing::LibvirtNodeXml(node));
  CliRun r = Migrate("precheck --vm " + vm_ + " --source " + src_ + " --destination libvirt:test://" + xml);
  // Only a CPU difference is possible (the libvirt host's CPU is this machine's).
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("DATASTORE_NOT_SHARED")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("PORTGROUP")));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("MIGRATION_LINK_SLOW")));
}

TEST_F(PrecheckCli, CpuBaselinePrintsTheCommonModel) {
  std::string a = tmp_.Write("a.yaml", "name: a\nmemory: {total: 1GiB}\ncpu: {model: Haswell-noTSX}\n");
  std::string b = tmp_.Write("b.yaml", "name: b\nmemory: {total: 1GiB}\ncpu: {model: SandyBridge}\n");
  CliRun r = Migrate("host cpu-baseline " + a + " " + b + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("model"), "SandyBridge");
  r = Migrate("host cpu-baseline " + a + " " + tmp_.Sub("none.yaml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("none.yaml"));
}

TEST_F(PrecheckCli, CpuAdviceNamesACommandThatWorksAsPrinted) {
  std::string old_dst = tmp_.Write("old.yaml", "name: old\nmemory: {total: 8GiB}\ncpu: {model: Westmere, mask: [sse4.1]}\n");
  CliRun r = Migrate("precheck --vm " + vm_ + " --source " + src_ + " --destination " + old_dst + " --json");
  ASSERT_EQ(r.exit_code, 3) << r.out;
  std::string advice;
  nlohmann::json report = nlohmann::json::parse(r.out);
  for (const auto& f : report.at("findings")) {
    std::string m = f.at("message");
    size_t at = m.find("`migrate host cpu-baseline ");
    if (f.at("code") == "CPU_FEATURE_MISSING" && at != std::string::npos) {
      advice = m.substr(at + 1, m.find('`', at + 1) - at - 1);
    }
  }
  ASSERT_FALSE(advice.empty()) << r.out;
  CliRun baseline = Migrate(advice.substr(std::string("migrate ").size()));
  EXPECT_EQ(baseline.exit_code, 0) << advice << "\n" << baseline.out;
  // The model the finding names is the one the command prints.
  size_t model_at = r.out.find("CPU model ");
  ASSERT_NE(model_at, std::string::npos) << r.out;
  std::string model = r.out.substr(model_at + 10, r.out.find(',', model_at) - model_at - 10);
  EXPECT_THAT(baseline.out, HasSubstr("model:    " + model + "\n")) << baseline.out;
}

TEST_F(PrecheckCli, OfflinePrecheckNeverWritesIntoADatastore) {
  std::string fresh = tmp_.Dir("fresh");
  tmp_.Write("fresh/vm9/disk0.img", std::string(8192, 'x'));
  std::string host = "memory: {total: 8GiB}\ndatastores: [{name: fresh, path: " + fresh + "}]\n"
                     "migration_interface: {address: 10.0.0.9, link_speed_mbps: 10000}\n";
  std::string a = tmp_.Write("fa.yaml", "name: fa\n" + host), b = tmp_.Write("fb.yaml", "name: fb\n" + host);
  std::string vm = tmp_.Write("vm9.yaml", "name: vm9\nbackend: synthetic\ndisks: [{kind: file, path: " + fresh +
                                             "/vm9/disk0.img}]\n");
  CliRun r = Migrate("precheck --vm " + vm + " --source " + a + " --destination " + b);
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_THAT(r.out, HasSubstr("DATASTORE_UNIDENTIFIED"));
  EXPECT_FALSE(std::filesystem::exists(fresh + "/.ferry-datastore-id")) << r.out;
}

}  // namespace
}  // namespace ferry
