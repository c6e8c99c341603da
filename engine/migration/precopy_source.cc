#include "engine/migration/precopy_source.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"
#include "engine/memory/page.h"
#include "engine/migration/protocol.h"
#include "engine/migration/stream_page_sender.h"
#include "engine/migration/watchdog.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {
namespace {
struct SourceTransition {
  SourceState from;
  SourceState to;
};
// Every move the source makes; anything else is a bug. Before kCommitting every state may roll
// back; from kCommitting on the VM may run on the destination, so only an answer decides.
constexpr SourceTransition kSourceTransitions[] = {
    {SourceState::kIdle, SourceState::kStarting},
    {SourceState::kIdle, SourceState::kRolledBack},
    {SourceState::kStarting, SourceState::kPrecopy},
    {SourceState::kStarting, SourceState::kRolledBack},
    {SourceState::kPrecopy, SourceState::kStopAndCopy},
    {SourceState::kPrecopy, SourceState::kRolledBack},
    {SourceState::kStopAndCopy, SourceState::kCommitting},
    {SourceState::kStopAndCopy, SourceState::kRolledBack},
    {SourceState::kCommitting, SourceState::kCompleted},
    {SourceState::kCommitting, SourceState::kRolledBack},  // the destination refused the commit
    {SourceState::kCommitting, SourceState::kResolving},   // the commit's answer was lost
    {SourceState::kCommitting, SourceState::kCommitUnconfirmed},  // refused, but the lock is gone
    {SourceState::kResolving, SourceState::kCompleted},
    {SourceState::kResolving, SourceState::kRolledBack},
    {SourceState::kResolving, SourceState::kCommitUnconfirmed},
};
}  // namespace

const char* SourceStateName(SourceState s) {
  switch (s) {
    case SourceState::kIdle: return "idle";
    case SourceState::kStarting: return "starting";
    case SourceState::kPrecopy: return "precopy";
    case SourceState::kStopAndCopy: return "stop-and-copy";
    case SourceState::kCommitting: return "committing";
    case SourceState::kResolving: return "resolving";
    case SourceState::kCompleted: return "completed";
    case SourceState::kRolledBack: return "rolled-back";
    case SourceState::kCommitUnconfirmed: return "commit-unconfirmed";
  }
  return "unknown";
}

bool SourceTransitionAllowed(SourceState from, SourceState to) {
  for (const SourceTransition& t : kSourceTransitions) {
    if (t.from == from && t.to == to) return true;
  }
  return false;
}

const char* SourceOutcomeName(SourceOutcome o) {
  switch (o) {
    case SourceOutcome::kCompleted: return "completed";
    case SourceOutcome::kCancelled: return "cancelled";
    case SourceOutcome::kFailed: return "failed";
    case SourceOutcome::kCommitUnconfirmed: return "commit-unconfirmed";
  }
  return "unknown";
}

PrecopySource::PrecopySource(Vm& vm, MigrationChannel& channel, SourceConfig config, ProgressFn progress)
    : vm_(vm),
      serialized_channel_(channel),
      channel_(serialized_channel_),
      config_(std::move(config)),
      convergence_(ConvergenceOptionsFrom(config_.options)),
      planner_(convergence_),
      auto_converge_(AutoConvergeOptionsFrom(config_.options)),
      progress_(std::move(progress)),
      max_bandwidth_mibps_(config_.options.max_bandwidth_mibps()) {}

void PrecopySource::SetMaxBandwidth(double mibps) {
  max_bandwidth_mibps_.store(mibps);
  if (PageSender* s = sender_.load()) s->SetMaxBandwidth(mibps);
}

void PrecopySource::SetMaxDowntime(uint32_t ms) {
  if (ms > 0) new_max_downtime_ms_.store(ms);
}

absl::Status PrecopySource::TryCancel() {
  std::lock_guard lock(state_mu_);
  switch (state_) {
    case SourceState::kCommitting:
    case SourceState::kResolving:
    case SourceState::kCompleted:
    case SourceState::kCommitUnconfirmed:
      return absl::FailedPreconditionError(absl::StrCat(
          "migration ", config_.migration_id, " is past commit (", SourceStateName(state_),
          "): the VM was handed to the destination and the migration can no longer be cancelled"));
    case SourceState::kRolledBack:
      return absl::FailedPreconditionError(
          absl::StrCat("migration ", config_.migration_id, " has already ended"));
    default: break;
  }
  cancel_.store(true);
  if (PageSender* s = sender_.load()) s->Cancel();
  if (DiskCopySource* d = disk_copy_ptr_.load()) d->Cancel();
  // Waiting on the destination (its started or state_loaded): break the link so the wait ends
  // now; the destination discards its copy when the stream breaks.
  if (state_ == SourceState::kStarting || state_ == SourceState::kStopAndCopy) channel_.Abort();
  return absl::OkStatus();
}

SourceState PrecopySource::state() const {
  std::lock_guard lock(state_mu_);
  return state_;
}

void PrecopySource::Transition(SourceState to) {
  std::lock_guard lock(state_mu_);
  if (!SourceTransitionAllowed(state_, to)) {
    // A bug in this file: continuing could run the VM twice.
    std::fprintf(stderr, "ferry: PrecopySource: transition %s -> %s is not in the table\n",
                 SourceStateName(state_), SourceStateName(to));
    std::abort();
  }
  state_ = to;
}

