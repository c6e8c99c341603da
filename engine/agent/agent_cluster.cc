#include "engine/agent/agent_cluster.h"

#include <sys/stat.h>

#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/agent/host_facts_source.h"
#include "engine/cluster/cluster_events.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/cluster_store.h"
#include "engine/host/host_memory.h"
#include "engine/storage/datastore_vm.h"
#include "engine/storage/vm_lock.h"
#include "proto/ferry/v1/agent.grpc.pb.h"

namespace ferry {
namespace {

constexpr int kStartVmTimeoutS = 60;  // a restart boots a VM (and its VMM process)

std::vector<cluster::MountedDatastore> Mounted(const HostFacts& facts) {
  std::vector<cluster::MountedDatastore> out;
  for (const DatastoreFacts& d : facts.datastores) {
    struct stat st {};
    uint64_t device = stat(d.path.c_str(), &st) == 0 ? st.st_dev : 0;
    out.push_back({d.uuid, d.path, d.read_only, device});
  }
  return out;
}

}  // namespace

uint64_t HaFreeMemoryBytes(AgentContext& ctx) {
  uint64_t running = 0;
  for (const auto& [name, e] : ctx.vms.List()) {
    if (e && e->vm) running += e->vm->spec().memory_bytes;
  }
  if (!ctx.config.host_facts.empty()) {
    auto facts = AgentHostFacts(ctx.config);
    if (!facts.ok()) return 0;
    uint64_t base = facts->memory_free_bytes ? facts->memory_free_bytes : facts->memory_total_bytes;
    return base > running ? base - running : 0;
  }
  auto available = ReadMemAvailableBytes();
  if (!available.ok()) return 0;
  uint64_t promised = ctx.vms.OutstandingMemoryBytes();
  return *available > promised ? *available - promised : 0;
}

absl::StatusOr<std::unique_ptr<AgentCluster>> AgentCluster::Join(AgentContext& ctx, cluster::ClusterJoinConfig join,
                                                                  const std::string& agent_address) {
  const AgentConfig& agent = ctx.config;
  if (join.etcd_ca.empty()) join.etcd_ca = agent.tls_ca;
  if (join.etcd_cert.empty()) join.etcd_cert = agent.tls_cert;
  if (join.etcd_key.empty()) join.etcd_key = agent.tls_key;
  auto options = cluster::EtcdClientOptionsFor(join);
  if (!options.ok()) return options.status();
  auto etcd = cluster::EtcdClient::Create(*options);
  if (!etcd.ok()) return etcd.status();
  std::unique_ptr<AgentCluster> c(new AgentCluster(ctx, join.name));
  c->etcd_ = std::move(*etcd);
  cluster::ClusterMemberOptions member_options{join.name, agent.name, agent_address, nullptr};
  AgentCluster* self = c.get();
  member_options.report = [self] { return self->Report(); };
  // The writer exists before the member reports where it heartbeats.
  auto config = cluster::ReadClusterConfig(*c->etcd_, join.name);
  const absl::Duration interval = absl::Milliseconds(config.ok() ? config->heartbeat_interval_ms : 1000);
  c->heartbeats_ = std::make_unique<cluster::HeartbeatWriter>(join.name, agent.name, interval);
  c->ChooseHeartbeatDatastores();
  auto member = cluster::ClusterMember::Join(*c->etcd_, member_options);
  if (!member.ok()) {
    return absl::Status(member.status().code(),
                        absl::StrCat("cannot join cluster '", join.name, "' through etcd at ",
                                     absl::StrJoin(join.etcd_endpoints, ","), ": ", member.status().message()));
  }
  c->member_ = std::move(*member);
  cluster::RestartCoordinatorOptions r;
  r.cluster = join.name;
  r.host = agent.name;
  r.interval = interval;
  r.datastores = [self] {
    std::map<std::string, std::string> out;
    auto facts = AgentHostFacts(self->ctx_.config);
    if (facts.ok()) {
      for (const auto& d : facts->datastores) {
        if (!d.uuid.empty()) out[d.uuid] = d.path;
      }
    }
    return out;
  };
  r.start_vm = [self](const cluster::HostRecord& target, const cluster::ProtectedVm& vm) {
    return self->StartOn(target, vm);
  };
  r.lock_held = [](const std::string& vm_dir) -> absl::StatusOr<bool> {
    auto holder = VmLock::CurrentHolder(vm_dir + "/" + kVmLockFile);
    if (!holder.ok()) return holder.status();
    return holder->has_value();
  };
  c->restarts_ = std::make_unique<cluster::RestartCoordinator>(std::move(r));
  // Isolation response and VMCP (agent_ha_protection.h); a VMCP "power off and restart" goes
  // through the master's restart path.
  auto protection = AgentHaProtection::Start(
      ctx, *c->etcd_, *c->member_, join.name, join.isolation_addresses, join.etcd_endpoints,
      [self](const std::string& vm, const std::string& reason) {
        return cluster::RequestRestart(*self->etcd_, self->cluster_, vm, self->ctx_.config.name, reason);
      },
      *c->heartbeats_);
  if (!protection.ok()) return protection.status();
  c->protection_ = std::move(*protection);
  c->thread_ = std::thread([self] { self->Run(); });
  spdlog::info("ha: event=cluster_join cluster={} host={} etcd={}", join.name, agent.name,
               absl::StrJoin(join.etcd_endpoints, ","));
  return c;
}

AgentCluster::~AgentCluster() {
  protection_.reset();  // no isolation or VMCP response while leaving
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (member_) member_->Leave();
  heartbeats_.reset();
}

void AgentCluster::Run() {
  const absl::Duration interval = absl::Milliseconds(member_->config().heartbeat_interval_ms);
  bool was_master = false;
  while (true) {
    ChooseHeartbeatDatastores();
    ClaimRunningVms();
    const bool master = member_->state() == cluster::HostState::kMaster;
    if (master && !was_master) restarts_->Reset();
    if (master) restarts_->Step(*etcd_);
    was_master = master;
    std::unique_lock lock(mu_);
    if (stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(interval), [this] { return stop_; })) return;
  }
}

