#pragma once
// The source side of a live migration (DESIGN.md steps 2-5) as an explicit state machine:
//
//   kIdle -> kStarting -> kPrecopy -> kStopAndCopy -> kCommitting -> kCompleted
//                 \-----------\-----------\---------------\-> kRolledBack
//                                                kCommitting -> kResolving -> kCompleted
//                                                                 \-> kRolledBack | kCommitUnconfirmed
//
// (the table is kSourceTransitions in the .cc; docs/wire_protocol.md "The source's states").
// Until commit is sent a failure, a cancel or an expired bound rolls back: the VM runs on the
// source as before. A commit the destination refuses rolls back too. Only a commit whose answer
// was lost leaves the VM paused: the source then asks the destination (a fresh connection)
// whether the VM runs there and resolves by itself; kCommitUnconfirmed when nobody answers.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "engine/migration/auto_converge.h"
#include "engine/migration/convergence.h"
#include "engine/migration/disk_copy.h"
#include "engine/migration/disk_mirror.h"
#include "engine/migration/migration_channel.h"
#include "engine/migration/page_sender.h"
#include "engine/migration/serialized_channel.h"
#include "engine/migration/watchdog.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

struct SourceConfig {
  std::string migration_id;
  std::string source_agent;
  std::string boot_id;  // this host's boot id (to know whether both ends share a clock)
  v1::MigrationOptions options;
  // Protocol 2: offer these data connections at start (unset: pages travel on the control
  // stream), and open them once the destination accepted (engine/transport's DataSender).
  std::optional<v1::DataPathOffer> data_path;
  std::function<absl::StatusOr<std::unique_ptr<PageSender>>(const v1::DataPathAccept&)> open_data_path;
  // Bounds on every wait: each reply of the destination within reply_timeout; the guest paused at
  // most options.max_pause_ms (0 = kDefaultMaxPauseMs) before commit, which also bounds the wait
  // for the commit's answer.
  std::chrono::milliseconds reply_timeout{30000};
  // After a commit whose answer was lost: asks the destination over a fresh connection whether
  // the VM runs there (true), or never will (false); an error means "no answer, ask again".
  std::function<absl::StatusOr<bool>()> ask_destination_runs_vm;
  std::chrono::milliseconds resolve_timeout{30000};
  std::chrono::milliseconds resolve_retry{300};
  // Test seam (unset in production): wraps the page sender once it is open, e.g. with a fault a
  // test-only agent injects (tests/fault_agent).
  std::function<std::unique_ptr<PageSender>(std::unique_ptr<PageSender>, Vm&)> wrap_page_sender;
  // A VM defined on a shared datastore (docs/datastores.md): the lock passes exactly at commit.
  // release_ownership runs once the final copy is done, just before commit is sent;
  // retake_ownership before a VM whose commit did not take effect resumes here (an error keeps
  // it paused, commit-unconfirmed: it never runs without its lock). Both unset otherwise.
  std::optional<v1::VmHome> home;
  std::function<void()> release_ownership;
  std::function<absl::Status()> retake_ownership;
  // A storage migration ("change both host and datastore", docs/storage_migration.md): the VM's
  // file disks are copied to the destination's datastore `storage_datastore` (its name there)
  // while the guest runs, with the write log `disk_write_log` iterated like the dirty log; the
  // last dirty blocks move inside stop-and-copy. Empty: the disks stay where they are.
  std::string storage_datastore;
  DiskWriteLog disk_write_log;
  // The mirror mode's hooks into the VMM (options.disk_copy = DISK_COPY_MODE_MIRROR).
  DiskMirrorHooks disk_mirror;
};

// The disk copy mode options ask for (UNSPECIFIED: kDefaultDiskCopyMode, docs/storage_migration.md).
inline constexpr v1::DiskCopyMode kDefaultDiskCopyMode = v1::DISK_COPY_MODE_ITERATE;
v1::DiskCopyMode DiskCopyModeOf(const v1::MigrationOptions& options);

