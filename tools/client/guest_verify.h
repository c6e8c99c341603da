#pragma once
// "Guest verified" means the built-in guest re-checked every page of its working set on this
// host: a verification sweep that began after the VM arrived ran to its end with no corruption
// (GuestHealth.full_sweeps, docs/guest_verification.md). Shared by the CLI's demo and the
// end-to-end tests.

#include <string>

#include "absl/status/statusor.h"
#include "proto/ferry/v1/agent.grpc.pb.h"

namespace ferry::cli {

// Guest milliseconds after which a guest that has not finished a full sweep is stuck: the sweep
// under way at arrival plus a whole one is two sweep lengths (each worker re-checks
// FW_SWEEP_PAGES_PER_MS pages of its slice per ms); a guest busy writing pages it must first fault
// in sweeps up to ~3x slower, hence six, plus 2 s.
uint64_t FullSweepGuestBudgetMs(uint64_t working_set_bytes, uint32_t workers);

// Polls the agent until the guest has finished a full sweep here and returns the VM then.
// DataLoss when the guest reports corruption; DeadlineExceeded when the guest ran
// FullSweepGuestBudgetMs of its own time (heartbeats, ~1 per guest ms, so a host too busy to run
// the guest does not fail it) or `max_wait_s` of wall time passed without one; else GetVm's error.
absl::StatusOr<v1::VmInfo> WaitForFullSweep(v1::Agent::Stub& stub, const std::string& name, double max_wait_s = 180);

}  // namespace ferry::cli