uint32_t PrecopySource::max_pause_ms() const {
  return config_.options.max_pause_ms() > 0 ? config_.options.max_pause_ms() : kDefaultMaxPauseMs;
}

void PrecopySource::OnPauseBoundExpired() {
  std::lock_guard lock(state_mu_);
  if (state_ != SourceState::kStopAndCopy) return;  // commit was sent: only an answer decides now
  pause_bound_hit_.store(true);
  if (PageSender* s = sender_.load()) s->Cancel();
  channel_.Abort();
}

double PrecopySource::ProgressFraction(v1::MigrationPhase phase) const {
  switch (phase) {
    case v1::MIGRATION_PHASE_COMPLETED: return 1.0;
    case v1::MIGRATION_PHASE_COMMIT:
    case v1::MIGRATION_PHASE_ANNOUNCE: return 0.98;
    case v1::MIGRATION_PHASE_STOP_AND_COPY: return 0.95;
    default: break;
  }
  const double memory = static_cast<double>(vm_.memory().size());
  if (round_ <= 1) return memory > 0 ? 0.8 * std::min(1.0, static_cast<double>(round1_sent_bytes_) / memory) : 0;
  // Later rounds: how much of what is left would fit the downtime target at the measured
  // bandwidth. A guest that outruns the link stays low (and the bar says so), one converging
  // climbs towards the switch-over.
  const double fits = convergence_.max_downtime_ms / 1000.0 * last_bandwidth_bps_;
  const double closeness =
      remaining_bytes_ == 0 ? 1.0 : std::min(1.0, fits / static_cast<double>(remaining_bytes_));
  return 0.8 + 0.15 * closeness;
}

void PrecopySource::Emit(v1::MigrationPhase phase, const std::string& message) {
  if (!progress_) return;
  v1::MigrationEvent e;
  e.set_migration_id(config_.migration_id);
  e.set_phase(phase);
  e.set_round(round_);
  e.set_remaining_bytes(remaining_bytes_);
  e.set_transferred_bytes(stats_.bytes_transferred());
  e.set_bandwidth_mibps(last_bandwidth_bps_ / 1048576.0);
  e.set_dirty_rate_mibps(last_dirty_rate_mibps_);
  e.set_expected_downtime_ms(last_expected_ms_);
  double eta = last_bandwidth_bps_ > 0 ? static_cast<double>(remaining_bytes_) / last_bandwidth_bps_ : 0;
  e.set_eta_s(eta);
  e.set_progress(ProgressFraction(phase));
  e.set_message(message);
  e.set_connections(stats_.connections());
  e.set_throttle_percent(vm_.throttle_percent());
  progress_(e);
}

absl::Status PrecopySource::ExpectReply(v1::PeerReply::BodyCase want, v1::PeerReply& reply) {
  RETURN_IF_ERROR(channel_.Receive(reply));
  if (reply.has_error()) {
    return absl::AbortedError(absl::StrCat("destination refused: ",
                                           v1::PeerErrorCode_Name(reply.error().code()), ": ",
                                           reply.error().message()));
  }
  if (reply.body_case() != want) {
    return absl::InternalError(absl::StrCat("destination sent an unexpected reply (case ",
                                            static_cast<int>(reply.body_case()), ")"));
  }
  return absl::OkStatus();
}

absl::Status PrecopySource::Start() {
  v1::PeerMessage msg;
  auto* start = msg.mutable_start();
  start->set_protocol_version(kProtocolVersion);
  start->set_migration_id(config_.migration_id);
  *start->mutable_spec() = VmSpecToProto(vm_.spec());
  start->set_source_agent(config_.source_agent);
  start->set_source_boot_id(config_.boot_id);
  if (config_.data_path) *start->mutable_data_path() = *config_.data_path;
  if (config_.home) *start->mutable_home() = *config_.home;
  if (!config_.storage_datastore.empty()) {
    if (!config_.disk_write_log) return absl::InternalError("a storage migration without the disks' write log");
    if (DiskCopyModeOf(config_.options) == v1::DISK_COPY_MODE_MIRROR && !config_.disk_mirror.step) {
      return absl::InternalError("a mirror-mode storage migration without the VMM's mirror hooks");
    }
    ASSIGN_OR_RETURN(disk_copy_, DiskCopySource::Open(vm_.spec(), config_.disk_write_log));
    disk_copy_ptr_.store(disk_copy_.get());
    if (cancelled()) disk_copy_->Cancel();
    start->mutable_storage()->set_datastore(config_.storage_datastore);
    for (uint64_t b : disk_copy_->disk_bytes()) start->mutable_storage()->add_disk_bytes(b);
  }
  RETURN_IF_ERROR(channel_.Send(msg));
  v1::PeerReply reply;
  {
    Watchdog deadline(config_.reply_timeout, [this] {
      reply_deadline_hit_.store(true);
      channel_.Abort();
    });
    absl::Status st = ExpectReply(v1::PeerReply::kStarted, reply);
    deadline.Disarm();
    if (!st.ok() && deadline.fired()) {
      return absl::DeadlineExceededError(absl::StrCat("the destination did not answer the start within ",
                                                      config_.reply_timeout.count(), " ms"));
    }
    start_refused_for_now_ = !st.ok() && reply.has_error() && reply.error().temporary();
    RETURN_IF_ERROR(st);
  }
  if (mirror_mode() && !reply.started().disk_mirror_acks()) {
    return absl::FailedPreconditionError(
        "the destination does not acknowledge mirrored disk writes (an older agent); retry with --disk-copy iterate");
  }
  same_clock_ = !config_.boot_id.empty() && reply.started().destination_boot_id() == config_.boot_id;
  return OpenPageSender(reply.started());
}

