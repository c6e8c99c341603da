#pragma once
// Test-only fault seam of the destination side: a destination that refuses one step of the first
// incoming migration with an error reply, as a real destination refuses what it cannot take
// (docs/wire_protocol.md "Errors the destination answers"). Steps:
//   start         the start (RESOURCE: as a host at its limit or short of memory)
//   round-1       a batch of pre-copy round 1 (the data path fails: DATA_PATH)
//   round-2       a batch of round 2
//   state         the device state (STATE: as a state that cannot be loaded)
//   commit        the commit (STATE: as a VM that cannot start here)
//   after-resume  the step after the resume: an error instead of the announcement (the VM runs
//                 here already; the source must still report the migration completed)
// Installed through AgentContext's seams (refuse_incoming, adjust_incoming_data_path).

#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_context.h"

namespace ferry {

enum class RefuseStep { kStart, kRoundOne, kRoundTwo, kState, kCommit, kAfterResume };
absl::StatusOr<RefuseStep> ParseRefuseStep(const std::string& name);

// Sets ctx's destination seams so that the first incoming migration is refused at `step`.
void InstallRefusingDestination(AgentContext& ctx, RefuseStep step);

}  // namespace ferry
