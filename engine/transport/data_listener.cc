#include "engine/transport/data_listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

constexpr int kMaxHandshakes = 64;
constexpr int kHandshakeTimeoutMs = 5000;

}  // namespace

absl::StatusOr<std::unique_ptr<DataListener>> DataListener::Start(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int rc = getaddrinfo(h.empty() ? nullptr : h.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat("data port address '", host, "': ", gai_strerror(rc)));
  std::unique_ptr<DataListener> l(new DataListener());
  absl::Status last = absl::UnavailableError("no address to listen on");
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) continue;
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      last = ErrnoError(absl::StrCat("listening on the data port ", host, ":", port));
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    l->port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    l->listen_fd_ = std::move(fd);
    break;
  }
  freeaddrinfo(res);
  if (!l->listen_fd_.valid()) return last;
  l->wake_fd_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!l->wake_fd_.valid()) return ErrnoError("eventfd");
  DataListener* self = l.get();
  l->accept_thread_ = std::thread([self] { self->AcceptLoop(); });
  return l;
}

DataListener::~DataListener() {
  stop_.store(true);
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> hs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hs.swap(handshakes_);
  }
  for (auto& t : hs) t.join();
}

namespace {

class ExpectedSession : public IncomingPages {
 public:
  ExpectedSession(DataListener& listener, std::shared_ptr<IncomingSession> s)
      : listener_(listener), session_(std::move(s)) {}
  ~ExpectedSession() override { Close(); }
  absl::Status WaitRoundComplete(uint32_t round, int64_t timeout_ms) override {
    return session_->WaitRoundComplete(round, timeout_ms);
  }
  void Close() override {
    if (closed_) return;
    closed_ = true;
    listener_.Unregister(session_->migration_id());
    session_->Close();
  }
  uint64_t pages_received() const override { return session_->pages_received(); }
  void ReceiveDisksInto(IncomingDisks* disks) override { session_->ReceiveDisksInto(disks); }

 private:
  DataListener& listener_;
  std::shared_ptr<IncomingSession> session_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<IncomingPages> DataListener::Expect(IncomingOptions options, GuestMemory& mem) {
  auto session = std::make_shared<IncomingSession>(std::move(options), mem);
  Register(session);
  return std::make_unique<ExpectedSession>(*this, std::move(session));
}

void DataListener::Register(std::shared_ptr<IncomingSession> session) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[session->migration_id()] = session;
}

void DataListener::Unregister(const std::string& migration_id) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(migration_id);
}

void DataListener::AcceptLoop() {
  while (!stop_.load()) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, 1000) < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) continue;
    if (handshakes_running_.load() >= kMaxHandshakes) {
      uint8_t busy = static_cast<uint8_t>(DataVerdict::kBusy);
      (void)WriteExactly(fd.get(), &busy, 1, "refusing a data connection");
      refused_.fetch_add(1);
      continue;
    }
    handshakes_running_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    handshakes_.emplace_back([this, f = fd.Release()]() mutable {
      Handshake(UniqueFd(f));
      handshakes_running_.fetch_sub(1);
    });
    // Reap finished handshake threads now and then (they are short).
    if (handshakes_.size() > 2 * kMaxHandshakes) {
      for (auto& t : handshakes_) t.join();
      handshakes_.clear();
    }
  }
}

void DataListener::Handshake(UniqueFd fd) {
  timeval tv{kHandshakeTimeoutMs / 1000, (kHandshakeTimeoutMs % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  auto refuse = [&](DataVerdict v, const std::string& detail) {
    uint8_t b = static_cast<uint8_t>(v);
    (void)WriteExactly(fd.get(), &b, 1, "refusing a data connection");
    refused_.fetch_add(1);
    spdlog::warn("event=data_connection_refused reason=\"{}\" detail=\"{}\"", DataVerdictText(v), detail);
  };
  auto challenge = NewChallenge();
  if (!challenge.ok()) return;
  uint8_t hello[kServerHelloBytes];
  EncodeServerHello(*challenge, hello);
  if (!WriteExactly(fd.get(), hello, sizeof(hello), "sending the data port's hello").ok()) return;
  uint8_t in[kClientHelloBytes];
  if (!ReadExactly(fd.get(), in, sizeof(in), "reading a data-connection hello").ok()) return;  // silent or too slow: dropped
  auto client = DecodeClientHello(in);
  if (!client.ok()) return refuse(DataVerdict::kMalformed, std::string(client.status().message()));
  std::shared_ptr<IncomingSession> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(client->migration_id);
    if (it != sessions_.end()) session = it->second.lock();
  }
  if (!session) return refuse(DataVerdict::kUnknownMigration, client->migration_id);
  auto expected = ComputeProof(session->secret(), *challenge, client->connection, client->migration_id);
  if (!expected.ok() || !ProofsEqual(*expected, client->proof)) {
    return refuse(DataVerdict::kBadProof, client->migration_id);
  }
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  timeval zero{0, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof(zero));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero));
  DataVerdict v = session->Attach(client->connection, fd);  // answers kAccepted itself
  if (v != DataVerdict::kAccepted) {
    refuse(v, absl::StrCat(client->migration_id, " connection ", client->connection));
  }
}

}  // namespace ferry
