#include "tools/client/local_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/agent/certs.h"
#include "engine/base/status.h"
#include "tools/client/netns_exec.h"

extern char** environ;

namespace ferry::cli {
namespace fs = std::filesystem;

namespace {

// host-a, host-b, ...: each agent's name and the name on its certificate.
std::string AgentName(int index) { return absl::StrCat("host-", std::string(1, static_cast<char>('a' + index))); }

// Agent `index`'s entry of a per-agent list, or `fallback`.
std::string PerAgent(const std::vector<std::string>& list, int index, const std::string& fallback) {
  return index < static_cast<int>(list.size()) && !list[index].empty() ? list[index] : fallback;
}

}  // namespace

std::string SiblingBinary(const std::string& name) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path p = self.parent_path() / name;
    if (fs::exists(p)) return p.string();
  }
  if (const char* d = std::getenv("FERRY_BIN_DIR")) {
    fs::path p = fs::path(d) / name;
    if (fs::exists(p)) return p.string();
  }
  return name;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->keep_dir_ = options.keep_dir;
  std::string tmpl = (fs::temp_directory_path() / "ferry-cluster-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return absl::InternalError("cannot create a temporary directory");
  c->dir_ = tmpl;
  std::string agent_bin =
      options.bin_dir.empty() ? SiblingBinary(options.agent_binary) : (fs::path(options.bin_dir) / options.agent_binary).string();
  if (!fs::exists(agent_bin)) {
    return absl::NotFoundError(absl::StrCat("cannot find the ferry-agent binary (looked for ", agent_bin,
                                            "); build it or set FERRY_BIN_DIR"));
  }
  if (options.tls) {
    const std::string certs = c->dir_ + "/certs";
    auto ca = CreateCa("ferry-demo-ca");
    if (!ca.ok()) return ca.status();
    if (auto st = WriteCertAndKey(*ca, certs, "ca"); !st.ok()) return st;
    for (int i = 0; i < options.agents; ++i) {
      std::string name = AgentName(i);
      const std::string listen_host = PerAgent(options.listen_hosts, i, "127.0.0.1");
      std::vector<std::string> ips = {"127.0.0.1"};
      if (listen_host != "127.0.0.1") ips.push_back(listen_host);
      auto host = IssueHostCert(*ca, name, ips);
      if (!host.ok()) return host.status();
      if (auto st = WriteCertAndKey(*host, certs, name); !st.ok()) return st;
    }
    auto client = IssueClientCert(*ca, "demo-operator");
    if (!client.ok()) return client.status();
    if (auto st = WriteCertAndKey(*client, certs, "client"); !st.ok()) return st;
    c->client_tls_ = {certs + "/ca.crt", certs + "/client.crt", certs + "/client.key", false};
  } else {
    c->client_tls_.insecure = true;
  }
  for (int i = 0; i < options.agents; ++i) {
    absl::Status st = c->Spawn(i, options, agent_bin);
    if (!st.ok()) return st;
  }
  c->options_ = options;
  c->agent_bin_ = agent_bin;
  // Wait for every agent to write its port file: it is listening by then.
  for (int i = 0; i < options.agents; ++i) {
    if (absl::Status st = c->WaitForPort(i); !st.ok()) return st;
  }
  return c;
}

