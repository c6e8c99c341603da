#include "engine/precheck/finding_proto.h"

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"

namespace ferry {

v1::Finding FindingToProto(const Finding& f) {
  v1::Finding p;
  p.set_severity(f.severity == Severity::kError ? v1::FINDING_SEVERITY_ERROR : v1::FINDING_SEVERITY_WARNING);
  p.set_code(static_cast<v1::FindingCode>(static_cast<int>(f.code)));
  p.set_subject(f.subject);
  p.set_message(f.message);
  return p;
}

absl::StatusOr<Finding> FindingFromProto(const v1::Finding& p) {
  Finding f;
  switch (p.severity()) {
    case v1::FINDING_SEVERITY_ERROR: f.severity = Severity::kError; break;
    case v1::FINDING_SEVERITY_WARNING: f.severity = Severity::kWarning; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("finding has invalid severity ", p.severity()));
  }
  int code = p.code();
  if (code < static_cast<int>(FindingCode::kCpuFeatureMissing) ||
      code > static_cast<int>(FindingCode::kLastFindingCode)) {
    return absl::InvalidArgumentError(absl::StrCat("finding has invalid code ", code));
  }
  f.code = static_cast<FindingCode>(code);
  f.subject = p.subject();
  f.message = p.message();
  return f;
}

v1::PrecheckReport FindingsToProto(const std::vector<Finding>& findings) {
  v1::PrecheckReport r;
  for (const Finding& f : findings) *r.add_findings() = FindingToProto(f);
  return r;
}

absl::StatusOr<std::vector<Finding>> FindingsFromProto(const v1::PrecheckReport& report) {
  std::vector<Finding> out;
  for (const v1::Finding& p : report.findings()) {
    ASSIGN_OR_RETURN(Finding f, FindingFromProto(p));
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace ferry