void PrecopySource::SetThrottle(uint32_t percent) {
  if (percent == vm_.throttle_percent()) return;
  absl::Status st = vm_.SetThrottle(percent);
  if (!st.ok() && !absl::IsUnimplemented(st)) {
    stats_.add_warnings(absl::StrCat("auto-converge: cannot throttle the guest: ", st.message()));
  }
}

v1::DiskCopyMode DiskCopyModeOf(const v1::MigrationOptions& options) {
  return options.disk_copy() == v1::DISK_COPY_MODE_UNSPECIFIED ? kDefaultDiskCopyMode : options.disk_copy();
}

absl::Status PrecopySource::StopMirror() {
  if (!disk_mirror_) return absl::OkStatus();
  absl::Status st = disk_mirror_->Stop();
  if (mirror_start_ns_ != 0) {
    const DiskMirrorCounters c = disk_mirror_->counters();
    stats_.set_disk_mirror_ms(NanosToMillis(MonotonicNanos() - mirror_start_ns_));
    stats_.set_disk_mirror_cuts(c.cuts);
    stats_.set_disk_mirror_blocks(c.copy.blocks);
    stats_.set_disk_blocks_sent(stats_.disk_blocks_sent() + c.copy.blocks);
    stats_.set_disk_bytes(stats_.disk_bytes() + c.copy.data_bytes);
    stats_.set_bytes_transferred(stats_.bytes_transferred() + c.copy.wire_bytes);
    mirror_start_ns_ = 0;
  }
  return st;
}

std::string PrecopySource::DestinationReason() {
  // The mirror's thread reads the replies while it runs: stop it first; a refusal it read is the reason.
  if (disk_mirror_) {
    absl::Status m = StopMirror();
    if (absl::IsAborted(m)) return std::string(m.message());
  }
  // After a failed send the destination has usually said why on the control stream; wait for it
  // briefly (a dead destination breaks the stream at once, a hung one is cut off).
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(2), [&] { return done; })) channel_.Abort();
  });
  v1::PeerReply r;
  absl::Status st = channel_.Receive(r);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
  if (st.ok() && r.has_error()) {
    return absl::StrCat(v1::PeerErrorCode_Name(r.error().code()), ": ", r.error().message());
  }
  return "";
}

absl::Status PrecopySource::OpenPageSender(const v1::Started& started) {
  if (config_.data_path) {
    if (!started.has_data_path()) {
      return absl::FailedPreconditionError(
          "the destination did not accept data connections (an agent speaking protocol 1?); "
          "retry with --transport grpc");
    }
    if (!config_.open_data_path) return absl::InternalError("no way to open data connections");
    ASSIGN_OR_RETURN(page_sender_, config_.open_data_path(started.data_path()));
  } else {
    page_sender_ = std::make_unique<StreamPageSender>(channel_);
  }
  if (config_.wrap_page_sender) page_sender_ = config_.wrap_page_sender(std::move(page_sender_), vm_);
  page_sender_->SetMaxBandwidth(max_bandwidth_mibps_.load());
  sender_.store(page_sender_.get());
  if (cancelled()) page_sender_->Cancel();
  disks_on_data_path_ = disk_copy_ && page_sender_->carries_disk_blocks();
  stats_.set_connections(page_sender_->connections());
  stats_.set_encrypted(page_sender_->encrypted());
  stats_.set_zero_copy(page_sender_->zero_copy());
  if (page_sender_->connections() > 0) {
    stats_.set_transport(absl::StrCat(page_sender_->encrypted() ? "data+aes-gcm" : "data", " x",
                                      page_sender_->connections()));
  }
  return absl::OkStatus();
}

