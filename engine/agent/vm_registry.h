#pragma once
// The VMs an agent runs, by name. Every change is one locked transition (reserve, adopt,
// begin/end migration out, begin/end stop, release); readers get consistent snapshots. A snapshot
// shares the VM object itself, so a migration or a stop can use the VM while the registry changes.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/vm.pb.h"

namespace ferry {

// One VM's bookkeeping as of one moment (a copy; changing it changes nothing in the registry).
struct VmEntry {
  std::shared_ptr<Vm> vm;  // null while a migration is still bringing it in
  std::string console_log_path;
  std::string arrived_by_migration;
  std::string outgoing_migration;  // set while migrating out (or held for a dirty-rate sample)
  bool stopping = false;
  uint64_t reserved_memory_bytes = 0;  // promised to this VM by an incoming migration
  std::string failure;  // a VM whose VMM process was found gone (vm is null): why (docs/vmm_process.md)
};

// What Adopt records beside the VM.
struct AdoptedVm {
  std::string console_log_path;
  std::string arrived_by_migration;  // "" for a VM created here
};

class VmRegistry {
 public:
  using Snapshot = std::shared_ptr<const VmEntry>;

  // Reserves `name` (AlreadyExists if taken) so two creators cannot race for it.
  absl::Status Reserve(const std::string& name);
  // Reserve that also promises `memory_bytes` of this host's memory to the VM: refused
  // (ResourceExhausted) unless they fit in `host_available_bytes` (MemAvailable) minus what other
  // VMs were promised and have not drawn yet. The promise ends with the entry (Release, a stop, or
  // the VM leaving by migration).
  absl::Status ReserveWithMemory(const std::string& name, uint64_t memory_bytes, uint64_t host_available_bytes);
  // Puts a VM into a reserved entry. FailedPrecondition if `name` is not reserved or holds a VM.
  absl::Status Adopt(const std::string& name, std::unique_ptr<Vm> vm, AdoptedVm info);
  void Release(const std::string& name);
  // Lists `name` as FAILED with `reason` (its VMM process is gone) until it is stopped.
  void RecordLost(const std::string& name, const std::string& reason);

  Snapshot Find(const std::string& name) const;  // null if absent
  std::vector<std::pair<std::string, Snapshot>> List() const;
  size_t size() const;
  // Memory promised to VMs and not yet drawn by them (their memfds' allocated bytes).
  uint64_t OutstandingMemoryBytes() const;

  // Marks the VM as migrating out; FailedPrecondition if it is not running here, already
  // migrating or stopping.
  absl::StatusOr<Snapshot> BeginMigrationOut(const std::string& name, const std::string& id);
  // The same mark for settling an unconfirmed commit (Agent.ResolveMigration): the VM was kept
  // paused here, so only a paused VM qualifies. Ended by EndMigrationOut.
  absl::StatusOr<Snapshot> BeginResolveOut(const std::string& name, const std::string& id);
  void EndMigrationOut(const std::string& name, bool vm_left);
  // Ends a hold taken with BeginMigrationOut(name, id) by putting `vm` in the entry in place of the
  // old object (a VMM upgrade: the same VM, now served by another process). FailedPrecondition if
  // the entry is gone or held by something else.
  absl::Status ReplaceVm(const std::string& name, const std::string& id, std::unique_ptr<Vm> vm);

  // Marks the VM as stopping so no migration starts meanwhile; FailedPrecondition while it
  // migrates or arrives. EndStop removes the entry when `stopped`, else clears the mark.
  absl::StatusOr<Snapshot> BeginStop(const std::string& name);
  void EndStop(const std::string& name, bool stopped);

 private:
  // The two begin-out transitions: the VM exists, is not migrating nor stopping, and is in
  // `required` (else the error says it is in its state followed by `otherwise`).
  absl::StatusOr<Snapshot> BeginOut(const std::string& name, const std::string& id, VmRunState required,
                                    const char* otherwise);
  uint64_t OutstandingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  std::map<std::string, VmEntry> vms_ ABSL_GUARDED_BY(mu_);
};

v1::VmInfo DescribeVm(const std::string& name, const VmEntry& e);

}  // namespace ferry
