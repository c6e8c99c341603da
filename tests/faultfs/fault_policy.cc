#include "tests/faultfs/fault_policy.h"

#include <cerrno>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ferry::faultfs {
namespace {

bool Modifies(FsOp op) {
  switch (op) {
    case FsOp::kOpenWrite:
    case FsOp::kWrite:
    case FsOp::kAllocate:
    case FsOp::kModify:
      return true;
    default:
      return false;
  }
}

constexpr int64_t kMaxSlowMs = 60'000;

}  // namespace

bool PathInScope(absl::string_view prefix, absl::string_view path) {
  while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
  if (prefix.empty()) return true;
  if (!absl::StartsWith(path, prefix)) return false;
  return path.size() == prefix.size() || path[prefix.size()] == '/';
}

FaultAction Decide(const FaultPolicy& policy, FsOp op, absl::string_view path) {
  if (policy.mode == FaultMode::kHealthy || !PathInScope(policy.path_prefix, path)) return {};
  switch (policy.mode) {
    case FaultMode::kHealthy:
      return {};
    case FaultMode::kApd:
      return {Verdict::kBlock, 0, 0};
    case FaultMode::kPdl:
      return {Verdict::kFail, kDeviceGoneErrno, 0};
    case FaultMode::kEnospc:
      if (op == FsOp::kAllocate) return {Verdict::kFail, ENOSPC, 0};
      return {};
    case FaultMode::kReadOnly:
      if (Modifies(op)) return {Verdict::kFail, EROFS, 0};
      return {};
    case FaultMode::kSlow:
      return {Verdict::kDelay, 0, policy.slow_ms};
  }
  return {};
}

absl::string_view ModeName(FaultMode mode) {
  switch (mode) {
    case FaultMode::kHealthy: return "healthy";
    case FaultMode::kApd: return "apd";
    case FaultMode::kPdl: return "pdl";
    case FaultMode::kEnospc: return "enospc";
    case FaultMode::kReadOnly: return "readonly";
    case FaultMode::kSlow: return "slow";
  }
  return "unknown";
}

absl::StatusOr<FaultPolicy> ParsePolicy(absl::string_view command) {
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::StripAsciiWhitespace(command), ' ', absl::SkipEmpty());
  if (words.empty()) {
    return absl::InvalidArgumentError("empty mode: expected healthy, apd, pdl, enospc, readonly or slow MS");
  }
  FaultPolicy policy;
  size_t next = 1;
  if (words[0] == "healthy") {
    policy.mode = FaultMode::kHealthy;
  } else if (words[0] == "apd") {
    policy.mode = FaultMode::kApd;
  } else if (words[0] == "pdl") {
    policy.mode = FaultMode::kPdl;
  } else if (words[0] == "enospc") {
    policy.mode = FaultMode::kEnospc;
  } else if (words[0] == "readonly") {
    policy.mode = FaultMode::kReadOnly;
  } else if (words[0] == "slow") {
    policy.mode = FaultMode::kSlow;
    if (words.size() < 2 || !absl::SimpleAtoi(words[1], &policy.slow_ms) || policy.slow_ms < 0 ||
        policy.slow_ms > kMaxSlowMs) {
      return absl::InvalidArgumentError(
          absl::StrCat("slow needs a delay in milliseconds between 0 and ", kMaxSlowMs, ", e.g. \"slow 20\""));
    }
    next = 2;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown mode \"", words[0].substr(0, 40),
                                                   "\": expected healthy, apd, pdl, enospc, readonly or slow MS"));
  }
  for (; next < words.size(); ++next) {
    absl::string_view word = words[next];
    if (!absl::ConsumePrefix(&word, "path=")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected \"", word.substr(0, 40), "\": only path=/PREFIX may follow the mode"));
    }
    if (word.empty() || word[0] != '/') {
      return absl::InvalidArgumentError("path= needs a prefix starting with '/' (relative to the mount)");
    }
    policy.path_prefix = std::string(word);
  }
  return policy;
}

std::string DescribePolicy(const FaultPolicy& policy) {
  std::string text(ModeName(policy.mode));
  if (policy.mode == FaultMode::kSlow) absl::StrAppend(&text, " ", policy.slow_ms);
  if (!policy.path_prefix.empty()) absl::StrAppend(&text, " path=", policy.path_prefix);
  return text;
}

}  // namespace ferry::faultfs
