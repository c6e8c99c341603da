#include "engine/agent/migration_manager.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/base/clock.h"

namespace ferry {
namespace {

constexpr size_t kFullTrailJobs = 8;

}  // namespace

uint32_t PriorityWeight(v1::MigrationPriority p) { return p == v1::MIGRATION_PRIORITY_HIGH ? 3 : 1; }

const char* PriorityName(v1::MigrationPriority p) { return p == v1::MIGRATION_PRIORITY_HIGH ? "high" : "standard"; }

bool IsTerminalPhase(v1::MigrationPhase p) {
  return p == v1::MIGRATION_PHASE_COMPLETED || p == v1::MIGRATION_PHASE_FAILED || p == v1::MIGRATION_PHASE_CANCELLED;
}

// --- MigrationJob: the body's view, forwarded to the manager under its lock.

v1::MigrationOptions MigrationJob::options() const {
  std::lock_guard lock(manager_.mu_);
  auto* job = manager_.FindLocked(id_);
  return job ? job->spec.options : v1::MigrationOptions();
}

bool MigrationJob::cancel_requested() const {
  std::lock_guard lock(manager_.mu_);
  auto* job = manager_.FindLocked(id_);
  return job == nullptr || job->cancel_requested;
}

void MigrationJob::Record(const v1::MigrationEvent& event) {
  {
    std::lock_guard lock(manager_.mu_);
    auto* job = manager_.FindLocked(id_);
    if (job == nullptr || job->state == MigrationManager::JobState::kFinished) return;
    manager_.RecordLocked(*job, event);
  }
  manager_.cv_.notify_all();
}

void MigrationJob::Attach(MigrationControl* control) {
  std::lock_guard control_lock(manager_.control_mu_);
  bool cancel = false;
  v1::MigrationOptions options;
  {
    std::lock_guard lock(manager_.mu_);
    auto* job = manager_.FindLocked(id_);
    if (job == nullptr) return;
    job->control = control;
    cancel = job->cancel_requested;
    options = job->spec.options;
  }
  // Settings changed before the engine existed reach it now (the engine read them at its start
  // too; setting them twice is harmless).
  control->SetMaxBandwidth(options.max_bandwidth_mibps());
  if (options.max_downtime_ms() > 0) control->SetMaxDowntime(options.max_downtime_ms());
  if (cancel) (void)control->Cancel();
}

absl::Status MigrationJob::WaitToRetry(const std::string& reason) { return manager_.WaitToRetry(id_, reason); }

void MigrationJob::Detach() {
  std::lock_guard control_lock(manager_.control_mu_);
  std::lock_guard lock(manager_.mu_);
  if (auto* job = manager_.FindLocked(id_)) job->control = nullptr;
}

// --- MigrationManager

MigrationManager::MigrationManager(MigrationManagerOptions options) : options_(options) {}

MigrationManager::~MigrationManager() { Shutdown(); }

MigrationManager::Job* MigrationManager::FindLocked(const std::string& id) const {
  if (auto it = active_.find(id); it != active_.end()) return it->second.get();
  for (const auto& j : history_) {
    if (j->spec.id == id) return j.get();
  }
  return nullptr;
}

uint32_t MigrationManager::RunningLocked() const {
  uint32_t n = 0;
  for (const auto& [id, j] : active_) n += j->holds_slot ? 1 : 0;
  return n;
}

void MigrationManager::RecordLocked(Job& job, const v1::MigrationEvent& event) {
  job.events.push_back(event);
  job.events.back().set_migration_id(job.spec.id);
  ++job.next_event;
  while (job.events.size() > options_.events_per_job) {
    job.events.pop_front();
    ++job.first_event;
  }
}

MigrationManager::Job& MigrationManager::AddJobLocked(JobSpec spec, Body body) {
  auto job = std::make_unique<Job>();
  job->handle.reset(new MigrationJob(*this, spec.id, spec.vm_name));
  job->handle->link_weight_ = PriorityWeight(spec.options.priority());  // a settle job: unset, 1
  job->spec = std::move(spec);
  job->body = std::move(body);
  job->created_unix_s = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  job->created_ns = MonotonicNanos();
  Job& j = *job;
  active_[j.spec.id] = std::move(job);
  return j;
}

absl::Status MigrationManager::StartOutgoing(JobSpec spec, Body body) {
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return absl::UnavailableError("the agent is shutting down; no new migration starts");
    if (FindLocked(spec.id) != nullptr) return absl::AlreadyExistsError(absl::StrCat("migration '", spec.id, "' exists"));
    Job& j = AddJobLocked(std::move(spec), std::move(body));
    queue_.push_back(j.spec.id);
    AdmitQueuedLocked();
    if (j.state == JobState::kQueued) {
      v1::MigrationEvent e;
      e.set_phase(v1::MIGRATION_PHASE_QUEUED);
      e.set_message(absl::StrFormat("queued: %u of %u migration slots on this host are busy; %zu job(s) waiting",
                                    RunningLocked(), options_.max_concurrent, queue_.size()));
      RecordLocked(j, e);
    }
  }
  cv_.notify_all();
  JoinDoneThreads();
  return absl::OkStatus();
}

