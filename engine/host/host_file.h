#pragma once
// Host facts from a host file (YAML, docs/prechecks.md "Host file") or from libvirt by URI.

#include <string>

#include "absl/status/statusor.h"
#include "engine/host/host_facts.h"

namespace ferry {

// "libvirt:URI" (e.g. libvirt:qemu:///system, libvirt:test:///abs/path/node.xml) or a YAML file.
absl::StatusOr<HostFacts> LoadHostFacts(const std::string& spec);

absl::StatusOr<HostFacts> LoadHostFactsYaml(const std::string& path);

// Storage pools with a target path -> datastores; networks -> virtual switches (a network with a
// <forward> mode has an uplink, an isolated one has none) with their <portgroup>s; node memory;
// storage node devices -> RDM devices; the first active host interface with an IP address ->
// migration interface (<link speed>). CPU and KVM capabilities are this machine's.
absl::StatusOr<HostFacts> LoadHostFactsLibvirt(const std::string& uri);

}  // namespace ferry
