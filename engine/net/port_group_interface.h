#pragma once
// Which host interface carries a port group's traffic. On a KVM host a port group is a Linux
// bridge or a veth end; the host facts provider fills the table, this only looks it up.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/net/announcer.h"

namespace ferry {

// port-group name -> host interface name (e.g. "VM Network" -> "br0").
using PortGroupInterfaces = std::map<std::string, std::string, std::less<>>;

// NotFound naming the port group and the ones that are known.
absl::StatusOr<std::string> InterfaceForPortGroup(absl::string_view port_group,
                                                  const PortGroupInterfaces& table);

struct NicToAnnounce {
  std::string mac;         // "52:54:00:12:34:56"
  std::string port_group;
};

struct AnnouncePlan {
  std::vector<AnnounceTarget> targets;
  std::vector<std::string> warnings;  // NICs that cannot be announced, and why
};

// One target per NIC whose MAC parses and whose port group maps to an interface; every other
// NIC becomes a warning (an unannounced NIC is a slower network reconvergence, not a failure).
AnnouncePlan PlanAnnouncements(const std::vector<NicToAnnounce>& nics,
                               const PortGroupInterfaces& table);

}  // namespace ferry