absl::Status PrecopySource::SendPages(const DirtyBitmap& pages, uint32_t round, v1::RoundStats& rs,
                                      bool final_round, const DirtyBitmap* populated,
                                      std::span<const RoundDisk> disks) {
  int64_t t0 = MonotonicNanos();
  PageSender* sender = sender_.load();
  RoundCounters c;
  absl::Status sent = sender->SendRound(vm_.memory(), pages, round, populated, disks, c);
  if (!sent.ok() && !absl::IsCancelled(sent)) {
    std::string why = DestinationReason();
    if (!why.empty()) {
      return absl::AbortedError(absl::StrCat("destination refused: ", why, " (here: ", sent.message(), ")"));
    }
    return absl::Status(sent.code(), absl::StrCat("lost the destination during round ", round,
                                                  " (it closed the connection or died; see its log): ",
                                                  sent.message()));
  }
  RETURN_IF_ERROR(sent);
  if (cancelled()) return absl::CancelledError("migration cancelled by request");
  int64_t t1 = MonotonicNanos();
  stats_.set_bytes_transferred(stats_.bytes_transferred() + c.wire_bytes);
  rs.set_bytes_sent(rs.bytes_sent() + c.wire_bytes);
  remaining_bytes_ = remaining_bytes_ > c.wire_bytes ? remaining_bytes_ - c.wire_bytes : 0;
  rs.set_round(round);
  rs.set_pages_sent(c.pages);
  rs.set_zero_pages(c.zero_pages);
  rs.set_duration_ms(NanosToMillis(t1 - t0));
  rs.set_throttle_percent(vm_.throttle_percent());
  stats_.set_pages_sent(stats_.pages_sent() + c.pages);
  stats_.set_zero_pages(stats_.zero_pages() + c.zero_pages);
  stats_.set_hole_pages(stats_.hole_pages() + c.hole_pages);
  if (!disks.empty()) {
    stats_.set_disk_blocks_sent(stats_.disk_blocks_sent() + c.disk_blocks);
    stats_.set_disk_bytes(stats_.disk_bytes() + c.disk_data_bytes);
    if (round > 1) stats_.set_disk_rounds(stats_.disk_rounds() + 1);
    if (final_round) stats_.set_disk_final_blocks(c.disk_blocks);
  }
  double secs = static_cast<double>(t1 - t0) / 1e9;
  // Rounds of a few pages finish in microseconds and say nothing about the link; keep the last
  // bandwidth measured on a round big enough to mean something.
  if (secs > 0 && rs.bytes_sent() > 0 && (rs.bytes_sent() >= (4u << 20) || last_bandwidth_bps_ <= 0)) {
    last_bandwidth_bps_ = static_cast<double>(rs.bytes_sent()) / secs;
  }
  rs.set_bandwidth_mibps(secs > 0 ? static_cast<double>(rs.bytes_sent()) / secs / 1048576.0 : 0);
  return absl::OkStatus();
}

absl::Status PrecopySource::SendDiskBlocks(uint32_t round, bool final) {
  DiskCopyCounters c;
  absl::Status st = round == 1 ? disk_copy_->SendBulk(channel_, c) : disk_copy_->SendPending(channel_, round, final, c);
  if (!st.ok() && !absl::IsCancelled(st)) {
    std::string why = DestinationReason();
    if (!why.empty()) return absl::AbortedError(absl::StrCat("destination refused: ", why, " (here: ", st.message(), ")"));
    return absl::Status(st.code(), absl::StrCat("lost the destination while copying disk blocks (round ", round,
                                                "): ", st.message()));
  }
  RETURN_IF_ERROR(st);
  if (cancelled()) return absl::CancelledError("migration cancelled by request");
  stats_.set_bytes_transferred(stats_.bytes_transferred() + c.wire_bytes);
  stats_.set_disk_blocks_sent(stats_.disk_blocks_sent() + c.blocks);
  stats_.set_disk_bytes(stats_.disk_bytes() + c.data_bytes);
  if (round > 1) stats_.set_disk_rounds(stats_.disk_rounds() + 1);
  if (final) stats_.set_disk_final_blocks(c.blocks);
  return absl::OkStatus();
}

