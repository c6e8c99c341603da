#pragma once
// Host facts from a host file (YAML, docs/prechecks.md "Host file") or from libvirt by URI.

#include <string>

#include "absl/status/statusor.h"
#include "engine/host/datastore_id.h"
#include "engine/host/host_facts.h"

namespace ferry {

// "libvirt:URI" (e.g. libvirt:qemu:///system, libvirt:test:///abs/path/node.xml) or a YAML file;
// facts.origin = spec. Datastore ids are only read unless `datastore_ids` says to create them
// (the agent's own host). A libvirt URI or description given without "libvirt:" is an error that
// says how to write it.
absl::StatusOr<HostFacts> LoadHostFacts(const std::string& spec,
                                        DatastoreIdPolicy datastore_ids = DatastoreIdPolicy::kReadOnly);

absl::StatusOr<HostFacts> LoadHostFactsYaml(const std::string& path, DatastoreIdPolicy datastore_ids);

// Storage pools with a target path -> datastores; networks -> virtual switches (a network with a
// <forward> mode has an uplink, an isolated one has none) with their <portgroup>s; node memory;
// storage node devices -> RDM devices; the first active host interface with an IP address ->
// migration interface (<link speed>). CPU and KVM capabilities are this machine's. The host is
// named from the URI's server for a remote URI, from the description file's name for the test
// driver (test:///dir/esx-b.xml is "esx-b"), else by libvirt's hostname. A test-driver URI with a
// server part and no absolute path (test://dir/node.xml) is refused with the URI it should be.
absl::StatusOr<HostFacts> LoadHostFactsLibvirt(const std::string& uri, DatastoreIdPolicy datastore_ids);

}  // namespace ferry
