// LoadAgentConfig (engine/agent/agent_config.h): the bounded numeric settings, busy_retry_s among them.
#include "engine/agent/agent_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace ferry {
namespace {

std::string WriteConfig(const std::string& text) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) /
                            ("agent-config-" + std::to_string(::getpid()) + ".yaml"))
                               .string();
  std::ofstream(path) << text;
  return path;
}

TEST(AgentConfig, BusyRetryDefaultsToFiveMinutesAndIsSetInSeconds) {
  auto plain = LoadAgentConfig(WriteConfig("name: host-a\n"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->busy_retry_s, 300u);
  auto set = LoadAgentConfig(WriteConfig("name: host-a\nbusy_retry_s: 42\n"));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->busy_retry_s, 42u);
}

TEST(AgentConfig, ABusyRetryOutsideItsRangeIsRefusedNamingTheField) {
  for (const char* bad : {"0", "86401", "soon"}) {
    auto c = LoadAgentConfig(WriteConfig(std::string("name: host-a\nbusy_retry_s: ") + bad + "\n"));
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("busy_retry_s"), std::string::npos) << c.status();
  }
}

}  // namespace
}  // namespace ferry
