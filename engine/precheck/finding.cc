#include "engine/precheck/finding.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

struct CodeName {
  FindingCode code;
  const char* name;
};

constexpr CodeName kCodes[] = {
    {FindingCode::kCpuFeatureMissing, "CPU_FEATURE_MISSING"},
    {FindingCode::kCpuVendorMismatch, "CPU_VENDOR_MISMATCH"},
    {FindingCode::kDatastoreNotShared, "DATASTORE_NOT_SHARED"},
    {FindingCode::kDiskNotAccessible, "DISK_NOT_ACCESSIBLE"},
    {FindingCode::kPortGroupMissing, "PORTGROUP_MISSING"},
    {FindingCode::kPortGroupNoUplink, "PORTGROUP_NO_UPLINK"},
    {FindingCode::kRdmNotVisible, "RDM_NOT_VISIBLE"},
    {FindingCode::kRdmMappingNotShared, "RDM_MAPPING_NOT_SHARED"},
    {FindingCode::kMediaMounted, "MEDIA_MOUNTED"},
    {FindingCode::kMigrationInterfaceMissing, "MIGRATION_INTERFACE_MISSING"},
    {FindingCode::kMigrationLinkSlow, "MIGRATION_LINK_SLOW"},
    {FindingCode::kInsufficientMemory, "INSUFFICIENT_MEMORY"},
    {FindingCode::kKvmCapabilityMissing, "KVM_CAPABILITY_MISSING"},
    {FindingCode::kConvergenceForecast, "CONVERGENCE_FORECAST"},
    {FindingCode::kDatastoreUnidentified, "DATASTORE_UNIDENTIFIED"},
    {FindingCode::kDestinationDatastore, "DESTINATION_DATASTORE"},
};

}  // namespace

const char* FindingCodeName(FindingCode code) {
  for (const CodeName& c : kCodes) {
    if (c.code == code) return c.name;
  }
  return "UNKNOWN";
}

absl::StatusOr<FindingCode> FindingCodeFromName(absl::string_view name) {
  for (const CodeName& c : kCodes) {
    if (name == c.name) return c.code;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown finding code '", name, "'"));
}

const char* SeverityName(Severity severity) {
  return severity == Severity::kError ? "error" : "warning";
}

bool HasCode(const std::vector<Finding>& findings, FindingCode code) {
  return std::any_of(findings.begin(), findings.end(), [code](const Finding& f) { return f.code == code; });
}

bool HasErrors(const std::vector<Finding>& findings) {
  return std::any_of(findings.begin(), findings.end(),
                     [](const Finding& f) { return f.severity == Severity::kError; });
}

}  // namespace ferry
