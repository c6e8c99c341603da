#include "tools/migrate/cli_error.h"

#include <grpcpp/support/status.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/base/error_source.h"

namespace ferry::cli {
namespace {

// absl::StatusCode names are "INVALID_ARGUMENT"-style; the JSON code is their snake case, the
// same words gRPC uses, so a script needs one vocabulary for local and agent errors.
std::string CodeName(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

bool IsBadInput(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

}  // namespace

CliError ErrorFromStatus(const absl::Status& st, const ErrorAt& at) {
  CliError e;
  e.code = CodeName(st.code());
  e.message = std::string(st.message());
  e.file = ErrorFile(st);
  if (e.file.empty()) e.file = at.file;
  e.field = ErrorField(st);
  if (e.field.empty()) e.field = at.option;
  e.exit_code = IsBadInput(st.code()) ? kExitUsage : kExitFailed;
  // The text form names the option the user typed, even when the JSON names a field in a file.
  if (!at.option.empty() && !absl::StartsWith(e.message, at.option)) e.message = absl::StrCat(at.option, ": ", e.message);
  return e;
}

CliError ErrorFromGrpc(const grpc::Status& st) {
  CliError e;
  e.code = CodeName(static_cast<absl::StatusCode>(st.error_code()));
  e.message = st.error_message();
  e.exit_code = st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? kExitUsage : kExitFailed;
  return e;
}

CliError FailureError(std::string message) {
  CliError e;
  e.code = "failed";
  e.message = std::move(message);
  e.exit_code = kExitFailed;
  return e;
}

CliError UsageError(std::string message, std::string option) {
  CliError e;
  e.code = "usage";
  e.message = std::move(message);
  e.field = std::move(option);
  e.exit_code = kExitUsage;
  return e;
}

std::string ErrorJson(const CliError& e) {
  nlohmann::ordered_json j{
      {"error", {{"code", e.code}, {"message", e.message}, {"file", e.file}, {"field", e.field}}}};
  return j.dump() + "\n";
}

std::string ErrorText(std::string_view command, const CliError& e) {
  return absl::StrCat("migrate", command.empty() ? "" : " ", std::string(command), ": ", e.message, "\n");
}

int ReportError(std::string_view command, const CliError& e, bool json) {
  std::string text = json ? ErrorJson(e) : ErrorText(command, e);
  FILE* out = json ? stdout : stderr;
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
  return e.exit_code;
}

int ReportError(std::string_view command, const grpc::Status& st, bool json) {
  return ReportError(command, ErrorFromGrpc(st), json);
}

bool WantsJson(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") return false;
    if (a == "--json") return true;
  }
  return false;
}

}  // namespace ferry::cli
