// vm start | delete | register: VMs defined on the agent's datastores (docs/datastores.md).
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
}

}  // namespace ferry::cli
