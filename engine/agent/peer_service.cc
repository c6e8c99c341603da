#include "engine/agent/peer_service.h"


#include <mutex>
#include <optional>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/arriving_vm_home.h"
#include "engine/agent/arriving_vm_storage.h"
#include "engine/agent/host_facts_source.h"
#include "engine/agent/vm_announce.h"
#include "engine/agent/vm_directory.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/base/status.h"
#include "engine/host/cpu_offer.h"
#include "engine/host/host_memory.h"
#include "engine/host/local_host.h"
#include "engine/agent/tls_config.h"
#include "engine/host/disk_access.h"
#include "engine/host/host_facts_proto.h"
#include "engine/migration/migration_receiver.h"
#include "engine/storage/datastore.h"
#include "engine/vm/vm_spec_proto.h"
#include "engine/transport/grpc_peer_channel.h"

namespace ferry {

grpc::Status PeerService::GetHostFacts(grpc::ServerContext* context, const v1::GetHostFactsRequest* req,
                                       v1::HostFacts* out) {
  if (grpc::Status peer = RequireHostPeer(*context); !peer.ok()) return peer;
  auto facts = AgentHostFacts(ctx_.config);
  if (!facts.ok()) return ToGrpcStatus(facts.status());
  auto vm = VmSpecFromProto(req->vm());
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  // Only this host can tell whether it can open the VM's disks.
  ProbeDiskAccess(*facts, *vm, HostFactsFromProto(req->source()));
  *out = HostFactsToProto(*facts);
  // A storage migration's precheck weighs its disks against the target datastore's free space.
  for (int i = 0; i < out->datastores_size() && i < static_cast<int>(facts->datastores.size()); ++i) {
    auto space = MeasureDatastoreSpace(facts->datastores[i]);
    if (!space.ok()) continue;
    out->mutable_datastores(i)->set_free_bytes(space->free_bytes);
    if (space->read_only) out->mutable_datastores(i)->set_read_only(true);
  }
  return grpc::Status::OK;
}

grpc::Status PeerService::Migrate(grpc::ServerContext* context,
                                  grpc::ServerReaderWriter<v1::PeerReply, v1::PeerMessage>* stream) {
  // Only another agent (a host certificate from the cluster CA) may push a VM here.
  if (grpc::Status peer = RequireHostPeer(*context); !peer.ok()) {
    spdlog::warn("event=migration_in_refused reason=\"{}\" peer=\"{}\"", peer.error_message(),
                 GetPeerIdentity(*context).ToString());
    return peer;
  }
  std::string reserved_name;
  std::string begun_id;  // the migration this stream carries, once its start arrived
  std::optional<VmDirectoryClaim> vm_dir;  // removed again unless the VM ends up running here
  VmSpec arrived_spec;  // for the announcement once it runs here
  std::optional<v1::VmHome> home;  // a VM on a shared datastore: where it lives
  ArrivingVmHome arriving_home;    // its directory here and, from commit on, its lock
  std::optional<v1::StorageTarget> storage;  // a storage migration: the datastore it moves to
  ArrivingVmStorage arriving_storage;        // its new directory there (removed unless it arrives)
  ReceiverHooks hooks;
  hooks.agent_name = ctx_.config.name;
  hooks.boot_id = ctx_.boot_id;
  hooks.create_vm = [&](const VmSpec& incoming) -> absl::StatusOr<std::unique_ptr<Vm>> {
    // Nothing is created for a VM this host cannot run: its CPU features and its memory first.
    RETURN_IF_ERROR(CheckCpuFeaturesOffered(incoming.cpu.features, ProbeLocalCpu().features));
    ASSIGN_OR_RETURN(uint64_t available, ReadMemAvailableBytes());
    RETURN_IF_ERROR(ctx_.vms.ReserveWithMemory(incoming.name, incoming.memory_bytes, available));
    reserved_name = incoming.name;
    ASSIGN_OR_RETURN(VmDirectoryClaim claim, VmDirectoryClaim::Create(ctx_.config, incoming.name));
    vm_dir.emplace(std::move(claim));
    VmSpec spec = incoming;
    // Only disks this host fills itself (arriving_storage) have a coherent cache here.
    for (DiskSpec& d : spec.disks) d.filled_by_this_host = false;
    spec.console_log_path = vm_dir->console_log_path();
    if (home) RETURN_IF_ERROR(arriving_home.Locate(ctx_.config, *home, spec));
    if (storage) RETURN_IF_ERROR(arriving_storage.Create(ctx_.config, *storage, spec));
    // A datastore VM's VMM holds its lock from commit on (taken by take_ownership below).
    const VmmLockRequest lock = storage ? arriving_storage.LockRequest(ctx_.config.name)
                                        : arriving_home.LockRequest(ctx_.config.name);
    ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, CreateAgentVm(ctx_.config, spec, /*for_restore=*/true, lock, begun_id));
    arriving_home.RunsIn(vm.get());
    arriving_storage.RunsIn(vm.get());
    return vm;
  };
  hooks.take_ownership = [&](const v1::StartMigration&) {
    return storage ? arriving_storage.TakeLock(ctx_.config.name) : arriving_home.TakeLock(ctx_.config.name);
  };
  hooks.adopt_vm = [&](std::unique_ptr<Vm> vm, const v1::StartMigration& start) {
    arrived_spec = vm->spec();
    arriving_home.HandTo(ctx_.ownership);
    arriving_storage.HandTo(ctx_.ownership);
    vm_dir->Keep();
    if (absl::Status st = ctx_.vms.Adopt(reserved_name, std::move(vm), {vm_dir->console_log_path(), start.migration_id()});
        !st.ok()) {
      spdlog::error("event=migration_in_adopt_failed vm={} error=\"{}\"", reserved_name, std::string(st.message()));
    }
    ctx_.observer->OnVmArrived(start.spec().name());
    reserved_name.clear();  // it is ours now
    spdlog::info("event=migration_in_resumed vm={} migration={} from={}", start.spec().name(),
                 start.migration_id(), start.source_agent());
  };
  // Replies come from this thread and, on a data-path failure, from a data connection's thread.
  std::mutex write_mu;
  auto write = [&](const v1::PeerReply& r) {
    std::lock_guard<std::mutex> lock(write_mu);
    stream->Write(r);
  };
  hooks.require_encrypted_data = ctx_.secure;
  hooks.open_data_path = [&](const v1::StartMigration& start,
                             GuestMemory& mem) -> absl::StatusOr<ReceiverHooks::DataPath> {
    IncomingOptions o;
    o.migration_id = start.migration_id();
    o.secret = start.data_path().secret();
    o.connections = start.data_path().connections();
    o.encrypted = start.data_path().encrypted();
    o.on_error = [&write, id = start.migration_id()](const absl::Status& st) {
      spdlog::warn("event=data_path_failed migration={} error=\"{}\"", id, std::string(st.message()));
      v1::PeerReply r;
      r.mutable_error()->set_code(v1::PEER_ERROR_CODE_DATA_PATH);
      r.mutable_error()->set_message(std::string(st.message()));
      write(r);
    };
    if (ctx_.adjust_incoming_data_path) ctx_.adjust_incoming_data_path(o);  // test seam
    ReceiverHooks::DataPath dp;
    dp.pages = ctx_.data_listener->Expect(std::move(o), mem);
    dp.port = ctx_.data_listener->port();
    return dp;
  };
  MigrationReceiver receiver(std::move(hooks));
  v1::PeerMessage msg;
  grpc::Status result = grpc::Status::OK;
  uint64_t stream_bytes = 0;
  std::shared_ptr<MigrationJob> job;  // this host's slot for the migration (docs/jobs.md)
  while (stream->Read(&msg)) {
    stream_bytes += msg.ByteSizeLong();
    if (msg.has_start() && !job) {
      // Admission before anything is reserved: beyond the host's limit the start is refused at once.
      JobSpec spec{msg.start().migration_id(), msg.start().spec().name(), msg.start().source_agent(), {}};
      auto admitted = ctx_.migrations->AdmitIncoming(spec);
      if (!admitted.ok()) {
        std::string why = absl::StrCat("destination ", ctx_.config.name, " refused the migration: ",
                                       admitted.status().message());
        spdlog::warn("event=migration_in_refused migration={} error=\"{}\"", spec.id, why);
        v1::PeerReply r;
        r.mutable_error()->set_code(v1::PEER_ERROR_CODE_RESOURCE);
        r.mutable_error()->set_message(why);
        r.mutable_error()->set_temporary(absl::IsResourceExhausted(admitted.status()));  // a slot frees later
        write(r);
        result = grpc::Status(absl::IsResourceExhausted(admitted.status()) ? grpc::StatusCode::RESOURCE_EXHAUSTED
                                                                           : grpc::StatusCode::FAILED_PRECONDITION,
                              why);
        break;
      }
      job = *admitted;
      v1::MigrationEvent e;
      e.set_phase(v1::MIGRATION_PHASE_SETUP);
      e.set_message(absl::StrCat("incoming from ", spec.peer));
      job->Record(e);
    }
    if (msg.has_start() && begun_id.empty()) {
      begun_id = msg.start().migration_id();
      if (!ctx_.incoming_commits.Begin(begun_id, [context] { context->TryCancel(); })) {
        result = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              absl::StrCat("migration ", begun_id, " was fenced here (its source asked whether it runs)"));
        break;
      }
    }
    // The commit and a source's Peer.QueryMigration exclude each other: a fenced migration is
    // never resumed here.
    const bool commit = msg.has_commit();
    if (commit && !ctx_.incoming_commits.BeginCommit(begun_id)) {
      v1::PeerReply fenced;
      fenced.mutable_error()->set_code(v1::PEER_ERROR_CODE_BAD_MESSAGE);
      fenced.mutable_error()->set_message("commit refused: the source already asked and was told the VM does not run here");
      write(fenced);
      result = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, fenced.error().message());
      break;
    }
    if (msg.has_start() && msg.start().has_home()) home = msg.start().home();
    if (msg.has_start() && msg.start().has_storage()) storage = msg.start().storage();
    // Test seam (tests/fault_agent): a destination that refuses this message.
    std::optional<v1::PeerReply> reply = ctx_.refuse_incoming ? ctx_.refuse_incoming(msg) : std::nullopt;
    if (!reply) reply = receiver.Handle(msg);
    if (commit) ctx_.incoming_commits.EndCommit(begun_id, receiver.state() == MigrationReceiver::State::kResumed);
    if (commit && receiver.state() != MigrationReceiver::State::kResumed) {
      arriving_home.Drop();
      arriving_storage.Drop();
    }
    if (reply) write(*reply);
    if (reply && reply->has_resumed() && ctx_.refuse_incoming) {
      // Test seam: asked once more with an empty message, the step after the resume.
      if (std::optional<v1::PeerReply> refused = ctx_.refuse_incoming(v1::PeerMessage()); refused) {
        write(*refused);
        break;
      }
    }
    if (reply && reply->has_resumed()) {
      // Tell the network where the VM is now (after the resume: it never delays it).
      v1::PeerReply announced;
      AnnounceResult a = AnnounceVmNics(ctx_.config, arrived_spec);
      announced.mutable_announced()->set_frames_sent(a.frames_sent);
      announced.mutable_announced()->set_frames_failed(a.frames_failed);
      for (const auto& w : a.warnings) announced.mutable_announced()->add_warnings(w);
      write(announced);
    }
    if (reply && reply->has_error()) {
      spdlog::warn("event=migration_in_refused migration={} code={} error=\"{}\"", receiver.migration_id(),
                   v1::PeerErrorCode_Name(reply->error().code()), reply->error().message());
      result = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, reply->error().message());
      break;
    }
    if (receiver.state() == MigrationReceiver::State::kAborted) {
      spdlog::info("event=migration_in_aborted migration={} reason=\"{}\"", receiver.migration_id(),
                   msg.has_abort() ? msg.abort().reason() : "");
      result = grpc::Status(grpc::StatusCode::ABORTED, "migration aborted by the source");
      break;
    }
  }
  if (receiver.state() != MigrationReceiver::State::kResumed) {
    receiver.OnStreamEnd();  // discards the half-received VM and its memory
    arriving_storage.RemoveUnlessKept();  // a storage migration's half-copied directory
    if (!reserved_name.empty()) ctx_.vms.Release(reserved_name);
    if (result.ok()) result = grpc::Status(grpc::StatusCode::ABORTED, "migration stream ended before commit");
  }
  if (!begun_id.empty()) {
    ctx_.incoming_commits.End(begun_id, receiver.state() == MigrationReceiver::State::kResumed);
  }
  ctx_.observer->OnIncomingMigrationEnd(
      {receiver.state() == MigrationReceiver::State::kResumed, receiver.counters().pages, stream_bytes});
  if (job) {
    v1::MigrationEvent e;
    const bool resumed = receiver.state() == MigrationReceiver::State::kResumed;
    e.set_phase(resumed ? v1::MIGRATION_PHASE_COMPLETED : v1::MIGRATION_PHASE_FAILED);
    e.set_progress(resumed ? 1.0 : 0.0);
    if (resumed) {
      e.set_message("the VM runs here");
    } else {
      e.set_error(result.error_message());
      e.set_message("the half-received VM was discarded");
    }
    job->Record(e);
    ctx_.migrations->FinishIncoming(*job);
  }
  return result;
}

}  // namespace ferry
