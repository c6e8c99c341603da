// vm upgrade NAME [--vmm-binary PATH]: move a running VM to a new VMM process on --agent's host
// without copying its memory (docs/vmm_process.md "Same-host upgrade").
#include <cstdio>

#include "tools/client/agent_client.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {

void AddVmmUpgradeCommand(CLI::App* vm, Globals& g) {
  struct Flags {
    std::string name;
    std::string vmm_binary;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* upgrade = vm->add_subcommand(
      "upgrade", "move a running VM to a new VMM process on --agent's host (same memory, no copy)");
  upgrade->add_option("name", f->name, "VM name")->required();
  upgrade->add_option("--vmm-binary", f->vmm_binary,
                      "absolute path of the new VMM's executable on the agent's host (default: the agent's ferry-vmm)");
  upgrade->add_flag("--json", f->json, "print the answer as JSON");
  upgrade->callback([&g, f] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = ReportError("vm upgrade", stub.status(), f->json));
    grpc::ClientContext ctx;
    v1::UpgradeVmmRequest req;
    req.set_name(f->name);
    req.set_vmm_binary(f->vmm_binary);
    v1::UpgradeVmmResponse r;
    grpc::Status st = (*stub)->UpgradeVmm(&ctx, req, &r);
    if (!st.ok()) return void(g.exit_code = ReportError("vm upgrade", st, f->json));
    if (f->json) {
      std::printf("%s\n", ToJson(r).c_str());
      return;
    }
    std::printf("upgraded the VMM of VM %s: pid %d -> %d (%s)\n", f->name.c_str(), r.old_pid(), r.new_pid(),
                r.vmm_binary().c_str());
    std::printf("guest paused %.3f ms: vCPU pause %.3f + state save %.3f + state load %.3f + lock %.3f + resume %.3f\n",
                r.downtime_ms(), r.vcpu_pause_ms(), r.state_save_ms(), r.state_load_ms(), r.lock_ms(), r.resume_ms());
    std::printf("while the guest ran: new VMM ready in %.1f ms, old VMM retired in %.1f ms\n", r.prepare_ms(),
                r.finish_ms());
    if (!r.warning().empty()) std::printf("warning: %s\n", r.warning().c_str());
  });
}

}  // namespace ferry::cli
