#include "engine/agent/agent_metrics.h"

#include <prometheus/text_serializer.h>

#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"

namespace ferry {
namespace {

// Milliseconds: a pause of a few ms on an idle guest up to seconds on one that outruns its link.
const prometheus::Histogram::BucketBoundaries kPauseBucketsMs = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
// Finished outgoing migrations remembered, so a repeated end is not counted twice.
constexpr size_t kFinishedRemembered = 1024;
// How long a VM that arrived may take to send its first heartbeat here before its stall is not counted.
constexpr int64_t kFirstHeartbeatWaitNs = 10'000'000'000;

// "MIGRATION_PHASE_STOP_AND_COPY" -> "stop_and_copy"
std::string Label(const std::string& enum_name, const std::string& prefix) {
  std::string label = enum_name.rfind(prefix, 0) == 0 ? enum_name.substr(prefix.size()) : enum_name;
  absl::AsciiStrToLower(&label);
  return label;
}

std::string PhaseLabel(v1::MigrationPhase p) { return Label(v1::MigrationPhase_Name(p), "MIGRATION_PHASE_"); }

bool Finished(v1::MigrationPhase p) {
  return p == v1::MIGRATION_PHASE_COMPLETED || p == v1::MIGRATION_PHASE_FAILED || p == v1::MIGRATION_PHASE_CANCELLED;
}

// The phases a running migration can be in (each gets a series, 0 when empty).
constexpr v1::MigrationPhase kRunningPhases[] = {
    v1::MIGRATION_PHASE_PRECHECK, v1::MIGRATION_PHASE_SETUP,  v1::MIGRATION_PHASE_PRECOPY,
    v1::MIGRATION_PHASE_STOP_AND_COPY, v1::MIGRATION_PHASE_COMMIT, v1::MIGRATION_PHASE_ANNOUNCE};

}  // namespace

// What the exposer serves: the registry, with VMs by state read just before.
class AgentMetrics::Scrape : public prometheus::Collectable {
 public:
  explicit Scrape(const AgentMetrics& m) : m_(m) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    m_.RefreshVmStates();
    return m_.registry_->Collect();
  }

 private:
  const AgentMetrics& m_;
};

