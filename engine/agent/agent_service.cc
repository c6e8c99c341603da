#include "engine/agent/agent_service.h"

#include <random>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/agent/agent_cluster.h"
#include "engine/agent/commit_resolver.h"
#include "engine/agent/migration_precheck.h"
#include "engine/agent/peer_keepalive.h"
#include "engine/agent/remote_vm.h"
#include "engine/host/cpu_model.h"
#include "engine/agent/vm_announce.h"
#include "engine/agent/vm_directory.h"
#include "engine/agent/storage_migration_out.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/base/error_text.h"
#include "engine/base/status.h"
#include "engine/migration/protocol.h"
#include "engine/precheck/finding_proto.h"
#include "engine/transport/data_sender.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/transport/sealed_stream.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {
namespace {

std::string NewMigrationId() {
  std::random_device rd;
  return absl::StrFormat("mig-%08x", rd());
}

std::string ExpectedPeerName(const std::string& address, const std::string& name) {
  return name.empty() ? address.substr(0, address.rfind(':')) : name;
}

// The manager's handle on a running source engine.
class SourceControl : public MigrationControl {
 public:
  explicit SourceControl(PrecopySource& source) : source_(source) {}
  absl::Status Cancel() override { return source_.TryCancel(); }
  void SetMaxBandwidth(double mibps) override { source_.SetMaxBandwidth(mibps); }
  void SetMaxDowntime(uint32_t ms) override { source_.SetMaxDowntime(ms); }

 private:
  PrecopySource& source_;
};

grpc::Status NotFound(const std::string& name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no VM named ", QuotedForError(name), " on this agent"));
}

}  // namespace

grpc::Status AgentService::CreateVm(grpc::ServerContext*, const v1::CreateVmRequest* req, v1::VmInfo* out) {
  // New datastore disks (--disk SIZE) are made with the VM's directory; the disk workload is
  // checked against them there (CreateDatastoreVm).
  const bool disks_made_later = !req->datastore().empty() && req->disk_bytes_size() > 0;
  auto spec = VmSpecFromProto(req->spec(),
                              disks_made_later ? DiskWorkloadCheck::kOnceTheDisksExist : DiskWorkloadCheck::kNow);
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  // A named CPU model becomes its feature list here, so the VM (and later the destination) get
  // exactly that CPUID set.
  if (absl::Status st = ResolveVmCpu(*spec, absl::StrCat("VM '", spec->name, "'")); !st.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(st.message()));
  }
  if (!req->datastore().empty()) return CreateOnDatastore(*req, *spec, out);
  if (req->disk_bytes_size() > 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("new disks (--disk SIZE) need a datastore (--datastore NAME)"));
  }
  if (absl::Status reserved = ctx_.vms.Reserve(spec->name); !reserved.ok()) return ToGrpcStatus(reserved);
  auto vm_dir = VmDirectoryClaim::Create(ctx_.config, spec->name);
  if (!vm_dir.ok()) {
    ctx_.vms.Release(spec->name);
    return ToGrpcStatus(vm_dir.status());
  }
  spec->console_log_path = vm_dir->console_log_path();
  auto vm = CreateAgentVm(ctx_.config, *spec, /*for_restore=*/false);  // its own VMM process by default
  if (!vm.ok()) {
    ctx_.vms.Release(spec->name);
    return ToGrpcStatus(vm.status());
  }
  if (req->start()) {
    absl::Status st = (*vm)->Start();
    if (!st.ok()) {
      ctx_.vms.Release(spec->name);
      return ToGrpcStatus(st);
    }
  }
  if (absl::Status st = ctx_.vms.Adopt(spec->name, std::move(*vm), {spec->console_log_path, ""}); !st.ok()) {
    return ToGrpcStatus(st);
  }
  vm_dir->Keep();
  spdlog::info("event=vm_created vm={} memory_mib={} backend={}", spec->name, spec->memory_bytes >> 20,
               spec->backend == Backend::kKvm ? "kvm" : "synthetic");
  if (auto e = ctx_.vms.Find(spec->name)) *out = DescribeVm(spec->name, *e);
  return grpc::Status::OK;
}

