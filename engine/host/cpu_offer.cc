#include "engine/host/cpu_offer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/error_text.h"
#include "engine/kvm/cpu_features.h"

namespace ferry {

absl::Status CheckCpuFeaturesOffered(const std::vector<std::string>& wanted, const std::vector<std::string>& offered) {
  const std::set<std::string> have(offered.begin(), offered.end());
  std::vector<std::string> missing;
  size_t count = 0;
  for (const std::string& f : wanted) {
    if (FindCpuFeature(f) != nullptr && have.count(f)) continue;
    if (++count <= 5) missing.push_back(QuotedForError(f, 32));
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("this host does not offer CPU feature(s) ",
                                                    absl::StrJoin(missing, ", "),
                                                    count > missing.size() ? absl::StrCat(" and ", count - missing.size(), " more") : "",
                                                    " that the VM was given on its source"));
}

}  // namespace ferry
