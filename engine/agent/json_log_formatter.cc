#include "engine/agent/json_log_formatter.h"

#include <nlohmann/json.hpp>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ferry {

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  auto level = spdlog::level::to_string_view(msg.level);
  nlohmann::ordered_json line = {
      {"ts", absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::FromChrono(msg.time), absl::LocalTimeZone())},
      {"level", std::string(level.data(), level.size())},
      {"agent", agent_},
      {"msg", std::string(msg.payload.data(), msg.payload.size())},
  };
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  dest.append(text.data(), text.data() + text.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>(agent_);
}

}  // namespace ferry
