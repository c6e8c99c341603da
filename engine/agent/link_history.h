#pragma once
// What the links to other agents carried: the throughput of the last few completed outgoing
// migrations per destination, for the precheck's convergence forecast. In memory only; an agent
// that restarts falls back to the migration interfaces' nominal speeds until it migrates again.

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "proto/ferry/v1/migration.pb.h"

namespace ferry {

struct LinkFigure {
  double mib_s = 0;           // median of the kept measurements
  uint32_t measurements = 0;
};

class LinkHistory {
 public:
  static constexpr size_t kKept = 5;
  // Below this a migration's throughput is mostly setup latency and says little about the link.
  static constexpr uint64_t kMinBytes = 32ull << 20;

  // Records a completed migration's throughput. Skips one capped by max_bandwidth_mibps (it
  // measured the cap, not the link) or too small to mean anything; returns whether it recorded.
  bool Record(const std::string& destination, const v1::MigrationOptions& options,
              const v1::MigrationStats& stats);
  std::optional<LinkFigure> Get(const std::string& destination) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::deque<double>> by_destination_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry
