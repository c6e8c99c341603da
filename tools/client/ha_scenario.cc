#include "tools/client/ha_scenario.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/cluster/cluster_events.h"
#include "engine/cluster/cluster_store.h"
#include "engine/base/status.h"
#include "engine/storage/vm_lock.h"
#include "engine/transport/grpc_peer_channel.h"
#include "tools/client/guest_verify.h"

namespace ferry::cli {
namespace fs = std::filesystem;

namespace {

constexpr char kDatastoreId[] = "6a0f7d3e-2b1c-4e5f-9a8b-7c6d5e4f3a2b";

double SecondsSince(absl::Time t0, int64_t unix_ns) { return absl::ToDoubleSeconds(absl::FromUnixNanos(unix_ns) - t0); }

absl::StatusOr<v1::VmInfo> GetVm(v1::Agent::Stub& stub, const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetVmRequest req;
  req.set_name(name);
  v1::VmInfo info;
  grpc::Status st = stub.GetVm(&ctx, req, &info);
  if (!st.ok()) return FromGrpcStatus(st);
  return info;
}

}  // namespace

bool HaRunResult::ok() const {
  if (vms.empty()) return false;
  for (const auto& v : vms) {
    if (!v.error.empty() || !v.exactly_once || v.running_s < 0) return false;
  }
  return true;
}

void HaScenario::Say(const std::string& s) const {
  if (options_.say) options_.say(s);
}

absl::Status HaScenario::CheckCancelled() const {
  if (options_.cancelled && options_.cancelled->load()) return absl::CancelledError("interrupted");
  return absl::OkStatus();
}

int HaScenario::IndexOf(const std::string& host) const {
  for (int i = 0; i < agents_->size(); ++i) {
    if (agents_->name(i) == host) return i;
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<HaScenario>> HaScenario::Start(const HaScenarioOptions& options) {
  std::unique_ptr<HaScenario> s(new HaScenario());
  s->options_ = options;
  std::string tmpl = (fs::temp_directory_path() / "ferry-ha-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return absl::InternalError("cannot create a temporary directory");
  s->dir_ = tmpl;
  s->datastore_dir_ = s->dir_ + "/shared";
  fs::create_directories(s->datastore_dir_);
  std::ofstream(s->datastore_dir_ + "/.ferry-datastore-id") << kDatastoreId << "\n";

  LocalEtcdOptions etcd_options;
  etcd_options.members = options.etcd_members;
  etcd_options.keep_dir = options.keep_dir;
  auto etcd = LocalEtcd::Start(etcd_options);
  if (!etcd.ok()) return etcd.status();
  s->etcd_ = std::move(*etcd);
  auto operator_cert = s->etcd_->IssueHostCert("operator");
  if (!operator_cert.ok()) return operator_cert.status();
  auto client = cluster::EtcdClient::Create(s->etcd_->ClientOptions(*operator_cert));
  if (!client.ok()) return client.status();
  s->client_ = std::move(*client);
  cluster::ClusterConfig config;
  config.heartbeat_interval_ms = options.heartbeat_interval_ms;
  config.heartbeat_misses = options.heartbeat_misses;
  if (auto st = cluster::CreateCluster(*s->client_, kCluster, config); !st.ok()) return st;
  s->Say(absl::StrFormat("etcd: %d member(s) at %s (mutual TLS); cluster %s: heartbeat %u ms x %u misses = lease %d s",
                         options.etcd_members, s->etcd_->endpoints_flag(), kCluster, options.heartbeat_interval_ms,
                         options.heartbeat_misses, config.LeaseTtlSeconds()));

  LocalClusterOptions agents;
  agents.agents = 3;
  agents.keep_dir = options.keep_dir;
  const std::string certs = s->etcd_->dir() + "/certs/";
  for (int i = 0; i < 3; ++i) {
    const std::string name = absl::StrCat("host-", std::string(1, static_cast<char>('a' + i)));
    const std::string host_file = absl::StrCat(s->dir_, "/", name, ".yaml");
    std::ofstream(host_file) << "name: " << name << "\nmemory: {total: 4GiB}\n"
                             << "migration_interface: {address: 127.0.0.1, link_speed_mbps: 10000}\n"
                             << "datastores:\n  - {name: shared, path: " << s->datastore_dir_ << "}\n";
    agents.host_facts.push_back(host_file);
    if (auto cert = s->etcd_->IssueHostCert(name); !cert.ok()) return cert.status();
    agents.extra_args.push_back({"--cluster", kCluster, "--etcd-endpoints", s->etcd_->endpoints_flag(), "--etcd-ca",
                                 s->etcd_->ca_path(), "--etcd-cert", certs + name + ".crt", "--etcd-key",
                                 certs + name + ".key"});
  }
  auto started = LocalCluster::Start(agents);
  if (!started.ok()) return started.status();
  s->agents_ = std::move(*started);
  for (absl::Time end = absl::Now() + absl::Seconds(30);; absl::SleepFor(absl::Milliseconds(100))) {
    if (auto st = s->CheckCancelled(); !st.ok()) return st;
    auto status = cluster::ReadClusterStatus(*s->client_, kCluster);
    int alive = 0;
    if (status.ok()) {
      for (const auto& h : status->hosts) alive += h.network_heartbeat_alive;
    }
    if (status.ok() && !status->master.empty() && alive == 3) {
      s->master_ = status->master;
      break;
    }
    if (absl::Now() > end) return absl::DeadlineExceededError("the three agents did not join with a master in 30 s");
  }
  for (int i = 0; i < 3 && s->victim_.empty(); ++i) {
    if (s->agents_->name(i) != s->master_) s->victim_ = s->agents_->name(i);
  }
  s->Say(absl::StrFormat("agents: host-a %s, host-b %s, host-c %s sharing datastore %s; master %s",
                         s->agents_->address(0), s->agents_->address(1), s->agents_->address(2), s->datastore_dir_,
                         s->master_));
  return s;
}

HaScenario::~HaScenario() {
  agents_.reset();  // SIGTERM to the agents, then their VMM processes
  if (!datastore_dir_.empty()) (void)KillVmmProcessesUnder(datastore_dir_);
  client_.reset();
  etcd_.reset();  // stops every member, removes its directory
  if (!options_.keep_dir && !dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

absl::Status HaScenario::CreateProtectedVms() {
  const int victim = IndexOf(victim_);
  auto stub = agents_->Stub(victim);
  if (!stub.ok()) return stub.status();
  for (int i = 1; i <= options_.vms; ++i) {
    const std::string name = absl::StrCat("vm-", i);
    v1::CreateVmRequest req;
    v1::VmSpec& spec = *req.mutable_spec();
    spec.set_name(name);
    spec.set_backend(options_.kvm ? v1::BACKEND_KIND_KVM : v1::BACKEND_KIND_SYNTHETIC);
    spec.set_memory_bytes(options_.memory_mib << 20);
    spec.set_vcpus(1);
    spec.mutable_workload()->set_working_set_bytes(options_.working_set_mib << 20);
    spec.mutable_workload()->set_dirty_rate_mibps(20);
    spec.mutable_workload()->set_pattern("random");
    spec.mutable_workload()->set_seed(7 + i);
    if (options_.kvm) {
      spec.mutable_workload()->set_disk_working_set_bytes(options_.disk_working_set_mib << 20);
      spec.mutable_workload()->set_disk_rate_mibps(2);
    }
    req.set_start(true);
    req.set_datastore("shared");
    req.add_disk_bytes(options_.disk_mib << 20);
    v1::VmInfo info;
    grpc::ClientContext ctx;
    if (grpc::Status st = (*stub)->CreateVm(&ctx, req, &info); !st.ok()) {
      return absl::InternalError(absl::StrCat("cannot create ", name, " on ", victim_, ": ", st.error_message()));
    }
    v1::ProtectVmRequest preq;
    preq.set_name(name);
    preq.set_restart_priority(i == 1 ? "high" : "medium");
    v1::ProtectVmResponse presp;
    grpc::ClientContext pctx;
    if (grpc::Status st = (*stub)->ProtectVm(&pctx, preq, &presp); !st.ok()) {
      return absl::InternalError(absl::StrCat("cannot protect ", name, ": ", st.error_message()));
    }
    vm_names_.push_back(name);
    Say(absl::StrFormat("%s on %s: %s, %d MiB, working set %d MiB%s, in %s; protected, restart priority %s", name,
                        victim_, options_.kvm ? "KVM guest" : "synthetic guest", options_.memory_mib,
                        options_.working_set_mib,
                        options_.kvm ? absl::StrFormat(", disk working set %d MiB", options_.disk_working_set_mib) : "",
                        presp.directory(), presp.restart_priority()));
  }
  // Wait until every guest runs (and has swept its disk once: the disk holds what it wrote).
  for (const auto& name : vm_names_) {
    for (absl::Time end = absl::Now() + absl::Seconds(60);; absl::SleepFor(absl::Milliseconds(100))) {
      RETURN_IF_ERROR(CheckCancelled());
      auto vm = GetVm(**stub, name);
      if (!vm.ok()) return vm.status();
      const auto& h = vm->health();
      if (h.corruptions() > 0) return absl::DataLossError(absl::StrCat(name, ": guest reported corruption before the kill"));
      if (h.heartbeats() > 0 && (!options_.kvm || h.disk_sweeps() > 0)) break;
      if (absl::Now() > end) return absl::DeadlineExceededError(absl::StrCat(name, ": the guest did not get going in 60 s"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<HaRunResult> HaScenario::KillVictimAndFollow(bool verify, double timeout_s) {
  auto killed = KillVictim();
  if (!killed.ok()) return killed.status();
  return Follow(*killed, verify, timeout_s);
}

absl::Status HaScenario::RestartVictimAgent() { return agents_->Restart(IndexOf(victim_)); }

absl::StatusOr<absl::Time> HaScenario::KillVictim() {
  std::set<pid_t> holders;
  for (const auto& name : vm_names_) {
    auto h = VmLock::CurrentHolder(absl::StrCat(datastore_dir_, "/", name, "/", kVmLockFile));
    if (!h.ok()) return h.status();
    if (!h->has_value()) return absl::FailedPreconditionError(absl::StrCat(name, " holds no lock: it is not running"));
    holders.insert(static_cast<pid_t>((*h)->pid));
  }
  const int victim = IndexOf(victim_);
  const pid_t agent_pid = agents_->pid(victim);
  const absl::Time killed = absl::Now();
  agents_->Kill(victim);
  for (pid_t pid : holders) {
    if (pid != agent_pid) kill(pid, SIGKILL);
  }
  Say(absl::StrFormat("killed %s: its agent and %d VMM process(es) (SIGKILL)", victim_, holders.size()));
  return killed;
}

absl::StatusOr<HaRunResult> HaScenario::Follow(absl::Time killed, bool verify, double timeout_s) {
  HaRunResult r;
  r.victim = victim_;
  r.master = master_;

  // Follow the protected-VM records until each runs on another host.
  std::set<std::string> pending(vm_names_.begin(), vm_names_.end());
  std::map<std::string, cluster::ProtectedVm> last;
  const absl::Time end = killed + absl::Seconds(timeout_s);
  while (!pending.empty()) {
    RETURN_IF_ERROR(CheckCancelled());
    if (absl::Now() > end) break;
    auto status = cluster::ReadClusterStatus(*client_, kCluster);
    if (status.ok()) {
      for (const auto& vm : status->vms) {
        last[vm.vm] = vm;
        if (!pending.count(vm.vm) || vm.state != cluster::ProtectedVmState::kRunning) continue;
        HaVmOutcome out;
        out.vm = vm.vm;
        out.priority = cluster::RestartPriorityName(vm.priority);
        out.from = victim_;
        out.to = vm.host;
        int index = IndexOf(vm.host);
        if (index < 0 || !agents_->Alive(index)) continue;
        auto stub = index >= 0 ? agents_->Stub(index) : absl::StatusOr<std::unique_ptr<v1::Agent::Stub>>(
                                                               absl::NotFoundError(vm.host));
        if (!stub.ok()) continue;
        auto info = GetVm(**stub, vm.vm);
        if (!info.ok() || info->state() != v1::VM_POWER_STATE_RUNNING) continue;
        out.running_s = absl::ToDoubleSeconds(absl::Now() - killed);
        Say(absl::StrFormat("%s running again on %s, %.2f s after the kill", vm.vm, vm.host, out.running_s));
        r.vms.push_back(out);
        pending.erase(vm.vm);
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (const auto& name : pending) {
    HaVmOutcome out;
    out.vm = name;
    out.from = victim_;
    out.error = absl::StrFormat("not running elsewhere %.0f s after the kill (state %s: %s)", timeout_s,
                                last.count(name) ? cluster::ProtectedVmStateName(last[name].state) : "?",
                                last.count(name) ? last[name].detail : "no record");
    r.vms.push_back(out);
  }

  // The master's own times, from its events (the same clock on this machine).
  auto events = cluster::ReadClusterEvents(*client_, kCluster);
  if (events.ok()) {
    for (const auto& e : *events) {
      if (absl::FromUnixNanos(e.time_unix_ns) < killed) continue;
      if (e.kind == "host_lost" && e.subject == victim_ && r.lease_lost_s < 0) {
        r.lease_lost_s = SecondsSince(killed, e.time_unix_ns);
      }
      // failed, or unknown (no datastore heartbeat readable): both lead to the restart.
      if (e.kind == "host_verdict" && e.subject == victim_ && !absl::StrContains(e.detail, "verdict=isolated") &&
          r.detected_s < 0) {
        r.detected_s = SecondsSince(killed, e.time_unix_ns);
      }
      if (e.kind != "vm_restarted") continue;
      for (auto& v : r.vms) {
        if (v.vm != e.subject || v.restarted_s >= 0) continue;
        v.restarted_s = SecondsSince(killed, e.time_unix_ns);
        size_t at = e.detail.find("start_ms=");
        if (at != std::string::npos) v.start_ms = std::atof(e.detail.c_str() + at + 9);
      }
    }
  }

  for (auto& v : r.vms) {
    if (!v.error.empty()) continue;
    int running_on = 0;
    for (int i = 0; i < agents_->size(); ++i) {
      if (!agents_->Alive(i)) continue;
      auto stub = agents_->Stub(i);
      if (!stub.ok()) continue;
      auto info = GetVm(**stub, v.vm);
      running_on += info.ok() && info->state() == v1::VM_POWER_STATE_RUNNING;
    }
    v.exactly_once = running_on == 1;
    if (!v.exactly_once) v.error = absl::StrCat("runs on ", running_on, " agents");
    if (verify && v.error.empty()) {
      if (absl::Status st = VerifyGuest(v); !st.ok()) v.error = std::string(st.message());
    }
  }
  return r;
}

absl::Status HaScenario::VerifyGuest(HaVmOutcome& out) {
  auto stub = agents_->Stub(IndexOf(out.to));
  if (!stub.ok()) return stub.status();
  auto swept = WaitForFullSweep(**stub, out.vm, 120);
  if (!swept.ok()) return swept.status();
  out.memory_verified = true;
  out.memory_sweep_ms = static_cast<uint64_t>(swept->health().first_full_sweep_ms());
  out.corruptions = swept->health().corruptions();
  if (!options_.kvm) return absl::OkStatus();
  // A whole disk sweep after the restart re-reads every block the guest wrote before the crash:
  // each must be zeros or exactly one generation of itself (docs/guest_verification.md).
  for (absl::Time end = absl::Now() + absl::Seconds(90);; absl::SleepFor(absl::Milliseconds(100))) {
    RETURN_IF_ERROR(CheckCancelled());
    auto vm = GetVm(**stub, out.vm);
    if (!vm.ok()) return vm.status();
    const auto& h = vm->health();
    out.disk_sweeps = h.disk_sweeps();
    out.disk_blocks_verified = h.disk_blocks_verified();
    out.corruptions = h.corruptions();
    out.disk_io_errors = h.disk_io_errors();
    if (h.corruptions() > 0 || h.disk_corruptions() > 0) {
      return absl::DataLossError(absl::StrCat(out.vm, ": ",
                                              h.corruption_reports_size() ? h.corruption_reports(0) : "corruption"));
    }
    if (h.disk_io_errors() > 0) return absl::DataLossError(absl::StrCat(out.vm, ": disk I/O errors after the restart"));
    if (h.disk_sweeps() >= 1) break;
    if (absl::Now() > end) return absl::DeadlineExceededError(absl::StrCat(out.vm, ": no whole disk sweep in 90 s"));
  }
  out.disk_verified = true;
  return absl::OkStatus();
}

}  // namespace ferry::cli
