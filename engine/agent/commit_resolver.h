#pragma once
// The source's way back to the destination after a commit whose answer was lost: a fresh
// connection and Peer.QueryMigration. Also what `migrate migration resolve ID` uses, and the
// background job an agent runs for a guest it found paused after a commit when it started
// (docs/vmm_process.md "Adopting a guest paused after a commit").

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "engine/agent/agent_context.h"

namespace ferry {

// true: the VM runs on the destination; false: it does not and never will (fenced there); an
// error: no answer (unreachable, or the commit is still being applied) — ask again.
absl::StatusOr<bool> AskDestinationRunsVm(AgentContext& ctx, const std::string& address,
                                          const std::string& expected_name, const std::string& migration_id);

// Settles unconfirmed commit `migration_id` once: asks its destination where the VM runs, then
// stops the paused copy here (it runs there: the VM leaves this agent, its lock is the
// destination's) or takes its lock back and resumes it (it never will). Errors: NotFound, no such
// unconfirmed commit; FailedPrecondition, the VM is held by something else right now (another
// settle); Aborted, the VM is not here any more; Unavailable, no answer (the VM stays paused);
// Internal, it does not run there but cannot be resumed here.
absl::StatusOr<CommitSettlement> SettleUnconfirmedCommit(AgentContext& ctx, const std::string& migration_id);

// Retries of the background settle: the first after `first`, doubling up to `max`.
struct SettleRetry {
  std::chrono::milliseconds first{1000};
  std::chrono::milliseconds max{30000};
};

// A guest found paused after a commit (its VMM's handover mark): registers the unconfirmed commit
// and settles it as a job of ctx.migrations (outside the slots: it moves nothing), retrying with
// back-off while the destination does not answer. The job shows phase COMMIT with the last error
// until it is settled (COMPLETED: runs there; FAILED: resumed here), also by the operator's
// resolve meanwhile. Ends, leaving the guest paused and marked, when the agent stops.
absl::Status StartSettlingAdoptedCommit(AgentContext& ctx, const std::string& migration_id, UnconfirmedCommit commit,
                                        SettleRetry retry = {});

}  // namespace ferry
