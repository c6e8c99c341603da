#include "engine/agent/agent_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <fstream>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"

namespace ferry {

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot read the agent config file"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping at the top"));
  AgentConfig c;
  auto str = [&](const char* key, std::string& out) -> absl::Status {
    if (!root[key]) return absl::OkStatus();
    if (!root[key].IsScalar()) return absl::InvalidArgumentError(absl::StrCat(path, ": field '", key, "' must be a string"));
    out = root[key].as<std::string>();
    return absl::OkStatus();
  };
  for (auto [key, field] : {std::pair<const char*, std::string*>{"name", &c.name}, {"listen", &c.listen},
                            {"data_dir", &c.data_dir}, {"port_file", &c.port_file},
                            {"host_facts", &c.host_facts}, {"data_listen", &c.data_listen},
                            {"metrics_listen", &c.metrics_listen}}) {
    absl::Status st = str(key, *field);
    if (!st.ok()) return st;
  }
  if (root["tls"]) {
    YAML::Node t = root["tls"];
    if (!t.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": field 'tls' must be a mapping of ca, cert, key"));
    if (t["ca"]) c.tls_ca = t["ca"].as<std::string>();
    if (t["cert"]) c.tls_cert = t["cert"].as<std::string>();
    if (t["key"]) c.tls_key = t["key"].as<std::string>();
  }
  if (root["insecure"]) {
    try {
      c.insecure = root["insecure"].as<bool>();
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": field 'insecure' must be true or false"));
    }
  }
  if (root["connections"]) {
    try {
      int n = root["connections"].as<int>();
      if (n < 0 || n > 16) throw YAML::Exception(YAML::Mark(), "range");
      c.connections = static_cast<uint32_t>(n);
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": field 'connections' must be 0..16"));
    }
  }
  for (auto [key, field, lo, hi] : {std::tuple<const char*, uint32_t*, int, int>{"max_migrations", &c.max_migrations, 1, 64},
                                    {"migration_history", &c.migration_history, 0, 10000},
                                    {"busy_retry_s", &c.busy_retry_s, 1, 86400}}) {
    if (!root[key]) continue;
    try {
      int n = root[key].as<int>();
      if (n < lo || n > hi) throw YAML::Exception(YAML::Mark(), "range");
      *field = static_cast<uint32_t>(n);
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": field '", key, "' must be ", lo, "..", hi));
    }
  }
  if (c.name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": field 'name' is empty"));
  return c;
}

uint32_t DefaultDataConnections() {
  unsigned cores = std::thread::hardware_concurrency();
  return std::clamp<uint32_t>(cores == 0 ? 2 : cores, 2, 8);
}

std::string HostOfAddress(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

std::string HostBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return std::string(absl::StripAsciiWhitespace(id));
}

}  // namespace ferry
