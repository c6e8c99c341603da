// An outgoing job's attempts (docs/jobs.md "Admission and queueing"): a destination that refuses
// the start for now (its slots or memory busy) puts the job back in the queue, visibly, to retry
// with back-off until it is taken, cancelled, or refused for longer than the bound.
#include <spdlog/spdlog.h>

#include "engine/agent/agent_service.h"

namespace ferry {

void AgentService::RunOutgoing(MigrationJob& job, const v1::MigrateRequest& request, Vm& vm) {
  for (;;) {
    std::optional<std::string> busy = TryOutgoing(job, request, vm);
    if (!busy) return;  // the attempt ended the job
    absl::Status wait = job.WaitToRetry(*busy);
    // OK: a slot again; Cancelled: the next attempt sees the cancel first and ends the job.
    if (wait.ok() || absl::IsCancelled(wait)) continue;
    ctx_.vms.EndMigrationOut(request.vm_name(), false);
    v1::MigrationEvent e;
    e.set_migration_id(job.id());
    e.set_phase(v1::MIGRATION_PHASE_FAILED);
    e.set_error(std::string(wait.message()));
    e.set_message("failed; the VM keeps running on the source");
    job.Record(e);
    ctx_.observer->OnMigrationEvent(e);
    spdlog::info("event=migration_out_end migration={} vm={} outcome=FAILED error=\"{}\"", job.id(),
                 request.vm_name(), std::string(wait.message()));
    return;
  }
}

}  // namespace ferry
