#include "engine/vm/vm_name.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/base/error_text.h"

namespace ferry {
namespace {

bool AllowedInName(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; }

absl::Status Refused(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("VM name ", QuotedForError(name), " ", std::string(why),
                                                 " (allowed: 1..", kMaxVmNameLength,
                                                 " of A-Z a-z 0-9 . _ -, starting with a letter or digit)"));
}

}  // namespace

absl::Status ValidateVmName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("VM name is empty");
  if (name.size() > kMaxVmNameLength) {
    return Refused(name, absl::StrCat("is ", name.size(), " characters long"));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!AllowedInName(name[i])) {
      const unsigned char c = static_cast<unsigned char>(name[i]);
      const std::string shown = c >= 0x20 && c < 0x7f ? absl::StrCat("'", std::string(1, name[i]), "'")
                                                      : QuotedForError(name.substr(i, 1));
      return Refused(name, absl::StrCat("has ", shown, " at position ", i + 1));
    }
  }
  if (!absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) {
    return Refused(name, "does not start with a letter or digit");
  }
  if (name.find("..") != absl::string_view::npos) return Refused(name, "contains \"..\"");
  return absl::OkStatus();
}

}  // namespace ferry
