#include "engine/agent/link_history.h"

#include <algorithm>
#include <vector>

namespace ferry {

bool LinkHistory::Record(const std::string& destination, const v1::MigrationOptions& options,
                         const v1::MigrationStats& stats) {
  if (options.max_bandwidth_mibps() > 0 || stats.bytes_transferred() < kMinBytes || !(stats.throughput_mib_s() > 0)) {
    return false;
  }
  std::lock_guard lock(mu_);
  std::deque<double>& kept = by_destination_[destination];
  kept.push_back(stats.throughput_mib_s());
  if (kept.size() > kKept) kept.pop_front();
  return true;
}

std::optional<LinkFigure> LinkHistory::Get(const std::string& destination) const {
  std::vector<double> v;
  {
    std::lock_guard lock(mu_);
    auto it = by_destination_.find(destination);
    if (it == by_destination_.end()) return std::nullopt;
    v.assign(it->second.begin(), it->second.end());
  }
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  double median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return LinkFigure{median, static_cast<uint32_t>(n)};
}

}  // namespace ferry
