#include "engine/cluster/cluster_join_config.h"

#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ferry::cluster {
namespace {

absl::StatusOr<std::string> ReadPem(const char* option, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat("cluster: ", option, " is not set"));
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cluster: cannot read ", option, " file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("cluster: ", option, " file ", path, " is not PEM"));
  }
  return ss.str();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEndpoints(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::string e(absl::StripAsciiWhitespace(part));
    if (e.empty()) return absl::InvalidArgumentError(absl::StrCat("etcd endpoints '", text, "' has an empty entry"));
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<ClusterJoinConfig> LoadClusterJoinConfig(const std::string& path) {
  ClusterJoinConfig c;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (!root.IsMap() || !root["cluster"]) return c;
  YAML::Node n = root["cluster"];
  if (!n.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": field 'cluster' must be a mapping"));
  try {
    for (const auto& item : n) {
      const std::string key = item.first.as<std::string>();
      if (key == "name") {
        c.name = item.second.as<std::string>();
      } else if (key == "etcd_endpoints") {
        if (item.second.IsSequence()) {
          for (const auto& e : item.second) c.etcd_endpoints.push_back(e.as<std::string>());
        } else {
          auto parsed = ParseEndpoints(item.second.as<std::string>());
          if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": cluster.", parsed.status().message()));
          c.etcd_endpoints = *parsed;
        }
      } else if (key == "isolation_addresses") {
        if (!item.second.IsSequence()) {
          return absl::InvalidArgumentError(absl::StrCat(path, ": cluster.isolation_addresses must be a list of HOST:PORT"));
        }
        for (const auto& e : item.second) c.isolation_addresses.push_back(e.as<std::string>());
      } else if (key == "etcd_ca") {
        c.etcd_ca = item.second.as<std::string>();
      } else if (key == "etcd_cert") {
        c.etcd_cert = item.second.as<std::string>();
      } else if (key == "etcd_key") {
        c.etcd_key = item.second.as<std::string>();
      } else {
        return absl::InvalidArgumentError(absl::StrCat(path, ": unknown field cluster.", key));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field 'cluster': ", e.what()));
  }
  return c;
}

absl::StatusOr<EtcdClientOptions> EtcdClientOptionsFor(const ClusterJoinConfig& config) {
  EtcdClientOptions o;
  o.endpoints = config.etcd_endpoints;
  auto ca = ReadPem("--etcd-ca", config.etcd_ca);
  if (!ca.ok()) return ca.status();
  auto cert = ReadPem("--etcd-cert", config.etcd_cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadPem("--etcd-key", config.etcd_key);
  if (!key.ok()) return key.status();
  o.tls = {*ca, *cert, *key};
  return o;
}

}  // namespace ferry::cluster
