#pragma once
// HA's own log: every HA event of the isolation and VMCP monitors goes to the spdlog logger named
// "ferry-ha", which writes where the agent's default logger writes (stderr, the agent's log file)
// and, where the host has a syslog socket (/dev/log: journald or rsyslog), to syslog under the
// identifier "ferry-ha" (facility daemon), so `journalctl -t ferry-ha` shows HA alone.

#include <memory>

#include <spdlog/logger.h>

namespace ferry::cluster {

inline constexpr char kHaLoggerName[] = "ferry-ha";

// The logger, made and registered with spdlog on first use (also found by spdlog::get("ferry-ha")).
// It takes the default logger's sinks, level and the formatter set with spdlog::set_pattern /
// set_formatter at that moment.
std::shared_ptr<spdlog::logger> HaLog();

// Whether HaLog() also writes to syslog (false on a host without /dev/log).
bool HaLogHasSyslog();

}  // namespace ferry::cluster
