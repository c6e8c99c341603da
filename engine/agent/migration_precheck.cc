#include "engine/agent/migration_precheck.h"

#include "absl/strings/str_cat.h"
#include "engine/agent/host_facts_source.h"
#include "engine/host/cpu_model.h"
#include "engine/host/host_facts_proto.h"
#include "engine/precheck/precheck.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/vm/vm_spec_proto.h"
#include "proto/ferry/v1/peer.grpc.pb.h"

namespace ferry {

absl::StatusOr<std::vector<Finding>> PrecheckMigration(const AgentConfig& config, const VmSpec& vm_in,
                                                       const std::shared_ptr<grpc::Channel>& destination) {
  auto source = AgentHostFacts(config);
  if (!source.ok()) return source.status();
  VmSpec vm = vm_in;
  if (absl::Status st = ResolveVmCpu(vm, absl::StrCat("VM '", vm.name, "'")); !st.ok()) return st;
  auto stub = v1::Peer::NewStub(destination);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetHostFactsRequest req;
  *req.mutable_vm() = VmSpecToProto(vm);
  *req.mutable_source() = HostFactsToProto(*source);
  v1::HostFacts dest;
  grpc::Status st = stub->GetHostFacts(&ctx, req, &dest);
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot get the destination's host facts: ", st.error_message()));
  }
  return RunPrechecks(vm, *source, HostFactsFromProto(dest));
}

}  // namespace ferry
