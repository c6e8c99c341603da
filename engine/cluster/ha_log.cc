#include "engine/cluster/ha_log.h"

#include <sys/stat.h>
#include <syslog.h>

#include <mutex>
#include <vector>

#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace ferry::cluster {
namespace {

bool SyslogSocketPresent() {
  struct stat st{};
  return ::stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
}

std::mutex g_mu;
bool g_syslog = false;

}  // namespace

std::shared_ptr<spdlog::logger> HaLog() {
  std::lock_guard lock(g_mu);
  if (auto existing = spdlog::get(kHaLoggerName)) return existing;
  auto fallback = spdlog::default_logger();
  std::vector<spdlog::sink_ptr> sinks = fallback->sinks();
  if (SyslogSocketPresent()) {
    // The syslog line carries the identifier and priority itself: only the message goes in.
    auto syslog = std::make_shared<spdlog::sinks::syslog_sink_mt>(kHaLoggerName, LOG_PID, LOG_DAEMON,
                                                                  /*enable_formatting=*/false);
    sinks.push_back(syslog);
    g_syslog = true;
  }
  auto logger = std::make_shared<spdlog::logger>(kHaLoggerName, sinks.begin(), sinks.end());
  spdlog::initialize_logger(logger);  // the registry's formatter and level, and spdlog::get finds it
  logger->set_level(fallback->level());
  logger->flush_on(spdlog::level::warn);
  return logger;
}

bool HaLogHasSyslog() {
  (void)HaLog();
  std::lock_guard lock(g_mu);
  return g_syslog;
}

}  // namespace ferry::cluster
