#pragma once
// Test-only fault seam: a MigrationChannel wrapper that leaves out one block of a storage
// migration's final round (the first DiskBlocks message sent while the guest is paused loses the
// last block of its first data run). The destination then holds an older copy of that block, and
// the guest's disk workload must report it (CORRUPTION block=...): the lost-block negative control
// of docs/storage_migration.md. Only the first migration through the agent loses a block. This
// seam sees disk blocks only on the gRPC transport; on the data connections
// disk_fault_sender.h drops one.

#include <atomic>

#include "engine/migration/migration_channel.h"

namespace ferry {

class DropDiskBlockChannel : public MigrationChannel {
 public:
  DropDiskBlockChannel(MigrationChannel& inner, std::atomic<bool>& used) : inner_(inner), used_(used) {}

  absl::Status Send(const v1::PeerMessage& msg) override;
  absl::Status Receive(v1::PeerReply& reply) override { return inner_.Receive(reply); }
  void CloseSend() override { inner_.CloseSend(); }
  void Abort() override { inner_.Abort(); }
  const char* name() const override { return inner_.name(); }
  bool encrypted() const override { return inner_.encrypted(); }

 private:
  MigrationChannel& inner_;
  std::atomic<bool>& used_;  // shared by every migration of the agent: drop once
};

}  // namespace ferry
