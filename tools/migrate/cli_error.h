#pragma once
// How every migrate command reports an error, in one shape (docs/prechecks.md "Errors and exit
// codes"):
//   text (default): one line on stderr, "migrate <command>: [<option>: ]<message>"
//   --json:         {"error": {"code", "message", "file", "field"}} on stdout, nothing on stderr
// with the same exit code either way.

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace grpc {
class Status;
}

namespace ferry::cli {

// The exit codes of every command.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,   // the operation failed: an agent refused it or was unreachable, a migration failed
  kExitUsage = 2,    // the command line or a file it names is wrong
  kExitRefused = 3,  // a precheck found errors: the migration is refused
};

struct CliError {
  std::string code;     // "usage", "failed", or a status code in snake case: "invalid_argument", "not_found", ...
  std::string message;  // what is wrong, for a person
  std::string file;     // the file at fault, "" if none
  std::string field;    // the field of `file` at fault, else the command-line option ("--source"), or ""
  int exit_code = kExitFailed;
};

// Where an error happened, as the command knows it: the option whose value was at fault and the
// file it named. A Status that carries its own file/field (engine/base/error_source.h) wins.
struct ErrorAt {
  std::string option;
  std::string file;
};

// Local errors: bad input a user can fix (invalid_argument, not_found, permission_denied,
// failed_precondition, out_of_range, resource_exhausted) exit 2, anything else 1.
CliError ErrorFromStatus(const absl::Status& st, const ErrorAt& at = {});
// An agent's answer: INVALID_ARGUMENT exits 2 (the request was wrong), anything else 1.
CliError ErrorFromGrpc(const grpc::Status& st);
// The operation failed and no status code says more: exit 1, code "failed".
CliError FailureError(std::string message);
// The command line itself is wrong (a missing or conflicting option, named in `field`): exit 2,
// code "usage".
CliError UsageError(std::string message, std::string option = "");

// `{"error":{...}}` with all four keys (empty strings where unknown), one line.
std::string ErrorJson(const CliError& e);
// "migrate <command>: [<option>: ]<message>"; the option is left out when the message already
// starts with it.
std::string ErrorText(std::string_view command, const CliError& e);

// Prints the error (JSON on stdout with `json`, else text on stderr) and returns its exit code.
int ReportError(std::string_view command, const CliError& e, bool json);
inline int ReportError(std::string_view command, const absl::Status& st, bool json, const ErrorAt& at = {}) {
  return ReportError(command, ErrorFromStatus(st, at), json);
}
int ReportError(std::string_view command, const grpc::Status& st, bool json);

// True when argv holds --json before any "--": parse errors are then reported as JSON too.
bool WantsJson(int argc, const char* const* argv);

}  // namespace ferry::cli
