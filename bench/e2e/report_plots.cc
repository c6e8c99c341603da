// gnuplot figures. Each figure is a .dat file (what was measured, averaged over --repeat) and a
// .gp script beside it, so a figure can be re-rendered or restyled without re-running.
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/e2e/matrix.h"
#include "bench/e2e/report.h"
#include "engine/base/status.h"

extern char** environ;

namespace ferry::bench {
namespace {

// The mean of the successful repeats of one scenario.
struct Point {
  Scenario s;
  int n = 0;
  double total_ms = 0, setup_ms = 0, precopy_ms = 0, stop_copy_ms = 0, commit_ms = 0;
  double downtime_ms = 0, guest_ms = 0, mib_s = 0, measured_rate = 0, rounds = 0;
};

std::string Key(const Scenario& s) {
  return absl::StrCat(s.group, "|", s.backend, "|", s.memory_bytes, "|", s.working_set_bytes, "|",
                      DescribeRate(s), "|", s.pattern, "|", s.tls);
}

std::vector<Point> Aggregate(const BenchReport& report, const std::string& group, const std::string& backend) {
  std::vector<Point> out;
  std::map<std::string, size_t> index;
  for (const RunRecord& r : report.runs) {
    if (!r.ok || r.scenario.group != group || r.scenario.backend != backend) continue;
    auto [it, fresh] = index.emplace(Key(r.scenario), out.size());
    if (fresh) out.push_back(Point{r.scenario});
    Point& p = out[it->second];
    p.n++;
    p.total_ms += r.total_ms;
    p.setup_ms += r.phases.setup_ms;
    p.precopy_ms += r.phases.precopy_ms;
    p.stop_copy_ms += r.phases.stop_copy_ms;
    p.commit_ms += r.phases.commit_ms;
    p.downtime_ms += r.downtime_ms;
    p.guest_ms += r.guest_stall_ms;
    p.mib_s += r.throughput_mib_s;
    p.measured_rate += r.last_round_dirty_rate_mibps;
    p.rounds += r.rounds;
  }
  for (Point& p : out) {
    for (double* v : {&p.total_ms, &p.setup_ms, &p.precopy_ms, &p.stop_copy_ms, &p.commit_ms, &p.downtime_ms,
                      &p.guest_ms, &p.mib_s, &p.measured_rate, &p.rounds}) {
      *v /= p.n;
    }
  }
  return out;
}

std::vector<std::string> Backends(const BenchReport& report) {
  std::vector<std::string> out;
  for (const RunRecord& r : report.runs) {
    if (std::find(out.begin(), out.end(), r.scenario.backend) == out.end()) out.push_back(r.scenario.backend);
  }
  return out;
}

std::string MemLabel(uint64_t b) {
  if (b >= (1ull << 30)) return absl::StrFormat("%gG", b / 1073741824.0);
  return absl::StrCat(b >> 20, "M");
}

absl::Status WriteFile(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", p.string()));
  return absl::OkStatus();
}

absl::Status RunGnuplot(const std::filesystem::path& dir, const std::string& script) {
  // gnuplot runs in DIR so the scripts name their .dat files relatively.
  std::string cmd = "gnuplot";
  std::vector<std::string> args = {cmd, script};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, cmd.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run gnuplot (", strerror(rc), "); install the Debian package gnuplot-nox"));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("gnuplot failed on ", (dir / script).string()));
  }
  return absl::OkStatus();
}

constexpr char kTerminal[] = "set terminal pngcairo size 900,560 font 'DejaVu Sans,10'\n";

}  // namespace