absl::Status MigrationManager::StartSettling(JobSpec spec, Body body) {
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return absl::UnavailableError("the agent is shutting down");
    if (FindLocked(spec.id) != nullptr) return absl::AlreadyExistsError(absl::StrCat("migration '", spec.id, "' exists"));
    Launch(AddJobLocked(std::move(spec), std::move(body)));  // holds no slot
  }
  cv_.notify_all();
  JoinDoneThreads();
  return absl::OkStatus();
}

void MigrationManager::AdmitQueuedLocked() {
  const int64_t now = MonotonicNanos();
  while (!queue_.empty() && RunningLocked() < options_.max_concurrent) {
    // High priority first; among equals, the first to arrive. A job refused by a busy
    // destination waits out its back-off first.
    auto next = queue_.end();
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (active_[*it]->retry_at_ns > now) continue;
      if (next == queue_.end() ||
          PriorityWeight(active_[*it]->spec.options.priority()) > PriorityWeight(active_[*next]->spec.options.priority())) {
        next = it;
      }
    }
    if (next == queue_.end()) return;
    Job& job = *active_[*next];
    queue_.erase(next);
    job.holds_slot = true;
    Launch(job);
  }
}

void MigrationManager::Launch(Job& job) {
  job.state = JobState::kRunning;
  job.started_ns = MonotonicNanos();
  if (job.waiting_to_retry) {
    cv_.notify_all();  // its thread waits in WaitToRetry and goes on
    return;
  }
  Job* j = &job;
  job.thread = std::thread([this, j] { RunJob(j); });
}

void MigrationManager::RunJob(Job* job) {
  job->body(*job->handle);
  {
    std::lock_guard lock(mu_);
    if (job->events.empty() || !IsTerminalPhase(job->events.back().phase())) {
      v1::MigrationEvent e;
      e.set_phase(v1::MIGRATION_PHASE_FAILED);
      e.set_error("the migration ended without reporting an outcome");
      RecordLocked(*job, e);
    }
    FinishLocked(*job);
  }
  cv_.notify_all();
}

