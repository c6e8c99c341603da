#include "engine/agent/unconfirmed_commits.h"

namespace ferry {

void UnconfirmedCommits::Add(const std::string& migration_id, UnconfirmedCommit c, bool awaited) {
  std::lock_guard lock(mu_);
  commits_[migration_id] = std::move(c);
  if (awaited) awaited_[migration_id] = true;
}

std::optional<UnconfirmedCommit> UnconfirmedCommits::Find(const std::string& migration_id) const {
  std::lock_guard lock(mu_);
  auto it = commits_.find(migration_id);
  if (it == commits_.end()) return std::nullopt;
  return it->second;
}

void UnconfirmedCommits::Settle(const std::string& migration_id, CommitSettlement how) {
  {
    std::lock_guard lock(mu_);
    commits_.erase(migration_id);
    if (awaited_.erase(migration_id) != 0) settled_[migration_id] = std::move(how);
  }
  cv_.notify_all();
}

std::optional<CommitSettlement> UnconfirmedCommits::AwaitSettled(const std::string& migration_id,
                                                                std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, wait, [&] { return stopping_ || settled_.count(migration_id) != 0; });
  auto it = settled_.find(migration_id);
  if (it == settled_.end()) return std::nullopt;
  CommitSettlement how = std::move(it->second);
  settled_.erase(it);
  return how;
}

void UnconfirmedCommits::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool UnconfirmedCommits::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

}  // namespace ferry
