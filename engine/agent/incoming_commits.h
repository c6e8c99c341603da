#pragma once
// The destination's record of where each incoming migration's commit stands, so a source whose
// commit answer was lost can ask (Peer.QueryMigration) and get a final answer: RUNS_HERE once the
// commit took effect; NOT_HERE otherwise — and then the migration is fenced: its stream is broken
// and a commit of it arriving later is refused, so the source may safely resume its copy. An
// agent that restarted knows no migration and answers NOT_HERE, unless a VM that arrived by it
// still runs here in its VMM (PeerService::QueryMigration asks the registry first: the VMM
// reports the migration it arrived by, VmmReply.arrived_by_migration).

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

class IncomingCommits {
 public:
  // A stream starts migration `id`; `break_stream` ends that stream (from another thread). False
  // when `id` was fenced already (refuse the start).
  bool Begin(const std::string& id, std::function<void()> break_stream);
  // Before the commit is applied: false when the migration was fenced (refuse the commit). A
  // query waits until EndCommit.
  bool BeginCommit(const std::string& id);
  void EndCommit(const std::string& id, bool resumed);
  // The stream ended (resumed or not).
  void End(const std::string& id, bool resumed);
  // The final answer for `id`; waits at most `wait` for a commit being applied right now.
  v1::CommitOutcome Query(const std::string& id, std::chrono::milliseconds wait, std::string* detail);

 private:
  enum class Stage { kReceiving, kCommitting, kResumed, kFenced, kDiscarded };
  struct Entry {
    Stage stage = Stage::kReceiving;
    std::function<void()> break_stream;
  };
  void ForgetOldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> ended_ ABSL_GUARDED_BY(mu_);  // oldest first; bounded history
};

}  // namespace ferry
