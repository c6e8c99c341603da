#pragma once
// Test seam for link faults: a TCP proxy in front of an agent that can cut every connection (both
// ends see a reset), flap the link (cut what is open, let new connections through) or freeze it
// (no byte passes either way, as a stalled link; connections stay open). Used by the FaultMatrix
// suite.
//
// Two ways to stand in front of an agent:
// - TcpProxy(port): listens on 127.0.0.1, any port, and forwards to 127.0.0.1:port (the control
//   stream only: data connections go to the port the destination advertises).
// - TcpProxy::Mirror(alias, {ports}): listens on another loopback address (127.0.0.2) at each of
//   the agent's own port numbers and forwards each to 127.0.0.1 at the same port. A source told to
//   migrate to alias:control-port then reaches the destination's advertised data port through the
//   proxy too (it dials the destination's host at that port), so a cut or a stall hits the whole
//   link: the control stream and every data connection.

#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ferry::e2e {

class TcpProxy {
 public:
  explicit TcpProxy(uint16_t target_port) { Listen("127.0.0.1", 0, target_port); }
  static std::unique_ptr<TcpProxy> Mirror(const std::string& alias, const std::vector<uint16_t>& ports) {
    std::unique_ptr<TcpProxy> p(new TcpProxy());
    for (uint16_t port : ports) p->Listen(alias, port, port);
    return p;
  }
  ~TcpProxy() {
    stop_.store(true);
    for (auto& r : routes_) ::shutdown(r->listen_fd, SHUT_RDWR);
    for (auto& r : routes_) {
      if (r->accept_thread.joinable()) r->accept_thread.join();
    }
    Cut();
    std::vector<std::thread> pumps;
    {
      // Joined without the lock: a pump asks it (Reset) on its way out.
      std::lock_guard lock(mu_);
      pumps.swap(pumps_);
    }
    for (std::thread& t : pumps) t.join();
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::close(fd);
    for (auto& r : routes_) ::close(r->listen_fd);
  }
  // The first route's listening port (-1 if it could not listen).
  int port() const { return routes_.empty() ? -1 : routes_[0]->port; }
  // Whether every route listens.
  bool ok() const {
    for (const auto& r : routes_) {
      if (r->port < 0) return false;
    }
    return !routes_.empty();
  }
  // Connections carried so far on the route listening at `listen_port` (all routes: 0).
  int connections(uint16_t listen_port = 0) const {
    int n = 0;
    for (const auto& r : routes_) {
      if (listen_port == 0 || r->port == listen_port) n += r->accepted.load();
    }
    return n;
  }

  // Every connection is reset; new ones are refused until Restore().
  void Cut() {
    cut_.store(true);
    ResetOpen();
  }
  // New connections pass again (those cut stay cut).
  void Restore() { cut_.store(false); }
  // The link flaps: every open connection is reset, new ones pass.
  void Flap() { ResetOpen(); }
  // No byte passes any more (connections stay open, new ones hang too).
  void Freeze() { frozen_.store(true); }
  // Only the answers stall: bytes from the target back to the client stop, the rest passes (an
  // asymmetric link: what the source sends arrives, what the destination answers does not).
  void FreezeAnswers() { answers_frozen_.store(true); }
  // Bytes pass again (what was held is delivered).
  void Thaw() {
    frozen_.store(false);
    answers_frozen_.store(false);
  }

 private:
  struct Route {
    int listen_fd = -1;
    int port = -1;
    uint16_t target_port = 0;
    std::atomic<int> accepted{0};
    std::thread accept_thread;
  };
  TcpProxy() = default;

  void Listen(const std::string& host, uint16_t port, uint16_t target_port) {
    Route& r = *routes_.emplace_back(std::make_unique<Route>());
    r.target_port = target_port;
    r.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(r.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    a.sin_port = htons(port);
    if (::bind(r.listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(r.listen_fd, 16) != 0) {
      return;  // port stays -1: ok() says so
    }
    socklen_t len = sizeof(a);
    ::getsockname(r.listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
    r.port = ntohs(a.sin_port);
    r.accept_thread = std::thread([this, &r] { AcceptLoop(r); });
  }

  void ResetOpen() {
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    ++epoch_;
  }

  void AcceptLoop(Route& r) {
    while (!stop_.load()) {
      int client = ::accept4(r.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      if (cut_.load()) {
        ::close(client);
        continue;
      }
      int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(r.target_port);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      r.accepted.fetch_add(1);
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(server);
      const uint64_t epoch = epoch_;
      pumps_.emplace_back([this, client, server, epoch] { Pump(client, server, epoch, /*answers=*/false); });
      pumps_.emplace_back([this, client, server, epoch] { Pump(server, client, epoch, /*answers=*/true); });
    }
  }
  bool Reset(uint64_t epoch) {
    std::lock_guard lock(mu_);
    return epoch != epoch_;
  }
  bool Frozen(bool answers) const { return frozen_.load() || (answers && answers_frozen_.load()); }
  // Copies from -> to until either end closes or the connection is reset; idles while frozen.
  // `answers`: this pump carries the target's bytes back to the client.
  void Pump(int from, int to, uint64_t epoch, bool answers) {
    char buf[64 * 1024];
    while (!stop_.load() && !Reset(epoch)) {
      if (Frozen(answers)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      pollfd p{from, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(from, buf, sizeof(buf), 0);
      if (n <= 0) break;
      // A freeze that began while this pump waited holds what it just read too.
      while (Frozen(answers) && !stop_.load() && !Reset(epoch)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (Reset(epoch)) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += w;
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  std::vector<std::unique_ptr<Route>> routes_;  // a Route never moves: its accept thread holds it
  std::atomic<bool> stop_{false}, cut_{false}, frozen_{false}, answers_frozen_{false};
  std::mutex mu_;
  uint64_t epoch_ = 0;  // bumped by every reset; a pump of an older epoch stops
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

}  // namespace ferry::e2e
