#pragma once
// "Can the destination open this disk?" is a fact only the destination can establish. The
// destination agent runs ProbeDiskAccess before it sends its facts, so the precheck stays a pure
// function of (VM, source facts, destination facts).

#include "engine/host/host_facts.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// For every file disk and RDM mapping file of `vm` that lives on a source datastore which `self`
// also sees (same datastore UUID), opens the file at this host's mount of that datastore (as the
// VMM would, checking the size) and records the outcome in self.disk_access under the VM's path.
// Disks on datastores `self` does not see are not probed (the precheck reports those).
void ProbeDiskAccess(HostFacts& self, const VmSpec& vm, const HostFacts& source);

// Where `path` on `source` lives on `self`: same datastore identity, same path inside it; "" if
// `self` does not see that datastore.
std::string TranslateDatastorePath(const std::string& path, const HostFacts& source, const HostFacts& self);

}  // namespace ferry
