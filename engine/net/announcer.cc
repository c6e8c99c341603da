#include "engine/net/announcer.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/base/status.h"

namespace ferry {
namespace {

// Opens a send-only packet socket and resolves `interface` in the calling thread's netns.
// Protocol 0: the socket receives nothing, so it costs no per-packet work on busy bridges.
absl::StatusOr<std::pair<UniqueFd, int>> OpenInterface(const std::string& interface) {
  if (interface.empty()) return absl::InvalidArgumentError("no interface name given");
  if (interface.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrCat("interface name \"", interface,
                                                   "\" is longer than ", IFNAMSIZ - 1,
                                                   " characters"));
  }
  // The interface first: a missing one is the more useful thing to tell an operator.
  const unsigned index = ::if_nametoindex(interface.c_str());
  if (index == 0) {
    const int err = errno;
    if (err == ENODEV || err == ENXIO) {
      return absl::NotFoundError(absl::StrCat("interface \"", interface,
                                              "\" does not exist in this network namespace"));
    }
    return ErrnoError(absl::StrCat("if_nametoindex(\"", interface, "\")"), err);
  }
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    const int err = errno;
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open an AF_PACKET socket (needs CAP_NET_RAW): ", strerror(err)));
    }
    return ErrnoError("socket(AF_PACKET)", err);
  }
  return std::make_pair(std::move(fd), static_cast<int>(index));
}

std::string Describe(const AnnounceTarget& t) {
  return absl::StrCat("announce ", t.mac.ToString(), " on ", t.interface);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Announcer>> Announcer::Start(std::vector<AnnounceTarget> targets,
                                                            const AnnounceSchedule& schedule,
                                                            EventCallback on_event) {
  RETURN_IF_ERROR(schedule.Validate());
  std::unique_ptr<Announcer> a(new Announcer(std::move(targets), schedule, std::move(on_event)));
  a->SetUp();
  a->thread_ = std::thread([p = a.get()] { p->Run(); });
  return a;
}

Announcer::Announcer(std::vector<AnnounceTarget> targets, const AnnounceSchedule& schedule,
                     EventCallback on_event)
    : targets_(std::move(targets)), offsets_(schedule.Offsets()), on_event_(std::move(on_event)) {
  result_.start_ns = MonotonicNanos();
}

Announcer::~Announcer() {
  Cancel();
  if (thread_.joinable()) thread_.join();
}

void Announcer::SetUp() {
  // Several NICs often share a bridge: one socket per interface, and one error per interface.
  std::map<std::string, absl::StatusOr<std::pair<int, int>>> by_interface;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const AnnounceTarget& t = targets_[i];
    absl::Status bad_mac;
    if (t.mac.IsZero() || t.mac.IsMulticast()) {
      bad_mac = absl::InvalidArgumentError(
          absl::StrCat("MAC ", t.mac.ToString(), " is not a unicast NIC address"));
    }
    auto it = by_interface.find(t.interface);
    if (it == by_interface.end() && bad_mac.ok()) {
      auto opened = OpenInterface(t.interface);
      absl::StatusOr<std::pair<int, int>> entry;
      if (opened.ok()) {
        entry = std::make_pair(opened->first.get(), opened->second);
        sockets_.push_back(std::move(opened->first));
      } else {
        entry = opened.status();
      }
      it = by_interface.emplace(t.interface, entry).first;
    }
    const absl::Status st = !bad_mac.ok() ? bad_mac : it->second.status();
    if (!st.ok()) {
      setup_failures_.push_back(AnnounceEvent{i, t.mac, t.interface, -1, MonotonicNanos(), false,
                                              absl::StrCat(Describe(t), ": ", st.message())});
      continue;
    }
    live_.push_back(Live{i, it->second->first, it->second->second, BuildRarpFrame(t.mac), {}});
  }
}

void Announcer::Record(AnnounceEvent event) {
  if (on_event_) on_event_(event);
  std::lock_guard<std::mutex> lock(mu_);
  if (event.sent) {
    ++result_.frames_sent;
  } else {
    // A setup failure costs the target every round of the schedule.
    result_.frames_failed += event.round < 0 ? offsets_.size() : 1;
  }
  result_.events.push_back(std::move(event));
}

void Announcer::Run() {
  for (AnnounceEvent& failure : setup_failures_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      result_.warnings.push_back(failure.warning);
    }
    Record(std::move(failure));
  }
  // steady_clock is CLOCK_MONOTONIC, the clock MonotonicNanos() reads.
  const auto start =
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(result_.start_ns));
  for (size_t round = 0; round < offsets_.size() && !live_.empty(); ++round) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_until(lock, start + offsets_[round], [&] { return cancel_requested_; })) {
        result_.cancelled = true;
        break;
      }
    }
    for (Live& l : live_) {
      const AnnounceTarget& t = targets_[l.target];
      sockaddr_ll to{};
      to.sll_family = AF_PACKET;
      to.sll_protocol = htons(kEthertypeRarp);
      to.sll_ifindex = l.ifindex;
      to.sll_halen = MacAddress::kSize;
      std::memset(to.sll_addr, 0xff, MacAddress::kSize);
      const ssize_t n = ::sendto(l.fd, l.frame.data(), l.frame.size(), 0,
                                 reinterpret_cast<const sockaddr*>(&to), sizeof(to));
      const int err = errno;
      AnnounceEvent e{l.target, t.mac, t.interface, static_cast<int>(round), MonotonicNanos(),
                      n == static_cast<ssize_t>(l.frame.size()), {}};
      if (!e.sent) {
        e.warning = n < 0 ? absl::StrCat(Describe(t), ": sendto: ", strerror(err))
                          : absl::StrCat(Describe(t), ": short send of ", n, " bytes");
        // The same error every round is one problem, not five.
        if (e.warning != l.last_warning) {
          l.last_warning = e.warning;
          std::lock_guard<std::mutex> lock(mu_);
          result_.warnings.push_back(e.warning);
        }
      }
      Record(std::move(e));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  result_.end_ns = MonotonicNanos();
  result_.done = true;
  cv_.notify_all();
}

AnnounceResult Announcer::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return result_.done; });
  return result_;
}

void Announcer::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_requested_ = true;
  cv_.notify_all();
}

AnnounceResult Announcer::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return result_;
}

}  // namespace ferry
