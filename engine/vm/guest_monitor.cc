#include "engine/vm/guest_monitor.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/base/clock.h"
#include "engine/base/clock_id.h"

namespace ferry {

void GuestMonitor::OnHeartbeat(uint64_t guest_counter) {
  int64_t now = MonotonicNanos();
  std::lock_guard lock(mu_);
  if (h_.last_heartbeat_ns != 0) {
    h_.max_heartbeat_gap_ns = std::max(h_.max_heartbeat_gap_ns, now - h_.last_heartbeat_ns);
  } else {
    h_.first_heartbeat_ns = now;
  }
  h_.last_heartbeat_ns = now;
  if (h_.arrival_ns == 0) h_.arrival_ns = now;
  h_.last_heartbeat_value = guest_counter;
  ++h_.heartbeats;
}

void GuestMonitor::OnCorruption(uint64_t page) {
  std::lock_guard lock(mu_);
  ++h_.corruptions;
  if (h_.corruption_reports.size() < kMaxReports && h_.corruption_reports.empty()) {
    // Replaced by the console line when it arrives; this keeps a report even without a console.
    h_.corruption_reports.push_back(absl::StrCat("CORRUPTION page=", page));
  }
}

namespace {

// "disk written=1 verified=2 sweeps=0 flushes=0 corruptions=0 errors=0" (disk_workload.c); false
// when a field is missing or not a number (a garbled line changes nothing).
bool ParseDiskLine(absl::string_view line, GuestHealth& h) {
  GuestHealth out = h;
  struct Field {
    absl::string_view key;
    uint64_t* value;
  };
  const Field fields[] = {{"written", &out.disk_blocks_written}, {"verified", &out.disk_blocks_verified},
                          {"sweeps", &out.disk_sweeps},          {"flushes", &out.disk_flushes},
                          {"corruptions", &out.disk_corruptions}, {"errors", &out.disk_io_errors}};
  std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (words.size() != 1 + std::size(fields) || words[0] != "disk") return false;
  for (size_t i = 0; i < std::size(fields); ++i) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(words[i + 1], absl::MaxSplits('=', 1));
    if (kv.first != fields[i].key || !absl::SimpleAtoi(kv.second, fields[i].value)) return false;
  }
  h = out;
  return true;
}

}  // namespace

void GuestMonitor::OnConsoleLine(const std::string& line) {
  if (absl::StartsWith(line, "disk written=")) {
    std::lock_guard lock(mu_);
    uint64_t seen_here = std::max(h_.disk_corruptions, disk_corruption_lines_);
    if (ParseDiskLine(line, h_)) h_.disk_corruptions = std::max(h_.disk_corruptions, seen_here);
    return;
  }
  if (!absl::StartsWith(line, "CORRUPTION")) return;
  std::lock_guard lock(mu_);
  const bool disk = absl::StartsWith(line, "CORRUPTION block=");
  if (disk) {
    ++disk_corruption_lines_;
    h_.disk_corruptions = std::max(h_.disk_corruptions, disk_corruption_lines_);
  }
  if (!disk && h_.corruption_reports.size() == 1 && !absl::StrContains(h_.corruption_reports[0], "expected")) {
    h_.corruption_reports[0] = line;
  } else if (h_.corruption_reports.size() < kMaxReports) {
    h_.corruption_reports.push_back(line);
  }
}

void GuestMonitor::OnBooted(uint32_t vcpu) {
  std::lock_guard lock(mu_);
  ++h_.vcpus_booted;
}

void GuestMonitor::OnShutdown(int32_t exit_code) {
  std::lock_guard lock(mu_);
  h_.shut_down = true;
  h_.exit_code = exit_code;
}

void GuestMonitor::OnSweep(uint32_t value) {
  uint32_t worker = value >> 24;
  std::lock_guard lock(mu_);
  if (worker >= sweeps_here_.size()) return;  // not a worker the ABI allows
  ++sweeps_here_[worker];
  UpdateFullSweeps();
}

void GuestMonitor::UpdateFullSweeps() {
  // Workers report BOOTED once each (the count travels with the VM), so they are the sweepers.
  uint32_t workers = std::min<uint32_t>(h_.vcpus_booted, sweeps_here_.size());
  if (workers == 0) return;
  uint64_t least = sweeps_here_[0];
  for (uint32_t i = 1; i < workers; ++i) least = std::min(least, sweeps_here_[i]);
  uint64_t skip = restored_ ? 1 : 0;
  h_.full_sweeps = least > skip ? least - skip : 0;
  if (h_.full_sweeps > 0 && h_.first_full_sweep_ns == 0) h_.first_full_sweep_ns = MonotonicNanos();
}

GuestHealth GuestMonitor::health() const {
  std::lock_guard lock(mu_);
  return h_;
}

v1::StatusDeviceState GuestMonitor::Save() const {
  std::lock_guard lock(mu_);
  v1::StatusDeviceState s;
  s.set_heartbeats(h_.heartbeats);
  s.set_last_heartbeat_value(h_.last_heartbeat_value);
  s.set_corruptions(h_.corruptions);
  s.set_vcpus_booted(h_.vcpus_booted);
  s.set_last_heartbeat_host_ns(h_.last_heartbeat_ns);
  s.set_last_heartbeat_clock_id(MonotonicClockId());
  return s;
}

void GuestMonitor::Restore(const v1::StatusDeviceState& s) {
  std::lock_guard lock(mu_);
  h_ = GuestHealth{};
  h_.heartbeats = s.heartbeats();
  h_.last_heartbeat_value = s.last_heartbeat_value();
  h_.corruptions = s.corruptions();
  h_.vcpus_booted = s.vcpus_booted();
  sweeps_here_ = {};
  restored_ = true;
  disk_corruption_lines_ = 0;  // the guest's next "disk" line brings its totals
  // The next heartbeat's gap is measured from the saving host's last stamp, when that stamp was
  // taken on this clock; else the first heartbeat here starts the count afresh.
  if (!MonotonicClockId().empty() && s.last_heartbeat_clock_id() == MonotonicClockId()) {
    h_.last_heartbeat_ns = s.last_heartbeat_host_ns();
    h_.first_heartbeat_ns = s.last_heartbeat_host_ns();
  } else {
    h_.arrived_from_other_clock = s.heartbeats() > 0;
  }
}

}  // namespace ferry
