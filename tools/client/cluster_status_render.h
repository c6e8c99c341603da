#pragma once
// `migrate cluster status` as text: the master, each host's network and datastore heartbeat and
// its state as the master judges it (alive / judging / failed / isolated / partitioned / unknown),
// each protected VM's owner and state, and the latest events. Shared by the CLI and its tests.

#include <string>

#include "engine/cluster/cluster_store.h"

namespace ferry::cli {

inline constexpr size_t kStatusEventsShown = 12;

std::string RenderClusterStatus(const cluster::ClusterStatus& s, size_t max_events = kStatusEventsShown);

}  // namespace ferry::cli
