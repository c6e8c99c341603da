#include "engine/agent/unconfirmed_commits.h"

namespace ferry {

void UnconfirmedCommits::Add(const std::string& migration_id, UnconfirmedCommit c) {
  std::lock_guard lock(mu_);
  commits_[migration_id] = std::move(c);
}

std::optional<UnconfirmedCommit> UnconfirmedCommits::Find(const std::string& migration_id) const {
  std::lock_guard lock(mu_);
  auto it = commits_.find(migration_id);
  if (it == commits_.end()) return std::nullopt;
  return it->second;
}

void UnconfirmedCommits::Remove(const std::string& migration_id) {
  std::lock_guard lock(mu_);
  commits_.erase(migration_id);
}

}  // namespace ferry
