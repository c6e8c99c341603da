// Agent-backed commands: vm create|list|show|stop|migrate, host info.
#include <cstdio>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_format.h"
#include "engine/base/size_parse.h"
#include "tools/client/agent_client.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"
#include "tools/client/stats_render.h"
#include "engine/precheck/finding_proto.h"
#include "tools/migrate/findings_render.h"

namespace ferry::cli {

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

namespace {

// Errors of agent commands keep their exit codes: a local absl error is bad usage (2) only when
// invalid, an agent's answer only when INVALID_ARGUMENT (cli_error.h prints both).
int Fail(const absl::Status& st, std::string_view command, bool json = false) {
  CliError e = ErrorFromStatus(st);
  e.exit_code = absl::IsInvalidArgument(st) ? kExitUsage : kExitFailed;
  return ReportError(command, e, json);
}

int Fail(const grpc::Status& st, std::string_view command, bool json = false) {
  return ReportError(command, st, json);
}

const char* PowerName(v1::VmPowerState s) {
  switch (s) {
    case v1::VM_POWER_STATE_CREATED: return "created";
    case v1::VM_POWER_STATE_RUNNING: return "running";
    case v1::VM_POWER_STATE_PAUSED: return "paused";
    case v1::VM_POWER_STATE_STOPPED: return "stopped";
    case v1::VM_POWER_STATE_MIGRATING_OUT: return "migrating-out";
    case v1::VM_POWER_STATE_MIGRATING_IN: return "migrating-in";
    case v1::VM_POWER_STATE_FAILED: return "failed";
    case v1::VM_POWER_STATE_POWERED_OFF: return "powered off";
    default: return "?";
  }
}

struct CreateArgs {
  std::string name, memory = "256MiB", working_set = "64MiB", rate = "50MiB/s", pattern = "random",
                    backend = "kvm";
  uint32_t vcpus = 1;
  uint64_t seed = 1;
  uint32_t tick_ms = 0;
  std::vector<std::string> nics;  // MAC@PORTGROUP
  std::string cpu;                // model name (e.g. Nehalem, x86-64-v2)
  std::vector<std::string> cpu_features;
  std::string datastore;           // define it on this datastore of the agent's host (docs/datastores.md)
  std::vector<std::string> disks;  // a new raw sparse disk of each SIZE (needs --datastore)
  bool no_start = false;
  std::string disk_working_set = "0", disk_rate = "4MiB/s";  // the guest's disk workload (0 = none)
};

// --datastore / --disk SIZE (repeatable) / --no-start: a VM defined on a datastore.
absl::Status SetDatastoreFlags(const CreateArgs& a, v1::CreateVmRequest& req) {
  if (a.datastore.empty() && (!a.disks.empty() || a.no_start)) {
    return absl::InvalidArgumentError("--disk and --no-start need --datastore NAME (the VM's files live there)");
  }
  req.set_datastore(a.datastore);
  for (const std::string& d : a.disks) {
    auto bytes = ParseByteSize(d);
    if (!bytes.ok() || *bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--disk '", d, "' is not a size (e.g. 1GiB)"));
    }
    req.add_disk_bytes(*bytes);
  }
  return absl::OkStatus();
}

// --disk-working-set / --disk-rate: the built-in guest's disk workload on the VM's first disk.
absl::Status SetDiskWorkload(const CreateArgs& a, v1::VmSpec& spec) {
  auto ws = ParseByteSize(a.disk_working_set);
  if (!ws.ok()) return absl::InvalidArgumentError(absl::StrCat("--disk-working-set: ", ws.status().message()));
  auto rate = ParseRateMiBps(a.disk_rate);
  if (!rate.ok()) return absl::InvalidArgumentError(absl::StrCat("--disk-rate: ", rate.status().message()));
  spec.mutable_workload()->set_disk_working_set_bytes(*ws);
  spec.mutable_workload()->set_disk_rate_mibps(*rate);
  return absl::OkStatus();
}

struct MigrateArgs {
  std::string vm, to, to_name, policy = "cancel", max_bandwidth = "0";
  std::string to_datastore;  // a storage migration (docs/storage_migration.md)
  std::string disk_copy;     // iterate | mirror ("" = the agent's default)
  uint32_t max_downtime_ms = 300, timeout_s = 0, max_rounds = 30;
  bool json = false;
  DataPathFlags data;
  std::string priority = "standard";
};

// --disk-copy iterate|mirror (docs/storage_migration.md); only with --to-datastore.
absl::StatusOr<v1::DiskCopyMode> ParseDiskCopy(const std::string& text, const std::string& to_datastore) {
  if (text.empty()) return v1::DISK_COPY_MODE_UNSPECIFIED;
  if (to_datastore.empty()) return absl::InvalidArgumentError("--disk-copy needs --to-datastore (only disks that move are copied)");
  if (text == "iterate") return v1::DISK_COPY_MODE_ITERATE;
  if (text == "mirror") return v1::DISK_COPY_MODE_MIRROR;
  return absl::InvalidArgumentError(absl::StrCat("--disk-copy '", text, "' must be iterate or mirror"));
}

}  // namespace

absl::StatusOr<v1::VmSpec> BuildSpecFromFlags(const std::string& name, const std::string& memory,
                                              const std::string& working_set, const std::string& rate,
                                              const std::string& pattern, const std::string& backend,
                                              uint32_t vcpus, uint64_t seed, uint32_t tick_ms) {
  v1::VmSpec s;
  s.set_name(name);
  auto mem = ParseByteSize(memory);
  if (!mem.ok()) return absl::InvalidArgumentError(absl::StrCat("--memory: ", mem.status().message()));
  auto ws = ParseByteSize(working_set);
  if (!ws.ok()) return absl::InvalidArgumentError(absl::StrCat("--working-set: ", ws.status().message()));
  auto r = ParseRateMiBps(rate);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat("--dirty-rate: ", r.status().message()));
  if (backend == "kvm") {
    s.set_backend(v1::BACKEND_KIND_KVM);
  } else if (backend == "synthetic") {
    s.set_backend(v1::BACKEND_KIND_SYNTHETIC);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--backend '", backend, "' must be kvm or synthetic"));
  }
  s.set_memory_bytes(*mem);
  s.set_vcpus(vcpus);
  s.mutable_workload()->set_working_set_bytes(*ws);
  s.mutable_workload()->set_dirty_rate_mibps(*r);
  s.mutable_workload()->set_pattern(pattern);
  s.mutable_workload()->set_seed(seed);
  s.mutable_workload()->set_tick_ms(tick_ms);
  return s;
}

