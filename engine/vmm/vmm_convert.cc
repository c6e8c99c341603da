#include "engine/vmm/vmm_convert.h"

#include <string>

namespace ferry {

v1::VmmGuestHealth GuestHealthToVmm(const GuestHealth& h) {
  v1::VmmGuestHealth p;
  p.set_heartbeats(h.heartbeats);
  p.set_last_heartbeat_value(h.last_heartbeat_value);
  p.set_first_heartbeat_ns(h.first_heartbeat_ns);
  p.set_last_heartbeat_ns(h.last_heartbeat_ns);
  p.set_max_heartbeat_gap_ns(h.max_heartbeat_gap_ns);
  p.set_corruptions(h.corruptions);
  for (const auto& r : h.corruption_reports) p.add_corruption_reports(r);
  p.set_vcpus_booted(h.vcpus_booted);
  p.set_shut_down(h.shut_down);
  p.set_exit_code(h.exit_code);
  p.set_arrived_from_other_clock(h.arrived_from_other_clock);
  p.set_full_sweeps(h.full_sweeps);
  p.set_arrival_ns(h.arrival_ns);
  p.set_first_full_sweep_ns(h.first_full_sweep_ns);
  p.set_disk_blocks_written(h.disk_blocks_written);
  p.set_disk_blocks_verified(h.disk_blocks_verified);
  p.set_disk_sweeps(h.disk_sweeps);
  p.set_disk_flushes(h.disk_flushes);
  p.set_disk_io_errors(h.disk_io_errors);
  p.set_disk_corruptions(h.disk_corruptions);
  return p;
}

GuestHealth GuestHealthFromVmm(const v1::VmmGuestHealth& p) {
  GuestHealth h;
  h.heartbeats = p.heartbeats();
  h.last_heartbeat_value = p.last_heartbeat_value();
  h.first_heartbeat_ns = p.first_heartbeat_ns();
  h.last_heartbeat_ns = p.last_heartbeat_ns();
  h.max_heartbeat_gap_ns = p.max_heartbeat_gap_ns();
  h.corruptions = p.corruptions();
  h.corruption_reports.assign(p.corruption_reports().begin(), p.corruption_reports().end());
  h.vcpus_booted = p.vcpus_booted();
  h.shut_down = p.shut_down();
  h.exit_code = p.exit_code();
  h.arrived_from_other_clock = p.arrived_from_other_clock();
  h.full_sweeps = p.full_sweeps();
  h.arrival_ns = p.arrival_ns();
  h.first_full_sweep_ns = p.first_full_sweep_ns();
  h.disk_blocks_written = p.disk_blocks_written();
  h.disk_blocks_verified = p.disk_blocks_verified();
  h.disk_sweeps = p.disk_sweeps();
  h.disk_flushes = p.disk_flushes();
  h.disk_io_errors = p.disk_io_errors();
  h.disk_corruptions = p.disk_corruptions();
  return h;
}

v1::VmmRunState RunStateToVmm(VmRunState s) {
  switch (s) {
    case VmRunState::kCreated: return v1::VMM_RUN_STATE_CREATED;
    case VmRunState::kRunning: return v1::VMM_RUN_STATE_RUNNING;
    case VmRunState::kPaused: return v1::VMM_RUN_STATE_PAUSED;
    case VmRunState::kStopped: return v1::VMM_RUN_STATE_STOPPED;
  }
  return v1::VMM_RUN_STATE_STOPPED;
}

VmRunState RunStateFromVmm(v1::VmmRunState s) {
  switch (s) {
    case v1::VMM_RUN_STATE_CREATED: return VmRunState::kCreated;
    case v1::VMM_RUN_STATE_RUNNING: return VmRunState::kRunning;
    case v1::VMM_RUN_STATE_PAUSED: return VmRunState::kPaused;
    default: return VmRunState::kStopped;
  }
}

void SetReplyStatus(const absl::Status& st, v1::VmmReply& reply) {
  reply.set_code(static_cast<int32_t>(st.code()));
  reply.set_message(std::string(st.message()));
}

absl::Status ReplyStatus(const v1::VmmReply& reply) {
  if (reply.code() == 0) return absl::OkStatus();
  const int code = reply.code();
  const auto status_code = (code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated))
                               ? static_cast<absl::StatusCode>(code)
                               : absl::StatusCode::kUnknown;
  return absl::Status(status_code, reply.message());
}

}  // namespace ferry
