#pragma once
// The orchestrator-facing Agent service.

#include <optional>
#include <string>

#include "engine/agent/agent_context.h"
#include "proto/ferry/v1/agent.grpc.pb.h"

namespace ferry {

class AgentService final : public v1::Agent::Service {
 public:
  explicit AgentService(AgentContext& ctx) : ctx_(ctx) {}

  grpc::Status CreateVm(grpc::ServerContext*, const v1::CreateVmRequest*, v1::VmInfo*) override;
  grpc::Status ListVms(grpc::ServerContext*, const v1::ListVmsRequest*, v1::ListVmsResponse*) override;
  grpc::Status GetVm(grpc::ServerContext*, const v1::GetVmRequest*, v1::VmInfo*) override;
  grpc::Status StopVm(grpc::ServerContext*, const v1::StopVmRequest*, v1::VmInfo*) override;
  grpc::Status Migrate(grpc::ServerContext*, const v1::MigrateRequest*,
                       grpc::ServerWriter<v1::MigrationEvent>*) override;
  grpc::Status GetMigration(grpc::ServerContext*, const v1::GetMigrationRequest*, v1::MigrationInfo*) override;
  grpc::Status CancelMigration(grpc::ServerContext*, const v1::CancelMigrationRequest*,
                               v1::MigrationInfo*) override;
  grpc::Status ListMigrations(grpc::ServerContext*, const v1::ListMigrationsRequest*,
                              v1::ListMigrationsResponse*) override;
  grpc::Status WatchMigration(grpc::ServerContext*, const v1::WatchMigrationRequest*,
                              grpc::ServerWriter<v1::MigrationEvent>*) override;
  grpc::Status SetMigration(grpc::ServerContext*, const v1::SetMigrationRequest*, v1::MigrationInfo*) override;
  grpc::Status GetHostInfo(grpc::ServerContext*, const v1::GetHostInfoRequest*, v1::HostInfo*) override;
  grpc::Status AnnounceVm(grpc::ServerContext*, const v1::AnnounceVmRequest*, v1::AnnounceVmResponse*) override;
  grpc::Status Precheck(grpc::ServerContext*, const v1::PrecheckRequest*, v1::PrecheckReport*) override;
  // agent_resolve.cc
  grpc::Status ResolveMigration(grpc::ServerContext*, const v1::ResolveMigrationRequest*,
                                v1::ResolveMigrationResponse*) override;
  // agent_datastore_vms.cc: VMs defined on the host's datastores (docs/datastores.md)
  grpc::Status StartVm(grpc::ServerContext*, const v1::StartVmRequest*, v1::VmInfo*) override;
  grpc::Status DeleteVm(grpc::ServerContext*, const v1::DeleteVmRequest*, v1::DeleteVmResponse*) override;
  grpc::Status RegisterVm(grpc::ServerContext*, const v1::RegisterVmRequest*, v1::VmInfo*) override;
  // agent_protect.cc: HA protection (docs/cluster.md)
  grpc::Status ProtectVm(grpc::ServerContext*, const v1::ProtectVmRequest*, v1::ProtectVmResponse*) override;
  grpc::Status UnprotectVm(grpc::ServerContext*, const v1::UnprotectVmRequest*, v1::UnprotectVmResponse*) override;
  // agent_vmm_upgrade.cc: same-host VMM upgrade (docs/vmm_process.md)
  grpc::Status UpgradeVmm(grpc::ServerContext*, const v1::UpgradeVmmRequest*, v1::UpgradeVmmResponse*) override;

 private:
  // An outgoing migration job's body, on the job's own thread (docs/jobs.md): attempts until one
  // ends, queued again while the destination refuses for now (agent_outgoing.cc).
  void RunOutgoing(MigrationJob& job, const v1::MigrateRequest& request, Vm& vm);
  // One attempt. Returns the destination's reason when it refused the start for now (busy): then
  // nothing ended, the VM runs here and stays marked migrating.
  std::optional<std::string> TryOutgoing(MigrationJob& job, const v1::MigrateRequest& request, Vm& vm);
  // agent_datastore_vms.cc
  grpc::Status CreateOnDatastore(const v1::CreateVmRequest& req, VmSpec spec, v1::VmInfo* out);
  // Boots the VM in its VMM process, which takes the VM's lock first (refused naming the holder),
  // and adds it to the registry.
  absl::StatusOr<v1::VmInfo> StartDefined(const DatastoreVm& vm);
  // Adds the datastore VMs not running here, as powered off.
  void AddPoweredOffVms(v1::ListVmsResponse* out);
  // Sets where a VM running here is defined, when it is a datastore VM.
  void AddHome(const std::string& name, v1::VmInfo* info);
  // A VM whose VMM process is gone is only a report: a start of it replaces the report.
  void ForgetIfVmmGone(const std::string& name);

  AgentContext& ctx_;
};

}  // namespace ferry
