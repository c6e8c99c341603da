#include "tools/migrate/findings_render.h"

#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace ferry::cli {

std::string FindingsJson(const std::vector<Finding>& findings) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Finding& f : findings) {
    list.push_back({{"severity", SeverityName(f.severity)},
                    {"code", FindingCodeName(f.code)},
                    {"subject", f.subject},
                    {"message", f.message}});
  }
  return nlohmann::ordered_json{{"findings", list}}.dump(2) + "\n";
}

std::string FindingsTable(const std::vector<Finding>& findings, bool color) {
  constexpr char kRed[] = "\033[31m", kYellow[] = "\033[33m", kReset[] = "\033[0m";
  size_t code_w = 4, subject_w = 7;
  for (const Finding& f : findings) {
    code_w = std::max(code_w, std::string(FindingCodeName(f.code)).size());
    subject_w = std::max(subject_w, f.subject.size());
  }
  auto pad = [](std::string s, size_t w) {
    s.resize(std::max(s.size(), w), ' ');
    return s;
  };
  std::string out = absl::StrCat(pad("SEVERITY", 9), pad("CODE", code_w + 2), pad("SUBJECT", subject_w + 2), "MESSAGE\n");
  size_t errors = 0, warnings = 0;
  for (const Finding& f : findings) {
    bool error = f.severity == Severity::kError;
    (error ? errors : warnings)++;
    std::string row = absl::StrCat(pad(SeverityName(f.severity), 9), pad(FindingCodeName(f.code), code_w + 2),
                                   pad(f.subject, subject_w + 2), f.message);
    absl::StrAppend(&out, color ? absl::StrCat(error ? kRed : kYellow, row, kReset) : row, "\n");
  }
  if (findings.empty()) absl::StrAppend(&out, "(no findings)\n");
  absl::StrAppend(&out, errors, " error(s), ", warnings, " warning(s): ",
                  errors ? "migration refused" : "migration may proceed", "\n");
  return out;
}

int PrintFindings(const std::vector<Finding>& findings, bool json, FILE* out) {
  std::string text = json ? FindingsJson(findings) : FindingsTable(findings, isatty(fileno(out)) == 1);
  fwrite(text.data(), 1, text.size(), out);
  fflush(out);
  return HasErrors(findings) ? 3 : 0;
}

}  // namespace ferry::cli
