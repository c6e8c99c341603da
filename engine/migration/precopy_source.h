#pragma once
// The source side of a live migration (DESIGN.md steps 2-5). Run() goes through the phases in
// order — Start -> Precopy -> StopAndCopy -> Commit — and a failure or cancel in any phase before
// Commit ends it kCancelled / kFailed with the VM running on the source as before. Once Commit is sent the VM belongs to the destination; if the destination
// does not confirm the resume, the source keeps its copy paused (never running twice, never
// lost) and reports kCommitUnconfirmed.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "engine/migration/auto_converge.h"
#include "engine/migration/convergence.h"
#include "engine/migration/migration_channel.h"
#include "engine/migration/page_sender.h"
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
  // Test-only fault hook: drop one dirty page from the final (stop-and-copy) round, so a test can
  // prove that a lost page is caught by the guest.
  bool test_drop_one_final_page = false;
};

enum class SourceOutcome { kCompleted, kCancelled, kFailed, kCommitUnconfirmed };
const char* SourceOutcomeName(SourceOutcome o);

struct SourceResult {
  SourceOutcome outcome = SourceOutcome::kFailed;
  absl::Status status;  // OK only for kCompleted
  v1::MigrationStats stats;
};

class PrecopySource {
 public:
  using ProgressFn = std::function<void(const v1::MigrationEvent&)>;

  PrecopySource(Vm& vm, MigrationChannel& channel, SourceConfig config, ProgressFn progress);

  // Runs the migration to the end. On kCompleted the VM runs on the destination and the source VM
  // has been stopped; on kCancelled/kFailed the source VM runs as it did before.
  SourceResult Run();
  // From any thread; takes effect at the next batch boundary. Ignored after commit.
  void Cancel();

 private:
  absl::Status Start();
  absl::Status Precopy(bool& force);
  absl::Status StopAndCopy(bool force);
  absl::Status Commit();
  // Sends every page set in `pages`; fills round statistics.
  absl::Status SendPages(const DirtyBitmap& pages, uint32_t round, v1::RoundStats& rs, bool final_round,
                         const DirtyBitmap* populated = nullptr);
  absl::Status OpenPageSender(const v1::Started& started);
  std::string DestinationReason();
  absl::Status ExpectReply(v1::PeerReply::BodyCase want, v1::PeerReply& reply);
  void Emit(v1::MigrationPhase phase, const std::string& message);
  void RollBack(const absl::Status& why);
  bool cancelled() const { return cancel_.load(); }

  Vm& vm_;
  MigrationChannel& channel_;
  std::unique_ptr<PageSender> page_sender_;
  std::atomic<PageSender*> sender_{nullptr};  // for Cancel from another thread
  SourceConfig config_;
  ConvergenceOptions convergence_;
  SwitchoverPlanner planner_;
  AutoConverge auto_converge_;
  void SetThrottle(uint32_t percent);
  // Fault hook only: a page's content hash (0 for a zero page).
  uint64_t PageHash(uint64_t page) const;
  ProgressFn progress_;
  std::atomic<bool> cancel_{false};
  bool vm_paused_by_us_ = false;
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
  double progress_fraction_ = 0;
  uint32_t round_ = 0;
  v1::MigrationStats stats_;
  // Pages dirtied since they were last sent: collected after each pre-copy round, sent by the
  // next round or, at switch-over, together with the final collection.
  DirtyBitmap pending_;
  // Test fault hook only: a hash of each page as last sent, so the hook drops a page whose
  // destination copy is really stale (a dirty page re-sent with unchanged content is harmless).
  std::unordered_map<uint64_t, uint64_t> sent_hashes_;
};

}  // namespace ferry
