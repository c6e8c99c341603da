#include "tools/client/cluster_status_render.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace ferry::cli {

std::string RenderClusterStatus(const cluster::ClusterStatus& s, size_t max_events) {
  std::string out = absl::StrFormat("cluster %s\nmaster  %s\n", s.cluster,
                                    s.master.empty() ? "(none: election in progress or no live host)" : s.master);
  absl::StrAppendFormat(&out, "\n%-16s %-7s %-12s %-9s %-10s %-10s %s\n", "HOST", "ROLE", "STATE", "NETWORK",
                        "DATASTORE", "LEASE LEFT", "ADDRESS");
  for (const auto& h : s.hosts) {
    std::string left = h.network_heartbeat_alive ? absl::StrCat(h.lease_remaining_s, " s") : "expired";
    absl::StrAppendFormat(&out, "%-16s %-7s %-12s %-9s %-10s %-10s %s\n", h.record.host, h.master ? "master" : "slave",
                          cluster::ShownHealth(h), h.network_heartbeat_alive ? "alive" : "lost",
                          cluster::ShownDatastoreHeartbeat(h), left, h.record.address);
  }
  absl::StrAppendFormat(&out, "  (NETWORK: its etcd lease; DATASTORE: its datastore heartbeat as the master reads it)\n");
  absl::StrAppendFormat(&out, "\nprotected VMs: %d\n", s.vms.size());
  if (!s.vms.empty()) absl::StrAppendFormat(&out, "  %-16s %-8s %-17s %-12s %s\n", "VM", "PRIORITY", "STATE", "OWNER", "DETAIL");
  for (const auto& vm : s.vms) {
    absl::StrAppendFormat(&out, "  %-16s %-8s %-17s %-12s %s\n", vm.vm, cluster::RestartPriorityName(vm.priority),
                          cluster::ProtectedVmStateName(vm.state), vm.host, vm.detail);
  }
  const size_t first = s.events.size() > max_events ? s.events.size() - max_events : 0;
  absl::StrAppendFormat(&out, "\nevents (latest %d of %d)\n", s.events.size() - first, s.events.size());
  for (size_t i = first; i < s.events.size(); ++i) {
    const auto& e = s.events[i];
    absl::StrAppendFormat(&out, "  %s  %-26s %-14s %s (by %s)\n",
                          absl::FormatTime("%H:%M:%E3S", absl::FromUnixNanos(e.time_unix_ns), absl::LocalTimeZone()),
                          e.kind, e.subject, e.detail, e.by);
  }
  out += "\nconfig\n";
  auto j = nlohmann::ordered_json::parse(cluster::ToJson(s.config));
  for (const auto& [k, v] : j.items()) {
    absl::StrAppendFormat(&out, "  %-32s %s\n", k, v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

}  // namespace ferry::cli
