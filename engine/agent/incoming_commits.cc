#include "engine/agent/incoming_commits.h"

namespace ferry {
namespace {
// Finished migrations remembered for late questions (a source asks within seconds).
constexpr size_t kRememberedEnded = 1024;
}  // namespace

bool IncomingCommits::Begin(const std::string& id, std::function<void()> break_stream) {
  std::lock_guard lock(mu_);
  Entry& e = entries_[id];
  if (e.stage == Stage::kFenced) return false;
  e.stage = Stage::kReceiving;
  e.break_stream = std::move(break_stream);
  return true;
}

bool IncomingCommits::BeginCommit(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.stage != Stage::kReceiving) return false;
  it->second.stage = Stage::kCommitting;
  return true;
}

void IncomingCommits::EndCommit(const std::string& id, bool resumed) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second.stage == Stage::kCommitting) {
      it->second.stage = resumed ? Stage::kResumed : Stage::kDiscarded;
    }
  }
  cv_.notify_all();
}

void IncomingCommits::End(const std::string& id, bool resumed) {
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    if (it->second.stage != Stage::kResumed && it->second.stage != Stage::kFenced) {
      it->second.stage = resumed ? Stage::kResumed : Stage::kDiscarded;
    }
    it->second.break_stream = nullptr;
    ended_.push_back(id);
    ForgetOldLocked();
  }
  cv_.notify_all();
}

void IncomingCommits::ForgetOldLocked() {
  while (ended_.size() > kRememberedEnded) {
    auto it = entries_.find(ended_.front());
    if (it != entries_.end() && it->second.break_stream == nullptr) entries_.erase(it);
    ended_.pop_front();
  }
}

v1::CommitOutcome IncomingCommits::Query(const std::string& id, std::chrono::milliseconds wait,
                                         std::string* detail) {
  std::function<void()> break_stream;
  v1::CommitOutcome outcome = v1::COMMIT_OUTCOME_NOT_HERE;
  {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, wait, [&] {
      auto it = entries_.find(id);
      return it == entries_.end() || it->second.stage != Stage::kCommitting;
    });
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      *detail = "this agent knows no such migration (never started here, or the agent restarted: its VMs ended with it)";
      // Fence it anyway: a start or commit of this id arriving late is refused.
      entries_[id].stage = Stage::kFenced;
      ended_.push_back(id);
      ForgetOldLocked();
      return outcome;
    }
    switch (it->second.stage) {
      case Stage::kResumed:
        *detail = "the commit took effect: the VM runs here";
        return v1::COMMIT_OUTCOME_RUNS_HERE;
      case Stage::kCommitting:
        // Still applying after `wait`: the VM may be starting. Not final; the caller asks again.
        *detail = "the commit is still being applied";
        return v1::COMMIT_OUTCOME_UNSPECIFIED;
      case Stage::kReceiving:
        it->second.stage = Stage::kFenced;
        break_stream = std::move(it->second.break_stream);
        *detail = "the commit never arrived; the migration is fenced and its copy discarded";
        break;
      case Stage::kFenced:
      case Stage::kDiscarded:
        *detail = "the VM does not run here (its copy was discarded)";
        break;
    }
  }
  if (break_stream) break_stream();
  return outcome;
}

}  // namespace ferry