absl::Status PrecopySource::Precopy(bool& force) {
  RETURN_IF_ERROR(vm_.EnableDirtyTracking());
  dirty_tracking_on_ = true;
  precopy_start_ns_ = MonotonicNanos();
  const uint64_t num_pages = vm_.memory().num_pages();
  pending_ = DirtyBitmap(num_pages);
  DirtyBitmap& pages = pending_;
  pages.SetAll();
  // Clear whatever the log gathered before round 1: round 1 sends everything anyway.
  DirtyBitmap scratch(num_pages);
  RETURN_IF_ERROR(vm_.CollectDirtyPages(scratch));
  remaining_bytes_ = vm_.memory().size();
  if (disks_on_data_path_) {
    // The disks' bulk copy rides in round 1 beside the pages (before them on each connection);
    // what the guest writes meanwhile is in the log and goes in round 2.
    Emit(v1::MIGRATION_PHASE_PRECOPY, "copying the disks on the data connections");
    RETURN_IF_ERROR(disk_copy_->MarkBulk());
    stats_.set_disk_copy(DiskCopyModeOf(config_.options));
  } else if (disk_copy_) {
    // The disks' bulk copy first, while the guest runs; what it writes meanwhile is in the log.
    Emit(v1::MIGRATION_PHASE_PRECOPY, "copying the disks");
    int64_t t0 = MonotonicNanos();
    RETURN_IF_ERROR(SendDiskBlocks(1, /*final=*/false));
    stats_.set_disk_bulk_ms(NanosToMillis(MonotonicNanos() - t0));
    stats_.set_disk_copy(DiskCopyModeOf(config_.options));
    if (mirror_mode()) {
      // From here the guest sees a write complete only once the destination has it; the first
      // cut also carries what was written during the bulk copy.
      disk_mirror_ = std::make_unique<DiskMirror>(*disk_copy_, channel_, config_.disk_mirror, config_.reply_timeout);
      RETURN_IF_ERROR(disk_mirror_->Start());
      mirror_start_ns_ = MonotonicNanos();
      Emit(v1::MIGRATION_PHASE_PRECOPY, "mirroring disk writes");
    }
  }
  for (round_ = 1;; ++round_) {
    Emit(v1::MIGRATION_PHASE_PRECOPY, absl::StrFormat("round %u: %u pages", round_, pages.Count()));
    int64_t round_start = MonotonicNanos();
    v1::RoundStats rs;
    // Round 1 reads only pages the memfd holds data for; holes go as zero markers unread.
    DirtyBitmap populated;
    if (round_ == 1) {
      populated = DirtyBitmap(num_pages);
      vm_.memory().MarkPopulatedPages(populated);
    }
    // Disk blocks written since the last collection go first (round 1: since the bulk copy).
    if (disk_copy_ && !mirror_mode() && !disks_on_data_path_) RETURN_IF_ERROR(SendDiskBlocks(round_ + 1, /*final=*/false));
    if (disk_mirror_ && disk_mirror_->failed()) return StopMirror();
    // On the data connections the round carries the disks' pending blocks: the bulk copy in
    // round 1, then what the last collection found (mirror mode: the mirror moves those).
    std::vector<RoundDisk> disks;
    if (disks_on_data_path_ && (round_ == 1 || !mirror_mode())) disks = disk_copy_->PendingRoundDisks();
    RETURN_IF_ERROR(SendPages(pages, round_, rs, /*final_round=*/false, round_ == 1 ? &populated : nullptr, disks));
    if (!disks.empty()) disk_copy_->ClearPending();
    if (round_ == 1) round1_sent_bytes_ = vm_.memory().size();
    if (round_ == 1 && disks_on_data_path_) {
      stats_.set_disk_bulk_ms(NanosToMillis(MonotonicNanos() - round_start));  // with memory round 1
      if (mirror_mode()) {
        // Only now: a cut on the control stream must not be overtaken by a bulk copy of its
        // block still in flight on a data connection. Round 1 is applied everywhere.
        disk_mirror_ = std::make_unique<DiskMirror>(*disk_copy_, channel_, config_.disk_mirror, config_.reply_timeout);
        RETURN_IF_ERROR(disk_mirror_->Start());
        mirror_start_ns_ = MonotonicNanos();
        Emit(v1::MIGRATION_PHASE_PRECOPY, "mirroring disk writes");
      }
    }
    if (cancelled()) return absl::CancelledError("migration cancelled by request");
    pages.ClearAll();
    RETURN_IF_ERROR(vm_.CollectDirtyPages(pages));
    if (disk_copy_ && !mirror_mode()) RETURN_IF_ERROR(disk_copy_->CollectWrites());
    double round_s = static_cast<double>(MonotonicNanos() - round_start) / 1e9;
    // Dirty disk blocks count like dirty pages: both must move inside the pause.
    uint64_t dirty = pages.Count() + (disk_copy_ ? disk_copy_->pending_blocks() : 0);
    last_dirty_rate_mibps_ = round_s > 0 ? static_cast<double>(dirty * kPageSize) / round_s / 1048576.0 : 0;
    remaining_bytes_ = dirty * kPageSize;
    uint64_t state_estimate = stats_.state_bytes() > 0 ? stats_.state_bytes() : kDeviceStateEstimateBytes;
    // Nothing left to send but the device state: switch over (an idle guest must not spin
    // through rounds for want of a bandwidth figure).
    last_expected_ms_ = dirty == 0 && last_bandwidth_bps_ <= 0
                            ? 0
                            : ExpectedDowntimeMs(dirty * kPageSize, state_estimate, last_bandwidth_bps_);
    rs.set_dirty_rate_mibps(last_dirty_rate_mibps_);
    rs.set_dirty_pages_after(dirty);
    rs.set_expected_downtime_ms(last_expected_ms_);
    *stats_.add_round_stats() = rs;
    stats_.set_rounds(round_);
    RoundOutcome outcome;
    outcome.round = round_;
    outcome.elapsed_s = static_cast<double>(MonotonicNanos() - precopy_start_ns_) / 1e9;
    outcome.dirty_bytes = dirty * kPageSize;
    outcome.expected_ms = last_expected_ms_;
    outcome.dirty_rate_mibps = last_dirty_rate_mibps_;
    outcome.bandwidth_mibps = last_bandwidth_bps_ / 1048576.0;
    outcome.throttle_percent = rs.throttle_percent();
    if (uint32_t ms = new_max_downtime_ms_.exchange(0); ms > 0) {
      convergence_.max_downtime_ms = ms;
      planner_.set_max_downtime_ms(ms);
    }
    DecisionWithReason d = planner_.AfterRound(outcome);
    switch (d.decision) {
      case Decision::kContinue:
        // The guest outruns the link: slow its vCPUs just enough (and less again once rounds shrink).
        SetThrottle(auto_converge_.AfterRound(outcome));
        stats_.set_max_throttle_percent(auto_converge_.max_percent_used());
        continue;
      case Decision::kSwitchOver:
        Emit(v1::MIGRATION_PHASE_PRECOPY, d.reason);
        return absl::OkStatus();
      case Decision::kForceSwitchOver:
        force = true;
        stats_.add_warnings(d.reason);
        Emit(v1::MIGRATION_PHASE_PRECOPY, d.reason);
        return absl::OkStatus();
      case Decision::kGiveUp:
        return absl::DeadlineExceededError(d.reason);
    }
  }
}

