#include "engine/agent/commit_resolver.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "engine/transport/grpc_peer_channel.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {
namespace {

// A settle job cannot be cancelled: its commit went out long ago.
class PastCommit : public MigrationControl {
 public:
  explicit PastCommit(std::string id) : id_(std::move(id)) {}
  absl::Status Cancel() override {
    return absl::FailedPreconditionError(absl::StrCat(
        "migration '", id_, "' is past its commit: the VM stays paused here until the destination says where it runs "
        "(settled by itself, or `migrate migration resolve ", id_, "`)"));
  }
  void SetMaxBandwidth(double) override {}
  void SetMaxDowntime(uint32_t) override {}

 private:
  const std::string id_;
};

void RecordSettled(MigrationJob& job, const CommitSettlement& how) {
  v1::MigrationEvent e;
  e.set_phase(how.runs_on_destination ? v1::MIGRATION_PHASE_COMPLETED : v1::MIGRATION_PHASE_FAILED);
  e.set_progress(how.runs_on_destination ? 1.0 : 0.0);
  e.set_message(how.message);
  if (!how.runs_on_destination) e.set_error("the commit never took effect on the destination; the VM resumed here");
  job.Record(e);
}

}  // namespace

absl::StatusOr<bool> AskDestinationRunsVm(AgentContext& ctx, const std::string& address,
                                          const std::string& expected_name, const std::string& migration_id) {
  auto channel = ctx.dial_peer(address, expected_name);
  if (!channel.ok()) return channel.status();
  auto stub = v1::Peer::NewStub(*channel);
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::QueryMigrationRequest req;
  req.set_migration_id(migration_id);
  v1::QueryMigrationReply reply;
  grpc::Status st = stub->QueryMigration(&call, req, &reply);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("asking ", address, " failed: ", st.error_message()));
  }
  switch (reply.outcome()) {
    case v1::COMMIT_OUTCOME_RUNS_HERE: return true;
    case v1::COMMIT_OUTCOME_NOT_HERE: return false;
    default: return absl::UnavailableError(absl::StrCat(address, " has no final answer yet: ", reply.detail()));
  }
}

absl::StatusOr<CommitSettlement> SettleUnconfirmedCommit(AgentContext& ctx, const std::string& id) {
  std::optional<UnconfirmedCommit> c = ctx.unconfirmed_commits.Find(id);
  if (!c) {
    return absl::NotFoundError(absl::StrCat("migration '", id.substr(0, 128),
                                            "' has no unconfirmed commit on this agent (nothing to resolve)"));
  }
  // Hold the VM (no stop or new migration meanwhile). It is paused: BeginMigrationOut, which
  // wants a running VM, would refuse it.
  auto entry = ctx.vms.BeginResolveOut(c->vm_name, id);
  if (!entry.ok()) {
    const std::string why = absl::StrCat("VM '", c->vm_name, "' is not held here any more: ", entry.status().message());
    return absl::IsNotFound(entry.status()) ? absl::AbortedError(why) : absl::FailedPreconditionError(why);
  }
  std::shared_ptr<Vm> vm = (*entry)->vm;
  absl::StatusOr<bool> runs = AskDestinationRunsVm(ctx, c->destination, c->destination_name, id);
  if (!runs.ok()) {
    ctx.vms.EndMigrationOut(c->vm_name, false);
    return absl::UnavailableError(absl::StrCat("cannot tell where VM '", c->vm_name, "' runs: ", runs.status().message(),
                                               "; it stays paused here (never twice); retry once ", c->destination,
                                               " answers"));
  }
  CommitSettlement how{c->vm_name, *runs, ""};
  (void)vm->DisableDirtyTracking();
  if (*runs) {
    (void)vm->Stop();
    ctx.vms.EndMigrationOut(c->vm_name, true);
    ctx.ownership.Release(c->vm_name);  // its lock went at commit; the destination holds it
    how.message = absl::StrCat("VM '", c->vm_name, "' runs on ", c->destination, "; its copy here was stopped");
  } else {
    // A datastore VM let its lock go at commit: it takes it back first, and never resumes without it.
    absl::Status resumed = ctx.ownership.Find(c->vm_name)
                               ? ctx.ownership.RetakeAfterCommit(c->vm_name, *vm, ctx.config.name)
                               : absl::OkStatus();
    if (resumed.ok()) resumed = vm->Resume();
    ctx.vms.EndMigrationOut(c->vm_name, false);
    if (!resumed.ok()) {
      return absl::InternalError(absl::StrCat("the destination does not run VM '", c->vm_name,
                                              "' but it cannot be resumed here: ", resumed.message()));
    }
    how.message = absl::StrCat("the commit never took effect on ", c->destination, "; VM '", c->vm_name,
                               "' resumed here");
  }
  spdlog::info("event=migration_resolved migration={} vm={} runs_on_destination={}", id, c->vm_name,
               how.runs_on_destination);
  ctx.unconfirmed_commits.Settle(id, how);
  return how;
}

