#include "tools/client/agent_client.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/transport/grpc_peer_channel.h"
#include "engine/agent/tls_config.h"

namespace ferry::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void OnSigint(int) { g_interrupted.store(true); }

}  // namespace

const char* PhaseName(v1::MigrationPhase p) {
  switch (p) {
    case v1::MIGRATION_PHASE_QUEUED: return "queued";
    case v1::MIGRATION_PHASE_PRECHECK: return "precheck";
    case v1::MIGRATION_PHASE_SETUP: return "setup";
    case v1::MIGRATION_PHASE_PRECOPY: return "pre-copy";
    case v1::MIGRATION_PHASE_STOP_AND_COPY: return "stop-and-copy";
    case v1::MIGRATION_PHASE_COMMIT: return "commit";
    case v1::MIGRATION_PHASE_ANNOUNCE: return "announce";
    case v1::MIGRATION_PHASE_COMPLETED: return "completed";
    case v1::MIGRATION_PHASE_FAILED: return "failed";
    case v1::MIGRATION_PHASE_CANCELLED: return "cancelled";
    default: return "?";
  }
}

namespace {

bool Terminal(v1::MigrationPhase p) {
  return p == v1::MIGRATION_PHASE_COMPLETED || p == v1::MIGRATION_PHASE_FAILED || p == v1::MIGRATION_PHASE_CANCELLED;
}

}  // namespace

std::string FormatBytes(uint64_t b) {
  if (b >= (1ull << 30)) return absl::StrFormat("%.2f GiB", b / 1073741824.0);
  if (b >= (1ull << 20)) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  if (b >= (1ull << 10)) return absl::StrFormat("%.1f KiB", b / 1024.0);
  return absl::StrFormat("%d B", b);
}

absl::StatusOr<std::unique_ptr<v1::Agent::Stub>> DialAgent(const ClientTls& t, const std::string& address,
                                                           const std::string& expected_name) {
  if (address.empty()) return absl::InvalidArgumentError("no agent given: use --agent HOST:PORT (or FERRY_AGENT)");
  if (address.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("agent address '", address, "' must be HOST:PORT"));
  }
  TlsConfig tls{t.ca, t.cert, t.key, t.insecure};
  if (!t.insecure && (tls.ca_cert_path.empty() || tls.cert_path.empty() || tls.key_path.empty())) {
    return absl::InvalidArgumentError(
        "agents require TLS: give --tls-ca, --tls-cert and --tls-key (a client certificate from "
        "`migrate certs client`), or --insecure for agents started with --insecure");
  }
  std::string name = expected_name;
  if (name.empty()) name = address.substr(0, address.rfind(':'));
  auto channel = MakeChannel(address, name, tls);
  if (!channel.ok()) return channel.status();
  return v1::Agent::NewStub(*channel);
}

std::string ConnectionsText(uint32_t n) {
  if (n == 0) return "the gRPC stream";
  return n == 1 ? "1 connection" : std::to_string(n) + " connections";
}

absl::StatusOr<v1::MigrationEvent> MigrateWithProgress(v1::Agent::Stub& source, const v1::MigrateRequest& req,
                                                       bool quiet) {
  grpc::ClientContext ctx;
  auto reader = source.Migrate(&ctx, req);
  const bool tty = isatty(STDERR_FILENO);
  g_interrupted.store(false);
  struct sigaction sa {}, old {};
  sa.sa_handler = OnSigint;
  sigaction(SIGINT, &sa, &old);

  std::atomic<bool> done{false};
  std::string migration_id;
  std::mutex id_mu;
  // Ctrl-C: ask the source to cancel; the stream then ends with a CANCELLED event.
  std::thread canceller([&] {
    bool sent = false;
    while (!done.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_interrupted.load() && !sent) {
        std::string id;
        {
          std::lock_guard l(id_mu);
          id = migration_id;
        }
        if (id.empty()) continue;
        grpc::ClientContext cctx;
        v1::CancelMigrationRequest creq;
        creq.set_migration_id(id);
        v1::MigrationInfo info;
        grpc::Status st = source.CancelMigration(&cctx, creq, &info);
        std::fprintf(stderr, "\ncancelling migration %s: %s\n", id.c_str(),
                     st.ok() ? "requested" : st.error_message().c_str());
        sent = true;
      }
    }
  });

  v1::MigrationEvent e, last;
  double shown = 0;
  uint32_t last_round_printed = 0;
  v1::MigrationPhase last_phase = v1::MIGRATION_PHASE_UNSPECIFIED;
  bool any = false;
  while (reader->Read(&e)) {
    any = true;
    {
      std::lock_guard l(id_mu);
      migration_id = e.migration_id();
    }
    last = e;
    if (quiet) continue;
    // The agent's closing event repeats the engine's final phase with the statistics attached.
    if (Terminal(e.phase()) && e.phase() == last_phase) continue;
    shown = std::max(shown, e.progress());  // the bar never runs backwards
    if (tty) {
      int width = 30, filled = static_cast<int>(shown * width);
      std::string bar(filled, '#');
      bar += std::string(width - filled, '-');
      std::fprintf(stderr,
                   "\r\033[K[%s] %3.0f%% %-13s round %u  left %s  bw %.0f MiB/s on %s  dirty %.1f MiB/s  "
                   "throttle %u%%  ETA %.1fs",
                   bar.c_str(), shown * 100, PhaseName(e.phase()), e.round(), FormatBytes(e.remaining_bytes()).c_str(),
                   e.bandwidth_mibps(), ConnectionsText(e.connections()).c_str(), e.dirty_rate_mibps(),
                   e.throttle_percent(), e.eta_s());
      if (Terminal(e.phase()) && e.phase() != last_phase) std::fprintf(stderr, "\n");
      last_phase = e.phase();
    } else if (e.phase() != last_phase ||
               (e.round() != last_round_printed && !Terminal(e.phase()))) {
      std::fprintf(stderr,
                   "%3.0f%% %s round %u left %s bw %.0f MiB/s on %s dirty %.1f MiB/s throttle %u%% "
                   "expected downtime %.1f ms%s%s\n",
                   shown * 100, PhaseName(e.phase()), e.round(), FormatBytes(e.remaining_bytes()).c_str(),
                   e.bandwidth_mibps(), ConnectionsText(e.connections()).c_str(), e.dirty_rate_mibps(),
                   e.throttle_percent(), e.expected_downtime_ms(),
                   e.message().empty() ? "" : ": ", e.message().c_str());
      last_round_printed = e.round();
      last_phase = e.phase();
    }
  }
  grpc::Status st = reader->Finish();
  done.store(true);
  canceller.join();
  sigaction(SIGINT, &old, nullptr);
  if (!st.ok()) return FromGrpcStatus(st);
  if (!any) return absl::InternalError("the source agent sent no migration events");
  return last;
}

}  // namespace ferry::cli
