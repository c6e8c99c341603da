// migrate precheck --vm SPEC --source HOSTFILE --destination HOSTFILE [--json]   (offline)
// migrate [--agent A] precheck VM --to B [--json]                                 (agent form)
// migrate host cpu-baseline HOST...
#include <cstdio>
#include <functional>
#include <iostream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/host/cpu_model.h"
#include "engine/host/disk_access.h"
#include "engine/host/host_file.h"
#include "engine/precheck/precheck.h"
#include "engine/vm/vm_spec_file.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"
#include "tools/migrate/findings_render.h"

namespace ferry::cli {
namespace {

std::function<int(const std::string&, const std::string&, bool)>& AgentPrecheckHandler() {
  static auto* handler = new std::function<int(const std::string&, const std::string&, bool)>();
  return *handler;
}

struct PrecheckArgs {
  std::string vm_spec, source, destination;  // offline
  std::string vm_name, to;                   // agent form
  bool json = false;
};

int RunOfflinePrecheck(const PrecheckArgs& a) {
  if (a.source.empty() || a.destination.empty()) {
    return ReportError("precheck", UsageError("precheck --vm needs --source HOSTFILE and --destination HOSTFILE",
                                              a.source.empty() ? "--source" : "--destination"),
                       a.json);
  }
  absl::StatusOr<VmSpec> vm = LoadVmSpecFile(a.vm_spec);
  absl::Status st = vm.status();
  if (st.ok()) st = ResolveVmCpu(*vm, a.vm_spec);
  if (!st.ok()) return ReportError("precheck", st, a.json, {"--vm", a.vm_spec});
  absl::StatusOr<HostFacts> src = LoadHostFacts(a.source);
  if (!src.ok()) return ReportError("precheck", src.status(), a.json, {"--source", a.source});
  absl::StatusOr<HostFacts> dst = LoadHostFacts(a.destination);
  if (!dst.ok()) return ReportError("precheck", dst.status(), a.json, {"--destination", a.destination});
  // Offline there is no destination agent: this machine probes the destination's mounts.
  ProbeDiskAccess(*dst, *vm, *src);
  std::vector<Finding> findings = RunPrechecks(*vm, *src, *dst);
  if (HasCode(findings, FindingCode::kCpuFeatureMissing)) {
    findings = RunPrechecks(*vm, *src, *dst, {CommonCpuModel(*src, *dst)});
  }
  return PrintFindings(findings, a.json);
}

std::string VendorLine(const CpuBaseline& b) {
  if (!b.vendor.empty()) return b.vendor;
  if (!b.vendors_differ) return "(not given by the host facts)";
  std::vector<std::string> each;
  for (const HostCpuLoss& h : b.hosts) each.push_back(absl::StrCat(h.name, " ", h.vendor.empty() ? "?" : h.vendor));
  return absl::StrCat("(hosts differ: ", absl::StrJoin(each, ", "), ")");
}

int RunCpuBaseline(const std::vector<std::string>& hosts, bool json) {
  std::vector<HostFacts> facts;
  for (const std::string& h : hosts) {
    absl::StatusOr<HostFacts> f = LoadHostFacts(h);
    if (!f.ok()) return ReportError("host cpu-baseline", f.status(), json, {"", h});
    facts.push_back(std::move(*f));
  }
  absl::StatusOr<CpuBaseline> b = BaselineCpu(facts);
  if (!b.ok()) return ReportError("host cpu-baseline", b.status(), json);
  if (json) {
    nlohmann::ordered_json hosts_json = nlohmann::ordered_json::array();
    for (const HostCpuLoss& h : b->hosts) hosts_json.push_back({{"name", h.name}, {"vendor", h.vendor}, {"loses", h.loses}});
    nlohmann::ordered_json j{{"model", b->model},        {"vendor", b->vendor}, {"vendors_differ", b->vendors_differ},
                             {"features", b->features},  {"extra", b->extra},   {"hosts", hosts_json}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << "model:    " << (b->model.empty() ? "(none fits)" : b->model) << "\n"
            << "vendor:   " << VendorLine(*b) << "\n"
            << "features: " << absl::StrJoin(b->features, " ") << "\n"
            << "beyond the model: " << (b->extra.empty() ? "(none)" : absl::StrJoin(b->extra, " ")) << "\n";
  if (b->model.empty()) return 0;
  std::cout << "Pin VMs with  cpu: {model: " << b->model << "}  to move freely between these hosts. Each host loses:\n";
  for (const HostCpuLoss& h : b->hosts) {
    std::cout << "  " << h.name << ": " << (h.loses.empty() ? "nothing" : absl::StrJoin(h.loses, " ")) << "\n";
  }
  if (!b->extra.empty()) {
    std::cout << "Every host also has the features beyond the model: keep those a guest needs with  cpu: {model: "
              << b->model << ", features: [...]}.\n";
  }
  return 0;
}

}  // namespace

void SetAgentPrecheckHandler(std::function<int(const std::string& vm, const std::string& to, bool json)> handler) {
  AgentPrecheckHandler() = std::move(handler);
}

void AddPrecheckCommands(CLI::App& app, Globals& g) {
  auto args = std::make_shared<PrecheckArgs>();
  CLI::App* pre = SubcommandOf(app, "precheck", "check whether a VM can move between two hosts");
  pre->add_option("--vm", args->vm_spec, "offline: VM spec YAML file");
  pre->add_option("--source", args->source, "offline: source host file (YAML or libvirt:URI)");
  pre->add_option("--destination", args->destination, "offline: destination host file (YAML or libvirt:URI)");
  pre->add_option("VM", args->vm_name, "with --agent: name of a VM on that agent");
  pre->add_option("--to", args->to, "with --agent: destination agent HOST:PORT");
  pre->add_flag("--json", args->json, "print {\"findings\":[...]} instead of a table");
  pre->callback([args, &g] {
    if (!args->vm_spec.empty()) {
      g.exit_code = RunOfflinePrecheck(*args);
    } else if (AgentPrecheckHandler() && !args->vm_name.empty()) {
      g.exit_code = AgentPrecheckHandler()(args->vm_name, args->to, args->json);
    } else {
      g.exit_code = ReportError("precheck",
                                UsageError("give --vm SPEC --source HOSTFILE --destination HOSTFILE, or "
                                           "--agent HOST:PORT and VM --to HOST:PORT"),
                                args->json);
    }
  });

  CLI::App* host = SubcommandOf(app, "host", "host facts");
  CLI::App* baseline = host->add_subcommand(
      "cpu-baseline", "CPU model and features common to several hosts (what vSphere calls EVC)");
  auto hosts = std::make_shared<std::vector<std::string>>();
  auto json = std::make_shared<bool>(false);
  baseline->add_option("HOST", *hosts, "host file (YAML) or libvirt:URI")->required();
  baseline->add_flag("--json", *json, "print JSON");
  baseline->callback([hosts, json, &g] { g.exit_code = RunCpuBaseline(*hosts, *json); });
}

}  // namespace ferry::cli
