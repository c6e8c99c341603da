#pragma once
// Test seam: a MigrationChannel that hands each message straight to an in-process
// MigrationReceiver, with faults injected per message (tests only; production code has none).
// A fault names what the link does with one message: deliver it, cut the link before it, deliver
// it and lose its answer (then cut), or freeze (Send blocks until Abort, as a stalled TCP link).

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "engine/migration/migration_channel.h"
#include "engine/migration/migration_receiver.h"

namespace ferry {

enum class LinkFault { kNone, kCutBefore, kLoseReplyThenCut, kFreeze };

class FaultChannel : public MigrationChannel {
 public:
  // Decides the fault for each message the source sends (called on the source's thread; it may
  // also act, e.g. cancel the source).
  using FaultFn = std::function<LinkFault(const v1::PeerMessage&)>;
  // Called with each reply before the source sees it (e.g. to cancel at "state loaded").
  using ReplyFn = std::function<void(const v1::PeerReply&)>;

  FaultChannel(MigrationReceiver& receiver, FaultFn fault, ReplyFn on_reply = nullptr);

  absl::Status Send(const v1::PeerMessage& msg) override;
  absl::Status Receive(v1::PeerReply& reply) override;
  void CloseSend() override {}
  void Abort() override;
  const char* name() const override { return "in-process"; }
  bool encrypted() const override { return false; }

  bool broken() const;
  int aborts() const;

 private:
  void BreakLocked();  // the destination sees the stream end, as peer_service does

  MigrationReceiver& receiver_;
  FaultFn fault_;
  ReplyFn on_reply_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::PeerReply> replies_;
  bool broken_ = false;
  int aborts_ = 0;
};

}  // namespace ferry
