#include "engine/migration/link_share.h"

#include <algorithm>
#include <chrono>

#include "engine/base/clock.h"

namespace ferry {

LinkShare::LinkShare() : LinkShare(Options{}) {}

LinkShare::LinkShare(Options options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = [] { return MonotonicNanos(); };
}

uint64_t LinkShare::Join(uint32_t weight, const std::string& tag) {
  std::lock_guard lock(mu_);
  const int64_t now = options_.clock();
  Member m;
  m.weight = std::max<uint32_t>(weight, 1);
  m.last_active_ns = now;
  m.tag = tag;
  // Start level with the others: a newcomer has no credit and owes nothing.
  double slowest = 0;
  if (SlowestBusy(0, now, &slowest)) m.virtual_bytes = slowest;
  uint64_t id = next_id_++;
  members_[id] = m;
  return id;
}

void LinkShare::Leave(uint64_t member) {
  {
    std::lock_guard lock(mu_);
    members_.erase(member);
  }
  cv_.notify_all();
}

bool LinkShare::SlowestBusy(uint64_t except, int64_t now, double* out) const {
  bool any = false;
  for (const auto& [id, m] : members_) {
    if (id == except || now - m.last_active_ns > options_.idle_ns) continue;
    *out = any ? std::min(*out, m.virtual_bytes) : m.virtual_bytes;
    any = true;
  }
  return any;
}

bool LinkShare::MaySendLocked(uint64_t member, int64_t now) const {
  auto it = members_.find(member);
  if (it == members_.end()) return true;
  double slowest = 0;
  if (!SlowestBusy(member, now, &slowest)) return true;
  return it->second.virtual_bytes - slowest < static_cast<double>(options_.window_bytes);
}

bool LinkShare::MaySend(uint64_t member) const {
  std::lock_guard lock(mu_);
  return MaySendLocked(member, options_.clock());
}

void LinkShare::Charge(uint64_t member, uint64_t bytes) {
  {
    std::lock_guard lock(mu_);
    auto it = members_.find(member);
    if (it == members_.end()) return;
    Member& m = it->second;
    const int64_t now = options_.clock();
    double slowest = 0;
    // Back from idleness: no credit for the time sat out.
    if (now - m.last_active_ns > options_.idle_ns && SlowestBusy(member, now, &slowest)) {
      m.virtual_bytes = std::max(m.virtual_bytes, slowest);
    }
    m.virtual_bytes += static_cast<double>(bytes) / m.weight;
    m.bytes += bytes;
    m.last_active_ns = now;
    if (!m.tag.empty()) bytes_by_tag_[m.tag] += bytes;
  }
  cv_.notify_all();
}

void LinkShare::Acquire(uint64_t member, uint64_t bytes) {
  {
    std::unique_lock lock(mu_);
    // Waiting marks a member busy: it wants the link, so it holds the faster ones back.
    if (auto it = members_.find(member); it != members_.end()) it->second.last_active_ns = options_.clock();
    // Idleness is a matter of time, so the wait re-checks at that granularity.
    const auto recheck = std::chrono::nanoseconds(std::max<int64_t>(options_.idle_ns / 4, 1'000'000));
    while (!MaySendLocked(member, options_.clock())) cv_.wait_for(lock, recheck);
  }
  Charge(member, bytes);
}

uint64_t LinkShare::BytesOf(const std::string& tag) const {
  std::lock_guard lock(mu_);
  auto it = bytes_by_tag_.find(tag);
  return it == bytes_by_tag_.end() ? 0 : it->second;
}

void LinkShare::Forget(const std::string& tag) {
  std::lock_guard lock(mu_);
  bytes_by_tag_.erase(tag);
}

std::vector<LinkShare::MemberStats> LinkShare::Members() const {
  std::lock_guard lock(mu_);
  std::vector<MemberStats> out;
  for (const auto& [id, m] : members_) out.push_back({id, m.weight, m.bytes});
  return out;
}

}  // namespace ferry
