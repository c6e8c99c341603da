// The `migrate` CLI against real agents: `migrate demo` and `migrate vm migrate` show the data
// connections and the auto-converge throttle in their progress lines and in --json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_util.h"

namespace ferry::e2e {
namespace {

using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr: progress lines and errors
};

// Runs `$FERRY_BIN_DIR/migrate args`, stdout and stderr apart (stderr is not a terminal, so
// progress comes one line per phase or round).
CliRun Migrate(const std::string& args) {
  const char* bin = std::getenv("FERRY_BIN_DIR");
  std::string err_path = (std::filesystem::temp_directory_path() / "ferry-cli-stderr-XXXXXX").string();
  int fd = mkstemp(err_path.data());
  CliRun r;
  if (fd < 0) return r;
  close(fd);
  std::string cmd = std::string(bin ? bin : ".") + "/migrate " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::ifstream in(err_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_path);
  return r;
}

// The JSON document `migrate ... --json` printed (failing the test when it is not one).
nlohmann::json ParseJson(const CliRun& r) {
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON:\n" << r.out << "\nstderr:\n" << r.err;
  return j;
}

// Every part of the pause, as `migrate demo --json` names them.
void ExpectPauseParts(const nlohmann::json& j) {
  ASSERT_TRUE(j.contains("pause_ms")) << j.dump(2);
  for (const char* part : {"vcpu_pause", "dirty_log", "final_pages", "state_save", "state_transfer",
                           "wait_final_pages", "state_load", "resume", "first_instruction"}) {
    ASSERT_TRUE(j["pause_ms"].contains(part)) << part;
    EXPECT_GE(j["pause_ms"][part].get<double>(), 0) << part;
  }
}

constexpr char kDemo[] = "demo --backend synthetic --memory 128MiB --working-set 16MiB --warmup 0.5";

TEST(MigrateDemoCli, JsonReportsDataConnectionsEncryptionPauseAndThrottle) {
  CliRun r = Migrate(std::string(kDemo) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  nlohmann::json j = ParseJson(r);
  ASSERT_TRUE(j.is_object());
  EXPECT_GE(j.at("connections").get<int>(), 1);
  EXPECT_TRUE(j.at("encrypted").get<bool>());
  EXPECT_THAT(j.at("transport").get<std::string>(), ::testing::StartsWith("data+aes-gcm x"));
  EXPECT_TRUE(j.at("zero_copy").is_boolean());
  EXPECT_TRUE(j.at("hole_pages").is_number());
  EXPECT_GT(j.at("hole_pages").get<uint64_t>(), 0u) << "most of a fresh 128 MiB guest was never touched";
  EXPECT_TRUE(j.at("max_throttle_percent").is_number());
  ASSERT_TRUE(j.at("throttle_by_round").is_array());
  EXPECT_EQ(j.at("throttle_by_round").size(), j.at("rounds").get<size_t>());
  ExpectPauseParts(j);
  EXPECT_TRUE(j.at("guest_verified").get<bool>());
}

TEST(MigrateDemoCli, GrpcTransportUsesNoDataConnection) {
  CliRun r = Migrate(std::string(kDemo) + " --json --transport grpc");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  nlohmann::json j = ParseJson(r);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.at("connections").get<int>(), 0);
  EXPECT_EQ(j.at("transport").get<std::string>(), "grpc+tls");
  EXPECT_TRUE(j.at("encrypted").get<bool>());
  ExpectPauseParts(j);
  EXPECT_TRUE(j.at("guest_verified").get<bool>());
}

TEST(MigrateDemoCli, ProgressLinesShowConnectionsAndThrottle) {
  CliRun r = Migrate(std::string(kDemo) + " --connections 3");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("on 3 connections")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("throttle 0%")) << r.err;
  EXPECT_THAT(r.out, HasSubstr("data+aes-gcm x3")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("pause parts:")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("guest verified: yes")) << r.out;
}

TEST(MigrateDemoCli, BadDataPathFlagsExitTwoNamingTheFlag) {
  CliRun r = Migrate(std::string(kDemo) + " --transport foo");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--transport")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("foo")) << r.err;

  r = Migrate(std::string(kDemo) + " --transport grpc --connections 2");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--connections")) << r.err;

  r = Migrate(std::string(kDemo) + " --connections 17");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--connections")) << r.err;
}

