#pragma once
// Sends RARP announcements for a migrated VM's NICs on a background thread, so the resume is
// never delayed by the network. One thread serves all targets; one AF_PACKET socket is opened
// per distinct interface. Nothing here fails a migration: every problem (missing interface, no
// CAP_NET_RAW, a send error) becomes a warning in the result.
//
// Network namespaces: sockets are opened and interfaces resolved in Start(), on the calling
// thread, so the announcer works in the caller's network namespace even if the process has
// threads elsewhere.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"
#include "engine/net/announce_schedule.h"
#include "engine/net/mac_address.h"
#include "engine/net/rarp_frame.h"

namespace ferry {

struct AnnounceTarget {
  MacAddress mac;
  std::string interface;  // host interface in the caller's network namespace, e.g. "br0"
};

struct AnnounceEvent {
  size_t target = 0;     // index into the targets given to Start()
  MacAddress mac;
  std::string interface;
  int round = 0;         // 0-based frame number; -1: the target could not be set up at all
  int64_t monotonic_ns = 0;  // CLOCK_MONOTONIC when the frame was handed to the kernel
  bool sent = false;
  std::string warning;   // why not sent; empty when sent
};

struct AnnounceResult {
  uint64_t frames_sent = 0;
  // Frames that were due and not sent; a target that could not be set up counts all its rounds.
  uint64_t frames_failed = 0;
  std::vector<std::string> warnings;  // one per distinct problem per target
  std::vector<AnnounceEvent> events;  // in the order they happened
  int64_t start_ns = 0;               // CLOCK_MONOTONIC of Start()
  int64_t end_ns = 0;                 // CLOCK_MONOTONIC when the last round finished
  bool cancelled = false;
  bool done = false;
};

class Announcer {
 public:
  // Called on the announcer thread for every event, before it is added to the result.
  using EventCallback = std::function<void(const AnnounceEvent&)>;

  // Returns at once after opening sockets; frame 0 goes out on the background thread.
  // Only an invalid schedule is an error.
  static absl::StatusOr<std::unique_ptr<Announcer>> Start(std::vector<AnnounceTarget> targets,
                                                          const AnnounceSchedule& schedule,
                                                          EventCallback on_event = nullptr);
  // Cancels the rounds not yet due and joins; keep the announcer alive (or Wait()) to send
  // the whole schedule.
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  // Blocks until every round is sent (or cancelled) and returns the result.
  AnnounceResult Wait();
  // Stops before the next frame; frames not yet due are neither sent nor failed.
  void Cancel();
  // A copy of what has happened so far.
  AnnounceResult Snapshot() const;

 private:
  struct Live {
    size_t target;
    int fd;      // owned by sockets_
    int ifindex;
    RarpFrame frame;
    std::string last_warning;
  };

  Announcer(std::vector<AnnounceTarget> targets, const AnnounceSchedule& schedule,
            EventCallback on_event);
  void SetUp();
  void Run();
  void Record(AnnounceEvent event);

  const std::vector<AnnounceTarget> targets_;
  const std::vector<std::chrono::milliseconds> offsets_;
  const EventCallback on_event_;
  std::vector<UniqueFd> sockets_;
  std::vector<Live> live_;
  std::vector<AnnounceEvent> setup_failures_;  // reported by the thread, so callbacks run there

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool cancel_requested_ = false;  // guarded by mu_
  AnnounceResult result_;          // guarded by mu_
  std::thread thread_;
};

}  // namespace ferry
