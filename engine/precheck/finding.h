#pragma once
// A precheck finding. Codes are part of the API (docs/prechecks.md); never renumber them.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ferry {

enum class Severity { kError = 1, kWarning = 2 };

// Values equal ferry.v1.FindingCode's.
enum class FindingCode {
  kCpuFeatureMissing = 1,
  kCpuVendorMismatch = 2,
  kDatastoreNotShared = 3,
  kDiskNotAccessible = 4,
  kPortGroupMissing = 5,
  kPortGroupNoUplink = 6,
  kRdmNotVisible = 7,
  kRdmMappingNotShared = 8,
  kMediaMounted = 9,
  kMigrationInterfaceMissing = 10,
  kMigrationLinkSlow = 11,
  kInsufficientMemory = 12,
  kKvmCapabilityMissing = 13,
  kConvergenceForecast = 14,
  kDatastoreUnidentified = 15,
  kDestinationDatastore = 16,
  kLastFindingCode = kDestinationDatastore,
};

struct Finding {
  Severity severity = Severity::kError;
  FindingCode code = FindingCode::kCpuFeatureMissing;
  std::string subject;  // the feature, disk, NIC, host ... it is about
  std::string message;  // what is wrong and how to fix it

  friend bool operator==(const Finding&, const Finding&) = default;
};

// "CPU_FEATURE_MISSING", ...
const char* FindingCodeName(FindingCode code);
absl::StatusOr<FindingCode> FindingCodeFromName(absl::string_view name);
// "error" / "warning"
const char* SeverityName(Severity severity);

bool HasErrors(const std::vector<Finding>& findings);
bool HasCode(const std::vector<Finding>& findings, FindingCode code);

}  // namespace ferry