AgentMetrics::AgentMetrics(const VmRegistry& vms)
    : vms_(vms),
      registry_(std::make_shared<prometheus::Registry>()),
      vms_by_state_(prometheus::BuildGauge().Name("ferry_vms").Help("VMs on this agent by state").Register(*registry_)),
      migrations_(prometheus::BuildCounter()
                      .Name("ferry_migrations_total")
                      .Help("Finished migrations by direction (out: this agent was the source) and outcome")
                      .Register(*registry_)),
      running_by_phase_(prometheus::BuildGauge()
                            .Name("ferry_migrations_running")
                            .Help("Outgoing migrations under way, by phase")
                            .Register(*registry_)),
      sent_bytes_(prometheus::BuildCounter()
                      .Name("ferry_migration_sent_bytes_total")
                      .Help("Payload bytes sent by outgoing migrations (page data and device state)")
                      .Register(*registry_)
                      .Add({})),
      sent_pages_(prometheus::BuildCounter()
                      .Name("ferry_migration_sent_pages_total")
                      .Help("Pages sent by finished outgoing migrations")
                      .Register(*registry_)
                      .Add({})),
      received_pages_(prometheus::BuildCounter()
                          .Name("ferry_migration_received_pages_total")
                          .Help("Pages applied to guest memory by finished incoming migrations")
                          .Register(*registry_)
                          .Add({})),
      received_stream_bytes_(prometheus::BuildCounter()
                                 .Name("ferry_migration_received_stream_bytes_total")
                                 .Help("Bytes of incoming migrations' control-stream messages (device state; "
                                       "pages too with --transport grpc)")
                                 .Register(*registry_)
                                 .Add({})),
      bandwidth_(prometheus::BuildGauge()
                     .Name("ferry_migration_bandwidth_mibps")
                     .Help("Bandwidth of the outgoing migrations under way, MiB/s (last round's measure, summed)")
                     .Register(*registry_)
                     .Add({})),
      dirty_rate_(prometheus::BuildGauge()
                      .Name("ferry_migration_dirty_rate_mibps")
                      .Help("Guest dirty rate of the outgoing migrations under way, MiB/s (summed)")
                      .Register(*registry_)
                      .Add({})),
      downtime_(prometheus::BuildHistogram()
                    .Name("ferry_migration_downtime_ms")
                    .Help("Switch-over pause of completed outgoing migrations (engine-measured), ms")
                    .Register(*registry_)
                    .Add({}, kPauseBucketsMs)),
      stall_(prometheus::BuildHistogram()
                 .Name("ferry_guest_stall_ms")
                 .Help("Longest heartbeat gap of VMs that arrived here by migration, measured at their "
                       "first heartbeat here (the pause the guest felt), ms")
                 .Register(*registry_)
                 .Add({}, kPauseBucketsMs)),
      findings_(prometheus::BuildCounter()
                    .Name("ferry_precheck_findings_total")
                    .Help("Precheck findings by code and severity")
                    .Register(*registry_)),
      tls_failures_(prometheus::BuildCounter()
                        .Name("ferry_tls_handshake_failures_total")
                        .Help("Refused TLS handshakes on the agent's gRPC port, by reason")
                        .Register(*registry_)) {
  for (const char* outcome : {"completed", "failed", "cancelled", "refused"}) {
    migrations_.Add({{"direction", "out"}, {"outcome", outcome}});
  }
  for (const char* outcome : {"completed", "failed"}) migrations_.Add({{"direction", "in"}, {"outcome", outcome}});
  for (v1::MigrationPhase p : kRunningPhases) running_by_phase_.Add({{"phase", PhaseLabel(p)}});
  scrape_ = std::make_shared<Scrape>(*this);
  watcher_ = std::thread([this] { WatchArrivals(); });
}

AgentMetrics::~AgentMetrics() {
  exposer_.reset();  // no scrape runs past this point
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  arrivals_cv_.notify_all();
  watcher_.join();
}