absl::Status MigrationManager::WaitToRetry(const std::string& id, const std::string& reason) {
  std::unique_lock lock(mu_);
  Job* job = FindLocked(id);
  if (job == nullptr || job->state != JobState::kRunning) return absl::InternalError("WaitToRetry outside a running job");
  if (job->cancel_requested) return absl::CancelledError("migration cancelled by request");
  const int64_t now = MonotonicNanos();
  if (job->refusals++ == 0) job->refused_since_ns = now;
  const int64_t give_up_ns = job->refused_since_ns + absl::ToInt64Nanoseconds(absl::FromChrono(options_.busy_retry_for));
  if (now >= give_up_ns) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the destination kept refusing the migration for %.0f s (retried %u times): %s",
        static_cast<double>(now - job->refused_since_ns) / 1e9, job->refusals - 1, reason));
  }
  auto backoff = options_.retry_first;
  for (uint32_t i = 1; i < job->refusals && backoff < options_.retry_max; ++i) backoff *= 2;
  backoff = std::min(backoff, options_.retry_max);
  job->retry_at_ns = std::min(give_up_ns, now + absl::ToInt64Nanoseconds(absl::FromChrono(backoff)));
  // Queued again: its slot goes to the next job while it waits.
  job->waiting_to_retry = true;
  job->holds_slot = false;
  job->state = JobState::kQueued;
  queue_.push_back(id);
  v1::MigrationEvent e;
  e.set_phase(v1::MIGRATION_PHASE_QUEUED);
  e.set_error(reason);
  e.set_message(absl::StrFormat("queued: the destination is busy; retry %u in %.1f s (gives up %.0f s after the first refusal)",
                                job->refusals, absl::ToDoubleSeconds(absl::FromChrono(backoff)),
                                absl::ToDoubleSeconds(absl::FromChrono(options_.busy_retry_for))));
  RecordLocked(*job, e);
  AdmitQueuedLocked();
  cv_.notify_all();
  while (job->state == JobState::kQueued) {
    if (MonotonicNanos() >= job->retry_at_ns) AdmitQueuedLocked();  // due now: takes a free slot
    if (job->state != JobState::kQueued) break;
    cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  job->waiting_to_retry = false;
  job->retry_at_ns = 0;
  if (job->cancel_requested) return absl::CancelledError("migration cancelled by request");
  return absl::OkStatus();
}

void MigrationManager::FinishLocked(Job& job) {
  job.state = JobState::kFinished;
  job.link_bytes = link_share_.BytesOf(job.spec.id);
  link_share_.Forget(job.spec.id);
  job.control = nullptr;
  job.body = nullptr;
  if (job.thread.joinable()) done_threads_.push_back(std::move(job.thread));
  auto it = active_.find(job.spec.id);
  if (it == active_.end()) return;
  history_.push_back(std::move(it->second));
  active_.erase(it);
  while (history_.size() > options_.history) history_.pop_front();
  // Older finished jobs keep only their last event (it carries the statistics); the newest keep
  // their trail for watchers that are still catching up.
  if (history_.size() > kFullTrailJobs) {
    Job& older = *history_[history_.size() - 1 - kFullTrailJobs];
    while (older.events.size() > 1) {
      older.events.pop_front();
      ++older.first_event;
    }
  }
  AdmitQueuedLocked();
}

absl::StatusOr<std::shared_ptr<MigrationJob>> MigrationManager::AdmitIncoming(JobSpec spec) {
  std::shared_ptr<MigrationJob> handle;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return absl::UnavailableError("the agent is shutting down");
    // A finished job of that id may stay in the history (a source retrying); a running one may not.
    if (active_.count(spec.id) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("migration '", spec.id, "' is already running on this host"));
    }
    const uint32_t running = RunningLocked();
    if (running >= options_.max_concurrent) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("this host runs %u of its %u concurrent migrations (incoming and outgoing); "
                          "try again when one ends",
                          running, options_.max_concurrent));
    }
    Job& job = AddJobLocked(std::move(spec), nullptr);
    job.direction = v1::MIGRATION_DIRECTION_INCOMING;
    job.state = JobState::kRunning;
    job.holds_slot = true;
    job.started_ns = job.created_ns;
    handle = job.handle;
  }
  cv_.notify_all();
  return handle;
}

void MigrationManager::FinishIncoming(MigrationJob& handle) {
  {
    std::lock_guard lock(mu_);
    auto it = active_.find(handle.id());
    if (it == active_.end()) return;
    Job& job = *it->second;
    if (job.events.empty() || !IsTerminalPhase(job.events.back().phase())) {
      v1::MigrationEvent e;
      e.set_phase(v1::MIGRATION_PHASE_FAILED);
      e.set_error("the incoming migration ended before the VM was resumed here");
      RecordLocked(job, e);
    }
    FinishLocked(job);
  }
  cv_.notify_all();
  JoinDoneThreads();
}