absl::Status PrecopySource::StopAndCopy(bool force) {
  stats_.set_forced_switchover(force);
  stats_.set_expected_downtime_ms(last_expected_ms_);
  Emit(v1::MIGRATION_PHASE_STOP_AND_COPY, "pausing the VM for the final copy");
  if (cancelled()) return absl::CancelledError("migration cancelled by request");
  v1::PauseBreakdown& pause = *stats_.mutable_pause();
  SetThrottle(0);  // the pause stops the vCPUs anyway; a rollback resumes them at full speed
  // Mirror mode: the mirror ends with its last cut acknowledged before the pause begins (its idle
  // wait in the VMM would otherwise delay the pause); writes completing from here are held by the
  // VMM and go with the final blocks.
  if (disk_mirror_) RETURN_IF_ERROR(StopMirror());
  pause_ns_ = MonotonicNanos();
  // From here the guest stands still: at most max_pause_ms until commit is sent, or the link is
  // broken and the rollback resumes it.
  pause_watchdog_ = std::make_unique<Watchdog>(std::chrono::milliseconds(max_pause_ms()),
                                               [this] { OnPauseBoundExpired(); });
  vm_paused_by_us_ = true;  // a failed Pause resumes what it paused; Resume of a running VM is a no-op
  RETURN_IF_ERROR(vm_.Pause());
  int64_t t_paused = MonotonicNanos();
  pause.set_vcpu_pause_ms(NanosToMillis(t_paused - pause_ns_));
  ++round_;
  int64_t t_disk = t_paused;
  if (disk_copy_) {
    // Pause quiesced the disks: every write is in the log. The last blocks go before the final
    // pages and the device state, on the stream that then carries the state. Mirror mode: the
    // mirror's cuts are all acknowledged; what is left are the writes completed since it stopped
    // (their completions held), shown to the guest once sent (it cannot see them before it
    // resumes: here after a rollback, or there after the blocks were written).
    // On the data connections the final blocks go in the final round with the pages (before the
    // device state, which loads only once that round ended on every connection).
    RETURN_IF_ERROR(disk_copy_->CollectWrites());
    if (!disks_on_data_path_) RETURN_IF_ERROR(SendDiskBlocks(round_ + 1, /*final=*/true));
    if (disk_mirror_) RETURN_IF_ERROR(disk_mirror_->End());  // before the final dirty log: it writes the used ring
    t_disk = MonotonicNanos();
    pause.set_final_disk_ms(NanosToMillis(t_disk - t_paused));
  }
  DirtyBitmap& pages = pending_;  // still holds what the last pre-copy round found dirty
  RETURN_IF_ERROR(vm_.CollectDirtyPages(pages));
  int64_t t_log = MonotonicNanos();
  pause.set_dirty_log_ms(NanosToMillis(t_log - t_disk));
  remaining_bytes_ = pages.Count() * kPageSize;
  v1::RoundStats rs;
  std::vector<RoundDisk> disks;
  if (disks_on_data_path_) disks = disk_copy_->PendingRoundDisks();
  RETURN_IF_ERROR(SendPages(pages, round_, rs, /*final_round=*/true, nullptr, disks));
  if (!disks.empty()) disk_copy_->ClearPending();
  *stats_.add_round_stats() = rs;
  stats_.set_rounds(round_);
  int64_t t_pages = MonotonicNanos();
  pause.set_final_pages_ms(NanosToMillis(t_pages - t_log));
  ASSIGN_OR_RETURN(v1::VmState state, vm_.SaveState());
  int64_t t_saved = MonotonicNanos();
  pause.set_state_save_ms(NanosToMillis(t_saved - t_pages));
  v1::PeerMessage msg;
  *msg.mutable_device_state()->mutable_state() = std::move(state);
  msg.mutable_device_state()->set_source_pause_ns(pause_ns_);
  msg.mutable_device_state()->set_final_round(round_);
  uint64_t bytes = msg.ByteSizeLong();
  stats_.set_state_bytes(bytes);
  RETURN_IF_ERROR(channel_.Send(msg));
  stats_.set_bytes_transferred(stats_.bytes_transferred() + bytes);
  v1::PeerReply reply;
  RETURN_IF_ERROR(ExpectReply(v1::PeerReply::kStateLoaded, reply));
  state_loaded_ns_ = MonotonicNanos();
  const v1::StateLoaded& loaded = reply.state_loaded();
  pause.set_wait_final_pages_ms(loaded.wait_final_pages_ms());
  pause.set_state_load_ms(loaded.state_load_ms());
  pause.set_state_transfer_ms(std::max(0.0, NanosToMillis(state_loaded_ns_ - t_saved) -
                                                loaded.wait_final_pages_ms() - loaded.state_load_ms()));
  stats_.set_stop_copy_ms(NanosToMillis(state_loaded_ns_ - pause_ns_));
  return absl::OkStatus();
}