absl::Status LocalCluster::WaitForPort(int i) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string port_file = absl::StrCat(dir_, "/", agents_[i].name, ".port");
  while (true) {
    std::ifstream in(port_file);
    if (in >> agents_[i].port && agents_[i].port > 0) return absl::OkStatus();
    if (!Alive(i)) {
      return absl::InternalError(absl::StrCat("agent ", agents_[i].name, " exited at start; see ", log_path(i)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("agent ", agents_[i].name, " did not start listening within 15 s; see ", log_path(i)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status LocalCluster::Restart(int i) {
  if (Alive(i)) return absl::FailedPreconditionError(absl::StrCat("agent ", agents_[i].name, " still runs"));
  std::error_code ec;
  fs::remove(absl::StrCat(dir_, "/", agents_[i].name, ".port"), ec);
  agents_[i].port = 0;
  RETURN_IF_ERROR(Spawn(i, options_, agent_bin_));
  return WaitForPort(i);
}

absl::Status LocalCluster::Spawn(int index, const LocalClusterOptions& options, const std::string& agent_bin) {
  Agent a;
  a.name = AgentName(index);
  a.host = PerAgent(options.listen_hosts, index, "127.0.0.1");
  std::vector<std::string> args = {agent_bin,   "--name",     a.name,
                                   "--listen",  a.host + ":0", "--port-file",
                                   absl::StrCat(dir_, "/", a.name, ".port"),
                                   "--data-dir", absl::StrCat(dir_, "/", a.name)};
  if (index < static_cast<int>(options.host_facts.size()) && !options.host_facts[index].empty()) {
    args.insert(args.end(), {"--host-facts", options.host_facts[index]});
  }
  if (options.tls) {
    std::string certs = dir_ + "/certs/";
    args.insert(args.end(), {"--tls-ca", certs + "ca.crt", "--tls-cert", certs + a.name + ".crt", "--tls-key",
                             certs + a.name + ".key"});
  } else {
    args.push_back("--insecure");
  }
  if (index < static_cast<int>(options.extra_args.size())) {
    args.insert(args.end(), options.extra_args[index].begin(), options.extra_args[index].end());
  }
  const std::string netns = PerAgent(options.netns, index, "");
  args = InNetns(netns, std::move(args));
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("FERRY_TEST_FAULTS=", 0) != 0) env.push_back(*e);
  }
  std::vector<char*> argv, envp;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  std::string log = absl::StrCat(dir_, "/", a.name, ".log");
  const bool restart = index < static_cast<int>(agents_.size());  // keep the first run's log
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | (restart ? O_APPEND : O_TRUNC),
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  // Agents run in their own process group so a Ctrl-C at the terminal reaches only the CLI, which
  // then cancels and tears down in order.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  int rc = netns.empty() ? posix_spawn(&a.pid, agent_bin.c_str(), &fa, &attr, argv.data(), envp.data())
                         : posix_spawnp(&a.pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot start ", agent_bin, ": ", strerror(rc)));
  if (restart) {
    agents_[index] = a;
  } else {
    agents_.push_back(a);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<v1::Agent::Stub>> LocalCluster::Stub(int i) const {
  return DialAgent(client_tls_, address(i), agents_[i].name);
}

bool LocalCluster::Alive(int i) const {
  if (agents_[i].pid <= 0) return false;
  int status = 0;
  return waitpid(agents_[i].pid, &status, WNOHANG) == 0;
}

void LocalCluster::Kill(int i) {
  if (agents_[i].pid <= 0) return;
  kill(agents_[i].pid, SIGKILL);
  waitpid(agents_[i].pid, nullptr, 0);
  agents_[i].pid = -1;
}

LocalCluster::~LocalCluster() {
  for (auto& a : agents_) {
    if (a.pid > 0) kill(a.pid, SIGTERM);
  }
  for (auto& a : agents_) {
    if (a.pid <= 0) continue;
    // Give each agent 10 s to stop its VMs cleanly, then kill it.
    for (int t = 0; t < 1000; ++t) {
      if (waitpid(a.pid, nullptr, WNOHANG) != 0) {
        a.pid = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (a.pid > 0) {
      kill(a.pid, SIGKILL);
      waitpid(a.pid, nullptr, 0);
    }
  }
  if (!dir_.empty()) (void)KillVmmProcessesUnder(dir_);
  if (!keep_dir_ && !dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

namespace {

// Whether `pid` is gone or a zombie (state Z or X in /proc/PID/stat, after the command's ')').
bool ExitedOrZombie(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return true;
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return true;
  const char state = stat[paren + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace

int KillVmmProcessesUnder(const std::string& dir) {
  int killed = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it.depth() > 3) it.disable_recursion_pending();
    if (it->path().filename() != "vmm.pid") continue;
    std::ifstream in(it->path());
    pid_t pid = 0;
    if (!(in >> pid) || pid <= 1) continue;
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (!(comm >> name) || name != "ferry-vmm") continue;  // gone, or the pid was reused
    if (kill(pid, SIGKILL) == 0) ++killed;
    // Not our child: wait until it has exited. A zombie counts: it already let go of its memory,
    // files and locks; its parent (init or an agent) reaps it whenever it gets to it.
    for (int t = 0; t < 200 && !ExitedOrZombie(pid); ++t) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return killed;
}

}  // namespace ferry::cli