void AgentCluster::ChooseHeartbeatDatastores() {
  auto facts = AgentHostFacts(ctx_.config);
  if (!facts.ok()) return;
  std::map<std::string, int> seeing;
  if (member_) {  // before joining: by this host's own view only
    auto hosts = etcd_->GetPrefix(cluster::ClusterKeys(cluster_).hosts());
    if (hosts.ok()) {
      for (const auto& kv : *hosts) {
        auto record = cluster::HostRecordFromJson(kv.value);
        if (!record.ok()) continue;
        for (const auto& id : record->datastore_ids) ++seeing[id];
      }
    }
  }
  const int count = member_ ? static_cast<int>(member_->config().heartbeat_datastores) : 2;
  auto chosen = cluster::ChooseHeartbeatDatastores(Mounted(*facts), seeing, count);
  std::vector<std::string> before, after;
  for (const auto& d : heartbeats_->datastores()) before.push_back(d.path);
  for (const auto& d : chosen) after.push_back(d.path);
  if (before != after) {
    spdlog::info("ha: event=heartbeat_datastores cluster={} host={} datastores={}", cluster_, ctx_.config.name,
                 absl::StrJoin(after, ","));
  }
  heartbeats_->SetDatastores(std::move(chosen));
}

cluster::HostReport AgentCluster::Report() {
  cluster::HostReport r;
  r.free_memory_bytes = HaFreeMemoryBytes(ctx_);
  auto facts = AgentHostFacts(ctx_.config);
  if (facts.ok()) {
    for (const auto& d : facts->datastores) {
      if (!d.uuid.empty()) r.datastore_ids.push_back(d.uuid);
    }
  }
  for (const auto& d : heartbeats_->datastores()) r.heartbeat_datastore_ids.push_back(d.uuid);
  return r;
}

void AgentCluster::ClaimRunningVms() {
  auto vms = etcd_->GetPrefix(cluster::ClusterKeys(cluster_).vms());
  if (!vms.ok()) return;
  const std::string& me = ctx_.config.name;
  for (const auto& kv : *vms) {
    auto record = cluster::ProtectedVmFromJson(kv.value);
    if (!record.ok()) continue;
    if (record->host == me && record->state == cluster::ProtectedVmState::kRunning) {
      ReconcileGoneVm(*record);
      continue;
    }
    auto entry = ctx_.vms.Find(record->vm);
    std::optional<DatastoreVm> home = ctx_.ownership.Find(record->vm);
    if (!entry || !entry->vm || !home) continue;
    auto claimed = cluster::UpdateProtectedVm(*etcd_, cluster_, record->vm, [&](cluster::ProtectedVm& r) {
      if (r.host == me && r.state == cluster::ProtectedVmState::kRunning) return false;
      r.host = me;
      r.state = cluster::ProtectedVmState::kRunning;
      r.dir = home->dir;
      r.datastore = home->datastore;
      r.target.clear();
      r.attempts = 0;
      r.detail = absl::StrCat("runs on ", me);
      return true;
    });
    if (claimed.ok()) {
      spdlog::info("ha: event=protected_vm_claimed cluster={} vm={} host={}", cluster_, record->vm, me);
    }
  }
}

void AgentCluster::ReconcileGoneVm(const cluster::ProtectedVm& record) {
  auto entry = ctx_.vms.Find(record.vm);
  if (entry && entry->vm) {
    gone_rounds_.erase(record.vm);
    return;
  }
  // A migration hands the lock over at commit: a held lock means it runs elsewhere (its new host
  // claims it); two rounds let a stop or a commit in flight settle first.
  auto holder = VmLock::CurrentHolder(record.dir + "/" + kVmLockFile);
  if (!holder.ok() || holder->has_value()) {
    gone_rounds_.erase(record.vm);
    return;
  }
  if (++gone_rounds_[record.vm] < 2) return;
  gone_rounds_.erase(record.vm);
  const std::string& me = ctx_.config.name;
  const std::string reason = absl::StrCat("recorded running on ", me, " but gone from it (VMM or host restarted)");
  auto updated = cluster::UpdateProtectedVm(*etcd_, cluster_, record.vm, [&](cluster::ProtectedVm& r) {
    if (r.host != me || r.state != cluster::ProtectedVmState::kRunning) return false;
    r.state = cluster::ProtectedVmState::kRestartRequested;
    r.exclude_host.clear();
    r.target.clear();
    r.attempts = 0;
    r.detail = reason;
    return true;
  });
  if (updated.ok() && updated->state == cluster::ProtectedVmState::kRestartRequested) {
    spdlog::warn("ha: event=protected_vm_gone cluster={} vm={} host={} (restart requested)", cluster_, record.vm, me);
    (void)cluster::RecordClusterEvent(*etcd_, cluster_, {0, me, "protected_vm_gone", record.vm, reason});
  }
}