absl::Status PrecopySource::Commit(bool& refused) {
  Emit(v1::MIGRATION_PHASE_COMMIT, "handing the VM to the destination");
  v1::PeerMessage msg;
  msg.mutable_commit();
  v1::PeerReply reply;
  {
    // The commit and its answer are bounded too, from before the commit goes out (a send into a
    // stalled link blocks): a destination that does not answer in time is asked again over a
    // fresh connection (Resolve).
    Watchdog deadline(std::chrono::milliseconds(max_pause_ms()), [this] { channel_.Abort(); });
    if (absl::Status sent = channel_.Send(msg); !sent.ok()) {
      deadline.Disarm();
      return deadline.fired() ? absl::DeadlineExceededError(absl::StrCat(
                                    "the commit could not be sent within ", max_pause_ms(), " ms"))
                              : sent;
    }
    absl::Status got = channel_.Receive(reply);
    deadline.Disarm();
    if (!got.ok()) {
      return deadline.fired() ? absl::DeadlineExceededError(absl::StrCat(
                                    "no answer to the commit within ", max_pause_ms(), " ms"))
                              : got;
    }
  }
  if (reply.has_error()) {
    refused = true;
    return absl::AbortedError(absl::StrCat("destination refused the commit: ",
                                           v1::PeerErrorCode_Name(reply.error().code()), ": ",
                                           reply.error().message()));
  }
  if (!reply.has_resumed()) {
    return absl::InternalError(absl::StrCat("destination answered the commit with an unexpected reply (case ",
                                            static_cast<int>(reply.body_case()), ")"));
  }
  int64_t now = MonotonicNanos();
  stats_.set_downtime_same_clock(same_clock_);
  int64_t resumed = same_clock_ ? reply.resumed().resume_ns() : now;
  stats_.set_downtime_ms(NanosToMillis(resumed - pause_ns_));
  stats_.mutable_pause()->set_resume_ms(NanosToMillis(resumed - state_loaded_ns_));
  stats_.mutable_pause()->set_first_instruction_ms(reply.resumed().first_instruction_ms());
  // The VM runs on the destination now; its announcement follows (a failed one is a warning).
  Emit(v1::MIGRATION_PHASE_ANNOUNCE, "announcing the VM's MAC addresses from the destination");
  v1::PeerReply announced;
  Watchdog announce_deadline(config_.reply_timeout, [this] { channel_.Abort(); });
  if (channel_.Receive(announced).ok() && announced.has_announced()) {
    stats_.set_frames_announced(announced.announced().frames_sent());
    for (const auto& w : announced.announced().warnings()) stats_.add_warnings("announce: " + w);
  } else {
    stats_.add_warnings("announce: the destination did not report its RARP announcement");
  }
  announce_deadline.Disarm();
  channel_.CloseSend();
  return absl::OkStatus();
}

void PrecopySource::RollBack(const absl::Status& why) {
  // Before commit (or after a commit the destination refused or never saw) the source owns the
  // VM: tell the destination to discard its copy and let the guest run on here as before.
  if (pause_watchdog_) pause_watchdog_->Disarm();
  if (disk_mirror_) {
    // The guest's writes are all on its own disk: show the held ones complete and run on.
    (void)StopMirror();
    (void)disk_mirror_->End();
  }
  if (PageSender* s = sender_.exchange(nullptr)) s->Cancel();
  page_sender_.reset();  // closes the data connections
  v1::PeerMessage abort;
  abort.mutable_abort()->set_reason(std::string(why.message()));
  (void)channel_.Send(abort);
  channel_.CloseSend();
  SetThrottle(0);
  if (dirty_tracking_on_) (void)vm_.DisableDirtyTracking();
  dirty_tracking_on_ = false;
  if (vm_paused_by_us_) (void)vm_.Resume();
  vm_paused_by_us_ = false;
}

void PrecopySource::FinishHandedOver() {
  if (dirty_tracking_on_) (void)vm_.DisableDirtyTracking();
  dirty_tracking_on_ = false;
  (void)vm_.Stop();
}

void PrecopySource::ReleaseOwnershipForCommit() {
  if (!config_.release_ownership) return;
  config_.release_ownership();
  ownership_released_ = true;
}

absl::Status PrecopySource::RetakeOwnershipBeforeResume() {
  if (!ownership_released_ || !config_.retake_ownership) return absl::OkStatus();
  RETURN_IF_ERROR(config_.retake_ownership());
  ownership_released_ = false;
  return absl::OkStatus();
}

SourceOutcome PrecopySource::KeepPausedWithoutOwnership(absl::Status& status, const absl::Status& why) {
  Transition(SourceState::kCommitUnconfirmed);
  status = absl::UnknownError(absl::StrCat(
      status.message(), "; but the source cannot take the VM's lock back (", why.message(),
      "), so it keeps the VM paused and does not resume it without its lock: run `migrate migration resolve ",
      config_.migration_id, "` once the holder is known"));
  return SourceOutcome::kCommitUnconfirmed;
}

SourceOutcome PrecopySource::Resolve(absl::Status& status) {
  Transition(SourceState::kResolving);
  Emit(v1::MIGRATION_PHASE_COMMIT, absl::StrCat("the commit's answer was lost (", status.message(),
                                                "); asking the destination whether the VM runs there"));
  const int64_t deadline = MonotonicNanos() + static_cast<int64_t>(config_.resolve_timeout.count()) * 1'000'000;
  absl::Status last = absl::UnavailableError("no way to reach the destination again");
  while (config_.ask_destination_runs_vm) {
    absl::StatusOr<bool> runs = config_.ask_destination_runs_vm();
    if (runs.ok() && *runs) {
      FinishHandedOver();
      Transition(SourceState::kCompleted);
      stats_.add_warnings(absl::StrCat("the commit's answer was lost (", status.message(),
                                       "); the destination confirmed that it runs the VM"));
      status = absl::OkStatus();
      return SourceOutcome::kCompleted;
    }
    if (runs.ok()) {
      // The destination never ran it and has fenced the migration: the VM is ours again.
      absl::Status why = absl::AbortedError(absl::StrCat(
          "the commit did not take effect on the destination (", status.message(),
          "; it confirmed it does not run the VM); the VM resumed on the source"));
      if (absl::Status owned = RetakeOwnershipBeforeResume(); !owned.ok()) {
        status = why;
        return KeepPausedWithoutOwnership(status, owned);
      }
      RollBack(why);
      Transition(SourceState::kRolledBack);
      status = why;
      return SourceOutcome::kFailed;
    }
    last = runs.status();
    if (MonotonicNanos() >= deadline) break;
    std::this_thread::sleep_for(config_.resolve_retry);
  }
  Transition(SourceState::kCommitUnconfirmed);
  status = absl::UnknownError(absl::StrCat(
      "commit sent but the destination did not confirm the resume (", status.message(),
      ") and could not be asked since (", last.message(),
      "); the source keeps the VM paused and does not resume it, to never run it twice: run "
      "`migrate migration resolve ", config_.migration_id, "` once the destination is back"));
  return SourceOutcome::kCommitUnconfirmed;
}

