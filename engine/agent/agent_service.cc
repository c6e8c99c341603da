#include "engine/agent/agent_service.h"

#include <random>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/agent/migration_precheck.h"
#include "engine/host/cpu_model.h"
#include "engine/agent/vm_announce.h"
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

grpc::Status NotFound(const std::string& name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no VM named '", name, "' on this agent"));
}

}  // namespace

grpc::Status AgentService::CreateVm(grpc::ServerContext*, const v1::CreateVmRequest* req, v1::VmInfo* out) {
  auto spec = VmSpecFromProto(req->spec());
  if (!spec.ok()) return ToGrpcStatus(spec.status());
  // A named CPU model becomes its feature list here, so the VM (and later the destination) get
  // exactly that CPUID set.
  if (absl::Status st = ResolveVmCpu(*spec, absl::StrCat("VM '", spec->name, "'")); !st.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(st.message()));
  }
  if (absl::Status reserved = ctx_.vms.Reserve(spec->name); !reserved.ok()) return ToGrpcStatus(reserved);
  spec->console_log_path = PrepareConsoleLogPath(ctx_.config, spec->name);
  auto vm = CreateVmForBoot(*spec);
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
  spdlog::info("event=vm_created vm={} memory_mib={} backend={}", spec->name, spec->memory_bytes >> 20,
               spec->backend == Backend::kKvm ? "kvm" : "synthetic");
  if (auto e = ctx_.vms.Find(spec->name)) *out = DescribeVm(spec->name, *e);
  return grpc::Status::OK;
}

grpc::Status AgentService::ListVms(grpc::ServerContext*, const v1::ListVmsRequest*, v1::ListVmsResponse* out) {
  for (const auto& [name, e] : ctx_.vms.List()) *out->add_vms() = DescribeVm(name, *e);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetVm(grpc::ServerContext*, const v1::GetVmRequest* req, v1::VmInfo* out) {
  auto e = ctx_.vms.Find(req->name());
  if (!e) return NotFound(req->name());
  *out = DescribeVm(req->name(), *e);
  return grpc::Status::OK;
}

grpc::Status AgentService::StopVm(grpc::ServerContext*, const v1::StopVmRequest* req, v1::VmInfo* out) {
  auto e = ctx_.vms.BeginStop(req->name());
  if (!e.ok()) return ToGrpcStatus(e.status());
  absl::Status st = (*e)->vm->Stop();
  ctx_.vms.EndStop(req->name(), st.ok());
  if (!st.ok()) return ToGrpcStatus(st);
  *out = DescribeVm(req->name(), **e);
  spdlog::info("event=vm_stopped vm={}", req->name());
  return grpc::Status::OK;
}

grpc::Status AgentService::Migrate(grpc::ServerContext* context, const v1::MigrateRequest* req,
                                   grpc::ServerWriter<v1::MigrationEvent>* writer) {
  const std::string id = NewMigrationId();
  if (req->destination().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "destination agent address is empty");
  }
  auto entry = ctx_.vms.BeginMigrationOut(req->vm_name(), id);
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  Vm& vm = *(*entry)->vm;
  spdlog::info("event=migration_out_start migration={} vm={} to={}", id, req->vm_name(), req->destination());

  std::vector<std::string> precheck_warnings;
  auto emit = [&](const v1::MigrationEvent& e) {
    ctx_.migrations.Update(id, e);
    ctx_.observer->OnMigrationEvent(e);
    writer->Write(e);  // a client that went away does not stop the migration
  };
  auto grpc_channel = ctx_.dial_peer(req->destination(), ExpectedPeerName(req->destination(), req->destination_name()));
  if (grpc_channel.ok() && !req->options().skip_prechecks()) {
    // Nothing moves before the destination is known to be able to run the VM.
    v1::MigrationEvent pe;
    pe.set_migration_id(id);
    pe.set_phase(v1::MIGRATION_PHASE_PRECHECK);
    auto findings = PrecheckMigration(ctx_.config, vm.spec(), *grpc_channel,
                                      {[&vm] { return SampleDirtyRate(vm); }, &ctx_.links, req->destination(),
                                       req->options()});
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
      return grpc::Status::OK;
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
  if (!channel.ok()) {
    ctx_.vms.EndMigrationOut(req->vm_name(), false);
    return ToGrpcStatus(channel.status());
  }
  SourceConfig config;
  config.migration_id = id;
  config.source_agent = ctx_.config.name;
  config.boot_id = ctx_.boot_id;
  config.options = req->options();
  config.test_drop_one_final_page = ctx_.fault_drop_final_page;
  if (req->options().transport() != v1::TRANSPORT_GRPC) {
    // Protocol 2: pages on data connections, proven with a fresh secret that travels only inside
    // the (mutual-TLS) control stream, and encrypted unless both agents run --insecure.
    auto secret = MigrationKey::Generate();
    if (!secret.ok()) {
      ctx_.vms.EndMigrationOut(req->vm_name(), false);
      return ToGrpcStatus(secret.status());
    }
    v1::DataPathOffer offer;
    uint32_t n = req->options().connections() > 0 ? req->options().connections()
                 : ctx_.config.connections > 0   ? ctx_.config.connections
                                                  : DefaultDataConnections();
    offer.set_connections(n);
    offer.set_encrypted(ctx_.secure);
    offer.set_secret(secret->ToString());
    config.data_path = offer;
    const std::string host = HostOfAddress(req->destination());
    config.open_data_path = [offer, host, id, zero_copy = req->options().zero_copy()](
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
      ASSIGN_OR_RETURN(auto sender, DataSender::Connect(host, static_cast<uint16_t>(accept.port()), o));
      return std::unique_ptr<PageSender>(std::move(sender));
    };
  }
  PrecopySource source(vm, **channel, config, emit);
  ctx_.migrations.Add(id, &source);
  SourceResult result = source.Run();
  for (const auto& w : precheck_warnings) result.stats.add_warnings(w);
  ctx_.migrations.Finish(id);
  channel->reset();
  const bool left = result.outcome == SourceOutcome::kCompleted;
  ctx_.vms.EndMigrationOut(req->vm_name(), left);
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
  return grpc::Status::OK;
}

grpc::Status AgentService::GetMigration(grpc::ServerContext*, const v1::GetMigrationRequest* req,
                                        v1::MigrationInfo* out) {
  out->set_migration_id(req->migration_id());
  if (!ctx_.migrations.Get(req->migration_id(), out->mutable_last_event())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no migration '", req->migration_id(), "'"));
  }
  return grpc::Status::OK;
}

grpc::Status AgentService::CancelMigration(grpc::ServerContext*, const v1::CancelMigrationRequest* req,
                                           v1::MigrationInfo* out) {
  out->set_migration_id(req->migration_id());
  if (!ctx_.migrations.Cancel(req->migration_id())) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("migration '", req->migration_id(), "' is not running on this agent"));
  }
  ctx_.migrations.Get(req->migration_id(), out->mutable_last_event());
  spdlog::info("event=migration_cancel_requested migration={}", req->migration_id());
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