absl::StatusOr<v1::MigrationOptions> BuildMigrationOptions(uint32_t max_downtime_ms, const std::string& max_bandwidth,
                                                           uint32_t timeout_s, uint32_t max_rounds,
                                                           const std::string& policy) {
  v1::MigrationOptions o;
  o.set_max_downtime_ms(max_downtime_ms);
  auto bw = ParseRateMiBps(max_bandwidth);
  if (!bw.ok()) return absl::InvalidArgumentError(absl::StrCat("--max-bandwidth: ", bw.status().message()));
  o.set_max_bandwidth_mibps(*bw);
  o.set_timeout_s(timeout_s);
  o.set_max_rounds(max_rounds);
  if (policy == "cancel") {
    o.set_policy(v1::CONVERGENCE_POLICY_CANCEL);
  } else if (policy == "force") {
    o.set_policy(v1::CONVERGENCE_POLICY_FORCE_SWITCHOVER);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--policy '", policy, "' must be cancel or force"));
  }
  return o;
}

void AddDataPathFlags(CLI::App* cmd, DataPathFlags& f) {
  cmd->add_option("--connections", f.connections, "data connections for the pages (default: the agent's, one per core)")
      ->check(CLI::Range(1, 16));
  cmd->add_option("--transport", f.transport, "data (TCP connections driven by io_uring, default) | grpc (the control stream)");
  cmd->add_flag("--no-auto-converge", f.no_auto_converge, "never slow the guest's vCPUs to converge");
  cmd->add_flag("--zero-copy", f.zero_copy, "send plaintext pages with IORING_OP_SENDMSG_ZC where the kernel has it");
}

absl::Status ApplyDataPathFlags(const DataPathFlags& f, v1::MigrationOptions& o) {
  if (f.transport == "data") {
    o.set_transport(v1::TRANSPORT_DATA);
  } else if (f.transport == "grpc") {
    o.set_transport(v1::TRANSPORT_GRPC);
    if (f.connections > 0) return absl::InvalidArgumentError("--connections needs --transport data");
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--transport '", f.transport, "' must be data or grpc"));
  }
  o.set_connections(f.connections);
  o.set_no_auto_converge(f.no_auto_converge);
  o.set_zero_copy(f.zero_copy);
  return absl::OkStatus();
}

