#pragma once
// The lock is the owner: whoever runs a VM holds an open-file-description lock (fcntl
// F_OFD_SETLK, F_WRLCK, whole file) on the VM directory's vm.lock. After taking it the holder
// writes a record (agent, pid, boot id, since) into the file, so a refused start can say who runs
// the VM. Release = close (or the holder's process dying). A record in a file nobody holds locked
// is stale and names no one. NFS honours OFD locks, so this works across hosts sharing a datastore.
//
// Any process can use VmLock: the per-VM VMM process takes it itself (engine/vmm); ferry-agent
// takes it only for VMs it runs in its own process (--in-process-vms).

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/base/unique_fd.h"

namespace ferry {

inline constexpr char kVmLockFile[] = "vm.lock";

// Who holds a VM's lock, as written into vm.lock by the holder.
struct VmLockHolder {
  std::string agent;    // the agent (host) name running the VM
  int64_t pid = 0;
  std::string boot_id;  // the holder host's boot id
  int64_t since_unix_s = 0;
};

// "agent host-a (pid 1234, boot 5f1c...) since 2026-12-03 03:20:11 UTC"
std::string DescribeHolder(const VmLockHolder& h);
// The refusal of a start while `holder` holds `lock_path`: "vm web1 is locked by agent host-a
// (pid 1234, ...) since ...; it is running there (/ds/web1/vm.lock)".
absl::Status LockedBy(const std::string& vm_name, const VmLockHolder& holder, const std::string& lock_path);

class VmLock {
 public:
  // Takes the lock on `lock_path` without waiting and writes `me` into it. FailedPrecondition
  // naming the holder when someone holds it: "vm web1 is locked by agent host-a (pid 1234) since
  // ...; it is running there". Other errors name the file (missing directory, read-only datastore).
  static absl::StatusOr<VmLock> Acquire(const std::string& lock_path, const std::string& vm_name, VmLockHolder me);

  // A lock handed over by the process that holds it (its descriptor, passed over a unix socket in a
  // same-host VMM upgrade): the lock goes with the open file description, so it is never released
  // on the way: both processes hold the one lock, until the last descriptor of it closes. Refused unless
  // `fd` is `lock_path`'s file and its description holds the lock. The record names the previous
  // holder until Restamp.
  static absl::StatusOr<VmLock> AdoptHeld(const std::string& lock_path, const std::string& vm_name, UniqueFd fd);

  // The holder of `lock_path` when its lock is held now (by anyone, this process included); nullopt
  // when it is free (whatever record it holds) or the file does not exist.
  static absl::StatusOr<std::optional<VmLockHolder>> CurrentHolder(const std::string& lock_path);

  VmLock(VmLock&&) noexcept = default;
  VmLock& operator=(VmLock&&) noexcept = default;
  ~VmLock() = default;  // closing the description releases the lock

  const std::string& path() const { return path_; }
  const VmLockHolder& holder() const { return holder_; }
  // The description that holds the lock (what a same-host VMM upgrade hands over).
  int fd() const { return fd_.get(); }
  // Rewrites the holder record to name `me` (an adopted lock's new holder, or the old one taking its
  // record back), in one write over the old record: a reader finds one record or the other, never
  // an empty file. Nothing is written when the record names `me` already. Not synced: a VMM
  // upgrade renames the record inside the guest's pause and syncs it (SyncRecord) once the guest runs.
  absl::Status Restamp(VmLockHolder me);
  // fdatasync of the record, for readers on other hosts sharing the datastore.
  void SyncRecord() const;

 private:
  VmLock(std::string path, UniqueFd fd, VmLockHolder holder)
      : path_(std::move(path)), fd_(std::move(fd)), holder_(std::move(holder)) {}

  std::string path_;
  UniqueFd fd_;
  VmLockHolder holder_;
};

// This process as a holder: `agent` with getpid(), the host's boot id and the time now.
VmLockHolder ThisProcessAsHolder(const std::string& agent);

}  // namespace ferry
