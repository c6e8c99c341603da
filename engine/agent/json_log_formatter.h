#pragma once
// The agent's --json-logs format: one JSON object per line,
//   {"ts":"2026-12-02T19:40:01.123","level":"info","agent":"esx-a","msg":"event=... vm=..."}
// with every string escaped by nlohmann::json (quotes, backslashes, control characters) and bytes
// that are not UTF-8 replaced, so any VM name or peer's error message still gives valid JSON.

#include <memory>
#include <string>

#include <spdlog/formatter.h>

namespace ferry {

class JsonLogFormatter : public spdlog::formatter {
 public:
  explicit JsonLogFormatter(std::string agent) : agent_(std::move(agent)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;

 private:
  std::string agent_;
};

}  // namespace ferry
