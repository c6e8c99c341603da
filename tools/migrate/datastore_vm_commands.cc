// vm start | delete | register | protect | unprotect: VMs defined on the agent's datastores (docs/datastores.md).
#include <cstdio>

#include "tools/client/agent_client.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddDatastoreVmCommands(CLI::App* vm, Globals& g) {
  auto start_name = std::make_shared<std::string>();
  CLI::App* start = vm->add_subcommand("start", "start a VM defined on a datastore of --agent's host");
  start->add_option("name", *start_name, "VM name (its directory on a datastore)")->required();
  start->callback([&g, start_name] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm start", stub.status(), false));
    grpc::ClientContext ctx;
    v1::StartVmRequest req;
    req.set_name(*start_name);
    v1::VmInfo info;
    grpc::Status st = (*stub)->StartVm(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = ReportError("vm start", st, false));
    std::printf("started VM %s from %s (datastore %s) on %s\n", start_name->c_str(), info.directory().c_str(),
                info.datastore().c_str(), g.agent.c_str());
  });

  auto delete_name = std::make_shared<std::string>();
  CLI::App* del = vm->add_subcommand("delete", "delete a stopped VM's directory (config, disks, log) from its datastore");
  del->add_option("name", *delete_name, "VM name")->required();
  del->callback([&g, delete_name] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm delete", stub.status(), false));
    grpc::ClientContext ctx;
    v1::DeleteVmRequest req;
    req.set_name(*delete_name);
    v1::DeleteVmResponse resp;
    grpc::Status st = (*stub)->DeleteVm(&ctx, req, &resp);
    if (!st.ok()) return void(g.exit_code = ReportError("vm delete", st, false));
    std::printf("deleted VM %s (removed %s)\n", delete_name->c_str(), resp.directory().c_str());
  });

  auto register_path = std::make_shared<std::string>();
  auto register_start = std::make_shared<bool>(false);
  CLI::App* reg = vm->add_subcommand("register", "add an existing VM directory on one of --agent's datastores");
  reg->add_option("path", *register_path, "the VM directory (<datastore>/<name>)")->required();
  reg->add_flag("--start", *register_start, "start it as well");
  reg->callback([&g, register_path, register_start] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm register", stub.status(), false));
    grpc::ClientContext ctx;
    v1::RegisterVmRequest req;
    req.set_path(*register_path);
    req.set_start(*register_start);
    v1::VmInfo info;
    grpc::Status st = (*stub)->RegisterVm(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = ReportError("vm register", st, false));
    std::printf("registered VM %s (datastore %s, %s)\n", info.spec().name().c_str(), info.datastore().c_str(),
                info.state() == v1::VM_POWER_STATE_POWERED_OFF ? "powered off" : "running");
  });

  // HA protection (docs/cluster.md): through --agent, which must be in a cluster.
  auto protect_name = std::make_shared<std::string>();
  auto protect_priority = std::make_shared<std::string>("medium");
  CLI::App* protect = vm->add_subcommand("protect", "add a datastore VM of --agent's host to its HA cluster's protected VMs");
  protect->add_option("name", *protect_name, "VM name")->required();
  protect->add_option("--restart-priority", *protect_priority, "high | medium | low (restart order after a host failure)")
      ->check(CLI::IsMember({"high", "medium", "low"}));
  protect->callback([&g, protect_name, protect_priority] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm protect", stub.status(), false));
    grpc::ClientContext ctx;
    v1::ProtectVmRequest req;
    req.set_name(*protect_name);
    req.set_restart_priority(*protect_priority);
    v1::ProtectVmResponse resp;
    grpc::Status st = (*stub)->ProtectVm(&ctx, req, &resp);
    if (!st.ok()) return void(g.exit_code = ReportError("vm protect", st, false));
    std::printf("protected VM %s in cluster %s: restart priority %s, %s on %s (%s)\n", protect_name->c_str(),
                resp.cluster().c_str(), resp.restart_priority().c_str(), resp.state().c_str(), resp.host().c_str(),
                resp.directory().c_str());
  });

  auto unprotect_name = std::make_shared<std::string>();
  CLI::App* unprotect = vm->add_subcommand("unprotect", "remove a VM from its HA cluster's protected VMs");
  unprotect->add_option("name", *unprotect_name, "VM name")->required();
  unprotect->callback([&g, unprotect_name] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm unprotect", stub.status(), false));
    grpc::ClientContext ctx;
    v1::UnprotectVmRequest req;
    req.set_name(*unprotect_name);
    v1::UnprotectVmResponse resp;
    grpc::Status st = (*stub)->UnprotectVm(&ctx, req, &resp);
    if (!st.ok()) return void(g.exit_code = ReportError("vm unprotect", st, false));
    std::printf("unprotected VM %s (cluster %s)\n", unprotect_name->c_str(), resp.cluster().c_str());
  });
}

}  // namespace ferry::cli