v1::MigrationInfo MigrationManager::InfoLocked(const Job& job) const {
  v1::MigrationInfo info;
  info.set_migration_id(job.spec.id);
  if (!job.events.empty()) *info.mutable_last_event() = job.events.back();
  info.set_vm_name(job.spec.vm_name);
  info.set_direction(job.direction);
  info.set_peer(job.spec.peer);
  *info.mutable_options() = job.spec.options;
  info.set_finished(job.state == JobState::kFinished);
  info.set_created_unix_s(job.created_unix_s);
  const int64_t queued_until = job.state == JobState::kQueued ? MonotonicNanos() : job.started_ns;
  info.set_queued_s(static_cast<double>(queued_until - job.created_ns) / 1e9);
  info.set_link_weight(job.handle->link_weight());
  info.set_link_bytes(job.state == JobState::kFinished ? job.link_bytes : link_share_.BytesOf(job.spec.id));
  return info;
}

absl::StatusOr<v1::MigrationInfo> MigrationManager::Get(const std::string& id) const {
  std::lock_guard lock(mu_);
  const Job* job = FindLocked(id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no migration '", id, "' on this agent"));
  return InfoLocked(*job);
}

v1::ListMigrationsResponse MigrationManager::List() const {
  std::lock_guard lock(mu_);
  v1::ListMigrationsResponse out;
  std::vector<const Job*> active;
  for (const auto& [id, j] : active_) active.push_back(j.get());
  std::sort(active.begin(), active.end(), [](const Job* a, const Job* b) { return a->created_ns < b->created_ns; });
  for (const Job* j : active) *out.add_migrations() = InfoLocked(*j);
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) *out.add_migrations() = InfoLocked(**it);
  out.set_max_concurrent(options_.max_concurrent);
  out.set_running(RunningLocked());
  out.set_queued(static_cast<uint32_t>(queue_.size()));
  return out;
}

std::string MigrationManager::ActiveJobOf(const std::string& vm_name) const {
  std::lock_guard lock(mu_);
  for (const auto& [id, j] : active_) {
    if (j->spec.vm_name == vm_name) return id;
  }
  return "";
}

absl::StatusOr<v1::MigrationInfo> MigrationManager::Cancel(const std::string& id) {
  // control_mu_ keeps the engine attached (Detach waits for it) while it is asked, without
  // holding mu_, which the engine's own events take.
  std::lock_guard control_lock(control_mu_);
  MigrationControl* control = nullptr;
  v1::MigrationInfo info;
  {
    std::lock_guard lock(mu_);
    Job* job = FindLocked(id);
    if (job == nullptr) return absl::NotFoundError(absl::StrCat("no migration '", id, "' on this agent"));
    if (job->state == JobState::kFinished) {
      return absl::FailedPreconditionError(absl::StrCat("migration '", id, "' has already ended (",
                                                        job->events.empty() ? "?" : v1::MigrationPhase_Name(job->events.back().phase()),
                                                        "); nothing to cancel"));
    }
    if (job->direction == v1::MIGRATION_DIRECTION_INCOMING) {
      return absl::FailedPreconditionError(absl::StrCat("migration '", id, "' comes in from ", job->spec.peer,
                                                        "; cancel it on the source agent"));
    }
    job->cancel_requested = true;
    if (job->state == JobState::kQueued) {
      // Its body runs at once, outside the slots, only to end it (it sees the cancel first).
      queue_.erase(std::find(queue_.begin(), queue_.end(), id));
      Launch(*job);
      return InfoLocked(*job);
    }
    control = job->control;
    info = InfoLocked(*job);
  }
  cv_.notify_all();
  if (control != nullptr) {
    absl::Status st = control->Cancel();
    if (!st.ok()) return st;
  }
  return info;
}

