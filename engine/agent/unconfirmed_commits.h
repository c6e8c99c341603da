#pragma once
// Outgoing migrations whose commit nobody could confirm: the VM is kept paused on this host
// (never run twice) until someone asks the destination where it runs and settles it: the
// operator (`migrate migration resolve ID`), or the background job an agent starts for a guest it
// found paused after a commit when it started (commit_resolver.h).

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"

namespace ferry {

// Migrations whose commit nobody could confirm: the VM is kept paused here until resolved.
struct UnconfirmedCommit {
  std::string vm_name;
  std::string destination;       // address
  std::string destination_name;  // its certificate name
};

// How one was settled.
struct CommitSettlement {
  std::string vm_name;
  bool runs_on_destination = false;  // else it resumed here
  std::string message;
};

class UnconfirmedCommits {
 public:
  // `awaited`: a background job settles it and waits for it (AwaitSettled), also when someone
  // else settles it first.
  void Add(const std::string& migration_id, UnconfirmedCommit c, bool awaited = false);
  std::optional<UnconfirmedCommit> Find(const std::string& migration_id) const;
  // Settled by whoever got the destination's answer: no longer unconfirmed.
  void Settle(const std::string& migration_id, CommitSettlement how);
  // Waits at most `wait` for an awaited `migration_id` to be settled and takes its settlement;
  // nullopt when it is not settled by then or the agent is stopping.
  std::optional<CommitSettlement> AwaitSettled(const std::string& migration_id, std::chrono::milliseconds wait);
  // The agent is stopping: every AwaitSettled returns at once (the VMs stay paused).
  void Stop();
  bool stopping() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, UnconfirmedCommit> commits_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> awaited_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CommitSettlement> settled_ ABSL_GUARDED_BY(mu_);  // awaited ones, until taken
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ferry
