#pragma once
// `migrate-bench --suite link-share`: two migrations from one agent to another at the same time,
// and the share of the link each got while both were sending (docs/jobs.md "Priority and the
// shared link"): high against standard (weights 3:1), then standard against standard as the
// reference. Prints one line per pair and returns non-zero when a migration did not complete.

#include <string>

namespace ferry::bench {

struct LinkShareBenchOptions {
  int repeat = 3;
  bool keep_logs = false;
};

int RunLinkShareBench(const LinkShareBenchOptions& options);

}  // namespace ferry::bench
