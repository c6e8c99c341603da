#pragma once
// The destination side as an explicit state machine (Cloud Hypervisor's habit):
//   kEstablished -Start-> kStarted -MemoryBatch*-> kReceiving -DeviceState-> kStateLoaded
//   -Commit-> kResumed
// Abort (or the stream ending) before kResumed discards the VM; a message in the wrong state is
// an error and also discards it. See docs/wire_protocol.md.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "engine/migration/disk_copy.h"
#include "engine/migration/page_batches.h"
#include "engine/migration/page_sender.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/peer.pb.h"

namespace ferry {

struct ReceiverHooks {
  // Creates an empty VM to receive into (CreateVmForRestore in production). Refuses, e.g., a
  // name already running here.
  std::function<absl::StatusOr<std::unique_ptr<Vm>>(const VmSpec&)> create_vm;
  // A VM on a shared datastore (start.home set): takes its lock just before it resumes here; an
  // error refuses the commit (the source resumes it instead). Unset: nothing to take.
  std::function<absl::Status(const v1::StartMigration&)> take_ownership;
  // Called once the VM runs here; takes ownership.
  std::function<void(std::unique_ptr<Vm>, const v1::StartMigration&)> adopt_vm;
  // Protocol 2: registers the offered data connections with this host's data port, receiving
  // into `mem`; returns the port they must dial. Unset: data connections are refused.
  struct DataPath {
    std::unique_ptr<IncomingPages> pages;
    uint32_t port = 0;
  };
  std::function<absl::StatusOr<DataPath>(const v1::StartMigration&, GuestMemory& mem)> open_data_path;
  // True when this agent requires encrypted data connections (it runs with TLS).
  bool require_encrypted_data = false;
  std::string agent_name;
  std::string boot_id;
};

class MigrationReceiver {
 public:
  enum class State { kEstablished, kStarted, kReceiving, kStateLoaded, kResumed, kAborted };

  explicit MigrationReceiver(ReceiverHooks hooks);
  ~MigrationReceiver();

  // Handles one message; returns the reply to send, if any. After an error reply the receiver is
  // kAborted and its VM discarded.
  std::optional<v1::PeerReply> Handle(const v1::PeerMessage& msg);
  // The stream ended or broke: discards the VM unless it was already resumed.
  void OnStreamEnd();

  State state() const { return state_; }
  const std::string& migration_id() const { return start_.migration_id(); }
  const BatchCounters& counters() const { return counters_; }

 private:
  v1::PeerReply Fail(v1::PeerErrorCode code, const std::string& message);
  std::optional<v1::PeerReply> OnStart(const v1::StartMigration& s);
  std::optional<v1::PeerReply> OnMemory(const v1::MemoryBatch& b);
  std::optional<v1::PeerReply> OnDiskBlocks(const v1::DiskBlocks& b);
  std::optional<v1::PeerReply> OnDeviceState(const v1::DeviceStateMessage& d);
  std::optional<v1::PeerReply> OnCommit();
  void Discard();

  ReceiverHooks hooks_;
  State state_ = State::kEstablished;
  v1::StartMigration start_;
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<IncomingPages> data_path_;
  std::unique_ptr<DiskCopyReceiver> disks_;  // a storage migration: the VM's new disk files
  BatchCounters counters_;
  // Pre-faults the new VM's memory while the first rounds arrive (writes race benignly with
  // it: populating a page does not change its content).
  std::thread prefault_;
  std::atomic<bool> stop_prefault_{false};
  void StopPrefault();
};

const char* ReceiverStateName(MigrationReceiver::State s);

}  // namespace ferry
