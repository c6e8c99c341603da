#include "engine/cluster/restart_coordinator.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/cluster/cluster_keys.h"
#include "engine/cluster/isolation.h"

namespace ferry::cluster {
namespace {

const char* VerdictName(LostHostVerdict v) {
  switch (v) {
    case LostHostVerdict::kFailed: return "failed";
    case LostHostVerdict::kIsolatedOrPartitioned: return "isolated";
    case LostHostVerdict::kUnknown: return "unknown";
  }
  return "unknown";
}

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

void RestartCoordinator::Step(EtcdClient& etcd) {
  auto host_kvs = etcd.GetPrefix(ClusterKeys(options_.cluster).hosts());
  if (!host_kvs.ok()) return;
  std::map<std::string, HostView> hosts;
  for (const auto& kv : *host_kvs) {
    auto record = HostRecordFromJson(kv.value);
    if (!record.ok()) continue;
    auto lease = etcd.LeaseTimeToLive(record->lease);
    if (!lease.ok()) return;  // cannot tell who is alive: decide nothing this round
    hosts[record->host] = HostView{*record, lease->remaining_ttl_s >= 0};
  }
  JudgeLostHosts(etcd, hosts);
  PublishHostHealth(etcd, hosts);
  auto vm_kvs = etcd.GetPrefix(ClusterKeys(options_.cluster).vms());
  if (!vm_kvs.ok()) return;
  std::vector<ProtectedVm> vms;
  for (const auto& kv : *vm_kvs) {
    auto vm = ProtectedVmFromJson(kv.value);
    if (vm.ok()) vms.push_back(*vm);
  }
  RequestRestarts(etcd, hosts, vms);
  PlaceAndStart(etcd, hosts, vms);
}

std::vector<std::string> RestartCoordinator::HeartbeatPathsOf(const HostRecord& host) const {
  std::vector<std::string> paths;
  for (const auto& [uuid, path] : options_.datastores()) {
    // Where the host said it heartbeats; a host that said nothing: every datastore both mount.
    bool chosen = host.heartbeat_datastore_ids.empty() ? Contains(host.datastore_ids, uuid)
                                                       : Contains(host.heartbeat_datastore_ids, uuid);
    if (chosen) paths.push_back(path);
  }
  return paths;
}

void RestartCoordinator::Event(EtcdClient& etcd, const std::string& kind, const std::string& subject,
                               const std::string& detail) {
  (void)RecordClusterEvent(etcd, options_.cluster, {0, options_.host, kind, subject, detail});
}

void RestartCoordinator::JudgeLostHosts(EtcdClient& etcd, const std::map<std::string, HostView>& hosts) {
  for (auto it = lost_.begin(); it != lost_.end();) {
    auto h = hosts.find(it->first);
    if (h != hosts.end() && h->second.alive) Event(etcd, "host_back", it->first, "its network heartbeat is back");
    it = (h == hosts.end() || h->second.alive) ? lost_.erase(it) : std::next(it);
  }
  const absl::Time now = absl::Now();
  for (const auto& [name, view] : hosts) {
    if (view.alive || name == options_.host) continue;
    auto [it, fresh] = lost_.try_emplace(name);
    LostHostSample& sample = it->second;
    if (fresh) {
      sample.first_read = now;
      for (const auto& path : HeartbeatPathsOf(view.record)) {
        sample.before.emplace(path, ReadHeartbeat(path, options_.cluster, name));
      }
      spdlog::warn("ha: event=host_lost cluster={} host={} datastores={} (judging by its datastore heartbeats)",
                   options_.cluster, name, sample.before.size());
      Event(etcd, "host_lost", name,
            absl::StrCat("network heartbeat lost; judging by ", sample.before.size(), " datastore heartbeat(s)"));
      continue;
    }
    if (sample.verdict || now - sample.first_read < options_.interval * kVerdictIntervals) continue;
    bool isolated = false, failed = false;
    for (const auto& [path, before] : sample.before) {
      LostHostVerdict v = ClassifyLostHost(before, ReadHeartbeat(path, options_.cluster, name));
      isolated |= v == LostHostVerdict::kIsolatedOrPartitioned;
      failed |= v == LostHostVerdict::kFailed;
    }
    sample.verdict = isolated ? LostHostVerdict::kIsolatedOrPartitioned
                     : failed ? LostHostVerdict::kFailed
                              : LostHostVerdict::kUnknown;
    spdlog::warn("ha: event=host_verdict cluster={} host={} verdict={} after_ms={}", options_.cluster, name,
                 VerdictName(*sample.verdict), absl::ToInt64Milliseconds(now - sample.first_read));
    Event(etcd, "host_verdict", name,
          absl::StrCat("verdict=", VerdictName(*sample.verdict),
                       " after_ms=", absl::ToInt64Milliseconds(now - sample.first_read)));
  }
}

std::string RestartCoordinator::OwnViewOf(const HostRecord& host) const {
  std::optional<HeartbeatRecord> newest;
  for (const auto& path : HeartbeatPathsOf(host)) {
    auto r = ReadHeartbeat(path, options_.cluster, host.host);
    if (r.ok() && (!newest || r->sequence > newest->sequence)) newest = *r;
  }
  return newest ? newest->own_view : "";
}

DatastoreHeartbeatState RestartCoordinator::ReadDatastoreHeartbeat(const HostRecord& host) {
  const std::vector<std::string> paths = HeartbeatPathsOf(host);
  if (paths.empty()) return DatastoreHeartbeatState::kNone;
  std::optional<uint64_t> sequence;
  for (const auto& path : paths) {
    auto r = ReadHeartbeat(path, options_.cluster, host.host);
    if (r.ok()) sequence = std::max(sequence.value_or(0), r->sequence);
  }
  if (!sequence) return DatastoreHeartbeatState::kUnreadable;
  const absl::Time now = absl::Now();
  auto [it, fresh] = datastore_seen_.try_emplace(host.host, DatastoreSeen{*sequence, now});
  if (!fresh && it->second.sequence != *sequence) it->second = {*sequence, now};
  return now - it->second.moved <= options_.interval * (kVerdictIntervals + 1) ? DatastoreHeartbeatState::kAlive
                                                                                : DatastoreHeartbeatState::kStopped;
}

void RestartCoordinator::PublishHostHealth(EtcdClient& etcd, const std::map<std::string, HostView>& hosts) {
  for (const auto& [name, view] : hosts) {
    if (name == options_.host) continue;
    HostHealthRecord r{name, HostHealth::kAlive, ReadDatastoreHeartbeat(view.record), options_.host, 0};
    if (!view.alive) {
      auto sample = lost_.find(name);
      if (sample == lost_.end() || !sample->second.verdict) {
        r.health = HostHealth::kJudging;
      } else if (*sample->second.verdict == LostHostVerdict::kFailed) {
        r.health = HostHealth::kFailed;
      } else if (*sample->second.verdict == LostHostVerdict::kUnknown) {
        r.health = HostHealth::kUnknown;
      } else {
        // Alive on its datastores. Isolated or partitioned: what the host wrote of itself there
        // (own_view); a host that has not said (older, or not yet noticed): partitioned if its
        // agent still answers us.
        const std::string own = OwnViewOf(view.record);
        if (own == "partitioned" || own == "isolated") {
          r.health = own == "partitioned" ? HostHealth::kPartitioned : HostHealth::kIsolated;
        } else {
          auto answers = view.record.address.empty() ? absl::StatusOr<bool>(false)
                                                     : TcpAnswers(view.record.address, absl::Milliseconds(300));
          r.health = answers.ok() && *answers ? HostHealth::kPartitioned : HostHealth::kIsolated;
        }
      }
    }
    auto last = published_.find(name);
    if (last != published_.end() && last->second.health == r.health &&
        last->second.datastore_heartbeat == r.datastore_heartbeat) {
      continue;
    }
    r.since_unix_ns = last != published_.end() && last->second.health == r.health ? last->second.since_unix_ns
                                                                                    : absl::GetCurrentTimeNanos();
    if (!etcd.Put(ClusterKeys(options_.cluster).host_health(name), ToJson(r)).ok()) continue;
    if (last != published_.end() && last->second.health != r.health && r.health != HostHealth::kJudging &&
        r.health != HostHealth::kFailed && r.health != HostHealth::kUnknown) {
      Event(etcd, absl::StrCat("host_", HostHealthName(r.health)), name,
            absl::StrCat("datastore heartbeat ", DatastoreHeartbeatStateName(r.datastore_heartbeat)));
    }
    published_[name] = r;
  }
}

std::optional<bool> RestartCoordinator::LockFree(const ProtectedVm& vm) const {
  if (!options_.lock_held || vm.datastore_id.empty()) return std::nullopt;
  auto mounted = options_.datastores();
  auto ds = mounted.find(vm.datastore_id);
  if (ds == mounted.end()) return std::nullopt;
  auto held = options_.lock_held(ds->second + "/" + vm.vm);
  if (!held.ok()) return std::nullopt;
  return !*held;
}

void RestartCoordinator::RequestRestarts(EtcdClient& etcd, const std::map<std::string, HostView>& hosts,
                                         std::vector<ProtectedVm>& vms) {
  for (ProtectedVm& vm : vms) {
    std::string reason;
    std::string lost_host;
    if (vm.state == ProtectedVmState::kRunning || vm.state == ProtectedVmState::kRestarting) {
      lost_host = vm.state == ProtectedVmState::kRunning ? vm.host : vm.target;
      auto sample = lost_.find(lost_host);
      if (sample == lost_.end() || !sample->second.verdict) continue;
      if (*sample->second.verdict == LostHostVerdict::kIsolatedOrPartitioned) {
        if (LockFree(vm) != true) continue;  // still running there (or cannot tell): leave it
        reason = absl::StrCat("host ", lost_host, " is isolated and released the VM");
      } else {
        reason = absl::StrCat("host ", lost_host, " ", VerdictName(*sample->second.verdict),
                              " (network and datastore heartbeats stopped)");
      }
    } else if (vm.state == ProtectedVmState::kHeld) {
      auto h = hosts.find(vm.host);
      if (h != hosts.end() && h->second.alive) continue;
      if (LockFree(vm) != true) continue;
      lost_host = vm.host;
      reason = "its lock is free again";
    } else {
      continue;
    }
    auto updated = UpdateProtectedVm(etcd, options_.cluster, vm.vm, [&](ProtectedVm& r) {
      if (r.state != vm.state || r.host != vm.host) return false;  // someone moved it meanwhile
      r.state = ProtectedVmState::kRestartRequested;
      r.exclude_host = lost_host;
      r.target.clear();
      r.attempts = 0;
      r.detail = reason;
      return true;
    });
    if (!updated.ok()) continue;
    if (updated->state == ProtectedVmState::kRestartRequested) {
      spdlog::warn("ha: event=vm_restart_needed cluster={} vm={} priority={} host={} reason=\"{}\"",
                   options_.cluster, vm.vm, RestartPriorityName(vm.priority), lost_host, reason);
      Event(etcd, "vm_restart_needed", vm.vm, reason);
    }
    vm = *updated;
  }
}

void RestartCoordinator::PlaceAndStart(EtcdClient& etcd, const std::map<std::string, HostView>& hosts,
                                       std::vector<ProtectedVm>& vms) {
  std::vector<ProtectedVm*> todo;
  for (ProtectedVm& vm : vms) {
    if (vm.state == ProtectedVmState::kRestartRequested || vm.state == ProtectedVmState::kWaitingCapacity) {
      todo.push_back(&vm);
    }
  }
  std::sort(todo.begin(), todo.end(), [](const ProtectedVm* a, const ProtectedVm* b) {
    if (a->priority != b->priority) return a->priority < b->priority;  // kHigh = 1 first
    return a->vm < b->vm;
  });
  std::map<std::string, uint64_t> placed;  // host -> memory this round already started there
  std::set<std::string> full;              // hosts that refused for capacity this round
  for (ProtectedVm* vm : todo) {
    std::vector<const HostView*> candidates;
    for (const auto& [name, view] : hosts) {
      if (!view.alive || name == vm->exclude_host || full.count(name)) continue;
      if (!vm->datastore_id.empty() && !Contains(view.record.datastore_ids, vm->datastore_id)) continue;
      uint64_t free = view.record.free_memory_bytes > placed[name] ? view.record.free_memory_bytes - placed[name] : 0;
      if (free < vm->memory_bytes) continue;
      candidates.push_back(&view);
    }
    std::sort(candidates.begin(), candidates.end(), [&](const HostView* a, const HostView* b) {
      uint64_t fa = a->record.free_memory_bytes - std::min(a->record.free_memory_bytes, placed[a->record.host]);
      uint64_t fb = b->record.free_memory_bytes - std::min(b->record.free_memory_bytes, placed[b->record.host]);
      if (fa != fb) return fa > fb;
      return a->record.host < b->record.host;
    });
    std::string outcome = "no live host mounts its datastore with enough free memory";
    bool done = false;
    for (const HostView* target : candidates) {
      const std::string& t = target->record.host;
      auto marked = UpdateProtectedVm(etcd, options_.cluster, vm->vm, [&](ProtectedVm& r) {
        if (r.state != vm->state) return false;
        r.state = ProtectedVmState::kRestarting;
        r.target = t;
        r.detail = absl::StrCat("starting on ", t);
        return true;
      });
      if (!marked.ok() || marked->state != ProtectedVmState::kRestarting || marked->target != t) {
        done = true;  // changed under us (unprotected, powered off...): leave it to the next round
        break;
      }
      const absl::Time started = absl::Now();
      spdlog::info("ha: event=vm_restart_attempt cluster={} vm={} priority={} target={} attempt={}",
                   options_.cluster, vm->vm, RestartPriorityName(vm->priority), t, vm->attempts + 1);
      absl::Status st = options_.start_vm(target->record, *marked);
      ProtectedVm result = *marked;
      if (st.ok() || absl::IsAlreadyExists(st)) {
        result.state = ProtectedVmState::kRunning;
        result.detail = absl::StrCat("restarted on ", t, " (", vm->detail, ")");
        result.host = t;
        result.attempts = 0;
        placed[t] += vm->memory_bytes;
        const int64_t start_ms = absl::ToInt64Milliseconds(absl::Now() - started);
        spdlog::warn("ha: event=vm_restarted cluster={} vm={} priority={} host={} from={} start_ms={}",
                     options_.cluster, vm->vm, RestartPriorityName(vm->priority), t, vm->exclude_host, start_ms);
        Event(etcd, "vm_restarted", vm->vm, absl::StrCat("host=", t, " from=", vm->exclude_host, " start_ms=", start_ms));
      } else if (absl::IsFailedPrecondition(st) && absl::StrContains(st.message(), "is locked by")) {
        // The lock is the owner: it runs somewhere. Never start it elsewhere.
        result.state = ProtectedVmState::kHeld;
        result.detail = std::string(st.message());
        spdlog::warn("ha: event=vm_restart_refused_locked cluster={} vm={} target={} error=\"{}\"", options_.cluster,
                     vm->vm, t, std::string(st.message()));
        Event(etcd, "vm_restart_refused_locked", vm->vm, std::string(st.message()));
      } else {
        if (absl::IsResourceExhausted(st)) full.insert(t);
        outcome = absl::StrCat(t, ": ", st.message());
        spdlog::warn("ha: event=vm_restart_refused cluster={} vm={} target={} error=\"{}\"", options_.cluster, vm->vm,
                     t, std::string(st.message()));
        result.state = ProtectedVmState::kWaitingCapacity;
      }
      auto written = UpdateProtectedVm(etcd, options_.cluster, vm->vm, [&](ProtectedVm& r) {
        if (r.state != ProtectedVmState::kRestarting || r.target != t) return false;
        int attempts = r.attempts;
        r = result;
        r.attempts = attempts;
        if (result.state == ProtectedVmState::kRunning) r.attempts = 0;
        return true;
      });
      if (written.ok()) *vm = *written;
      if (result.state != ProtectedVmState::kWaitingCapacity) {
        done = true;
        break;
      }
    }
    if (done) continue;
    // Nowhere this round: count the attempt; give up after the bound.
    auto waiting = UpdateProtectedVm(etcd, options_.cluster, vm->vm, [&](ProtectedVm& r) {
      if (r.state != ProtectedVmState::kRestartRequested && r.state != ProtectedVmState::kWaitingCapacity) return false;
      r.attempts += 1;
      r.target.clear();
      r.state = r.attempts >= kMaxRestartAttempts ? ProtectedVmState::kRestartFailed
                                                  : ProtectedVmState::kWaitingCapacity;
      r.detail = outcome;
      return true;
    });
    if (waiting.ok() && waiting->attempts == 1) {
      spdlog::warn("ha: event=vm_waiting_capacity cluster={} vm={} priority={} detail=\"{}\"", options_.cluster,
                   vm->vm, RestartPriorityName(vm->priority), outcome);
      Event(etcd, "vm_waiting_capacity", vm->vm, outcome);
    }
    if (waiting.ok() && waiting->state == ProtectedVmState::kRestartFailed) {
      spdlog::error("ha: event=vm_restart_failed cluster={} vm={} attempts={} detail=\"{}\"", options_.cluster,
                    vm->vm, waiting->attempts, outcome);
      Event(etcd, "vm_restart_failed", vm->vm, outcome);
    }
  }
}

}  // namespace ferry::cluster
