#pragma once
// The VMs an agent runs, by name. Entries are shared so a migration can hold one while the
// registry changes.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/vm.pb.h"

namespace ferry {

struct VmEntry {
  std::unique_ptr<Vm> vm;  // null while a migration is still bringing it in
  std::string console_log_path;
  std::string arrived_by_migration;
  std::string outgoing_migration;  // set while migrating out
};

class VmRegistry {
 public:
  // Reserves `name` (AlreadyExists if taken) so two creators cannot race for it.
  absl::StatusOr<std::shared_ptr<VmEntry>> Reserve(const std::string& name);
  void Release(const std::string& name);
  std::shared_ptr<VmEntry> Find(const std::string& name) const;
  std::vector<std::pair<std::string, std::shared_ptr<VmEntry>>> List() const;
  size_t size() const;

  // Marks the VM as migrating out; FailedPrecondition if it is not running here or already
  // migrating.
  absl::StatusOr<std::shared_ptr<VmEntry>> BeginMigrationOut(const std::string& name, const std::string& id);
  void EndMigrationOut(const std::string& name, bool vm_left);

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<VmEntry>> vms_ ABSL_GUARDED_BY(mu_);
};

v1::VmInfo DescribeVm(const std::string& name, const VmEntry& e);

}  // namespace ferry
