#include "engine/net/port_group_interface.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ferry {

absl::StatusOr<std::string> InterfaceForPortGroup(absl::string_view port_group,
                                                  const PortGroupInterfaces& table) {
  auto it = table.find(std::string(port_group));
  if (it != table.end()) {
    if (it->second.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("port group \"", port_group, "\" has no host interface configured"));
    }
    return it->second;
  }
  std::vector<std::string> known;
  for (const auto& [name, iface] : table) known.push_back(absl::StrCat("\"", name, "\""));
  return absl::NotFoundError(absl::StrCat(
      "port group \"", port_group, "\" has no host interface; known port groups: ",
      known.empty() ? std::string("none") : absl::StrJoin(known, ", ")));
}

AnnouncePlan PlanAnnouncements(const std::vector<NicToAnnounce>& nics,
                               const PortGroupInterfaces& table) {
  AnnouncePlan plan;
  for (const NicToAnnounce& nic : nics) {
    auto mac = MacAddress::Parse(nic.mac);
    if (!mac.ok()) {
      plan.warnings.push_back(
          absl::StrCat("NIC on port group \"", nic.port_group, "\" not announced: ",
                       mac.status().message()));
      continue;
    }
    auto iface = InterfaceForPortGroup(nic.port_group, table);
    if (!iface.ok()) {
      plan.warnings.push_back(absl::StrCat("NIC ", mac->ToString(), " not announced: ",
                                           iface.status().message()));
      continue;
    }
    plan.targets.push_back(AnnounceTarget{*mac, *iface});
  }
  return plan;
}

}  // namespace ferry