void AddAgentCommands(CLI::App& app, Globals& g) {
  CLI::App* vm = SubcommandOf(app, "vm", "create, inspect, stop and migrate VMs");

  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = vm->add_subcommand("create", "create and boot a VM on --agent");
  create->add_option("name", create_args->name, "VM name")->required();
  create->add_option("--memory", create_args->memory, "guest memory (e.g. 256MiB)");
  create->add_option("--working-set", create_args->working_set, "memory the guest keeps dirtying");
  create->add_option("--dirty-rate", create_args->rate, "how fast it dirties it (MiB/s, 0 = unlimited)");
  create->add_option("--pattern", create_args->pattern, "sequential | random | hotcold");
  create->add_option("--vcpus", create_args->vcpus, "vCPUs (1..8)");
  create->add_option("--seed", create_args->seed, "workload seed");
  create->add_option("--tick-ms", create_args->tick_ms, "print a '.' on serial every N ms");
  create->add_option("--backend", create_args->backend, "kvm | synthetic");
  create->add_option("--nic", create_args->nics, "MAC@PORTGROUP (repeatable)");
  create->add_option("--cpu", create_args->cpu, "CPU model the guest sees (e.g. Nehalem, x86-64-v2)");
  create->add_option("--cpu-feature", create_args->cpu_features, "an extra CPUID feature (repeatable)");
  create->add_option("--datastore", create_args->datastore, "define the VM on this datastore of the agent's host");
  create->add_option("--disk", create_args->disks, "a new disk of SIZE in the VM's directory (repeatable; needs --datastore)");
  create->add_flag("--no-start", create_args->no_start, "only define the VM (with --datastore); start it with vm start");
  create->add_option("--disk-working-set", create_args->disk_working_set,
                     "the guest writes and verifies this much of its first disk (e.g. 64MiB; 0 = no disk I/O)");
  create->add_option("--disk-rate", create_args->disk_rate, "how fast it writes it (MiB/s, 0 = unlimited; default 4)");
  create->callback([&g, create_args] {
    auto spec = BuildSpecFromFlags(create_args->name, create_args->memory, create_args->working_set,
                                   create_args->rate, create_args->pattern, create_args->backend,
                                   create_args->vcpus, create_args->seed, create_args->tick_ms);
    if (!spec.ok()) return void(g.exit_code = Fail(spec.status(), "vm create"));
    if (absl::Status st = SetDiskWorkload(*create_args, *spec); !st.ok()) return void(g.exit_code = Fail(st, "vm create"));
    spec->mutable_cpu()->set_model(create_args->cpu);
    for (const auto& f : create_args->cpu_features) spec->mutable_cpu()->add_features(f);
    for (const std::string& nic : create_args->nics) {
      auto at = nic.find('@');
      if (at == std::string::npos) {
        return void(g.exit_code = Fail(absl::InvalidArgumentError(
                        absl::StrCat("--nic '", nic, "' must be MAC@PORTGROUP")), "vm create"));
      }
      auto* n = spec->add_nics();
      n->set_mac(nic.substr(0, at));
      n->set_port_group(nic.substr(at + 1));
    }
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm create"));
    grpc::ClientContext ctx;
    v1::CreateVmRequest req;
    *req.mutable_spec() = *spec;
    req.set_start(!create_args->no_start);
    if (absl::Status st = SetDatastoreFlags(*create_args, req); !st.ok()) return void(g.exit_code = Fail(st, "vm create"));
    v1::VmInfo info;
    grpc::Status st = (*stub)->CreateVm(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = Fail(st, "vm create"));
    if (!info.datastore().empty()) {
      std::printf("defined VM %s in %s (datastore %s)\n", info.spec().name().c_str(), info.directory().c_str(),
                  info.datastore().c_str());
    }
    std::printf("created VM %s (%s, %s of memory) on %s\n", info.spec().name().c_str(), PowerName(info.state()),
                FormatBytes(info.spec().memory_bytes()).c_str(), g.agent.c_str());
  });

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list = vm->add_subcommand("list", "list the VMs on --agent");
  list->add_flag("--json", *list_json, "print JSON");
  list->callback([&g, list_json] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm list", *list_json));
    grpc::ClientContext ctx;
    v1::ListVmsResponse resp;
    grpc::Status st = (*stub)->ListVms(&ctx, v1::ListVmsRequest(), &resp);
    if (!st.ok()) return void(g.exit_code = Fail(st, "vm list", *list_json));
    if (*list_json) return void(std::printf("%s\n", ToJson(resp).c_str()));
    std::printf("%-20s %-14s %10s %12s %11s  %s\n", "NAME", "STATE", "MEMORY", "HEARTBEATS", "CORRUPTIONS",
                "DATASTORE");
    for (const auto& v : resp.vms()) {
      std::printf("%-20s %-14s %10s %12lu %11lu  %s\n", v.spec().name().c_str(), PowerName(v.state()),
                  FormatBytes(v.spec().memory_bytes()).c_str(), (unsigned long)v.health().heartbeats(),
                  (unsigned long)v.health().corruptions(), v.datastore().empty() ? "-" : v.datastore().c_str());
      if (!v.config_error().empty()) std::printf("  unusable: %s\n", v.config_error().c_str());
    }
  });

  auto show_name = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  CLI::App* show = vm->add_subcommand("show", "show one VM on --agent");
  show->add_option("name", *show_name, "VM name")->required();
  show->add_flag("--json", *show_json, "print JSON");
  show->callback([&g, show_name, show_json] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm show", *show_json));
    grpc::ClientContext ctx;
    v1::GetVmRequest req;
    req.set_name(*show_name);
    v1::VmInfo v;
    grpc::Status st = (*stub)->GetVm(&ctx, req, &v);
    if (!st.ok()) return void(g.exit_code = Fail(st, "vm show", *show_json));
    if (*show_json) return void(std::printf("%s\n", ToJson(v).c_str()));
    std::printf("name:        %s\nstate:       %s\nmemory:      %s\nvcpus:       %u\nheartbeats:  %lu\n"
                "max hb gap:  %.1f ms\ncorruptions: %lu\nconsole:     %s\n",
                v.spec().name().c_str(), PowerName(v.state()), FormatBytes(v.spec().memory_bytes()).c_str(),
                v.spec().vcpus(), (unsigned long)v.health().heartbeats(), v.health().max_heartbeat_gap_ms(),
                (unsigned long)v.health().corruptions(), v.console_log_path().c_str());
    if (v.spec().workload().disk_working_set_bytes() > 0) {
      const v1::GuestHealth& h = v.health();
      std::printf("disk:        %lu blocks written, %lu verified, %lu sweeps, %lu flushes, %lu corruptions, %lu I/O errors\n",
                  (unsigned long)h.disk_blocks_written(), (unsigned long)h.disk_blocks_verified(),
                  (unsigned long)h.disk_sweeps(), (unsigned long)h.disk_flushes(), (unsigned long)h.disk_corruptions(),
                  (unsigned long)h.disk_io_errors());
    }
    for (const auto& r : v.health().corruption_reports()) std::printf("  %s\n", r.c_str());
  });

  auto stop_name = std::make_shared<std::string>();
  CLI::App* stop = vm->add_subcommand("stop", "stop a VM on --agent");
  stop->add_option("name", *stop_name, "VM name")->required();
  stop->callback([&g, stop_name] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm stop"));
    grpc::ClientContext ctx;
    v1::StopVmRequest req;
    req.set_name(*stop_name);
    v1::VmInfo v;
    grpc::Status st = (*stub)->StopVm(&ctx, req, &v);
    if (!st.ok()) return void(g.exit_code = Fail(st, "vm stop"));
    std::printf("stopped VM %s%s\n", stop_name->c_str(),
                v.datastore().empty() ? "" : " (its files stay on the datastore; its lock is released)");
  });

  AddDatastoreVmCommands(vm, g);
  AddVmmUpgradeCommand(vm, g);

  auto m = std::make_shared<MigrateArgs>();
  CLI::App* migrate = vm->add_subcommand("migrate", "live-migrate a VM from --agent to another agent");
  migrate->add_option("name", m->vm, "VM name")->required();
  migrate->add_option("--to", m->to, "destination agent HOST:PORT")->required();
  migrate->add_option("--to-name", m->to_name, "name on the destination's host certificate (default: HOST)");
  migrate->add_option("--to-datastore", m->to_datastore,
                      "also move the VM's directory and disks to this datastore of the destination");
  migrate->add_option("--disk-copy", m->disk_copy,
                      "with --to-datastore: iterate (write log copied in rounds; the default) | mirror "
                      "(writes mirrored synchronously after the bulk copy)");
  migrate->add_option("--max-downtime", m->max_downtime_ms, "switch over when the pause fits (ms, default 300)");
  migrate->add_option("--max-bandwidth", m->max_bandwidth, "cap the transfer rate (MiB/s, 0 = unlimited)");
  migrate->add_option("--timeout", m->timeout_s, "give up pre-copy after S seconds (then --policy)");
  migrate->add_option("--max-rounds", m->max_rounds, "give up pre-copy after N rounds (then --policy)");
  migrate->add_option("--policy", m->policy, "when pre-copy cannot converge: cancel | force");
  migrate->add_flag("--json", m->json, "print the final statistics as JSON");
  AddDataPathFlags(migrate, m->data);
  migrate->add_option("--priority", m->priority, "high | standard: share of the link while others run (docs/jobs.md)");
  migrate->callback([&g, m] {
    auto opts = BuildMigrationOptions(m->max_downtime_ms, m->max_bandwidth, m->timeout_s, m->max_rounds, m->policy);
    if (!opts.ok()) return void(g.exit_code = Fail(opts.status(), "vm migrate", m->json));
    if (absl::Status st = ApplyDataPathFlags(m->data, *opts); !st.ok()) return void(g.exit_code = Fail(st, "vm migrate", m->json));
    auto priority = ParsePriority(m->priority);
    if (!priority.ok()) return void(g.exit_code = Fail(priority.status(), "vm migrate", m->json));
    opts->set_priority(*priority);
    auto disk_copy = ParseDiskCopy(m->disk_copy, m->to_datastore);
    if (!disk_copy.ok()) return void(g.exit_code = Fail(disk_copy.status(), "vm migrate", m->json));
    opts->set_disk_copy(*disk_copy);
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm migrate", m->json));
    v1::MigrateRequest req;
    req.set_vm_name(m->vm);
    req.set_destination(m->to);
    req.set_destination_name(m->to_name);
    req.set_to_datastore(m->to_datastore);
    *req.mutable_options() = *opts;
    auto last = MigrateWithProgress(**stub, req, m->json);
    if (!last.ok()) return void(g.exit_code = Fail(last.status(), "vm migrate", m->json));
    bool refused = last->phase() == v1::MIGRATION_PHASE_FAILED && last->precheck().findings_size() > 0;
    if (m->json) {
      std::printf("%s\n", ToJson(refused ? static_cast<const google::protobuf::Message&>(last->precheck())
                                         : last->stats()).c_str());
    } else if (refused) {
      auto findings = FindingsFromProto(last->precheck());
      if (findings.ok()) PrintFindings(*findings, false);
      std::printf("%s\n", last->error().c_str());
    } else {
      PrintMigrationSummary(*last);
    }
    g.exit_code = last->phase() == v1::MIGRATION_PHASE_COMPLETED ? 0 : (refused ? 3 : 1);
  });

  auto announce_name = std::make_shared<std::string>();
  CLI::App* announce = vm->add_subcommand("announce", "send RARP announcements for a VM's NICs again");
  announce->add_option("name", *announce_name, "VM name")->required();
  announce->callback([&g, announce_name] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "vm announce"));
    grpc::ClientContext ctx;
    v1::AnnounceVmRequest req;
    req.set_name(*announce_name);
    v1::AnnounceVmResponse resp;
    grpc::Status st = (*stub)->AnnounceVm(&ctx, req, &resp);
    if (!st.ok()) return void(g.exit_code = Fail(st, "vm announce"));
    std::printf("sent %u RARP frames for %s\n", resp.frames_sent(), announce_name->c_str());
    for (const auto& w : resp.warnings()) std::printf("  warning: %s\n", w.c_str());
  });

  SetAgentPrecheckHandler([&g](const std::string& vm_name, const std::string& to, bool json) {
    if (vm_name.empty() || to.empty()) {
      return ReportError("precheck", UsageError("precheck needs VM and --to HOST:PORT (or --vm/--source/--destination offline)",
                                                vm_name.empty() ? "VM" : "--to"),
                         json);
    }
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return Fail(stub.status(), "precheck", json);
    grpc::ClientContext ctx;
    v1::PrecheckRequest req;
    req.set_vm_name(vm_name);
    req.set_destination(to);
    v1::PrecheckReport report;
    grpc::Status st = (*stub)->Precheck(&ctx, req, &report);
    if (!st.ok()) return Fail(st, "precheck", json);
    auto findings = FindingsFromProto(report);
    if (!findings.ok()) return Fail(findings.status(), "precheck", json);
    return PrintFindings(*findings, json);
  });

  CLI::App* host = SubcommandOf(app, "host", "host information");
  CLI::App* info = host->add_subcommand("info", "what --agent reports about its host");
  info->callback([&g] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Fail(stub.status(), "host info"));
    grpc::ClientContext ctx;
    v1::HostInfo h;
    grpc::Status st = (*stub)->GetHostInfo(&ctx, v1::GetHostInfoRequest(), &h);
    if (!st.ok()) return void(g.exit_code = Fail(st, "host info"));
    std::printf("%s\n", ToJson(h).c_str());
  });
}

}  // namespace ferry::cli
