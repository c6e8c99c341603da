// The Agent RPCs of VMs defined on datastores (docs/datastores.md): create on a datastore, start,
// delete, register, and the powered-off VMs a list shows.

#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/agent/agent_cluster.h"
#include "engine/agent/agent_service.h"
#include "engine/agent/host_facts_source.h"
#include "engine/agent/remote_vm.h"
#include "engine/agent/vmm_launcher.h"
#include "engine/base/error_text.h"
#include "engine/base/status.h"
#include "engine/host/cpu_model.h"
#include "engine/storage/datastore.h"
#include "engine/storage/datastore_vm.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {

grpc::Status AgentService::CreateOnDatastore(const v1::CreateVmRequest& req, VmSpec spec, v1::VmInfo* out) {
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return ToGrpcStatus(host.status());
  auto ds = DatastoreByName(*host, req.datastore());
  if (!ds.ok()) return ToGrpcStatus(ds.status());
  if (ctx_.vms.Find(spec.name)) {
    return ToGrpcStatus(absl::AlreadyExistsError(absl::StrCat("a VM named '", spec.name, "' already runs here")));
  }
  std::vector<uint64_t> disk_bytes(req.disk_bytes().begin(), req.disk_bytes().end());
  auto vm = CreateDatastoreVm(*ds, spec, disk_bytes);
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  spdlog::info("event=vm_defined vm={} datastore={} dir={} disks={}", spec.name, ds->name, vm->dir, disk_bytes.size());
  if (!req.start()) {
    out->mutable_spec()->CopyFrom(VmSpecToProto(vm->spec));
    out->set_state(v1::VM_POWER_STATE_POWERED_OFF);
    out->set_datastore(vm->datastore);
    out->set_directory(vm->dir);
    out->set_console_log_path(vm->spec.console_log_path);
    return grpc::Status::OK;
  }
  auto info = StartDefined(*vm);
  if (!info.ok()) return ToGrpcStatus(info.status());
  *out = *info;
  return grpc::Status::OK;
}

absl::StatusOr<v1::VmInfo> AgentService::StartDefined(const DatastoreVm& vm) {
  VmSpec spec = vm.spec;
  RETURN_IF_ERROR(ResolveVmCpu(spec, absl::StrCat("VM '", spec.name, "'")));
  ForgetIfVmmGone(spec.name);
  if (absl::Status reserved = ctx_.vms.Reserve(spec.name); !reserved.ok()) {
    return absl::AlreadyExistsError(absl::StrCat("vm ", spec.name, " already runs on this agent"));
  }
  // The lock first: a VM another holder runs (here or on a host sharing the datastore) never boots.
  // Its VMM process takes it before it builds the VM; an in-process VM's lock is this agent's.
  const bool in_agent = RunsInAgentProcess(ctx_.config, spec);
  if (absl::Status owned = in_agent ? ctx_.ownership.TakeInAgent(vm, ctx_.config.name) : absl::OkStatus();
      !owned.ok()) {
    ctx_.vms.Release(spec.name);
    return owned;
  }
  auto fail = [&](absl::Status st) {
    ctx_.ownership.Release(spec.name);
    ctx_.vms.Release(spec.name);
    return st;
  };
  auto created = CreateAgentVm(ctx_.config, spec, /*for_restore=*/false, {vm.lock_path(), ctx_.config.name});
  if (!created.ok()) return fail(created.status());
  if (!in_agent) ctx_.ownership.Put(vm);
  if (absl::Status st = (*created)->Start(); !st.ok()) return fail(st);
  if (absl::Status st = ctx_.vms.Adopt(spec.name, std::move(*created), {spec.console_log_path, ""}); !st.ok()) {
    return fail(st);
  }
  spdlog::info("event=vm_started vm={} datastore={} dir={}", spec.name, vm.datastore, vm.dir);
  auto e = ctx_.vms.Find(spec.name);
  if (!e) return absl::InternalError(absl::StrCat("vm ", spec.name, " vanished right after it started"));
  v1::VmInfo info = DescribeVm(spec.name, *e);
  AddHome(spec.name, &info);
  return info;
}

grpc::Status AgentService::StartVm(grpc::ServerContext*, const v1::StartVmRequest* req, v1::VmInfo* out) {
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return ToGrpcStatus(host.status());
  auto vm = FindDatastoreVm(*host, req->name());
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  if (req->check_memory()) {  // an HA restart: admission (docs/cluster.md)
    const uint64_t free = HaFreeMemoryBytes(ctx_);
    if (vm->spec.memory_bytes > free) {
      return ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
          "host ", ctx_.config.name, " cannot hold vm ", req->name(), ": it needs ", vm->spec.memory_bytes >> 20,
          " MiB, ", free >> 20, " MiB free")));
    }
  }
  auto info = StartDefined(*vm);
  if (!info.ok()) return ToGrpcStatus(info.status());
  *out = *info;
  return grpc::Status::OK;
}