absl::Status StartSettlingAdoptedCommit(AgentContext& ctx, const std::string& id, UnconfirmedCommit commit,
                                        SettleRetry retry) {
  ctx.unconfirmed_commits.Add(id, commit, /*awaited=*/true);
  JobSpec spec{id, commit.vm_name, commit.destination, {}};
  return ctx.migrations->StartSettling(spec, [&ctx, id, commit, retry](MigrationJob& job) {
    PastCommit control(id);
    job.Attach(&control);
    v1::MigrationEvent found;
    found.set_phase(v1::MIGRATION_PHASE_COMMIT);
    found.set_message(absl::StrCat("commit unconfirmed: VM '", commit.vm_name,
                                   "' was found paused after this migration's commit when the agent started; asking ",
                                   commit.destination, " where it runs"));
    job.Record(found);
    spdlog::warn("event=migration_settle_start migration={} vm={} destination={}", id, commit.vm_name,
                 commit.destination);
    auto backoff = retry.first;
    for (uint32_t attempt = 1;; ++attempt) {
      absl::StatusOr<CommitSettlement> settled = SettleUnconfirmedCommit(ctx, id);
      const bool settled_here = settled.ok() || absl::IsNotFound(settled.status());
      if (!settled_here && absl::IsAborted(settled.status())) {
        ctx.unconfirmed_commits.Settle(id, {});  // nothing left here to stop or resume
        (void)ctx.unconfirmed_commits.AwaitSettled(id, std::chrono::milliseconds(0));
        v1::MigrationEvent e;
        e.set_phase(v1::MIGRATION_PHASE_FAILED);
        e.set_error(std::string(settled.status().message()));
        e.set_message("the paused copy here is gone; the VM runs on the destination or nowhere");
        job.Record(e);
        spdlog::error("event=migration_settle_end migration={} vm={} error=\"{}\"", id, commit.vm_name,
                      std::string(settled.status().message()));
        break;
      }
      if (!settled_here) {
        v1::MigrationEvent e;
        e.set_phase(v1::MIGRATION_PHASE_COMMIT);
        e.set_error(std::string(settled.status().message()));
        e.set_message(absl::StrFormat(
            "commit unconfirmed: VM '%s' stays paused here until %s says where it runs; attempt %u, next in %.0f s "
            "(or migrate migration resolve %s)",
            commit.vm_name, commit.destination, attempt, absl::ToDoubleSeconds(absl::FromChrono(backoff)), id));
        job.Record(e);
        spdlog::warn("event=migration_settle_retry migration={} vm={} attempt={} next_s={:.0f} error=\"{}\"", id,
                     commit.vm_name, attempt, absl::ToDoubleSeconds(absl::FromChrono(backoff)),
                     std::string(settled.status().message()));
      }
      // Settled here or by someone else (the operator's resolve) while waiting.
      std::optional<CommitSettlement> how =
          ctx.unconfirmed_commits.AwaitSettled(id, settled_here ? std::chrono::milliseconds(0) : backoff);
      if (how) {
        RecordSettled(job, *how);
        break;
      }
      if (absl::IsNotFound(settled.status())) {  // not unconfirmed any more, though nobody said how
        v1::MigrationEvent e;
        e.set_phase(v1::MIGRATION_PHASE_FAILED);
        e.set_error(std::string(settled.status().message()));
        job.Record(e);
        break;
      }
      if (ctx.unconfirmed_commits.stopping()) {
        v1::MigrationEvent e;
        e.set_phase(v1::MIGRATION_PHASE_FAILED);
        e.set_error("the agent stopped before the destination answered");
        e.set_message(absl::StrCat("commit unconfirmed; VM '", commit.vm_name,
                                   "' stays paused in its VMM, which the next agent settles"));
        job.Record(e);
        break;
      }
      backoff = std::min(backoff * 2, retry.max);
    }
    job.Detach();
  });
}

}  // namespace ferry
