#pragma once
// The source's way back to the destination after a commit whose answer was lost: a fresh
// connection and Peer.QueryMigration. Also what `migrate migration resolve ID` uses.

#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_context.h"

namespace ferry {

// true: the VM runs on the destination; false: it does not and never will (fenced there); an
// error: no answer (unreachable, or the commit is still being applied) — ask again.
absl::StatusOr<bool> AskDestinationRunsVm(AgentContext& ctx, const std::string& address,
                                          const std::string& expected_name, const std::string& migration_id);

}  // namespace ferry
