#pragma once
// A MigrationChannel whose Send may be called from several threads (the pre-copy and a storage
// migration's disk mirror both send on the control stream; gRPC allows one writer at a time).
// Receive, CloseSend and Abort pass straight through: Abort must break a Send blocked under the lock.

#include <mutex>

#include "engine/migration/migration_channel.h"

namespace ferry {

class SerializedSendChannel : public MigrationChannel {
 public:
  explicit SerializedSendChannel(MigrationChannel& inner) : inner_(inner) {}
  absl::Status Send(const v1::PeerMessage& msg) override {
    std::lock_guard lock(send_mu_);
    return inner_.Send(msg);
  }
  absl::Status Receive(v1::PeerReply& reply) override { return inner_.Receive(reply); }
  void CloseSend() override {
    std::lock_guard lock(send_mu_);
    inner_.CloseSend();
  }
  void Abort() override { inner_.Abort(); }
  const char* name() const override { return inner_.name(); }
  bool encrypted() const override { return inner_.encrypted(); }

 private:
  MigrationChannel& inner_;
  std::mutex send_mu_;
};

}  // namespace ferry