inline constexpr uint32_t kDefaultMaxPauseMs = 5000;

enum class SourceState {
  kIdle,
  kStarting,          // start sent, waiting for started
  kPrecopy,           // rounds while the guest runs
  kStopAndCopy,       // guest paused: final round, device state, waiting for state_loaded
  kCommitting,        // commit sent: the destination may run the VM from here on
  kResolving,         // commit's answer lost: asking the destination whether the VM runs there
  kCompleted,         // the VM runs on the destination; the source's copy is stopped
  kRolledBack,        // cancelled or failed before the VM left: it runs on the source
  kCommitUnconfirmed  // nobody could say where the VM runs: kept paused here for the operator
};
const char* SourceStateName(SourceState s);
// Whether the source's table allows `from` -> `to`.
bool SourceTransitionAllowed(SourceState from, SourceState to);

enum class SourceOutcome { kCompleted, kCancelled, kFailed, kCommitUnconfirmed };
const char* SourceOutcomeName(SourceOutcome o);

struct SourceResult {
  SourceOutcome outcome = SourceOutcome::kFailed;
  absl::Status status;  // OK only for kCompleted
  v1::MigrationStats stats;
  // kFailed at the start because the destination refused it for now (PeerError.temporary: its
  // migration slots or memory are busy); nothing moved, the VM ran on here throughout.
  bool refused_for_now = false;
};

class PrecopySource {
 public:
  using ProgressFn = std::function<void(const v1::MigrationEvent&)>;

  PrecopySource(Vm& vm, MigrationChannel& channel, SourceConfig config, ProgressFn progress);

  // Runs the migration to the end. On kCompleted the VM runs on the destination and the source VM
  // has been stopped; on kCancelled/kFailed the source VM runs as it did before.
  SourceResult Run();
  // From any thread; takes effect at the next batch boundary, or at once while waiting on the
  // destination during stop-and-copy. Refused (FailedPrecondition) once commit was sent.
  absl::Status TryCancel();
  void Cancel() { (void)TryCancel(); }
  SourceState state() const;
  // From any thread (SetMigration): the bandwidth cap applies from the next batch, the downtime
  // target from the next switch-over decision.
  void SetMaxBandwidth(double mibps);
  void SetMaxDowntime(uint32_t ms);

 private:
  absl::Status Start();
  absl::Status Precopy(bool& force);
  absl::Status StopAndCopy(bool force);
  // `refused`: the destination answered the commit with an error (it discarded its copy).
  absl::Status Commit(bool& refused);
  // Sends every page set in `pages` (and `disks`' blocks, on the data connections); fills round
  // statistics.
  absl::Status SendPages(const DirtyBitmap& pages, uint32_t round, v1::RoundStats& rs, bool final_round,
                         const DirtyBitmap* populated = nullptr, std::span<const RoundDisk> disks = {});
  absl::Status OpenPageSender(const v1::Started& started);
  // Storage migration: sends the disks' pending blocks as `round` and adds them to the statistics.
  absl::Status SendDiskBlocks(uint32_t round, bool final);
  std::string DestinationReason();
  absl::Status ExpectReply(v1::PeerReply::BodyCase want, v1::PeerReply& reply);
  void Emit(v1::MigrationPhase phase, const std::string& message);
  void RollBack(const absl::Status& why);
  // kCommitting: the commit's answer was lost. Asks the destination until it answers or
  // resolve_timeout passes; the outcome is the VM's true place.
  SourceOutcome Resolve(absl::Status& status);
  // The VM runs on the destination: stop the source's copy.
  void FinishHandedOver();
  // The datastore lock's handover (config_.home): released just before commit is sent, retaken
  // before a VM whose commit did not take effect resumes here.
  void ReleaseOwnershipForCommit();
  absl::Status RetakeOwnershipBeforeResume();
  // The commit did not take effect but the lock could not be retaken: the VM stays paused here.
  SourceOutcome KeepPausedWithoutOwnership(absl::Status& status, const absl::Status& why);
  // Why a rollback happened, as the user should read it (cancel, the pause bound, or `st`).
  absl::Status ExplainRollBack(absl::Status st) const;
  // Moves along the table (a move it does not allow is a bug: it aborts the process).
  void Transition(SourceState to);
  // Called by the pause watchdog: breaks the link unless commit was sent meanwhile.
  void OnPauseBoundExpired();
  // Emit's progress: round 1 by what it sent, later rounds by how close the dirty bytes left
  // are to what fits the downtime target (so a migration that cannot converge does not show 98 %).
  double ProgressFraction(v1::MigrationPhase phase) const;
  uint32_t max_pause_ms() const;
  bool cancelled() const { return cancel_.load(); }

