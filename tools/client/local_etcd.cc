#include "tools/client/local_etcd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tools/client/netns_exec.h"

extern char** environ;

namespace ferry::cli {
namespace fs = std::filesystem;
namespace {

// Free loopback ports, held open together so no two are the same; etcd binds them right after.
absl::StatusOr<std::vector<int>> PickPorts(int n) {
  std::vector<int> fds, ports;
  absl::Status st;
  for (int i = 0; i < n && st.ok(); ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      st = absl::InternalError("cannot pick a free loopback port for etcd");
    } else {
      ports.push_back(ntohs(a.sin_port));
    }
    if (fd >= 0) fds.push_back(fd);
  }
  for (int fd : fds) close(fd);
  if (!st.ok()) return st;
  return ports;
}

bool PortAccepts(const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    close(fd);
    return false;
  }
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

std::string FindOnPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return fs::exists(name) ? name : "";
  const char* path = std::getenv("PATH");
  for (auto dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    fs::path p = fs::path(std::string(dir)) / name;
    if (!dir.empty() && access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// 127.0.0.1 and `ips`, each once: the addresses a member's or a host's certificate names.
std::vector<std::string> CertIps(const std::vector<std::string>& ips) {
  std::vector<std::string> out = {"127.0.0.1"};
  for (const auto& ip : ips) {
    if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalEtcd>> LocalEtcd::Start(const LocalEtcdOptions& options) {
  if (options.members != 1 && options.members != 3) {
    return absl::InvalidArgumentError(absl::StrCat("a local etcd has 1 or 3 members, not ", options.members));
  }
  std::string etcd_bin = FindOnPath(options.etcd_binary);
  if (etcd_bin.empty()) {
    return absl::NotFoundError(absl::StrCat("etcd is not installed ('", options.etcd_binary,
                                            "' not found; Debian: apt-get install etcd-server)"));
  }
  for (const auto* list : {&options.member_ips, &options.member_netns}) {
    if (!list->empty() && static_cast<int>(list->size()) != options.members) {
      return absl::InvalidArgumentError(
          absl::StrCat("a local etcd of ", options.members, " members needs as many member addresses and namespaces, not ",
                       list->size()));
    }
  }
  std::unique_ptr<LocalEtcd> e(new LocalEtcd());
  e->options_ = options;
  e->keep_dir_ = options.keep_dir;
  e->member_count_ = options.members;
  std::string tmpl = (fs::temp_directory_path() / "ferry-etcd-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) return absl::InternalError("cannot create a temporary directory for etcd");
  e->dir_ = tmpl;
  auto ca = CreateCa("ferry-etcd-ca");
  if (!ca.ok()) return ca.status();
  e->ca_ = *ca;
  if (auto st = WriteCertAndKey(e->ca_, e->dir_ + "/certs", "ca"); !st.ok()) return st;
  // A port may be taken between picking and binding: try again with new ones.
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = e->SpawnAll(etcd_bin);
    if (st.ok()) st = e->WaitReady();
    if (st.ok()) return e;
    for (int i = 0; i < static_cast<int>(e->members_.size()); ++i) e->Kill(i);
    e->members_.clear();
    e->endpoints_.clear();
    std::error_code ec;
    for (int i = 0; i < options.members; ++i) fs::remove_all(absl::StrCat(e->dir_, "/m", i, ".data"), ec);
  }
  return st;
}

absl::Status LocalEtcd::SpawnAll(const std::string& etcd_bin) {
  auto ports = PickPorts(2 * member_count_);
  if (!ports.ok()) return ports.status();
  std::vector<std::string> initial;
  for (int i = 0; i < member_count_; ++i) {
    Member m;
    m.name = absl::StrCat("etcd-", i);
    if (!options_.member_ips.empty()) m.ip = options_.member_ips[i];
    if (!options_.member_netns.empty()) m.netns = options_.member_netns[i];
    // A member alone in its namespace cannot collide with anything: etcd's own ports.
    m.client_port = m.netns.empty() ? (*ports)[2 * i] : 2379;
    m.peer_port = m.netns.empty() ? (*ports)[2 * i + 1] : 2380;
    members_.push_back(m);
    initial.push_back(absl::StrCat(m.name, "=https://", m.ip, ":", m.peer_port));
    endpoints_.push_back(absl::StrCat(m.ip, ":", m.client_port));
  }
  const std::string certs = dir_ + "/certs/";
  for (auto& m : members_) {
    if (!fs::exists(certs + m.name + ".crt")) {
      auto cert = ::ferry::IssueHostCert(ca_, m.name, CertIps({m.ip}));
      if (!cert.ok()) return cert.status();
      if (auto st = WriteCertAndKey(*cert, dir_ + "/certs", m.name); !st.ok()) return st;
    }
    const std::string client_url = absl::StrCat("https://", m.ip, ":", m.client_port);
    const std::string peer_url = absl::StrCat("https://", m.ip, ":", m.peer_port);
    std::vector<std::string> args = {
        etcd_bin, "--name", m.name, "--data-dir", absl::StrCat(dir_, "/", m.name, ".data"),
        "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", absl::StrJoin(initial, ","), "--initial-cluster-state", "new",
        "--initial-cluster-token", fs::path(dir_).filename().string(),
        "--client-cert-auth", "--trusted-ca-file", certs + "ca.crt",
        "--cert-file", certs + m.name + ".crt", "--key-file", certs + m.name + ".key",
        "--peer-client-cert-auth", "--peer-trusted-ca-file", certs + "ca.crt",
        "--peer-cert-file", certs + m.name + ".crt", "--peer-key-file", certs + m.name + ".key",
        // Loopback: a fast raft heartbeat so a 3-member cluster elects its leader quickly, and
        // leases can be as short as 1 s (etcd's minimum TTL follows its election timeout).
        "--heartbeat-interval", "50", "--election-timeout", "500",
        "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"};
    args = InNetns(m.netns, std::move(args));
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = absl::StrCat(dir_, "/", m.name, ".log");
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    int rc = m.netns.empty() ? posix_spawn(&m.pid, etcd_bin.c_str(), &fa, &attr, argv.data(), environ)
                             : posix_spawnp(&m.pid, argv[0], &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return absl::InternalError(absl::StrCat("cannot start ", etcd_bin, ": ", strerror(rc)));
  }
  return absl::OkStatus();
}

absl::Status LocalEtcd::WaitReady() {
  auto probe_cert = IssueClientCert(ca_, "local-etcd-probe");
  if (!probe_cert.ok()) return probe_cert.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (size_t i = 0; i < members_.size(); ++i) {
    // Wait for the port first: a gRPC channel that failed to connect backs off before retrying.
    while (!PortAccepts(members_[i].ip, members_[i].client_port)) {
      if (!Alive(static_cast<int>(i)) || absl::Now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    auto options = ClientOptions(*probe_cert);
    options.endpoints = {endpoints_[i]};
    options.call_timeout = absl::Seconds(3);
    auto client = cluster::EtcdClient::Create(options);
    if (!client.ok()) return client.status();
    while (true) {
      // A linearizable read answers only once the member is part of a cluster with a leader.
      auto got = (*client)->Get("/ferry/ready-probe");
      if (got.ok()) break;
      if (!Alive(static_cast<int>(i))) {
        return absl::InternalError(absl::StrCat("etcd member ", members_[i].name, " exited at start; see ", dir_,
                                                "/", members_[i].name, ".log"));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("etcd member ", members_[i].name,
                                                        " did not answer within 20 s: ", got.status().message()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return absl::OkStatus();
}

std::string LocalEtcd::endpoints_flag() const { return absl::StrJoin(endpoints_, ","); }

absl::StatusOr<CertAndKey> LocalEtcd::IssueHostCert(const std::string& name, const std::vector<std::string>& ips) {
  auto cert = ::ferry::IssueHostCert(ca_, name, CertIps(ips));
  if (!cert.ok()) return cert.status();
  if (auto st = WriteCertAndKey(*cert, dir_ + "/certs", name); !st.ok()) return st;
  return cert;
}

cluster::EtcdClientOptions LocalEtcd::ClientOptions(const CertAndKey& cert) const {
  cluster::EtcdClientOptions o;
  o.endpoints = endpoints_;
  o.tls = {ca_.cert_pem, cert.cert_pem, cert.key_pem};
  return o;
}

bool LocalEtcd::Alive(int i) const {
  if (members_[i].pid <= 0) return false;
  int status = 0;
  return waitpid(members_[i].pid, &status, WNOHANG) == 0;
}

void LocalEtcd::Kill(int i) {
  if (members_[i].pid <= 0) return;
  kill(members_[i].pid, SIGKILL);
  waitpid(members_[i].pid, nullptr, 0);
  members_[i].pid = -1;
}

LocalEtcd::~LocalEtcd() {
  for (auto& m : members_) {
    if (m.pid > 0) kill(m.pid, SIGTERM);
  }
  for (auto& m : members_) {
    if (m.pid <= 0) continue;
    for (int t = 0; t < 500 && m.pid > 0; ++t) {
      if (waitpid(m.pid, nullptr, WNOHANG) != 0) m.pid = -1;
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (m.pid > 0) {
      kill(m.pid, SIGKILL);
      waitpid(m.pid, nullptr, 0);
    }
  }
  if (!keep_dir_ && !dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

}  // namespace ferry::cli
