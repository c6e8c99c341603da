#pragma once
// Every migration of this agent, outgoing and incoming, as a job (docs/jobs.md): an id, a phase,
// a priority, options that can change while it runs, its events and, once it ends, its statistics
// in a bounded history. An outgoing job runs on its own thread, so the RPC that started it only
// follows its events; a client that goes away changes nothing.
//
// Admission: the host runs at most max_concurrent migrations at once, incoming and outgoing
// together. Outgoing jobs beyond that wait in a queue (phase QUEUED; high priority first, then in
// order of arrival) and start as slots free up; an incoming migration beyond it is refused at
// once (its source cannot wait on an open stream). While several run, the data senders share the
// link by the jobs' weights (link_share(): high 3, standard 1).
//
// A job's life: queued -> running -> finished. Cancel moves a queued job straight to its
// clean-up run; a running one is asked through its MigrationControl.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/migration/link_share.h"
#include "proto/ferry/v1/agent.pb.h"

namespace ferry {

// What the manager may ask of a running migration (the source engine, through an adapter).
class MigrationControl {
 public:
  virtual ~MigrationControl() = default;
  // FailedPrecondition when it is too late (commit sent).
  virtual absl::Status Cancel() = 0;
  virtual void SetMaxBandwidth(double mibps) = 0;
  virtual void SetMaxDowntime(uint32_t ms) = 0;
};

struct MigrationManagerOptions {
  uint32_t max_concurrent = 4;  // incoming + outgoing migrations running at once
  size_t history = 64;          // finished jobs kept (with their last event and statistics)
  size_t events_per_job = 512;  // a running job's events kept for watchers that join late
  // An outgoing job whose destination refuses it for now (busy) queues again and retries after
  // retry_first, doubling up to retry_max, until it has been refused for busy_retry_for.
  std::chrono::milliseconds retry_first{250};
  std::chrono::milliseconds retry_max{4000};
  std::chrono::milliseconds busy_retry_for{std::chrono::minutes(5)};
};

// High 3, standard (and unspecified) 1.
uint32_t PriorityWeight(v1::MigrationPriority p);
const char* PriorityName(v1::MigrationPriority p);  // "high" | "standard"
bool IsTerminalPhase(v1::MigrationPhase p);

// One job, as its body sees it. Thread-safe.
class MigrationJob {
 public:
  const std::string& id() const { return id_; }
  const std::string& vm_name() const { return vm_name_; }
  v1::MigrationOptions options() const;  // as they are now (SetMigration changes them)
  uint32_t link_weight() const { return link_weight_; }
  bool cancel_requested() const;
  // The job's newest event: watchers see it, the last one (a terminal phase) stays in the history.
  void Record(const v1::MigrationEvent& event);
  // The engine that runs the job from now on; a cancel asked before this cancels it at once and
  // settings changed meanwhile are applied. Detach before the engine goes away.
  void Attach(MigrationControl* control);
  void Detach();
  // The destination refused the job for now (`reason`: its slots or memory are busy). Gives the
  // slot back and waits QUEUED, the reason shown, until a retry is due and a slot is free (OK:
  // run the next attempt), the job is cancelled (Cancelled), or it has been refused for longer
  // than busy_retry_for (DeadlineExceeded, naming the reason). Only from the job's own body.
  absl::Status WaitToRetry(const std::string& reason);

 private:
  friend class MigrationManager;
  MigrationJob(class MigrationManager& manager, std::string id, std::string vm_name) :
      manager_(manager), id_(std::move(id)), vm_name_(std::move(vm_name)) {}
  MigrationManager& manager_;
  const std::string id_;
  const std::string vm_name_;
  uint32_t link_weight_ = 1;
};

struct JobSpec {
  std::string id;
  std::string vm_name;
  std::string peer;  // outgoing: the destination's address; incoming: the source agent's name
  v1::MigrationOptions options;
};

class MigrationManager {
 public:
  using Body = std::function<void(MigrationJob&)>;

  explicit MigrationManager(MigrationManagerOptions options = {});
  ~MigrationManager();  // Shutdown()