grpc::Status AgentService::ListVms(grpc::ServerContext*, const v1::ListVmsRequest*, v1::ListVmsResponse* out) {
  for (const auto& [name, e] : ctx_.vms.List()) {
    v1::VmInfo* vm = out->add_vms();
    *vm = DescribeVm(name, *e);
    vm->set_migration_id(ctx_.migrations->ActiveJobOf(name));
    AddHome(name, vm);
  }
  AddPoweredOffVms(out);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetVm(grpc::ServerContext*, const v1::GetVmRequest* req, v1::VmInfo* out) {
  auto e = ctx_.vms.Find(req->name());
  if (!e) return NotFound(req->name());
  *out = DescribeVm(req->name(), *e);
  out->set_migration_id(ctx_.migrations->ActiveJobOf(req->name()));
  AddHome(req->name(), out);
  return grpc::Status::OK;
}

grpc::Status AgentService::StopVm(grpc::ServerContext*, const v1::StopVmRequest* req, v1::VmInfo* out) {
  auto e = ctx_.vms.BeginStop(req->name());
  if (!e.ok()) return ToGrpcStatus(e.status());
  absl::Status st = (*e)->vm ? (*e)->vm->Stop() : absl::OkStatus();  // a lost VM is only forgotten
  ctx_.vms.EndStop(req->name(), st.ok());
  if (!st.ok()) return ToGrpcStatus(st);
  *out = DescribeVm(req->name(), **e);
  AddHome(req->name(), out);
  ctx_.ownership.Release(req->name());  // a datastore VM keeps its files; its lock goes with it
  spdlog::info("event=vm_stopped vm={}", req->name());
  if (auto ha = ctx_.Ha()) ha->OnVmStopped(req->name());  // stopped by its user: not restarted
  return grpc::Status::OK;
}

grpc::Status AgentService::Migrate(grpc::ServerContext* context, const v1::MigrateRequest* req,
                                   grpc::ServerWriter<v1::MigrationEvent>* writer) {
  const std::string id = NewMigrationId();
  if (req->destination().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "destination agent address is empty");
  }
  // Held from now on (also while queued): no stop and no second migration of this VM meanwhile.
  auto entry = ctx_.vms.BeginMigrationOut(req->vm_name(), id);
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  JobSpec spec{id, req->vm_name(), req->destination(), req->options()};
  absl::Status started = ctx_.migrations->StartOutgoing(
      spec, [this, request = *req, vm = (*entry)->vm](MigrationJob& job) { RunOutgoing(job, request, *vm); });
  if (!started.ok()) {
    ctx_.vms.EndMigrationOut(req->vm_name(), false);
    return ToGrpcStatus(started);
  }
  // This RPC only follows the job (docs/jobs.md): a client that goes away leaves it running.
  (void)ctx_.migrations->Watch(
      id, /*from_start=*/true, [writer](const v1::MigrationEvent& e) { return writer->Write(e); },
      [context] { return context->IsCancelled(); });
  return grpc::Status::OK;
}

