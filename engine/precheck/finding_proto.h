#pragma once
// Finding <-> ferry.v1.Finding (proto/ferry/v1/host.proto). Lives here, not in engine/host,
// because findings belong to the precheck layer (DESIGN.md dependency direction).

#include <vector>

#include "absl/status/statusor.h"
#include "engine/precheck/finding.h"
#include "proto/ferry/v1/host.pb.h"

namespace ferry {

v1::Finding FindingToProto(const Finding& f);
// Error for UNSPECIFIED or unknown severity/code (zero is never valid on the wire).
absl::StatusOr<Finding> FindingFromProto(const v1::Finding& p);

v1::PrecheckReport FindingsToProto(const std::vector<Finding>& findings);
absl::StatusOr<std::vector<Finding>> FindingsFromProto(const v1::PrecheckReport& report);

}  // namespace ferry
