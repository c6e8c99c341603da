#pragma once
// Human-readable migration results.

#include "proto/ferry/v1/migration.pb.h"

namespace ferry::cli {

void PrintMigrationSummary(const v1::MigrationEvent& last);

}  // namespace ferry::cli
