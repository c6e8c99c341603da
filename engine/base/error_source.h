#pragma once
// Which file and which field an error is about, carried on the absl::Status as payloads so a
// program (the CLI's --json errors) can read them without parsing the message. The message still
// names both for people.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace ferry {

inline constexpr char kErrorFilePayload[] = "ferry.dev/error-file";
inline constexpr char kErrorFieldPayload[] = "ferry.dev/error-field";

// `st` with `file` and `field` attached (empty ones are left out). OK statuses stay OK.
inline absl::Status WithErrorSource(absl::Status st, absl::string_view file, absl::string_view field) {
  if (st.ok()) return st;
  if (!file.empty()) st.SetPayload(kErrorFilePayload, absl::Cord(file));
  if (!field.empty()) st.SetPayload(kErrorFieldPayload, absl::Cord(field));
  return st;
}

// The file / field attached by WithErrorSource, or "".
inline std::string ErrorFile(const absl::Status& st) {
  auto c = st.GetPayload(kErrorFilePayload);
  return c ? std::string(*c) : "";
}
inline std::string ErrorField(const absl::Status& st) {
  auto c = st.GetPayload(kErrorFieldPayload);
  return c ? std::string(*c) : "";
}

}  // namespace ferry
