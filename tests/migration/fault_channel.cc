#include "tests/migration/fault_channel.h"

namespace ferry {

FaultChannel::FaultChannel(MigrationReceiver& receiver, FaultFn fault, ReplyFn on_reply)
    : receiver_(receiver), fault_(std::move(fault)), on_reply_(std::move(on_reply)) {}

void FaultChannel::BreakLocked() {
  if (broken_) return;
  broken_ = true;
  receiver_.OnStreamEnd();
  cv_.notify_all();
}

absl::Status FaultChannel::Send(const v1::PeerMessage& msg) {
  LinkFault f = fault_ ? fault_(msg) : LinkFault::kNone;
  std::unique_lock lock(mu_);
  if (broken_) return absl::UnavailableError("in-process link is broken");
  switch (f) {
    case LinkFault::kCutBefore:
      BreakLocked();
      return absl::UnavailableError("in-process link cut");
    case LinkFault::kFreeze:
      cv_.wait(lock, [this] { return broken_; });
      return absl::UnavailableError("in-process link frozen, then aborted");
    case LinkFault::kNone:
    case LinkFault::kLoseReplyThenCut: break;
  }
  std::optional<v1::PeerReply> reply = receiver_.Handle(msg);
  if (f == LinkFault::kLoseReplyThenCut) {
    // The destination acted on the message; its answer never arrives. The stream stays silent
    // (a frozen link) until the source gives up on it.
    return absl::OkStatus();
  }
  if (reply) {
    replies_.push_back(*reply);
    if (reply->has_resumed()) replies_.emplace_back().mutable_announced();  // as peer_service does
    cv_.notify_all();
  }
  if (receiver_.state() == MigrationReceiver::State::kAborted) BreakLocked();
  return absl::OkStatus();
}

absl::Status FaultChannel::Receive(v1::PeerReply& reply) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !replies_.empty() || broken_; });
  if (replies_.empty()) return absl::UnavailableError("in-process link broken while waiting for a reply");
  reply = replies_.front();
  replies_.pop_front();
  lock.unlock();
  if (on_reply_) on_reply_(reply);
  return absl::OkStatus();
}

void FaultChannel::Abort() {
  std::lock_guard lock(mu_);
  ++aborts_;
  BreakLocked();
}

bool FaultChannel::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

int FaultChannel::aborts() const {
  std::lock_guard lock(mu_);
  return aborts_;
}

}  // namespace ferry
