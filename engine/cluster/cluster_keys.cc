#include "engine/cluster/cluster_keys.h"

#include "absl/strings/str_cat.h"

namespace ferry::cluster {

absl::Status ValidateName(const char* what, const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError(absl::StrCat(what, " name '", name, "' must be 1..63 characters"));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.'))) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " name '", name, "' may hold only a-z, 0-9, '-', '_', '.' and must start with a-z or 0-9"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ferry::cluster