absl::Status PrecopySource::ExplainRollBack(absl::Status st) const {
  if (cancelled()) return absl::CancelledError("migration cancelled by request");
  if (pause_bound_hit_.load()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the destination did not load the VM's state within ", max_pause_ms(),
        " ms of the pause (max pause); the VM resumed on the source (", st.message(), ")"));
  }
  return st;
}

SourceResult PrecopySource::Run() {
  SourceResult result;
  start_ns_ = MonotonicNanos();
  stats_.set_migration_id(config_.migration_id);
  stats_.set_vm_name(vm_.spec().name);
  stats_.set_guest_memory_bytes(vm_.memory().size());
  stats_.set_transport(channel_.name());
  Transition(SourceState::kStarting);
  Emit(v1::MIGRATION_PHASE_SETUP, "starting the destination VM");
  absl::Status st = cancelled() ? absl::CancelledError("migration cancelled by request") : Start();
  stats_.set_setup_ms(NanosToMillis(MonotonicNanos() - start_ns_));
  bool force = false;
  if (st.ok()) {
    Transition(SourceState::kPrecopy);
    st = Precopy(force);
  }
  if (precopy_start_ns_ != 0) {
    precopy_end_ns_ = MonotonicNanos();
    // Also when pre-copy failed: a migration that gave up after 36 s says so.
    stats_.set_precopy_ms(NanosToMillis(precopy_end_ns_ - precopy_start_ns_));
  }
  if (st.ok()) {
    Transition(SourceState::kStopAndCopy);
    st = StopAndCopy(force);
  }
  if (st.ok()) {
    // The last moment a cancel or the pause bound can win: decided under the lock they take.
    std::lock_guard lock(state_mu_);
    if (cancel_.load() || pause_bound_hit_.load()) {
      st = absl::CancelledError("migration cancelled by request");
    } else if (SourceTransitionAllowed(state_, SourceState::kCommitting)) {
      // From here the guest may run on the destination: a VMM whose agent dies keeps it paused.
      st = vm_.MarkHandoverCommitted();
      if (st.ok()) state_ = SourceState::kCommitting;
    }
  }
  if (pause_watchdog_) pause_watchdog_->Disarm();  // commit sent or rolled back: it has nothing left to bound
  if (!st.ok()) {
    st = ExplainRollBack(st);
    RollBack(st);
    Transition(SourceState::kRolledBack);
    result.outcome = absl::IsCancelled(st) ? SourceOutcome::kCancelled : SourceOutcome::kFailed;
    result.status = st;
    result.refused_for_now = start_refused_for_now_ && result.outcome == SourceOutcome::kFailed;
  } else {
    bool refused = false;
    ReleaseOwnershipForCommit();  // the final copy is done: the destination takes the lock before it resumes
    st = Commit(refused);
    if (st.ok()) {
      FinishHandedOver();
      Transition(SourceState::kCompleted);
      result.outcome = SourceOutcome::kCompleted;
    } else if (refused) {
      // A definite "no": the destination discarded its copy, so resuming here runs it once.
      st = absl::AbortedError(absl::StrCat(st.message(), "; the VM resumed on the source"));
      if (absl::Status owned = RetakeOwnershipBeforeResume(); !owned.ok()) {
        result.outcome = KeepPausedWithoutOwnership(st, owned);
      } else {
        RollBack(st);
        Transition(SourceState::kRolledBack);
        result.outcome = SourceOutcome::kFailed;
      }
    } else {
      // The commit may or may not have arrived: the destination may run the VM. Only its answer
      // (asked again over a fresh connection) decides; never resume blindly.
      result.outcome = Resolve(st);
    }
    result.status = st;
  }
  // The data connections close here: every page is in or the migration is over.
  sender_.store(nullptr);
  page_sender_.reset();
  int64_t end = MonotonicNanos();
  stats_.set_total_ms(NanosToMillis(end - start_ns_));
  // Throughput counts the copying only: pre-copy and stop-and-copy, not the announcement.
  int64_t copy_end = state_loaded_ns_ ? state_loaded_ns_ : end;
  double copy_s = static_cast<double>(copy_end - (precopy_start_ns_ ? precopy_start_ns_ : start_ns_)) / 1e9;
  stats_.set_throughput_mib_s(copy_s > 0 ? static_cast<double>(stats_.bytes_transferred()) / copy_s / 1048576.0
                                         : 0);
  if (result.outcome == SourceOutcome::kCompleted) {
    remaining_bytes_ = 0;
    Emit(v1::MIGRATION_PHASE_COMPLETED, absl::StrFormat("done: downtime %.1f ms", stats_.downtime_ms()));
  }
  result.stats = stats_;
  return result;
}

}  // namespace ferry