absl::Status AgentCluster::StartOn(const cluster::HostRecord& target, const cluster::ProtectedVm& vm) {
  if (!ctx_.dial_peer) return absl::FailedPreconditionError("this agent cannot dial its peers");
  auto channel = ctx_.dial_peer(target.address, target.host);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Agent::NewStub(*channel);
  grpc::ClientContext rpc;
  rpc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(kStartVmTimeoutS));
  v1::StartVmRequest req;
  req.set_name(vm.vm);
  req.set_check_memory(true);
  v1::VmInfo info;
  grpc::Status st = stub->StartVm(&rpc, req, &info);
  if (st.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
}

absl::StatusOr<cluster::ProtectedVm> AgentCluster::Protect(const std::string& name,
                                                           cluster::RestartPriority priority) {
  auto facts = AgentHostFacts(ctx_.config);
  if (!facts.ok()) return facts.status();
  cluster::ProtectedVm vm;
  vm.vm = name;
  vm.priority = priority;
  vm.host = ctx_.config.name;
  std::optional<DatastoreVm> home = ctx_.ownership.Find(name);
  auto entry = ctx_.vms.Find(name);
  if (home && entry && entry->vm) {
    vm.state = cluster::ProtectedVmState::kRunning;
  } else {
    auto defined = FindDatastoreVm(*facts, name);
    if (!defined.ok()) {
      return absl::Status(defined.status().code(),
                          absl::StrCat("vm ", name, " cannot be protected: only a VM defined on a datastore can (",
                                       defined.status().message(), ")"));
    }
    home = *defined;
    vm.state = cluster::ProtectedVmState::kPoweredOff;
  }
  vm.datastore = home->datastore;
  vm.dir = home->dir;
  vm.memory_bytes = home->spec.memory_bytes;
  for (const auto& d : facts->datastores) {
    if (d.name == home->datastore) vm.datastore_id = d.uuid;
  }
  auto config = cluster::ReadClusterConfig(*etcd_, cluster_);
  if (!config.ok()) return config.status();
  auto existing = etcd_->GetPrefix(cluster::ClusterKeys(cluster_).vms());
  if (!existing.ok()) return existing.status();
  uint32_t on_datastore = 0;
  for (const auto& kv : *existing) {
    auto other = cluster::ProtectedVmFromJson(kv.value);
    if (other.ok() && other->vm != name && other->datastore_id == vm.datastore_id) ++on_datastore;
  }
  if (on_datastore >= config->max_protected_vms_per_datastore) {
    return absl::ResourceExhaustedError(absl::StrCat("datastore ", vm.datastore, " already has ", on_datastore,
                                                     " protected VMs (max_protected_vms_per_datastore)"));
  }
  if (absl::Status st = cluster::ProtectVm(*etcd_, cluster_, vm); !st.ok()) return st;
  spdlog::info("ha: event=vm_protected cluster={} vm={} priority={} host={} state={} dir={}", cluster_, name,
               cluster::RestartPriorityName(priority), vm.host, cluster::ProtectedVmStateName(vm.state), vm.dir);
  return vm;
}

absl::Status AgentCluster::Unprotect(const std::string& name) {
  auto kv = etcd_->Get(cluster::ClusterKeys(cluster_).vm(name));
  if (!kv.ok()) return kv.status();
  if (!kv->has_value()) return absl::NotFoundError(absl::StrCat("vm ", name, " is not protected in cluster ", cluster_));
  if (absl::Status st = cluster::UnprotectVm(*etcd_, cluster_, name); !st.ok()) return st;
  spdlog::info("ha: event=vm_unprotected cluster={} vm={}", cluster_, name);
  return absl::OkStatus();
}

void AgentCluster::OnVmStopped(const std::string& name) {
  auto updated = cluster::UpdateProtectedVm(*etcd_, cluster_, name, [&](cluster::ProtectedVm& r) {
    if (r.host != ctx_.config.name) return false;
    r.state = cluster::ProtectedVmState::kPoweredOff;
    r.detail = absl::StrCat("stopped by its user on ", ctx_.config.name);
    return true;
  });
  if (updated.ok() && updated->state == cluster::ProtectedVmState::kPoweredOff) {
    spdlog::info("ha: event=protected_vm_powered_off cluster={} vm={} host={}", cluster_, name, ctx_.config.name);
  }
}

}  // namespace ferry
