#pragma once
// Test seam for link faults: a TCP proxy between two agents (127.0.0.1:port() -> target) that can
// cut every connection (both ends see a reset) or freeze them (no byte passes either way, as a
// stalled link; connections stay open). Used by the FaultMatrix suite.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::e2e {

class TcpProxy {
 public:
  explicit TcpProxy(uint16_t target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TcpProxy() {
    stop_.store(true);
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    Cut();
    std::lock_guard lock(mu_);
    for (std::thread& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }

  // Every connection is reset; new ones are refused from now on.
  void Cut() {
    cut_.store(true);
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  // No byte passes any more (connections stay open, new ones hang too).
  void Freeze() { frozen_.store(true); }
  // Bytes pass again (what was held is delivered).
  void Thaw() { frozen_.store(false); }

 private:
  void AcceptLoop() {
    while (!stop_.load()) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      if (cut_.load()) {
        ::close(client);
        continue;
      }
      int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_port_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
      pumps_.emplace_back([this, client, server] { Pump(server, client); });
    }
  }
  // Copies from -> to until either end closes or the proxy is cut; idles while frozen.
  void Pump(int from, int to) {
    char buf[64 * 1024];
    while (!cut_.load() && !stop_.load()) {
      if (frozen_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      pollfd p{from, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(from, buf, sizeof(buf), 0);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) return;
        off += w;
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  uint16_t target_port_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false}, cut_{false}, frozen_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

}  // namespace ferry::e2e
