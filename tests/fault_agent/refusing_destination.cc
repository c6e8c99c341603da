#include "tests/fault_agent/refusing_destination.h"

#include <atomic>
#include <memory>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

bool IsStep(RefuseStep step, const v1::PeerMessage& msg) {
  switch (step) {
    case RefuseStep::kStart: return msg.has_start();
    case RefuseStep::kState: return msg.has_device_state();
    case RefuseStep::kCommit: return msg.has_commit();
    case RefuseStep::kAfterResume: return msg.body_case() == v1::PeerMessage::BODY_NOT_SET;
    case RefuseStep::kRoundOne:
    case RefuseStep::kRoundTwo: return false;  // refused on the data path
  }
  return false;
}

}  // namespace

absl::StatusOr<RefuseStep> ParseRefuseStep(const std::string& name) {
  if (name == "start") return RefuseStep::kStart;
  if (name == "round-1") return RefuseStep::kRoundOne;
  if (name == "round-2") return RefuseStep::kRoundTwo;
  if (name == "state") return RefuseStep::kState;
  if (name == "commit") return RefuseStep::kCommit;
  if (name == "after-resume") return RefuseStep::kAfterResume;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown refusal step '", name, "' (expected start, round-1, round-2, state, commit or after-resume)"));
}

void InstallRefusingDestination(AgentContext& ctx, RefuseStep step) {
  auto used = std::make_shared<std::atomic<bool>>(false);  // only the first migration is refused
  if (step == RefuseStep::kRoundOne || step == RefuseStep::kRoundTwo) {
    const uint32_t round = step == RefuseStep::kRoundOne ? 1 : 2;
    ctx.adjust_incoming_data_path = [used, round](IncomingOptions& o) {
      o.refuse_batch = [used, round](uint32_t connection, uint32_t r) -> absl::Status {
        if (r != round || used->exchange(true)) return absl::OkStatus();
        spdlog::warn("event=test_fault_refuse step=round-{} connection={}", round, connection);
        return absl::ResourceExhaustedError(absl::StrCat("test fault: this destination refuses round ", round));
      };
    };
    return;
  }
  ctx.refuse_incoming = [used, step](const v1::PeerMessage& msg) -> std::optional<v1::PeerReply> {
    if (!IsStep(step, msg) || used->exchange(true)) return std::nullopt;
    v1::PeerReply reply;
    const char* what = msg.has_start()          ? "start"
                       : msg.has_device_state() ? "device state"
                       : msg.has_commit()       ? "commit"
                                                : "announcement after the resume";
    reply.mutable_error()->set_code(step == RefuseStep::kStart ? v1::PEER_ERROR_CODE_RESOURCE
                                                               : v1::PEER_ERROR_CODE_STATE);
    reply.mutable_error()->set_message(absl::StrCat("test fault: this destination refuses the ", what));
    spdlog::warn("event=test_fault_refuse step=\"{}\"", what);
    return reply;
  };
}

}  // namespace ferry