  Vm& vm_;
  SerializedSendChannel serialized_channel_;  // the disk mirror sends beside the pre-copy
  MigrationChannel& channel_;
  std::unique_ptr<PageSender> page_sender_;
  std::atomic<PageSender*> sender_{nullptr};  // for Cancel from another thread
  std::unique_ptr<DiskCopySource> disk_copy_;  // a storage migration's disks
  std::atomic<DiskCopySource*> disk_copy_ptr_{nullptr};  // for Cancel from another thread
  // The disks' blocks ride in the data connections' rounds with the pages (bulk copy in round 1,
  // each round's blocks beside its pages, the final blocks in the final round); false: they are
  // DiskBlocks messages on the control stream (--transport grpc).
  bool disks_on_data_path_ = false;
  std::unique_ptr<DiskMirror> disk_mirror_;  // mirror mode, from the bulk copy's end to the pause
  int64_t mirror_start_ns_ = 0;
  // Mirror mode: stops the mirror (its cuts were all acknowledged, or its error is returned) and
  // adds its figures to the statistics.
  absl::Status StopMirror();
  bool mirror_mode() const { return disk_copy_ && DiskCopyModeOf(config_.options) == v1::DISK_COPY_MODE_MIRROR; }
  SourceConfig config_;
  ConvergenceOptions convergence_;
  SwitchoverPlanner planner_;
  AutoConverge auto_converge_;
  void SetThrottle(uint32_t percent);
  ProgressFn progress_;
  std::atomic<bool> cancel_{false};
  mutable std::mutex state_mu_;  // state_ and the decision to cancel or to commit
  SourceState state_ = SourceState::kIdle;
  std::atomic<bool> pause_bound_hit_{false};
  std::unique_ptr<Watchdog> pause_watchdog_;  // armed while the guest is paused before commit
  std::atomic<bool> reply_deadline_hit_{false};
  bool start_refused_for_now_ = false;
  int64_t precopy_end_ns_ = 0;
  uint64_t round1_sent_bytes_ = 0;
  bool vm_paused_by_us_ = false;
  bool ownership_released_ = false;  // the datastore lock was let go for the commit
  bool dirty_tracking_on_ = false;
  bool same_clock_ = false;
  int64_t start_ns_ = 0;
  int64_t precopy_start_ns_ = 0;
  int64_t pause_ns_ = 0;
  int64_t state_loaded_ns_ = 0;
  uint64_t remaining_bytes_ = 0;
  double last_bandwidth_bps_ = 0;
  double last_dirty_rate_mibps_ = 0;
  double last_expected_ms_ = 0;
  uint32_t round_ = 0;
  v1::MigrationStats stats_;
  // Pages dirtied since they were last sent: collected after each pre-copy round, sent by the
  // next round or, at switch-over, together with the final collection.
  DirtyBitmap pending_;
  std::atomic<double> max_bandwidth_mibps_{0};
  std::atomic<uint32_t> new_max_downtime_ms_{0};  // from SetMaxDowntime, taken before the next decision
};

}  // namespace ferry
