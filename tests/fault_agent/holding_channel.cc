#include "tests/fault_agent/holding_channel.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace ferry {

absl::StatusOr<HoldPhase> ParseHoldPhase(const std::string& name) {
  if (name == "state-loaded") return HoldPhase::kStateLoaded;
  if (name == "commit-sent") return HoldPhase::kCommitSent;
  if (name == "resumed") return HoldPhase::kResumed;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown hold phase '", name, "' (expected state-loaded, commit-sent or resumed)"));
}

void HoldingChannel::Hold(const char* phase) {
  if (used_.exchange(true)) return;
  const std::string tmp = hold_file_ + ".tmp";
  {
    std::ofstream out(tmp);
    out << phase << "\n";
  }
  std::filesystem::rename(tmp, hold_file_);  // the test sees the whole file or none
  spdlog::warn("event=test_fault_hold phase={} file={}", phase, hold_file_);
  const auto deadline = std::chrono::steady_clock::now() + kMaxHold;
  while (std::filesystem::exists(hold_file_) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  spdlog::warn("event=test_fault_release phase={}", phase);
}

absl::Status HoldingChannel::Send(const v1::PeerMessage& msg) {
  absl::Status st = inner_.Send(msg);
  if (st.ok() && msg.has_commit() && at_ == HoldPhase::kCommitSent) Hold("commit-sent");
  return st;
}

absl::Status HoldingChannel::Receive(v1::PeerReply& reply) {
  absl::Status st = inner_.Receive(reply);
  if (!st.ok()) return st;
  if (reply.has_state_loaded() && at_ == HoldPhase::kStateLoaded) Hold("state-loaded");
  if (reply.has_resumed() && at_ == HoldPhase::kResumed) Hold("resumed");
  return st;
}

}  // namespace ferry
