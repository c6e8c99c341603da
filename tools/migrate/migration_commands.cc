// Migration jobs on an agent, from any terminal (docs/jobs.md): migration list | show ID | watch ID
// | cancel ID | set ID --max-bandwidth RATE --max-downtime MS | resolve ID — what virsh calls
// domjobinfo, domjobabort, migrate-setspeed and migrate-setmaxdowntime; resolve settles a commit
// nobody confirmed (docs/wire_protocol.md). Every command takes --json.
#include <cstdio>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/size_parse.h"
#include "tools/client/agent_client.h"
#include "tools/client/stats_render.h"
#include "tools/migrate/cli_error.h"
#include "tools/migrate/commands.h"

namespace ferry::cli {
namespace {

// One error, as every migrate command reports it (cli_error.h): a line on stderr, or
// {"error": ...} on stdout with --json. Exit 2 when the request was wrong, else 1.
int Report(std::string_view command, const std::string& code, const std::string& message, bool usage, bool json) {
  return ReportError(command, CliError{code, message, "", "", usage ? kExitUsage : kExitFailed}, json);
}

int Report(std::string_view command, const absl::Status& st, bool json) {
  CliError e = ErrorFromStatus(st);
  e.exit_code = absl::IsInvalidArgument(st) ? kExitUsage : kExitFailed;
  return ReportError(command, e, json);
}

int Report(std::string_view command, const grpc::Status& st, bool json) { return ReportError(command, st, json); }

const char* DirectionName(v1::MigrationDirection d) {
  return d == v1::MIGRATION_DIRECTION_INCOMING ? "in" : "out";
}

std::string PriorityText(v1::MigrationPriority p) { return p == v1::MIGRATION_PRIORITY_HIGH ? "high" : "standard"; }

int ExitCodeOf(v1::MigrationPhase p) { return p == v1::MIGRATION_PHASE_COMPLETED ? 0 : 1; }

void PrintInfo(const v1::MigrationInfo& m) {
  const v1::MigrationEvent& e = m.last_event();
  const v1::MigrationOptions& o = m.options();
  std::printf("migration:     %s\nvm:            %s\ndirection:     %s %s %s\npriority:      %s (link weight %u)\n"
              "phase:         %s%s\nprogress:      %.0f%%  round %u  left %s  bw %.0f MiB/s\n"
              "max bandwidth: %s\nmax downtime:  %u ms\nqueued for:    %.1f s\n",
              m.migration_id().c_str(), m.vm_name().c_str(), DirectionName(m.direction()),
              m.direction() == v1::MIGRATION_DIRECTION_INCOMING ? "from" : "to", m.peer().c_str(),
              PriorityText(o.priority()).c_str(), m.link_weight(), PhaseName(e.phase()),
              m.finished() ? " (finished)" : "", e.progress() * 100, e.round(), FormatBytes(e.remaining_bytes()).c_str(),
              e.bandwidth_mibps(),
              o.max_bandwidth_mibps() > 0 ? absl::StrFormat("%.0f MiB/s", o.max_bandwidth_mibps()).c_str() : "unlimited",
              o.max_downtime_ms() > 0 ? o.max_downtime_ms() : 300, m.queued_s());
  if (!e.message().empty()) std::printf("message:       %s\n", e.message().c_str());
  if (!e.error().empty()) std::printf("error:         %s\n", e.error().c_str());
  if (e.has_stats() && e.stats().total_ms() > 0) PrintMigrationSummary(e);
}

struct Args {
  std::string id;
  bool json = false;
  std::string max_bandwidth;
  uint32_t max_downtime_ms = 0;
};

}  // namespace

absl::StatusOr<v1::MigrationPriority> ParsePriority(const std::string& text) {
  if (text == "high") return v1::MIGRATION_PRIORITY_HIGH;
  if (text == "standard") return v1::MIGRATION_PRIORITY_STANDARD;
  return absl::InvalidArgumentError(absl::StrCat("--priority '", text, "' must be high or standard"));
}

void AddMigrationCommands(CLI::App& app, Globals& g) {
  CLI::App* mig = SubcommandOf(app, "migration", "migration jobs on --agent: list, show, watch, cancel, set, resolve");

  auto list_args = std::make_shared<Args>();
  CLI::App* list = mig->add_subcommand("list", "running, queued and recently finished migrations on --agent");
  list->add_flag("--json", list_args->json, "print JSON");
  list->callback([&g, a = list_args] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration list", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::ListMigrationsResponse resp;
    grpc::Status st = (*stub)->ListMigrations(&ctx, v1::ListMigrationsRequest(), &resp);
    if (!st.ok()) return void(g.exit_code = Report("migration list", st, a->json));
    if (a->json) return void(std::printf("%s\n", ToJson(resp).c_str()));
    std::printf("%u of %u migration slots busy, %u queued\n", resp.running(), resp.max_concurrent(), resp.queued());
    std::printf("%-14s %-16s %-3s %-22s %-8s %-14s %8s %10s\n", "ID", "VM", "DIR", "PEER", "PRIORITY", "PHASE",
                "PROGRESS", "DOWNTIME");
    for (const auto& m : resp.migrations()) {
      const auto& e = m.last_event();
      std::string downtime = e.stats().downtime_ms() > 0 ? absl::StrFormat("%.1f ms", e.stats().downtime_ms()) : "-";
      std::printf("%-14s %-16s %-3s %-22s %-8s %-14s %7.0f%% %10s\n", m.migration_id().c_str(), m.vm_name().c_str(),
                  DirectionName(m.direction()), m.peer().c_str(), PriorityText(m.options().priority()).c_str(),
                  PhaseName(e.phase()), e.progress() * 100, downtime.c_str());
      // Why a job waits: the host's slots, a destination that refused it for now, or a commit
      // whose outcome the destination has not confirmed yet.
      const bool waits = e.phase() == v1::MIGRATION_PHASE_QUEUED || (e.phase() == v1::MIGRATION_PHASE_COMMIT && !m.finished());
      if (waits && !e.message().empty()) {
        std::printf("  %s%s%s\n", e.message().c_str(), e.error().empty() ? "" : ": ", e.error().c_str());
      }
    }
  });