// `migrate vm migrate` against agents this test started.
class MigrateVmCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = cli::LocalCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    auto a = cluster_->Stub(0);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(CreateVm(**a, GuestSpec("vm1", v1::BACKEND_KIND_SYNTHETIC, 128, 16, 50)).ok());
    ASSERT_TRUE(WaitForHeartbeats(**a, "vm1", 5, 20));
  }

  // `migrate --agent <agent i> ... vm migrate vm1 --to <agent j> <flags>` with the client certificate.
  CliRun MigrateVm(int from, int to, const std::string& flags) {
    const cli::ClientTls& tls = cluster_->client_tls();
    std::string globals = "--agent " + cluster_->address(from) + " --agent-name " + cluster_->name(from) +
                          " --tls-ca " + tls.ca + " --tls-cert " + tls.cert + " --tls-key " + tls.key;
    return Migrate(globals + " vm migrate vm1 --to " + cluster_->address(to) + " --to-name " + cluster_->name(to) +
                   " " + flags);
  }

  std::unique_ptr<cli::LocalCluster> cluster_;
};

TEST_F(MigrateVmCli, JsonAndProgressShowConnectionsAndThrottleOnBothTransports) {
  // There on three data connections, statistics as JSON.
  CliRun r = MigrateVm(0, 1, "--connections 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  nlohmann::json j = ParseJson(r);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.at("connections").get<int>(), 3);
  EXPECT_EQ(j.at("transport").get<std::string>(), "data+aes-gcm x3");
  EXPECT_TRUE(j.at("encrypted").get<bool>());
  EXPECT_TRUE(j.at("max_throttle_percent").is_number());
  EXPECT_TRUE(j.contains("pause"));
  ASSERT_TRUE(j.at("round_stats").is_array());
  ASSERT_FALSE(j.at("round_stats").empty());
  EXPECT_TRUE(j.at("round_stats")[0].contains("throttle_percent"));

  // And back on the gRPC stream, with the progress lines.
  r = MigrateVm(1, 0, "--transport grpc --no-auto-converge");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("on the gRPC stream")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("throttle 0%")) << r.err;
  EXPECT_THAT(r.out, HasSubstr("grpc+tls")) << r.out;

  auto a = cluster_->Stub(0);
  ASSERT_TRUE(a.ok());
  ExpectGuestHealthy(**a, "vm1", 0.5);
}

TEST_F(MigrateVmCli, BadTransportExitsTwoAndLeavesTheVmWhereItIs) {
  CliRun r = MigrateVm(0, 1, "--transport foo");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--transport")) << r.err;
  auto a = cluster_->Stub(0);
  ASSERT_TRUE(a.ok());
  ExpectGuestHealthy(**a, "vm1", 0.3);
}

TEST_F(MigrateVmCli, JsonErrorsFromAnAgentAreAnObjectOnStdout) {
  const cli::ClientTls& tls = cluster_->client_tls();
  std::string globals = "--agent " + cluster_->address(0) + " --agent-name " + cluster_->name(0) + " --tls-ca " +
                        tls.ca + " --tls-cert " + tls.cert + " --tls-key " + tls.key;
  CliRun r = Migrate(globals + " vm show no-such-vm --json");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  nlohmann::json j = ParseJson(r);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.out << r.err;
  EXPECT_EQ(j.at("error").at("code"), "not_found");
  EXPECT_THAT(j.at("error").at("message").get<std::string>(), HasSubstr("no-such-vm"));
  // The same error as text: one "migrate vm show:" line on stderr, the same exit code.
  CliRun text = Migrate(globals + " vm show no-such-vm");
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_EQ(text.out, "");
  EXPECT_THAT(text.err, HasSubstr("migrate vm show: "));
  // A refused request (bad flag value) keeps its exit code 2 in JSON too.
  r = MigrateVm(0, 1, "--transport foo --json");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  j = ParseJson(r);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.out << r.err;
  EXPECT_EQ(j.at("error").at("code"), "invalid_argument");
}

}  // namespace
}  // namespace ferry::e2e
