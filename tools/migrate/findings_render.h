#pragma once
// How the CLI shows precheck findings, shared by the offline form (`migrate precheck --vm ...`)
// and the agent form (`migrate --agent A precheck VM --to B`).

#include <cstdio>
#include <string>
#include <vector>

#include "engine/precheck/finding.h"

namespace ferry::cli {

// {"findings":[{"severity":"error","code":"...","subject":"...","message":"..."}]}
std::string FindingsJson(const std::vector<Finding>& findings);

// One row per finding (severity, code, subject, message), then a summary line. With `color`,
// errors are red and warnings yellow (ANSI).
std::string FindingsTable(const std::vector<Finding>& findings, bool color);

// Prints JSON or the table (colored only when stdout is a terminal) to `out`; returns the exit
// code: 0 without errors, 3 with.
int PrintFindings(const std::vector<Finding>& findings, bool json, FILE* out = stdout);

}  // namespace ferry::cli
