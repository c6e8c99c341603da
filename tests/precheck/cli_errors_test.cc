// Errors a program can read: with --json every command prints {"error": {...}} on stdout (nothing
// on stderr) with the exit code of the text form; text errors share one prefix style.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "tests/host/test_util.h"
#include "tests/precheck/cli_run.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::MigrateRun;
using testing::RunMigrate;

// The error object of a --json run; fails the test when stdout is anything else.
nlohmann::json ErrorOf(const MigrateRun& r) {
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_object() && j.contains("error")) << "stdout: " << r.out << "\nstderr: " << r.err;
  if (!j.is_object() || !j.contains("error")) return nlohmann::json::object();
  nlohmann::json e = j.at("error");
  for (const char* key : {"code", "message", "file", "field"}) {
    EXPECT_TRUE(e.contains(key) && e.at(key).is_string()) << key << " in " << r.out;
  }
  return e;
}

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = tmp_.Write("host.yaml", "name: h\nmemory: {total: 8GiB}\n");
    vm_ = tmp_.Write("vm.yaml", "name: vm1\nbackend: synthetic\n");
  }
  std::string Precheck(const std::string& vm, const std::string& src, const std::string& dst) {
    return "precheck --vm " + vm + " --source " + src + " --destination " + dst;
  }
  testing::TempDir tmp_;
  std::string host_, vm_;
};

TEST_F(CliErrors, MissingVmFileIsJsonOnStdoutWithFileAndOption) {
  std::string missing = tmp_.Sub("absent-vm.yaml");
  MigrateRun r = RunMigrate(Precheck(missing, host_, host_) + " --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "");
  nlohmann::json e = ErrorOf(r);
  EXPECT_EQ(e.value("code", ""), "not_found");
  EXPECT_EQ(e.value("file", ""), missing);
  EXPECT_EQ(e.value("field", ""), "--vm");
  EXPECT_THAT(e.value("message", ""), HasSubstr("absent-vm.yaml"));
}

TEST_F(CliErrors, FieldOfABadHostFileIsNamed) {
  std::string bad = tmp_.Write("bad-host.yaml", "name: h\nmemory: {total: lots}\n");
  MigrateRun r = RunMigrate(Precheck(vm_, host_, bad) + " --json");
  EXPECT_EQ(r.exit_code, 2);
  nlohmann::json e = ErrorOf(r);
  EXPECT_EQ(e.value("code", ""), "invalid_argument");
  EXPECT_EQ(e.value("file", ""), bad);
  EXPECT_EQ(e.value("field", ""), "memory.total");
  EXPECT_THAT(e.value("message", ""), HasSubstr("not a size"));
}

TEST_F(CliErrors, TextErrorsShareOnePrefixWhicheverOptionIsWrong) {
  std::string missing = tmp_.Sub("absent.yaml");
  MigrateRun vm = RunMigrate(Precheck(missing, host_, host_));
  MigrateRun src = RunMigrate(Precheck(vm_, missing, host_));
  MigrateRun dst = RunMigrate(Precheck(vm_, host_, missing));
  for (const MigrateRun* r : {&vm, &src, &dst}) {
    EXPECT_EQ(r->exit_code, 2);
    EXPECT_EQ(r->out, "");
  }
  EXPECT_THAT(vm.err, StartsWith("migrate precheck: --vm: "));
  EXPECT_THAT(src.err, StartsWith("migrate precheck: --source: "));
  EXPECT_THAT(dst.err, StartsWith("migrate precheck: --destination: "));
}

TEST_F(CliErrors, UsageErrorsAreJsonToo) {
  MigrateRun r = RunMigrate("precheck --vm " + vm_ + " --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(ErrorOf(r).value("code", ""), "usage");
  r = RunMigrate("precheck --no-such-option --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(ErrorOf(r).value("code", ""), "usage");
  EXPECT_THAT(ErrorOf(r).value("message", ""), HasSubstr("--no-such-option"));
}

TEST_F(CliErrors, CpuBaselineErrorsAreJson) {
  MigrateRun r = RunMigrate("host cpu-baseline " + host_ + " " + tmp_.Sub("esx-b") + " --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(ErrorOf(r).value("file", ""), tmp_.Sub("esx-b"));
}

TEST_F(CliErrors, MissingLibvirtDescriptionIsOneLineWithoutLibxmlNoise) {
  std::string missing = tmp_.Sub("missing.xml");
  MigrateRun r = RunMigrate("host cpu-baseline libvirt:test://" + missing);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, StartsWith("migrate host cpu-baseline: "));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("missing.xml"));
}

TEST_F(CliErrors, AgentCommandsReportJsonErrors) {
  // No agent named: bad usage, exit 2.
  MigrateRun r = RunMigrate("vm list --json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(ErrorOf(r).value("code", ""), "invalid_argument");
  EXPECT_THAT(ErrorOf(r).value("message", ""), HasSubstr("--agent"));
  // An agent that is not there: the operation failed, exit 1. Port 1 on loopback refuses at once.
  r = RunMigrate("--insecure --agent 127.0.0.1:1 vm show x --json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorOf(r).value("code", ""), "unavailable");
  r = RunMigrate("--insecure --agent 127.0.0.1:1 precheck x --to 127.0.0.1:2 --json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(ErrorOf(r).value("code", ""), "unavailable");
  // The same failure as text: on stderr (after --insecure's log line), nothing on stdout, the same
  // exit code.
  r = RunMigrate("--insecure --agent 127.0.0.1:1 vm show x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("\nmigrate vm show: "));
}

}  // namespace
}  // namespace ferry