  // Queues an outgoing job; `body` runs on the job's own thread once a slot is free (at once when
  // one is) and must end by recording a terminal event. AlreadyExists for a known id.
  absl::Status StartOutgoing(JobSpec spec, Body body);
  // An outgoing job that moves nothing (settling a commit nobody confirmed, commit_resolver.h):
  // `body` runs at once on its own thread, outside the slots. AlreadyExists for a known id.
  absl::Status StartSettling(JobSpec spec, Body body);
  // Takes a slot for an incoming migration now, or refuses (ResourceExhausted, naming the limit).
  // The caller records its events and calls FinishIncoming.
  absl::StatusOr<std::shared_ptr<MigrationJob>> AdmitIncoming(JobSpec spec);
  void FinishIncoming(MigrationJob& job);

  absl::StatusOr<v1::MigrationInfo> Get(const std::string& id) const;
  v1::ListMigrationsResponse List() const;
  // The job moving `vm_name` now (queued or running), or "".
  std::string ActiveJobOf(const std::string& vm_name) const;
  // Cancels a queued or running outgoing job. NotFound, or FailedPrecondition when it ended, is
  // incoming (cancel it on its source), or is past commit.
  absl::StatusOr<v1::MigrationInfo> Cancel(const std::string& id);
  // Changes a queued or running job's bandwidth cap and/or downtime target.
  absl::StatusOr<v1::MigrationInfo> Set(const std::string& id, std::optional<double> max_bandwidth_mibps,
                                        std::optional<uint32_t> max_downtime_ms);
  // Calls `deliver` with the job's events in order until the job has finished (then OK), until
  // `deliver` returns false or `stop()` says so (then Cancelled). from_start: every event kept
  // (the client that started it); else from the newest one (a watcher joining).
  absl::Status Watch(const std::string& id, bool from_start, const std::function<bool(const v1::MigrationEvent&)>& deliver,
                     const std::function<bool()>& stop) const;
  // Refuses new jobs, cancels the queued and running ones and waits for their threads.
  void Shutdown();

  LinkShare& link_share() { return link_share_; }
  uint32_t max_concurrent() const { return options_.max_concurrent; }

 private:
  friend class MigrationJob;
  enum class JobState { kQueued, kRunning, kFinished };
  struct Job {
    std::shared_ptr<MigrationJob> handle;
    JobSpec spec;
    v1::MigrationDirection direction = v1::MIGRATION_DIRECTION_OUTGOING;
    JobState state = JobState::kQueued;
    bool holds_slot = false;
    bool cancel_requested = false;
    MigrationControl* control = nullptr;
    Body body;
    std::thread thread;
    std::deque<v1::MigrationEvent> events;
    uint64_t first_event = 0;  // sequence number of events.front()
    uint64_t next_event = 0;
    double created_unix_s = 0;
    int64_t created_ns = 0;
    int64_t started_ns = 0;
    uint64_t link_bytes = 0;  // once finished (the share forgets it)
    // Refused by a busy destination: its thread waits in WaitToRetry (queued again) until
    // retry_at_ns; refused_since_ns is the first refusal of the streak.
    bool waiting_to_retry = false;
    uint32_t refusals = 0;
    int64_t refused_since_ns = 0;
    int64_t retry_at_ns = 0;
  };

  // A new job for `spec` in active_ (the caller checked its id is free there), created now.
  Job& AddJobLocked(JobSpec spec, Body body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordLocked(Job& job, const v1::MigrationEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Launch(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdmitQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(Job* job);
  absl::Status WaitToRetry(const std::string& id, const std::string& reason);
  uint32_t RunningLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Job* FindLocked(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::MigrationInfo InfoLocked(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void JoinDoneThreads();

  const MigrationManagerOptions options_;
  LinkShare link_share_;
  std::mutex control_mu_;  // taken before mu_: a job's engine stays attached while it is asked
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;  // any job changed
  std::map<std::string, std::unique_ptr<Job>> active_ ABSL_GUARDED_BY(mu_);  // queued and running
  std::deque<std::unique_ptr<Job>> history_ ABSL_GUARDED_BY(mu_);           // finished, newest last
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);                      // queued ids, arrival order
  std::vector<std::thread> done_threads_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ferry
