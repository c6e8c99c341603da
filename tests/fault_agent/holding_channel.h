#pragma once
// Test-only fault seam: a MigrationChannel wrapper that holds the source's migration at one phase
// of the handover while a test injects a fault (kills an agent, cuts or stalls the link, cancels),
// then lets it go on. Holding means: the wrapper announces the phase by creating `hold_file`, and
// returns from the Send/Receive that reached the phase only once the test removed the file (or
// after kMaxHold, so a broken test never hangs an agent).
//
//   state-loaded  the destination's state_loaded reply arrived (the guest is paused on the source,
//                 commit not decided yet): held before the source sees it
//   commit-sent   the commit went out (the source is committed): held before it waits for the answer
//   resumed       the destination's resumed reply arrived (the VM runs there): held before the
//                 source sees it
// Only the first migration through the agent is held.

#include <atomic>
#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "engine/migration/migration_channel.h"

namespace ferry {

enum class HoldPhase { kStateLoaded, kCommitSent, kResumed };
absl::StatusOr<HoldPhase> ParseHoldPhase(const std::string& name);

class HoldingChannel : public MigrationChannel {
 public:
  static constexpr std::chrono::seconds kMaxHold{15};

  HoldingChannel(MigrationChannel& inner, HoldPhase at, std::string hold_file, std::atomic<bool>& used)
      : inner_(inner), at_(at), hold_file_(std::move(hold_file)), used_(used) {}

  absl::Status Send(const v1::PeerMessage& msg) override;
  absl::Status Receive(v1::PeerReply& reply) override;
  void CloseSend() override { inner_.CloseSend(); }
  void Abort() override { inner_.Abort(); }
  const char* name() const override { return inner_.name(); }
  bool encrypted() const override { return inner_.encrypted(); }

 private:
  // Announces the phase and waits for the test to remove the hold file.
  void Hold(const char* phase);

  MigrationChannel& inner_;
  HoldPhase at_;
  std::string hold_file_;
  std::atomic<bool>& used_;  // shared by every migration of the agent: hold once
};

}  // namespace ferry
