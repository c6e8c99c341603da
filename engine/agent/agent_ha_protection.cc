#include "engine/agent/agent_ha_protection.h"

#include <spdlog/spdlog.h>

#include "engine/agent/host_facts_source.h"
#include "engine/cluster/ha_log.h"

namespace ferry {
namespace {

std::string DatastoreKey(const DatastoreFacts& ds) { return ds.uuid.empty() ? ds.name : ds.uuid; }

}  // namespace

std::vector<cluster::HaVm> AgentHaVms::RunningVms() {
  std::map<std::string, std::string> key_of;  // datastore name here -> its key
  if (auto host = AgentHostFacts(ctx_.config); host.ok()) {
    for (const auto& ds : host->datastores) key_of[ds.name] = DatastoreKey(ds);
  }
  std::vector<cluster::HaVm> out;
  for (const auto& [name, entry] : ctx_.vms.List()) {
    if (!entry->vm || entry->stopping || !entry->outgoing_migration.empty()) continue;
    std::optional<DatastoreVm> home = ctx_.ownership.Find(name);
    if (!home) continue;  // not a datastore VM: nothing another host could restart
    auto key = key_of.find(home->datastore);
    out.push_back({name, key == key_of.end() ? home->datastore : key->second, home->lock_path()});
  }
  return out;
}

std::map<std::string, std::string> AgentHaVms::Datastores() {
  std::map<std::string, std::string> out;
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return out;
  for (const auto& ds : host->datastores) out[DatastoreKey(ds)] = ds.path;
  return out;
}

absl::Status AgentHaVms::PowerOff(const std::string& vm) {
  auto e = ctx_.vms.BeginStop(vm);
  if (!e.ok()) return e.status();
  absl::Status st = (*e)->vm ? (*e)->vm->Stop() : absl::OkStatus();
  ctx_.vms.EndStop(vm, st.ok());
  if (!st.ok()) return st;
  ctx_.ownership.Release(vm);
  spdlog::info("event=vm_stopped vm={} by=ha", vm);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AgentHaProtection>> AgentHaProtection::Start(
    AgentContext& ctx, cluster::EtcdClient& etcd, cluster::ClusterMember& member, const std::string& cluster,
    std::vector<std::string> isolation_addresses, const std::vector<std::string>& etcd_endpoints,
    cluster::RestartHandoff handoff, cluster::HeartbeatWriter& heartbeats) {
  std::unique_ptr<AgentHaProtection> p(new AgentHaProtection(ctx));
  const cluster::ClusterConfig& config = member.config();
  cluster::IsolationOptions iso;
  iso.cluster = cluster;
  iso.host = ctx.config.name;
  iso.isolation_addresses = isolation_addresses.empty() ? etcd_endpoints : std::move(isolation_addresses);
  iso.response = config.isolation_response;
  iso.check_interval = absl::Milliseconds(config.heartbeat_interval_ms);
  // The datastore heartbeats say whether this host, cut off, is isolated or partitioned: the
  // master cannot ask it over the network. `heartbeats` outlives the protection (AgentCluster).
  iso.on_change = [&heartbeats](cluster::IsolationState s) {
    heartbeats.SetOwnView(s == cluster::IsolationState::kConnected ? "" : cluster::IsolationStateName(s));
  };
  auto isolation = cluster::IsolationMonitor::Start(iso, [&member] { return member.state(); }, p->vms_);
  if (!isolation.ok()) return isolation.status();
  p->isolation_ = std::move(*isolation);
  auto vmcp = cluster::VmcpMonitor::Create(cluster::VmcpOptionsFrom(config, cluster, ctx.config.name), etcd, p->vms_,
                                           std::move(handoff));
  if (!vmcp.ok()) return vmcp.status();
  p->vmcp_ = std::move(*vmcp);
  p->vmcp_->StartThread();
  cluster::HaLog()->info("ha: event=protection_started cluster={} host={} isolation_response={} vmcp_pdl={} "
                         "vmcp_apd={} apd_delay_s={}",
                         cluster, ctx.config.name, cluster::IsolationResponseName(config.isolation_response),
                         cluster::PdlResponseName(config.vmcp_pdl), cluster::ApdResponseName(config.vmcp_apd),
                         config.vmcp_apd_delay_s);
  return p;
}

AgentHaProtection::~AgentHaProtection() {
  vmcp_.reset();
  isolation_.reset();
}

}  // namespace ferry
