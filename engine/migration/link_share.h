#pragma once
// The host-wide share of the migration link and of the senders' CPU among concurrent outgoing
// migrations (docs/jobs.md "Sharing the link"). Every sender thread asks Acquire(member, bytes)
// before it puts a frame on the wire; members are charged bytes / weight of "virtual" bytes, and
// a member may run ahead of the busiest-behind member by at most `window_bytes` virtual bytes.
// So while several migrations are busy they move bytes in the ratio of their weights (High 3,
// Standard 1), whatever the link's speed; a lone migration is never slowed; a member that has not
// sent for `idle_ns` (between rounds, waiting on the network) holds nobody back, and a member
// coming back from idleness gets no credit for the time it sat out.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace ferry {

class LinkShare {
 public:
  struct Options {
    uint64_t window_bytes = 4u << 20;  // how far a member may run ahead (in weight-1 bytes)
    int64_t idle_ns = 50'000'000;      // a member silent this long no longer holds others back
    std::function<int64_t()> clock;    // test seam; default MonotonicNanos
  };
  struct MemberStats {
    uint64_t id = 0;
    uint32_t weight = 0;
    uint64_t bytes = 0;  // charged since it joined
  };

  LinkShare();
  explicit LinkShare(Options options);

  // A sender joins for the time it sends (a round); weight >= 1. Bytes charged to members with a
  // tag (a migration id) add up across rounds: BytesOf(tag), until Forget(tag).
  uint64_t Join(uint32_t weight, const std::string& tag = "");
  void Leave(uint64_t member);
  // Blocks until `member` may send, then charges it `bytes`. Never blocks a lone member.
  void Acquire(uint64_t member, uint64_t bytes);
  // The decision Acquire waits for (tests drive it without threads).
  bool MaySend(uint64_t member) const;
  void Charge(uint64_t member, uint64_t bytes);
  std::vector<MemberStats> Members() const;
  uint64_t BytesOf(const std::string& tag) const;
  void Forget(const std::string& tag);

 private:
  struct Member {
    uint32_t weight = 1;
    double virtual_bytes = 0;
    uint64_t bytes = 0;
    int64_t last_active_ns = 0;
    std::string tag;
  };
  bool MaySendLocked(uint64_t member, int64_t now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The smallest virtual position among busy members other than `except` (none: false).
  bool SlowestBusy(uint64_t except, int64_t now, double* out) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Member> members_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> bytes_by_tag_ ABSL_GUARDED_BY(mu_);
};

// Joins on construction, leaves on destruction (a sender's round); inert without a share.
class LinkShareMembership {
 public:
  LinkShareMembership(LinkShare* share, uint32_t weight, const std::string& tag = "")
      : share_(share), id_(share ? share->Join(weight, tag) : 0) {}
  ~LinkShareMembership() {
    if (share_) share_->Leave(id_);
  }
  LinkShareMembership(const LinkShareMembership&) = delete;
  LinkShareMembership& operator=(const LinkShareMembership&) = delete;
  void Acquire(uint64_t bytes) {
    if (share_) share_->Acquire(id_, bytes);
  }

 private:
  LinkShare* share_;
  uint64_t id_;
};

}  // namespace ferry