std::optional<std::string> AgentService::TryOutgoing(MigrationJob& job, const v1::MigrateRequest& request, Vm& vm) {
  const std::string id = job.id();
  const v1::MigrateRequest* req = &request;
  spdlog::info("event=migration_out_start migration={} vm={} to={} priority={}", id, req->vm_name(),
               req->destination(), PriorityName(req->options().priority()));

  std::vector<std::string> precheck_warnings;
  auto emit = [&](const v1::MigrationEvent& e) {
    job.Record(e);
    ctx_.observer->OnMigrationEvent(e);
  };
  // Ends a job that never reached the engine: the VM keeps running here.
  auto end_before_engine = [&](v1::MigrationPhase phase, const absl::Status& why) -> std::optional<std::string> {
    ctx_.vms.EndMigrationOut(req->vm_name(), false);
    v1::MigrationEvent e;
    e.set_migration_id(id);
    e.set_phase(phase);
    e.set_error(std::string(why.message()));
    e.set_message(phase == v1::MIGRATION_PHASE_CANCELLED ? "cancelled; the VM keeps running on the source"
                                                         : "failed; the VM keeps running on the source");
    emit(e);
    spdlog::info("event=migration_out_end migration={} vm={} outcome={} error=\"{}\"", id, req->vm_name(),
                 v1::MigrationPhase_Name(phase), std::string(why.message()));
    return std::nullopt;
  };
  if (job.cancel_requested()) {
    return end_before_engine(v1::MIGRATION_PHASE_CANCELLED, absl::CancelledError("migration cancelled by request"));
  }
  auto grpc_channel = ctx_.dial_peer(req->destination(), ExpectedPeerName(req->destination(), req->destination_name()));
  if (grpc_channel.ok() && !req->options().skip_prechecks()) {
    // Nothing moves before the destination is known to be able to run the VM.
    v1::MigrationEvent pe;
    pe.set_migration_id(id);
    pe.set_phase(v1::MIGRATION_PHASE_PRECHECK);
    auto findings = PrecheckMigration(ctx_.config, vm.spec(), *grpc_channel,
                                      {[&vm] { return SampleDirtyRate(vm); }, &ctx_.links, req->destination(),
                                       req->options()},
                                      {req->to_datastore()});
    if (findings.ok()) ctx_.observer->OnPrecheckFindings(*findings);
    if (!findings.ok() || HasErrors(*findings)) {
      ctx_.vms.EndMigrationOut(req->vm_name(), false);
      pe.set_phase(v1::MIGRATION_PHASE_FAILED);
      if (!findings.ok()) {
        pe.set_error(absl::StrCat("precheck failed: ", findings.status().message()));
      } else {
        *pe.mutable_precheck() = FindingsToProto(*findings);
        std::string errors;
        for (const Finding& f : *findings) {
          if (f.severity == Severity::kError) absl::StrAppend(&errors, errors.empty() ? "" : "; ", FindingCodeName(f.code), ": ", f.message);
        }
        pe.set_error(absl::StrCat("migration refused by prechecks: ", errors));
      }
      pe.set_message("refused; the VM keeps running on the source");
      emit(pe);
      spdlog::info("event=migration_out_refused migration={} vm={} error=\"{}\"", id, req->vm_name(), pe.error());
      return std::nullopt;
    }
    *pe.mutable_precheck() = FindingsToProto(*findings);
    pe.set_message(findings->empty() ? "prechecks passed"
                                     : absl::StrCat("prechecks passed with ", findings->size(), " warning(s)"));
    emit(pe);
    for (const Finding& f : *findings) precheck_warnings.push_back(absl::StrCat(FindingCodeName(f.code), ": ", f.message));
  }
  absl::StatusOr<std::unique_ptr<GrpcPeerChannel>> channel =
      grpc_channel.ok() ? GrpcPeerChannel::Open(*grpc_channel, ctx_.secure)
                        : absl::StatusOr<std::unique_ptr<GrpcPeerChannel>>(grpc_channel.status());
  if (!channel.ok()) return end_before_engine(v1::MIGRATION_PHASE_FAILED, channel.status());
  SourceConfig config;
  config.migration_id = id;
  config.source_agent = ctx_.config.name;
  config.boot_id = ctx_.boot_id;
  config.options = job.options();  // as they are now: SetMigration may have changed them while queued
  config.wrap_page_sender = ctx_.wrap_page_sender;
  if (absl::Status st = PrepareLockHandover(ctx_.ownership, req->vm_name(), vm, ctx_.config.name, config); !st.ok()) {
    return end_before_engine(v1::MIGRATION_PHASE_FAILED, st);
  }
  if (!req->to_datastore().empty()) {
    // A storage migration: no lock handover (the source keeps its own directory's lock until the
    // directory is removed after the commit); the disks are copied instead.
    config.home.reset();
    config.release_ownership = nullptr;
    config.retake_ownership = nullptr;
    if (absl::Status st = PrepareStorageMigration(ctx_.ownership, req->vm_name(), req->to_datastore(), vm, config);
        !st.ok()) {
      return end_before_engine(v1::MIGRATION_PHASE_FAILED, st);
    }
  }
  // A commit whose answer was lost: the destination is asked again over a fresh connection.
  config.ask_destination_runs_vm = [this, destination = req->destination(),
                                    name = ExpectedPeerName(req->destination(), req->destination_name()), id] {
    return AskDestinationRunsVm(ctx_, destination, name, id);
  };
  if (req->options().transport() != v1::TRANSPORT_GRPC) {
    // Protocol 2: pages on data connections, proven with a fresh secret that travels only inside
    // the (mutual-TLS) control stream, and encrypted unless both agents run --insecure.
    auto secret = MigrationKey::Generate();
    if (!secret.ok()) return end_before_engine(v1::MIGRATION_PHASE_FAILED, secret.status());
    v1::DataPathOffer offer;
    uint32_t n = req->options().connections() > 0 ? req->options().connections()
                 : ctx_.config.connections > 0   ? ctx_.config.connections
                                                  : DefaultDataConnections();
    offer.set_connections(n);
    offer.set_encrypted(ctx_.secure);
    offer.set_secret(secret->ToString());
    config.data_path = offer;
    const std::string host = HostOfAddress(req->destination());
    config.open_data_path = [offer, host, id, zero_copy = req->options().zero_copy(),
                             share = &ctx_.migrations->link_share(), weight = job.link_weight()](
                                const v1::DataPathAccept& accept) -> absl::StatusOr<std::unique_ptr<PageSender>> {
      if (accept.port() == 0 || accept.port() > 65535 || accept.connections() != offer.connections()) {
        return absl::FailedPreconditionError("the destination answered the data-path offer with a bad port or count");
      }
      DataSenderOptions o;
      o.migration_id = id;
      o.secret = offer.secret();
      o.connections = offer.connections();
      o.encrypted = offer.encrypted();
      o.zero_copy = zero_copy;
      // A data connection that makes no progress is dead by the same rule as the control stream
      // (its keepalive), not after the transport's generic 30 s: a frozen link fails the
      // migration in seconds and the guest runs on here.
      o.stall_timeout_ms = kDataPathDeadAfterMs;
      o.link_share = share;  // concurrent migrations share the link by priority
      o.link_weight = weight;
      ASSIGN_OR_RETURN(auto sender, DataSender::Connect(host, static_cast<uint16_t>(accept.port()), o));
      return std::unique_ptr<PageSender>(std::move(sender));
    };
  }
  if (auto* remote = dynamic_cast<RemoteVm*>(&vm)) {
    // Should this agent die once the commit went out, the VMM keeps the guest paused and tells
    // the next agent whom to ask (docs/vmm_process.md "Adopting a guest paused after a commit").
    v1::VmmHandover target;
    target.set_migration_id(id);
    target.set_destination(req->destination());
    target.set_destination_name(ExpectedPeerName(req->destination(), req->destination_name()));
    remote->SetHandoverTarget(std::move(target));
  }
  if (ctx_.adjust_source_config) ctx_.adjust_source_config(config);  // test seam (tests/fault_agent)
  std::unique_ptr<MigrationChannel> wrapped_channel =
      ctx_.wrap_migration_channel ? ctx_.wrap_migration_channel(**channel) : nullptr;  // test seam
  PrecopySource source(vm, wrapped_channel ? *wrapped_channel : **channel, config, emit);
  SourceControl control(source);
  job.Attach(&control);  // cancel and SetMigration reach the engine from here on
  SourceResult result = source.Run();
  for (const auto& w : precheck_warnings) result.stats.add_warnings(w);
  job.Detach();
  wrapped_channel.reset();
  channel->reset();
  if (result.refused_for_now && !job.cancel_requested()) {
    spdlog::info("event=migration_out_refused_for_now migration={} vm={} error=\"{}\"", id, req->vm_name(),
                 std::string(result.status.message()));
    return std::string(result.status.message());  // still marked migrating: RunOutgoing queues it again
  }
  const bool left = result.outcome == SourceOutcome::kCompleted;
  if (result.outcome == SourceOutcome::kCommitUnconfirmed) {
    ctx_.unconfirmed_commits.Add(id, {req->vm_name(), req->destination(),
                                      ExpectedPeerName(req->destination(), req->destination_name())});
  }
  ctx_.vms.EndMigrationOut(req->vm_name(), left);
  if (left && !req->to_datastore().empty()) {
    // The destination confirmed: the VM runs from its new directory there; this one goes.
    if (absl::Status st = RemoveSourceDirectory(ctx_.ownership, req->vm_name(), ctx_.config.name); !st.ok()) {
      result.stats.add_warnings(absl::StrCat("storage migration: the source's directory was not removed: ", st.message()));
    }
  }
  if (left) ctx_.ownership.Release(req->vm_name());  // its lock went at commit; the destination holds it
  if (left) ctx_.links.Record(req->destination(), req->options(), result.stats);

  v1::MigrationEvent last;
  last.set_migration_id(id);
  *last.mutable_stats() = result.stats;
  last.set_progress(left ? 1.0 : 0.0);
  switch (result.outcome) {
    case SourceOutcome::kCompleted:
      last.set_phase(v1::MIGRATION_PHASE_COMPLETED);
      last.set_message(absl::StrFormat("VM '%s' now runs on %s", req->vm_name(), req->destination()));
      break;
    case SourceOutcome::kCancelled:
      last.set_phase(v1::MIGRATION_PHASE_CANCELLED);
      last.set_message("cancelled; the VM keeps running on the source");
      last.set_error(std::string(result.status.message()));
      break;
    default:
      last.set_phase(v1::MIGRATION_PHASE_FAILED);
      last.set_error(std::string(result.status.message()));
      last.set_message(result.outcome == SourceOutcome::kCommitUnconfirmed
                           ? "commit unconfirmed; the source keeps the VM paused"
                           : "failed; the VM keeps running on the source");
  }
  emit(last);
  spdlog::info("event=migration_out_end migration={} vm={} outcome={} total_ms={:.1f} downtime_ms={:.1f} "
               "rounds={} bytes={} error=\"{}\"",
               id, req->vm_name(), SourceOutcomeName(result.outcome), result.stats.total_ms(),
               result.stats.downtime_ms(), result.stats.rounds(), result.stats.bytes_transferred(),
               std::string(result.status.message()));
  return std::nullopt;
}