absl::Status WritePlots(const BenchReport& report, const std::string& dir_name) {
  namespace fs = std::filesystem;
  fs::path dir(dir_name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--plots: cannot create ", dir_name, ": ", ec.message()));
  const double base = BaselineMiBps(report);
  double base_multi = 0;
  int multi_conns = 0;
  for (const TcpBaseline& b : report.baselines) {
    if (b.connections > multi_conns) {
      multi_conns = b.connections;
      base_multi = b.mib_s;
    }
  }
  std::vector<std::string> scripts;
  const std::vector<std::string> backends = Backends(report);

  // 1. Downtime vs dirty rate.
  {
    std::string plot;
    for (const std::string& b : backends) {
      std::vector<Point> pts = Aggregate(report, "dirty-rate", b);
      if (pts.empty()) continue;
      std::string dat = "# dirty rate asked (MiB/s) | engine downtime ms | guest-observed stall ms | measured dirty "
                        "MiB/s (last pre-copy round) | rounds\n";
      for (const Point& p : pts) {
        absl::StrAppendFormat(&dat, "%s %.3f %.3f %.1f %.1f\n", DescribeRate(p.s), p.downtime_ms, p.guest_ms,
                              p.measured_rate, p.rounds);
      }
      RETURN_IF_ERROR(WriteFile(dir / absl::StrCat("downtime_vs_dirty_rate_", b, ".dat"), dat));
      absl::StrAppend(&plot, plot.empty() ? "plot " : ", ",
                      absl::StrFormat("'downtime_vs_dirty_rate_%s.dat' using 0:2:xtic(1) with linespoints lw 2 "
                                      "title '%s: engine downtime', '' using 0:3 with linespoints dt 2 lw 2 "
                                      "title '%s: guest-observed stall'",
                                      b, b, b));
    }
    if (!plot.empty()) {
      std::string gp = absl::StrCat(kTerminal,
                                    "set output 'downtime_vs_dirty_rate.png'\n"
                                    "set title 'Downtime vs guest dirty rate (1 GiB guest, 256 MiB working set)'\n"
                                    "set xlabel 'dirty rate asked of the guest (MiB/s; max = unlimited)'\n"
                                    "set ylabel 'ms'\nset logscale y\nset grid\nset key top left\n",
                                    plot, "\n");
      RETURN_IF_ERROR(WriteFile(dir / "downtime_vs_dirty_rate.gp", gp));
      scripts.push_back("downtime_vs_dirty_rate.gp");
    }
  }

  // 2. Total time vs memory size, and 3. throughput vs the baseline, and 5. phases.
  {
    std::string plot_total, plot_ratio, phases_dat;
    for (const std::string& b : backends) {
      std::vector<Point> pts = Aggregate(report, "memory", b);
      if (pts.empty()) continue;
      std::string dat = "# memory GiB | total s | setup s | pre-copy s | stop-copy s | commit s | MiB/s | ratio to "
                        "1-connection TCP\n";
      for (const Point& p : pts) {
        absl::StrAppendFormat(&dat, "%g %.3f %.3f %.3f %.3f %.3f %.1f %.3f\n", p.s.memory_bytes / 1073741824.0,
                              p.total_ms / 1e3, p.setup_ms / 1e3, p.precopy_ms / 1e3, p.stop_copy_ms / 1e3,
                              p.commit_ms / 1e3, p.mib_s, base > 0 ? p.mib_s / base : 0.0);
        absl::StrAppendFormat(&phases_dat, "\"%s %s\" %.3f %.3f %.3f %.3f\n", b, MemLabel(p.s.memory_bytes),
                              p.setup_ms / 1e3, p.precopy_ms / 1e3, p.stop_copy_ms / 1e3, p.commit_ms / 1e3);
      }
      RETURN_IF_ERROR(WriteFile(dir / absl::StrCat("total_vs_memory_", b, ".dat"), dat));
      absl::StrAppend(&plot_total, plot_total.empty() ? "plot " : ", ",
                      absl::StrFormat("'total_vs_memory_%s.dat' using 1:2 with linespoints lw 2 title '%s'", b, b));
      absl::StrAppend(&plot_ratio, plot_ratio.empty() ? "plot " : ", ",
                      absl::StrFormat("'total_vs_memory_%s.dat' using 1:8 with linespoints lw 2 title '%s migration'",
                                      b, b));
    }
    if (!plot_total.empty()) {
      RETURN_IF_ERROR(WriteFile(
          dir / "total_vs_memory.gp",
          absl::StrCat(kTerminal,
                       "set output 'total_vs_memory.png'\n"
                       "set title 'Total migration time vs guest memory (64 MiB working set, 32 MiB/s)'\n"
                       "set xlabel 'guest memory (GiB)'\nset ylabel 'total time (s)'\nset logscale x 2\n"
                       "set logscale y\nset grid\nset key top left\n",
                       plot_total, "\n")));
      scripts.push_back("total_vs_memory.gp");
      RETURN_IF_ERROR(WriteFile(
          dir / "throughput_vs_baseline.gp",
          absl::StrCat(kTerminal,
                       "set output 'throughput_vs_baseline.png'\n",
                       absl::StrFormat("set title 'Migration throughput / raw loopback TCP (1 connection: %.0f MiB/s, "
                                       "%d connections: %.0f MiB/s, same run)'\n",
                                       base, multi_conns, base_multi),
                       "set xlabel 'guest memory (GiB)'\nset ylabel 'ratio to 1-connection TCP'\n"
                       "set logscale x 2\nset yrange [0:*]\nset grid\nset key bottom right\n",
                       plot_ratio,
                       absl::StrFormat(", 1 with lines dt 2 lw 2 title '1-connection TCP', %.3f with lines dt 3 lw 2 "
                                       "title '%d-connection TCP'\n",
                                       base > 0 ? base_multi / base : 0.0, multi_conns))));
      scripts.push_back("throughput_vs_baseline.gp");
      RETURN_IF_ERROR(WriteFile(dir / "phases.dat",
                                   absl::StrCat("# run | setup s | pre-copy s | stop-copy s | commit s\n", phases_dat)));
      RETURN_IF_ERROR(WriteFile(
          dir / "phases.gp",
          absl::StrCat(kTerminal,
                       "set output 'phases.png'\n"
                       "set title 'Where the time goes, per phase (memory sweep)'\n"
                       "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.8 border -1\n"
                       "set boxwidth 0.7\nset ylabel 'seconds'\nset xtics rotate by -40\nset grid y\n"
                       "set key top left\n"
                       "plot 'phases.dat' using 2:xtic(1) title 'setup', '' using 3 title 'pre-copy', "
                       "'' using 4 title 'stop-and-copy', '' using 5 title 'commit + resume'\n")));
      scripts.push_back("phases.gp");
    }
  }

  // 4. TLS vs plaintext, same run.
  {
    std::string dat = "# run | plaintext MiB/s | TLS MiB/s | plaintext / TCP | TLS / TCP\n";
    bool any = false;
    for (const std::string& b : backends) {
      // The TLS sweep of the default matrix, or a custom matrix run with --tls both.
      std::vector<Point> pts = Aggregate(report, "tls", b);
      for (const Point& p : Aggregate(report, "custom", b)) pts.push_back(p);
      std::map<uint64_t, std::pair<double, double>> by_mem;  // memory -> (plain, tls)
      for (const Point& p : pts) (p.s.tls ? by_mem[p.s.memory_bytes].second : by_mem[p.s.memory_bytes].first) = p.mib_s;
      for (const auto& [mem, v] : by_mem) {
        if (v.first <= 0 || v.second <= 0) continue;
        any = true;
        absl::StrAppendFormat(&dat, "\"%s %s\" %.1f %.1f %.3f %.3f\n", b, MemLabel(mem), v.first, v.second,
                              base > 0 ? v.first / base : 0.0, base > 0 ? v.second / base : 0.0);
      }
    }
    if (any) {
      RETURN_IF_ERROR(WriteFile(dir / "tls_vs_plaintext.dat", dat));
      RETURN_IF_ERROR(WriteFile(
          dir / "tls_vs_plaintext.gp",
          absl::StrCat(kTerminal,
                       "set output 'tls_vs_plaintext.png'\n",
                       absl::StrFormat("set title 'Migration throughput with and without TLS, as a ratio to raw "
                                       "loopback TCP (%.0f MiB/s), same run'\n",
                                       base),
                       "set style data histograms\nset style histogram clustered gap 1\n"
                       "set style fill solid 0.8 border -1\nset ylabel 'ratio to 1-connection TCP'\n"
                       "set yrange [0:*]\nset grid y\nset key top right\n"
                       "plot 'tls_vs_plaintext.dat' using 4:xtic(1) title 'plaintext gRPC', '' using 5 title "
                       "'TLS gRPC'\n")));
      scripts.push_back("tls_vs_plaintext.gp");
    }
  }

  for (const std::string& s : scripts) RETURN_IF_ERROR(RunGnuplot(dir, s));
  return absl::OkStatus();
}

}  // namespace ferry::bench