absl::StatusOr<v1::MigrationInfo> MigrationManager::Set(const std::string& id, std::optional<double> max_bandwidth_mibps,
                                                        std::optional<uint32_t> max_downtime_ms) {
  if (max_bandwidth_mibps && (!std::isfinite(*max_bandwidth_mibps) || *max_bandwidth_mibps < 0)) {
    return absl::InvalidArgumentError("max bandwidth must be a number of MiB/s >= 0 (0 = unlimited)");
  }
  if (max_downtime_ms && (*max_downtime_ms == 0 || *max_downtime_ms > 600000)) {
    return absl::InvalidArgumentError("max downtime must be between 1 and 600000 ms");
  }
  if (!max_bandwidth_mibps && !max_downtime_ms) {
    return absl::InvalidArgumentError("nothing to set: give a max bandwidth and/or a max downtime");
  }
  std::lock_guard control_lock(control_mu_);
  MigrationControl* control = nullptr;
  v1::MigrationInfo info;
  {
  std::lock_guard lock(mu_);
  Job* job = FindLocked(id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no migration '", id, "' on this agent"));
  if (job->state == JobState::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat("migration '", id, "' has already ended; nothing to change"));
  }
  if (job->direction == v1::MIGRATION_DIRECTION_INCOMING) {
    return absl::FailedPreconditionError(absl::StrCat("migration '", id, "' comes in from ", job->spec.peer,
                                                      "; change it on the source agent"));
  }
  if (max_bandwidth_mibps) job->spec.options.set_max_bandwidth_mibps(*max_bandwidth_mibps);
  if (max_downtime_ms) job->spec.options.set_max_downtime_ms(*max_downtime_ms);
  control = job->control;
  info = InfoLocked(*job);
  }
  if (control != nullptr) {
    if (max_bandwidth_mibps) control->SetMaxBandwidth(*max_bandwidth_mibps);
    if (max_downtime_ms) control->SetMaxDowntime(*max_downtime_ms);
  }
  return info;
}

absl::Status MigrationManager::Watch(const std::string& id, bool from_start,
                                     const std::function<bool(const v1::MigrationEvent&)>& deliver,
                                     const std::function<bool()>& stop) const {
  std::unique_lock lock(mu_);
  const Job* job = FindLocked(id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("no migration '", id, "' on this agent"));
  uint64_t next = from_start ? job->first_event : (job->next_event > 0 ? job->next_event - 1 : 0);
  for (;;) {
    job = FindLocked(id);
    if (job == nullptr) return absl::NotFoundError(absl::StrCat("migration '", id, "' left the history"));
    next = std::max(next, job->first_event);  // events dropped meanwhile are gone
    while (next < job->next_event) {
      v1::MigrationEvent e = job->events[next - job->first_event];
      ++next;
      lock.unlock();
      // Not done at the first terminal phase: the engine reports its end, then the job its
      // statistics; the job's end is its finish.
      if (!deliver(e)) return absl::CancelledError("the watcher went away");
      lock.lock();
      job = FindLocked(id);
      if (job == nullptr) return absl::NotFoundError(absl::StrCat("migration '", id, "' left the history"));
      next = std::max(next, job->first_event);
    }
    if (job->state == JobState::kFinished) return absl::OkStatus();
    if (stop && stop()) return absl::CancelledError("the watcher went away");
    cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
}

void MigrationManager::Shutdown() {
  {
    std::lock_guard control_lock(control_mu_);
    std::vector<MigrationControl*> controls;
    {
      std::lock_guard lock(mu_);
      shutting_down_ = true;
      for (const std::string& id : queue_) {
        Job& job = *active_[id];
        job.cancel_requested = true;
        Launch(job);
      }
      queue_.clear();
      for (auto& [id, job] : active_) {
        job->cancel_requested = true;
        if (job->control != nullptr) controls.push_back(job->control);
      }
    }
    for (MigrationControl* c : controls) (void)c->Cancel();
  }
  cv_.notify_all();
  // Running bodies end (cancelled, or past commit: they finish on their own).
  for (;;) {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      bool outgoing_left = false;
      for (const auto& [id, job] : active_) outgoing_left |= job->direction == v1::MIGRATION_DIRECTION_OUTGOING;
      threads.swap(done_threads_);
      if (!outgoing_left && threads.empty()) return;
    }
    for (auto& t : threads) t.join();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void MigrationManager::JoinDoneThreads() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(done_threads_);
  }
  for (auto& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // a job's own thread cannot wait for itself; it is about to return
    } else {
      t.join();
    }
  }
}

}  // namespace ferry
