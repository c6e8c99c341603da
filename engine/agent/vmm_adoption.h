#pragma once
// A starting agent re-adopts the VMM processes a previous agent left running
// (docs/vmm_process.md "Adoption"): each DATA_DIR/vms/NAME/vmm.sock, and each
// <datastore>/NAME/vmm-AGENT/vmm.sock of a VM on one of its datastores, is asked for its VM's spec,
// run state and memory. A socket with no live VMM behind it is reported (event=vmm_lost) and
// removed: a VM of DATA_DIR is listed as failed, a datastore VM as powered off with the reason.
// A VMM that kept its guest paused after a migration's commit went out (its handover mark) is
// adopted as it is and named in the summary: the agent settles that commit (commit_resolver.h).

#include <string>
#include <vector>

#include "engine/agent/unconfirmed_commits.h"
#include "engine/agent/vm_ownership.h"
#include "engine/agent/vm_registry.h"
#include "engine/host/host_facts.h"

namespace ferry {

// A guest found paused after a commit, with where the commit went.
struct AdoptedCommit {
  std::string migration_id;
  UnconfirmedCommit commit;
};

struct AdoptionSummary {
  int adopted = 0;
  int lost = 0;
  std::vector<AdoptedCommit> paused_after_commit;
};

AdoptionSummary AdoptRunningVmms(const std::string& data_dir, VmRegistry& vms);

// The VMMs agent `agent` runs for VMs on `host`'s datastores; each adopted VM is also a datastore
// VM of `ownership` (its VMM holds its lock).
AdoptionSummary AdoptDatastoreVmms(const HostFacts& host, const std::string& agent, VmRegistry& vms,
                                   VmOwnership& ownership);

}  // namespace ferry