absl::Status AgentMetrics::Serve(const std::string& listen) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  exposer_->RegisterCollectable(scrape_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

std::string AgentMetrics::Render() const { return prometheus::TextSerializer().Serialize(scrape_->Collect()); }

void AgentMetrics::RefreshVmStates() const {
  std::map<std::string, int> count;
  for (int s = v1::VmPowerState_MIN + 1; s <= v1::VmPowerState_MAX; ++s) {
    if (v1::VmPowerState_IsValid(s)) count[Label(v1::VmPowerState_Name(s), "VM_POWER_STATE_")] = 0;
  }
  for (const auto& [name, entry] : vms_.List()) {
    ++count[Label(v1::VmPowerState_Name(DescribeVm(name, *entry).state()), "VM_POWER_STATE_")];
  }
  for (const auto& [state, n] : count) vms_by_state_.Add({{"state", state}}).Set(n);
}

void AgentMetrics::OnMigrationEvent(const v1::MigrationEvent& e) {
  std::lock_guard lock(mu_);
  Migration& m = migrations_by_id_[e.migration_id()];
  if (e.transferred_bytes() > m.transferred_bytes) {
    sent_bytes_.Increment(static_cast<double>(e.transferred_bytes() - m.transferred_bytes));
    m.transferred_bytes = e.transferred_bytes();
  }
  if (!Finished(e.phase())) {
    if (m.finished) return;  // nothing runs after the end
    m.phase = e.phase();
    m.bandwidth_mibps = e.bandwidth_mibps();
    m.dirty_rate_mibps = e.dirty_rate_mibps();
    PublishRunningLocked();
    return;
  }
  // The end may be reported more than once (the engine's, then the agent's with the statistics):
  // the outcome counts once, the statistics once.
  if (!m.finished) {
    m.finished = true;
    std::string outcome = PhaseLabel(e.phase());
    if (e.phase() == v1::MIGRATION_PHASE_FAILED && e.has_precheck()) outcome = "refused";
    migrations_.Add({{"direction", "out"}, {"outcome", outcome}}).Increment();
    finished_order_.push_back(e.migration_id());
    if (finished_order_.size() > kFinishedRemembered) {
      migrations_by_id_.erase(finished_order_.front());
      finished_order_.pop_front();
    }
  }
  if (e.has_stats() && !m.stats_counted) {
    // The statistics are the migration's own figures: the counters end exactly at them.
    m.stats_counted = true;
    const v1::MigrationStats& s = e.stats();
    if (s.bytes_transferred() > m.transferred_bytes) {
      sent_bytes_.Increment(static_cast<double>(s.bytes_transferred() - m.transferred_bytes));
      m.transferred_bytes = s.bytes_transferred();
    }
    sent_pages_.Increment(static_cast<double>(s.pages_sent()));
    if (e.phase() == v1::MIGRATION_PHASE_COMPLETED) downtime_.Observe(s.downtime_ms());
  }
  PublishRunningLocked();
}

void AgentMetrics::PublishRunningLocked() {
  std::map<v1::MigrationPhase, int> by_phase;
  double bandwidth = 0, dirty = 0;
  for (const auto& [id, r] : migrations_by_id_) {
    if (r.finished) continue;
    ++by_phase[r.phase];
    bandwidth += r.bandwidth_mibps;
    dirty += r.dirty_rate_mibps;
  }
  for (v1::MigrationPhase p : kRunningPhases) running_by_phase_.Add({{"phase", PhaseLabel(p)}}).Set(by_phase[p]);
  bandwidth_.Set(bandwidth);
  dirty_rate_.Set(dirty);
}

void AgentMetrics::OnVmArrived(const std::string& vm_name) {
  auto entry = vms_.Find(vm_name);
  uint64_t heartbeats = entry && entry->vm ? entry->vm->health().heartbeats : 0;
  {
    std::lock_guard lock(mu_);
    arrivals_.push_back({vm_name, heartbeats, MonotonicNanos() + kFirstHeartbeatWaitNs});
  }
  arrivals_cv_.notify_all();
}

// The guest's stall is known once it has beaten here: its longest gap then spans the switch-over.
void AgentMetrics::WatchArrivals() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (arrivals_.empty()) {
      arrivals_cv_.wait(lock);
      continue;
    }
    std::vector<Arrival> pending;
    pending.swap(arrivals_);
    lock.unlock();
    std::vector<Arrival> still;
    for (const Arrival& a : pending) {
      auto entry = vms_.Find(a.vm_name);
      if (!entry || !entry->vm || MonotonicNanos() > a.give_up_ns) continue;
      GuestHealth h = entry->vm->health();
      if (h.heartbeats > a.heartbeats_at_arrival) {
        // From a host with another clock the gap across the switch-over is not measurable here.
        if (!h.arrived_from_other_clock) stall_.Observe(static_cast<double>(h.max_heartbeat_gap_ns) / 1e6);
      } else {
        still.push_back(a);
      }
    }
    lock.lock();
    arrivals_.insert(arrivals_.end(), still.begin(), still.end());
    arrivals_cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

void AgentMetrics::OnIncomingMigrationEnd(const IncomingMigrationEnd& end) {
  migrations_.Add({{"direction", "in"}, {"outcome", end.resumed ? "completed" : "failed"}}).Increment();
  received_pages_.Increment(static_cast<double>(end.pages_received));
  received_stream_bytes_.Increment(static_cast<double>(end.stream_bytes));
}

void AgentMetrics::OnPrecheckFindings(const std::vector<Finding>& findings) {
  for (const Finding& f : findings) {
    findings_.Add({{"code", FindingCodeName(f.code)}, {"severity", SeverityName(f.severity)}})
        .Increment();
  }
}

void AgentMetrics::OnTlsHandshakeFailure(std::string_view reason) {
  tls_failures_.Add({{"reason", std::string(reason)}}).Increment();
}

}  // namespace ferry