  auto show_args = std::make_shared<Args>();
  CLI::App* show = mig->add_subcommand("show", "one migration job: phase, progress, settings, statistics");
  show->add_option("id", show_args->id, "migration id (migration list)")->required();
  show->add_flag("--json", show_args->json, "print JSON");
  show->callback([&g, a = show_args] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration show", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::GetMigrationRequest req;
    req.set_migration_id(a->id);
    v1::MigrationInfo info;
    grpc::Status st = (*stub)->GetMigration(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = Report("migration show", st, a->json));
    if (a->json) return void(std::printf("%s\n", ToJson(info).c_str()));
    PrintInfo(info);
  });

  auto watch_args = std::make_shared<Args>();
  CLI::App* watch = mig->add_subcommand("watch", "follow a migration job to its end (Ctrl-C stops watching, not the job)");
  watch->add_option("id", watch_args->id, "migration id")->required();
  watch->add_flag("--json", watch_args->json, "print each event as one JSON line");
  watch->callback([&g, a = watch_args] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration watch", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::WatchMigrationRequest req;
    req.set_migration_id(a->id);
    auto reader = (*stub)->WatchMigration(&ctx, req);
    v1::MigrationEvent e, last;
    bool any = false;
    while (reader->Read(&e)) {
      any = true;
      last = e;
      if (a->json) {
        std::printf("%s\n", ToJson(e).c_str());
      } else {
        std::printf("%3.0f%% %-13s round %u left %s bw %.0f MiB/s dirty %.1f MiB/s%s%s%s%s\n", e.progress() * 100,
                    PhaseName(e.phase()), e.round(), FormatBytes(e.remaining_bytes()).c_str(), e.bandwidth_mibps(),
                    e.dirty_rate_mibps(), e.message().empty() ? "" : ": ", e.message().c_str(),
                    e.error().empty() ? "" : " error: ", e.error().c_str());
      }
      std::fflush(stdout);
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) return void(g.exit_code = Report("migration watch", st, a->json));
    if (!any) return void(g.exit_code = Report("migration watch", "failed", "the agent sent no event", false, a->json));
    g.exit_code = ExitCodeOf(last.phase());
  });

  auto cancel_args = std::make_shared<Args>();
  CLI::App* cancel = mig->add_subcommand("cancel", "cancel a queued or running migration (refused after commit)");
  cancel->add_option("id", cancel_args->id, "migration id")->required();
  cancel->add_flag("--json", cancel_args->json, "print JSON");
  cancel->callback([&g, a = cancel_args] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration cancel", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::CancelMigrationRequest req;
    req.set_migration_id(a->id);
    v1::MigrationInfo info;
    grpc::Status st = (*stub)->CancelMigration(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = Report("migration cancel", st, a->json));
    if (a->json) return void(std::printf("%s\n", ToJson(info).c_str()));
    std::printf("cancelling migration %s of VM %s (it ends at the next batch; the VM keeps running here)\n",
                a->id.c_str(), info.vm_name().c_str());
  });

  auto set_args = std::make_shared<Args>();
  CLI::App* set = mig->add_subcommand("set", "change a running migration's bandwidth cap and/or downtime target");
  set->add_option("id", set_args->id, "migration id")->required();
  set->add_option("--max-bandwidth", set_args->max_bandwidth, "cap the transfer rate (MiB/s, 0 = unlimited)");
  set->add_option("--max-downtime", set_args->max_downtime_ms, "switch over when the pause fits (ms)");
  set->add_flag("--json", set_args->json, "print JSON");
  set->callback([&g, a = set_args] {
    v1::SetMigrationRequest req;
    req.set_migration_id(a->id);
    if (!a->max_bandwidth.empty()) {
      auto bw = ParseRateMiBps(a->max_bandwidth);
      if (!bw.ok()) {
        return void(g.exit_code = Report("migration set", "usage", absl::StrCat("--max-bandwidth: ", bw.status().message()),
                                         true, a->json));
      }
      req.set_max_bandwidth_mibps(*bw);
    }
    if (a->max_downtime_ms > 0) req.set_max_downtime_ms(a->max_downtime_ms);
    if (!req.has_max_bandwidth_mibps() && !req.has_max_downtime_ms()) {
      return void(g.exit_code = Report("migration set", "usage", "give --max-bandwidth and/or --max-downtime", true, a->json));
    }
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration set", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::MigrationInfo info;
    grpc::Status st = (*stub)->SetMigration(&ctx, req, &info);
    if (!st.ok()) return void(g.exit_code = Report("migration set", st, a->json));
    if (a->json) return void(std::printf("%s\n", ToJson(info).c_str()));
    const auto& o = info.options();
    std::printf("migration %s: max bandwidth %s, max downtime %u ms\n", a->id.c_str(),
                o.max_bandwidth_mibps() > 0 ? absl::StrFormat("%.0f MiB/s", o.max_bandwidth_mibps()).c_str() : "unlimited",
                o.max_downtime_ms() > 0 ? o.max_downtime_ms() : 300);
  });

  auto resolve_args = std::make_shared<Args>();
  CLI::App* resolve = mig->add_subcommand(
      "resolve", "settle a migration whose commit was never confirmed (its VM kept paused on this agent)");
  resolve->add_option("id", resolve_args->id, "migration id")->required();
  resolve->add_flag("--json", resolve_args->json, "print JSON");
  resolve->callback([&g, a = resolve_args] {
    auto stub = DialAgent(ClientTlsOf(g), g.agent, g.agent_name);
    if (!stub.ok()) return void(g.exit_code = Report("migration resolve", stub.status(), a->json));
    grpc::ClientContext ctx;
    v1::ResolveMigrationRequest req;
    req.set_migration_id(a->id);
    v1::ResolveMigrationResponse out;
    grpc::Status st = (*stub)->ResolveMigration(&ctx, req, &out);
    if (!st.ok()) return void(g.exit_code = Report("migration resolve", st, a->json));
    if (a->json) return void(std::printf("%s\n", ToJson(out).c_str()));
    std::printf("%s\n", out.message().c_str());
  });
}

}  // namespace ferry::cli
