#include "engine/cluster/isolation.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/cluster/ha_log.h"

namespace ferry::cluster {

std::string IsolationStateName(IsolationState s) {
  switch (s) {
    case IsolationState::kConnected: return "connected";
    case IsolationState::kPartitioned: return "partitioned";
    case IsolationState::kIsolated: return "isolated";
  }
  return "unknown";
}

IsolationState NextIsolationState(bool heartbeat_lapsed, bool any_address_answers) {
  if (!heartbeat_lapsed) return IsolationState::kConnected;
  return any_address_answers ? IsolationState::kPartitioned : IsolationState::kIsolated;
}

absl::StatusOr<bool> TcpAnswers(const std::string& host_port, absl::Duration timeout) {
  const size_t colon = host_port.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(host_port.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("isolation address '", host_port, "' is not HOST:PORT"));
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found) {
    return false;  // a name that does not resolve answers nobody
  }
  bool answered = false;
  for (addrinfo* a = found; a && !answered; a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc == 0) {
      answered = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1) {
        int err = 0;
        socklen_t len = sizeof(err);
        answered = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return answered;
}

absl::StatusOr<std::unique_ptr<IsolationMonitor>> IsolationMonitor::Start(IsolationOptions options,
                                                                          std::function<HostState()> member_state,
                                                                          HaVmControl& vms) {
  if (options.isolation_addresses.empty()) {
    return absl::InvalidArgumentError("isolation: no isolation address (give HOST:PORT, default the etcd endpoints)");
  }
  for (const auto& a : options.isolation_addresses) {
    auto ok = TcpAnswers(a, absl::ZeroDuration());
    if (!ok.ok()) return ok.status();
  }
  if (options.check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("isolation: check interval must be positive");
  }
  std::unique_ptr<IsolationMonitor> m(new IsolationMonitor(std::move(options), std::move(member_state), vms));
  m->thread_ = std::thread([p = m.get()] { p->Run(); });
  return m;
}

IsolationMonitor::IsolationMonitor(IsolationOptions options, std::function<HostState()> member_state,
                                   HaVmControl& vms)
    : options_(std::move(options)), member_state_(std::move(member_state)), vms_(vms) {}

IsolationMonitor::~IsolationMonitor() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

IsolationState IsolationMonitor::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

int IsolationMonitor::responses_applied() const {
  std::lock_guard lock(mu_);
  return responses_;
}

bool IsolationMonitor::WaitForState(IsolationState s, absl::Duration timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return state_ == s; });
}

void IsolationMonitor::Run() {
  while (true) {
    CheckOnce();
    std::unique_lock lock(mu_);
    if (changed_.wait_for(lock, absl::ToChronoNanoseconds(options_.check_interval), [this] { return stop_; })) return;
  }
}

bool IsolationMonitor::AnyAddressAnswers() {
  for (const auto& a : options_.isolation_addresses) {
    auto answered = TcpAnswers(a, options_.connect_timeout);
    if (answered.ok() && *answered) return true;
  }
  return false;
}

void IsolationMonitor::CheckOnce() {
  const HostState member = member_state_();
  if (member == HostState::kSlave || member == HostState::kMaster) was_member_ = true;
  const bool lapsed = was_member_ && member == HostState::kJoining;
  const IsolationState next = NextIsolationState(lapsed, lapsed && AnyAddressAnswers());
  IsolationState before;
  {
    std::lock_guard lock(mu_);
    before = state_;
  }
  if (next == before) return;
  auto log = HaLog();
  if (next == IsolationState::kIsolated) {
    log->warn("ha: event=host_isolated cluster={} host={} response={} addresses_tried={}", options_.cluster,
              options_.host, IsolationResponseName(options_.response), options_.isolation_addresses.size());
    ApplyResponse();
  } else if (next == IsolationState::kPartitioned) {
    log->warn("ha: event=host_partitioned cluster={} host={} (network heartbeat lapsed, an isolation address "
              "answers: no isolation response)",
              options_.cluster, options_.host);
  } else {
    log->info("ha: event=host_reconnected cluster={} host={} was={}", options_.cluster, options_.host,
              IsolationStateName(before));
  }
  if (options_.on_change) options_.on_change(next);
  std::lock_guard lock(mu_);
  state_ = next;
  changed_.notify_all();
}

void IsolationMonitor::ApplyResponse() {
  auto log = HaLog();
  for (const HaVm& vm : vms_.RunningVms()) {
    absl::Status st;
    switch (options_.response) {
      case IsolationResponse::kLeaveRunning:
        log->warn("ha: event=isolation_response cluster={} host={} vm={} action=leave-running (keeps its lock)",
                  options_.cluster, options_.host, vm.name);
        continue;
      case IsolationResponse::kShutdown: st = vms_.Shutdown(vm.name); break;
      case IsolationResponse::kPowerOff: st = vms_.PowerOff(vm.name); break;
    }
    if (st.ok()) {
      log->warn("ha: event=isolation_response cluster={} host={} vm={} action={} (lock released)", options_.cluster,
                options_.host, vm.name, IsolationResponseName(options_.response));
    } else {
      log->error("ha: event=isolation_response_failed cluster={} host={} vm={} action={}: {}", options_.cluster,
                 options_.host, vm.name, IsolationResponseName(options_.response), st.ToString());
    }
  }
  std::lock_guard lock(mu_);
  ++responses_;
}

}  // namespace ferry::cluster
