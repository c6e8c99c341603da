// migrate cluster create|join|status|config: a cluster's records in etcd (engine/cluster,
// docs/cluster.md). These talk to etcd directly, with the operator's etcd client certificate.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/agent/certs.h"
#include "engine/cluster/cluster_join_config.h"
#include "engine/cluster/cluster_store.h"
#include "tools/client/cluster_status_render.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {
namespace {

struct EtcdFlags {
  std::string endpoints;
  std::string ca, cert, key;  // default: the global --tls-ca/--tls-cert/--tls-key
};

void AddEtcdFlags(CLI::App* cmd, EtcdFlags& f) {
  cmd->add_option("--etcd-endpoints", f.endpoints, "the cluster's etcd, HOST:PORT,...")->envname("FERRY_ETCD_ENDPOINTS");
  cmd->add_option("--etcd-ca", f.ca, "CA of etcd's certificates (default: --tls-ca)")->envname("FERRY_ETCD_CA");
  cmd->add_option("--etcd-cert", f.cert, "client certificate for etcd (default: --tls-cert)")->envname("FERRY_ETCD_CERT");
  cmd->add_option("--etcd-key", f.key, "its private key (default: --tls-key)")->envname("FERRY_ETCD_KEY");
}

absl::StatusOr<cluster::ClusterJoinConfig> JoinConfigOf(const std::string& name, const EtcdFlags& f, const Globals& g) {
  cluster::ClusterJoinConfig c;
  c.name = name;
  if (f.endpoints.empty()) return absl::InvalidArgumentError("--etcd-endpoints: not given");
  auto endpoints = cluster::ParseEndpoints(f.endpoints);
  if (!endpoints.ok()) return endpoints.status();
  c.etcd_endpoints = *endpoints;
  c.etcd_ca = f.ca.empty() ? g.tls_ca : f.ca;
  c.etcd_cert = f.cert.empty() ? g.tls_cert : f.cert;
  c.etcd_key = f.key.empty() ? g.tls_key : f.key;
  return c;
}

absl::StatusOr<std::unique_ptr<cluster::EtcdClient>> Connect(const cluster::ClusterJoinConfig& c) {
  auto options = cluster::EtcdClientOptionsFor(c);
  if (!options.ok()) return options.status();
  return cluster::EtcdClient::Create(*options);
}

absl::Status ApplySets(cluster::ClusterConfig& config, const std::vector<std::string>& sets) {
  for (const auto& s : sets) {
    auto eq = s.find('=');
    if (eq == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("--set '", s, "' is not FIELD=VALUE"));
    if (auto st = cluster::SetConfigField(config, s.substr(0, eq), s.substr(eq + 1)); !st.ok()) return st;
  }
  return cluster::Validate(config);
}

void PrintConfig(const cluster::ClusterConfig& c) {
  auto j = nlohmann::ordered_json::parse(cluster::ToJson(c));
  for (const auto& [k, v] : j.items()) {
    std::printf("  %-32s %s\n", k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
  }
}

// Sets the `cluster:` section of an agent's YAML config file, keeping the file 0600.
absl::Status WriteAgentClusterSection(const std::string& path, const cluster::ClusterJoinConfig& c) {
  YAML::Node root;
  struct stat st{};
  if (stat(path.c_str(), &st) == 0) {
    try {
      root = YAML::LoadFile(path);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not valid YAML: ", e.what()));
    }
    if (!root.IsMap() && !root.IsNull()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping"));
  }
  YAML::Node section;
  section["name"] = c.name;
  for (const auto& e : c.etcd_endpoints) section["etcd_endpoints"].push_back(e);
  section["etcd_ca"] = c.etcd_ca;
  section["etcd_cert"] = c.etcd_cert;
  section["etcd_key"] = c.etcd_key;
  root["cluster"] = section;
  YAML::Emitter out;
  out << root;
  return WriteFileWithMode(path, std::string(out.c_str()) + "\n", 0600);
}

}  // namespace

void AddClusterCommands(CLI::App& app, Globals& g) {
  CLI::App* cluster = app.add_subcommand("cluster", "HA clusters on etcd: create, join, status, config");
  cluster->require_subcommand(1);

  struct Options {
    std::string name;
    EtcdFlags etcd;
    std::vector<std::string> sets;
    std::string agent_config;
    bool json = false;
  };
  auto opts = std::make_shared<Options>();

  auto* create = cluster->add_subcommand("create", "write a new cluster's configuration into etcd");
  create->add_option("NAME", opts->name, "cluster name")->required();
  create->add_option("--set", opts->sets, "FIELD=VALUE over the defaults (see `cluster config`)");
  AddEtcdFlags(create, opts->etcd);
  create->callback([&g, opts] {
    const char* cmd = "cluster create";
    auto jc = JoinConfigOf(opts->name, opts->etcd, g);
    if (!jc.ok()) { g.exit_code = ReportError(cmd, jc.status(), false); return; }
    cluster::ClusterConfig config;
    if (auto st = ApplySets(config, opts->sets); !st.ok()) { g.exit_code = ReportError(cmd, st, false, {"--set", ""}); return; }
    auto etcd = Connect(*jc);
    if (!etcd.ok()) { g.exit_code = ReportError(cmd, etcd.status(), false); return; }
    if (auto st = cluster::CreateCluster(**etcd, opts->name, config); !st.ok()) {
      g.exit_code = ReportError(cmd, st, false);
      return;
    }
    std::printf("cluster %s created\n", opts->name.c_str());
    PrintConfig(config);
  });

  auto* join = cluster->add_subcommand(
      "join", "check a host can reach the cluster with its certificate, and write the `cluster:` section of its "
              "agent config (the agent joins when it next starts)");
  join->add_option("NAME", opts->name, "cluster name")->required();
  join->add_option("--agent-config", opts->agent_config, "the agent's YAML config file to update (mode 0600)")->required();
  AddEtcdFlags(join, opts->etcd);
  join->callback([&g, opts] {
    const char* cmd = "cluster join";
    auto jc = JoinConfigOf(opts->name, opts->etcd, g);
    if (!jc.ok()) { g.exit_code = ReportError(cmd, jc.status(), false); return; }
    auto etcd = Connect(*jc);
    if (!etcd.ok()) { g.exit_code = ReportError(cmd, etcd.status(), false); return; }
    auto config = cluster::ReadClusterConfig(**etcd, opts->name);
    if (!config.ok()) { g.exit_code = ReportError(cmd, config.status(), false); return; }
    if (auto st = WriteAgentClusterSection(opts->agent_config, *jc); !st.ok()) {
      g.exit_code = ReportError(cmd, st, false, {"--agent-config", opts->agent_config});
      return;
    }
    std::printf("%s: joins cluster %s when the agent starts\n", opts->agent_config.c_str(), opts->name.c_str());
  });

  auto* status = cluster->add_subcommand("status", "the master, each host's state (network and datastore heartbeats), the protected VMs, recent events");
  status->add_option("NAME", opts->name, "cluster name")->required();
  status->add_flag("--json", opts->json, "print JSON");
  AddEtcdFlags(status, opts->etcd);
  status->callback([&g, opts] {
    const char* cmd = "cluster status";
    auto jc = JoinConfigOf(opts->name, opts->etcd, g);
    if (!jc.ok()) { g.exit_code = ReportError(cmd, jc.status(), opts->json); return; }
    auto etcd = Connect(*jc);
    if (!etcd.ok()) { g.exit_code = ReportError(cmd, etcd.status(), opts->json); return; }
    auto s = cluster::ReadClusterStatus(**etcd, opts->name);
    if (!s.ok()) { g.exit_code = ReportError(cmd, s.status(), opts->json); return; }
    if (opts->json) {
      std::printf("%s\n", cluster::ToJson(*s).c_str());
    } else {
      std::fputs(RenderClusterStatus(*s).c_str(), stdout);
    }
  });

  auto* config = cluster->add_subcommand("config", "show the cluster's configuration, or change it with --set");
  config->add_option("NAME", opts->name, "cluster name")->required();
  config->add_option("--set", opts->sets, "FIELD=VALUE (repeatable)");
  config->add_flag("--json", opts->json, "print JSON");
  AddEtcdFlags(config, opts->etcd);
  config->callback([&g, opts] {
    const char* cmd = "cluster config";
    auto jc = JoinConfigOf(opts->name, opts->etcd, g);
    if (!jc.ok()) { g.exit_code = ReportError(cmd, jc.status(), opts->json); return; }
    auto etcd = Connect(*jc);
    if (!etcd.ok()) { g.exit_code = ReportError(cmd, etcd.status(), opts->json); return; }
    auto current = cluster::ReadClusterConfig(**etcd, opts->name);
    if (!current.ok()) { g.exit_code = ReportError(cmd, current.status(), opts->json); return; }
    if (!opts->sets.empty()) {
      if (auto st = ApplySets(*current, opts->sets); !st.ok()) {
        g.exit_code = ReportError(cmd, st, opts->json, {"--set", ""});
        return;
      }
      if (auto st = cluster::WriteClusterConfig(**etcd, opts->name, *current); !st.ok()) {
        g.exit_code = ReportError(cmd, st, opts->json);
        return;
      }
    }
    if (opts->json) {
      std::printf("%s\n", cluster::ToJson(*current).c_str());
    } else {
      PrintConfig(*current);
    }
  });
}

}  // namespace ferry::cli