grpc::Status AgentService::GetMigration(grpc::ServerContext*, const v1::GetMigrationRequest* req,
                                        v1::MigrationInfo* out) {
  auto info = ctx_.migrations->Get(req->migration_id());
  if (!info.ok()) return ToGrpcStatus(info.status());
  *out = *info;
  return grpc::Status::OK;
}

grpc::Status AgentService::CancelMigration(grpc::ServerContext*, const v1::CancelMigrationRequest* req,
                                           v1::MigrationInfo* out) {
  auto info = ctx_.migrations->Cancel(req->migration_id());
  if (!info.ok()) return ToGrpcStatus(info.status());
  *out = *info;
  spdlog::info("event=migration_cancel_requested migration={}", req->migration_id());
  return grpc::Status::OK;
}

grpc::Status AgentService::ListMigrations(grpc::ServerContext*, const v1::ListMigrationsRequest*,
                                          v1::ListMigrationsResponse* out) {
  *out = ctx_.migrations->List();
  return grpc::Status::OK;
}

grpc::Status AgentService::WatchMigration(grpc::ServerContext* context, const v1::WatchMigrationRequest* req,
                                          grpc::ServerWriter<v1::MigrationEvent>* writer) {
  absl::Status st = ctx_.migrations->Watch(
      req->migration_id(), /*from_start=*/false, [writer](const v1::MigrationEvent& e) { return writer->Write(e); },
      [context] { return context->IsCancelled(); });
  return absl::IsNotFound(st) ? ToGrpcStatus(st) : grpc::Status::OK;
}

