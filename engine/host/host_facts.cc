#include "engine/host/host_facts.h"

namespace ferry {

const DatastoreFacts* DatastoreOf(const HostFacts& host, const std::string& path) {
  const DatastoreFacts* best = nullptr;
  for (const DatastoreFacts& ds : host.datastores) {
    std::string root = ds.path;
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    bool inside = path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                  (root == "/" || path[root.size()] == '/');
    if (inside && (best == nullptr || root.size() > best->path.size())) best = &ds;
  }
  return best;
}

const DatastoreFacts* DatastoreByUuid(const HostFacts& host, const std::string& uuid) {
  for (const DatastoreFacts& ds : host.datastores) {
    if (!uuid.empty() && ds.uuid == uuid) return &ds;
  }
  return nullptr;
}

const VirtualSwitchFacts* SwitchOfPortGroup(const HostFacts& host, const std::string& name) {
  for (const VirtualSwitchFacts& sw : host.vswitches) {
    for (const std::string& pg : sw.port_groups) {
      if (pg == name) return &sw;
    }
  }
  return nullptr;
}

}  // namespace ferry
