// --json-logs: every line parses as JSON and carries the message exactly, whatever it contains.
#include "engine/agent/json_log_formatter.h"

#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

// Logs `text` through a logger with the JSON formatter; returns the line it wrote.
std::string LogLine(const std::string& agent, const std::string& text) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("json-test", sink);
  logger.set_formatter(std::make_unique<JsonLogFormatter>(agent));
  logger.warn("{}", text);
  logger.flush();
  return out.str();
}

TEST(JsonLogFormatterTest, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string text = "refused vm=\"a\\b\" name=\x01\x1f\tline\nbreak } {\"x\":1}";
  std::string line = LogLine("host \"a\"", text);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "a message's newline split the record: " << line;
  nlohmann::json j = nlohmann::json::parse(line);  // throws (fails the test) on invalid JSON
  EXPECT_EQ(j.at("msg").get<std::string>(), text);
  EXPECT_EQ(j.at("agent").get<std::string>(), "host \"a\"");
  EXPECT_EQ(j.at("level").get<std::string>(), "warning");
  EXPECT_THAT(j.at("ts").get<std::string>(), ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}"));
}

TEST(JsonLogFormatterTest, BytesThatAreNotUtf8StillGiveValidJson) {
  std::string line = LogLine("a", std::string("peer sent \xff\xfe name"));
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_THAT(j.at("msg").get<std::string>(), ::testing::StartsWith("peer sent "));
  EXPECT_THAT(j.at("msg").get<std::string>(), ::testing::EndsWith(" name"));
}

}  // namespace
}  // namespace ferry