grpc::Status AgentService::DeleteVm(grpc::ServerContext*, const v1::DeleteVmRequest* req, v1::DeleteVmResponse* out) {
  if (ctx_.vms.Find(req->name())) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("vm ", req->name(), " is running on this agent; stop it before deleting it")));
  }
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return ToGrpcStatus(host.status());
  auto vm = FindDatastoreVm(*host, req->name());
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  // The lock decides: a VM running on another host that shares the datastore is refused by it.
  if (absl::Status st = DeleteDatastoreVm(*vm, ThisProcessAsHolder(ctx_.config.name)); !st.ok()) {
    return ToGrpcStatus(st);
  }
  out->set_directory(vm->dir);
  spdlog::info("event=vm_deleted vm={} dir={}", req->name(), vm->dir);
  return grpc::Status::OK;
}

grpc::Status AgentService::RegisterVm(grpc::ServerContext*, const v1::RegisterVmRequest* req, v1::VmInfo* out) {
  if (req->path().empty()) return ToGrpcStatus(absl::InvalidArgumentError("vm register: the VM directory path is empty"));
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return ToGrpcStatus(host.status());
  auto ds = DatastoreHoldingVmDirectory(*host, req->path());
  if (!ds.ok()) return ToGrpcStatus(ds.status());
  auto vm = OpenDatastoreVm(*ds, req->path());
  if (!vm.ok()) return ToGrpcStatus(vm.status());
  // Found by name from now on: a second VM of that name on another datastore would be ambiguous.
  auto by_name = FindDatastoreVm(*host, vm->spec.name);
  if (!by_name.ok()) return ToGrpcStatus(by_name.status());
  spdlog::info("event=vm_registered vm={} datastore={} dir={}", vm->spec.name, vm->datastore, vm->dir);
  if (req->start()) {
    auto info = StartDefined(*vm);
    if (!info.ok()) return ToGrpcStatus(info.status());
    *out = *info;
    return grpc::Status::OK;
  }
  *out->mutable_spec() = VmSpecToProto(vm->spec);
  out->set_state(v1::VM_POWER_STATE_POWERED_OFF);
  out->set_datastore(vm->datastore);
  out->set_directory(vm->dir);
  out->set_console_log_path(vm->spec.console_log_path);
  return grpc::Status::OK;
}

void AgentService::AddPoweredOffVms(v1::ListVmsResponse* out) {
  auto host = AgentHostFacts(ctx_.config);
  if (!host.ok()) return;
  std::set<std::string> listed;
  for (const v1::VmInfo& vm : out->vms()) listed.insert(vm.spec().name());
  for (const DatastoreFacts& ds : host->datastores) {
    auto names = ListDatastoreVms(ds);
    if (!names.ok()) continue;
    for (const std::string& name : *names) {
      if (listed.count(name)) continue;
      // Held by another agent sharing the datastore: it runs there, it is not powered off.
      auto holder = VmLock::CurrentHolder(absl::StrCat(ds.path, "/", name, "/", kVmLockFile));
      if (holder.ok() && holder->has_value()) continue;
      v1::VmInfo* info = out->add_vms();
      info->set_state(v1::VM_POWER_STATE_POWERED_OFF);
      info->set_failure(ctx_.ownership.LostReason(name));  // its VMM was found dead: why
      info->set_datastore(ds.name);
      info->set_directory(absl::StrCat(ds.path, "/", name));
      auto vm = OpenDatastoreVm(ds, info->directory());
      if (vm.ok()) {
        *info->mutable_spec() = VmSpecToProto(vm->spec);
        info->set_console_log_path(vm->spec.console_log_path);
      } else {
        info->mutable_spec()->set_name(name);
        info->set_config_error(std::string(vm.status().message()));
      }
    }
  }
}

void AgentService::ForgetIfVmmGone(const std::string& name) {
  auto e = ctx_.vms.Find(name);
  if (!e || !e->outgoing_migration.empty() || e->stopping) return;
  const std::string failure = e->vm ? VmProcessFailure(*e->vm) : e->failure;
  if (failure.empty()) return;
  spdlog::info("event=vm_forgotten vm={} reason=\"started again after: {}\"", name, failure);
  ctx_.vms.Release(name);
  ctx_.ownership.Release(name);
}

void AgentService::AddHome(const std::string& name, v1::VmInfo* info) {
  std::optional<DatastoreVm> vm = ctx_.ownership.Find(name);
  if (!vm) return;
  info->set_datastore(vm->datastore);
  info->set_directory(vm->dir);
}

}  // namespace ferry