grpc::Status AgentService::SetMigration(grpc::ServerContext*, const v1::SetMigrationRequest* req,
                                        v1::MigrationInfo* out) {
  std::optional<double> bandwidth;
  std::optional<uint32_t> downtime;
  if (req->has_max_bandwidth_mibps()) bandwidth = req->max_bandwidth_mibps();
  if (req->has_max_downtime_ms()) downtime = req->max_downtime_ms();
  auto info = ctx_.migrations->Set(req->migration_id(), bandwidth, downtime);
  if (!info.ok()) return ToGrpcStatus(info.status());
  *out = *info;
  spdlog::info("event=migration_set migration={} max_bandwidth_mibps={} max_downtime_ms={}", req->migration_id(),
               info->options().max_bandwidth_mibps(), info->options().max_downtime_ms());
  return grpc::Status::OK;
}

grpc::Status AgentService::AnnounceVm(grpc::ServerContext*, const v1::AnnounceVmRequest* req,
                                      v1::AnnounceVmResponse* out) {
  auto e = ctx_.vms.Find(req->name());
  if (!e || !e->vm) return NotFound(req->name());
  if (e->vm->spec().nics.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("VM '", req->name(), "' has no NICs to announce"));
  }
  AnnounceResult a = AnnounceVmNics(ctx_.config, e->vm->spec());
  out->set_frames_sent(static_cast<uint32_t>(a.frames_sent));
  for (const auto& w : a.warnings) out->add_warnings(w);
  return grpc::Status::OK;
}

grpc::Status AgentService::Precheck(grpc::ServerContext*, const v1::PrecheckRequest* req, v1::PrecheckReport* out) {
  auto e = ctx_.vms.Find(req->vm_name());
  if (!e || !e->vm) return NotFound(req->vm_name());
  auto channel = ctx_.dial_peer(req->destination(), ExpectedPeerName(req->destination(), req->destination_name()));
  if (!channel.ok()) return ToGrpcStatus(channel.status());
  auto findings = PrecheckMigration(
      ctx_.config, e->vm->spec(), *channel,
      {[&] { return SampleIdleVmDirtyRate(ctx_.vms, req->vm_name()); }, &ctx_.links, req->destination(), {}});
  if (!findings.ok()) return ToGrpcStatus(findings.status());
  ctx_.observer->OnPrecheckFindings(*findings);
  *out = FindingsToProto(*findings);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetHostInfo(grpc::ServerContext*, const v1::GetHostInfoRequest*, v1::HostInfo* out) {
  out->set_agent_name(ctx_.config.name);
  out->set_version("0.1.0");
  out->set_boot_id(ctx_.boot_id);
  out->set_kvm_available(access("/dev/kvm", R_OK | W_OK) == 0);
  out->set_protocol_version(kProtocolVersion);
  out->set_vms(ctx_.vms.size());
  return grpc::Status::OK;
}

}  // namespace ferry
