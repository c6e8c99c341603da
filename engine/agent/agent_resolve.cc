// Agent.ResolveMigration (`migrate migration resolve ID`): a migration whose commit nobody
// confirmed left its VM paused here; ask the destination again and settle where the VM runs.
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/agent_service.h"
#include "engine/agent/commit_resolver.h"

namespace ferry {

grpc::Status AgentService::ResolveMigration(grpc::ServerContext*, const v1::ResolveMigrationRequest* req,
                                            v1::ResolveMigrationResponse* out) {
  const std::string& id = req->migration_id();
  std::optional<UnconfirmedCommit> c = ctx_.unconfirmed_commits.Find(id);
  if (!c) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("migration '", id.substr(0, 128),
                                     "' has no unconfirmed commit on this agent (nothing to resolve)"));
  }
  out->set_migration_id(id);
  out->set_vm_name(c->vm_name);
  // Hold the VM (no stop or new migration meanwhile). It is paused: BeginMigrationOut, which
  // wants a running VM, refused every resolve.
  auto entry = ctx_.vms.BeginResolveOut(c->vm_name, id);
  if (!entry.ok()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("VM '", c->vm_name, "' is not held here any more: ", entry.status().message()));
  }
  std::shared_ptr<Vm> vm = (*entry)->vm;
  absl::StatusOr<bool> runs = AskDestinationRunsVm(ctx_, c->destination, c->destination_name, id);
  if (!runs.ok()) {
    ctx_.vms.EndMigrationOut(c->vm_name, false);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("cannot tell where VM '", c->vm_name, "' runs: ", runs.status().message(),
                                     "; it stays paused here (never twice); retry once ", c->destination,
                                     " answers"));
  }
  if (*runs) {
    (void)vm->DisableDirtyTracking();
    (void)vm->Stop();
    ctx_.vms.EndMigrationOut(c->vm_name, true);
    ctx_.ownership.Release(c->vm_name);  // its lock went at commit; the destination holds it
    out->set_runs_on_destination(true);
    out->set_message(absl::StrCat("VM '", c->vm_name, "' runs on ", c->destination, "; its copy here was stopped"));
  } else {
    (void)vm->DisableDirtyTracking();
    // A datastore VM let its lock go at commit: it takes it back first, and never resumes without it.
    absl::Status resumed = ctx_.ownership.Find(c->vm_name)
                               ? ctx_.ownership.RetakeAfterCommit(c->vm_name, *vm, ctx_.config.name)
                               : absl::OkStatus();
    if (resumed.ok()) resumed = vm->Resume();
    ctx_.vms.EndMigrationOut(c->vm_name, false);
    if (!resumed.ok()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("the destination does not run VM '", c->vm_name,
                                       "' but it cannot be resumed here: ", resumed.message()));
    }
    out->set_message(absl::StrCat("the commit never took effect on ", c->destination, "; VM '", c->vm_name,
                                  "' resumed here"));
  }
  ctx_.unconfirmed_commits.Remove(id);
  spdlog::info("event=migration_resolved migration={} vm={} runs_on_destination={}", id, c->vm_name,
               out->runs_on_destination());
  return grpc::Status::OK;
}

}  // namespace ferry
