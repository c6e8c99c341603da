#pragma once
// Outgoing migrations whose commit nobody could confirm: the VM is kept paused on this host
// (never run twice) until `migrate migration resolve ID` finds out where it runs.

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

class UnconfirmedCommits {
 public:
  void Add(const std::string& migration_id, UnconfirmedCommit c);
  std::optional<UnconfirmedCommit> Find(const std::string& migration_id) const;
  void Remove(const std::string& migration_id);

 private:
  mutable std::mutex mu_;
  std::map<std::string, UnconfirmedCommit> commits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
