#include "bench/e2e/tcp_baseline.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"
#include "engine/base/unique_fd.h"

namespace ferry::bench {
namespace {

constexpr size_t kWriteBytes = 1u << 20;

absl::StatusOr<UniqueFd> Listen(uint16_t& port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoError("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return ErrnoError("bind 127.0.0.1:0");
  if (listen(fd.get(), 64) != 0) return ErrnoError("listen");
  socklen_t len = sizeof a;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return ErrnoError("getsockname");
  port = ntohs(a.sin_port);
  return fd;
}

absl::StatusOr<UniqueFd> Connect(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoError("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return ErrnoError("connect loopback");
  return fd;
}

}  // namespace

absl::StatusOr<TcpBaseline> MeasureLoopbackTcp(int connections, std::chrono::milliseconds duration) {
  if (connections < 1 || connections > 64) {
    return absl::InvalidArgumentError(absl::StrCat("baseline connections ", connections, " must be 1..64"));
  }
  uint16_t port = 0;
  ASSIGN_OR_RETURN(UniqueFd listener, Listen(port));
  std::vector<UniqueFd> senders, receivers;
  for (int i = 0; i < connections; ++i) {
    ASSIGN_OR_RETURN(UniqueFd s, Connect(port));
    UniqueFd r(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (r.get() < 0) return ErrnoError("accept");
    senders.push_back(std::move(s));
    receivers.push_back(std::move(r));
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> received{0};
  std::vector<std::thread> threads;
  const int64_t start = MonotonicNanos();
  for (int i = 0; i < connections; ++i) {
    threads.emplace_back([&, fd = senders[i].get()] {
      std::vector<char> buf(kWriteBytes, 'x');
      while (!stop.load(std::memory_order_relaxed)) {
        if (write(fd, buf.data(), buf.size()) <= 0) break;
      }
      shutdown(fd, SHUT_WR);
    });
    threads.emplace_back([&, fd = receivers[i].get()] {
      std::vector<char> buf(kWriteBytes);
      uint64_t n = 0;
      while (true) {
        ssize_t r = read(fd, buf.data(), buf.size());
        if (r <= 0) break;
        n += static_cast<uint64_t>(r);
      }
      received.fetch_add(n);
    });
  }
  std::this_thread::sleep_for(duration);
  stop.store(true);
  const int64_t end = MonotonicNanos();
  for (auto& t : threads) t.join();
  TcpBaseline b;
  b.connections = connections;
  b.bytes = received.load();
  // Bytes still in flight when the clock stopped are counted; at most a socket buffer per
  // connection, small against seconds of traffic.
  b.seconds = static_cast<double>(end - start) / 1e9;
  b.mib_s = static_cast<double>(b.bytes) / b.seconds / 1048576.0;
  return b;
}

}  // namespace ferry::bench
