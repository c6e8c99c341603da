#pragma once
// RARP announcement of a VM's NICs on this host: each NIC's port group maps to the host
// interface of the virtual switch carrying it (the switch's name is its bridge/veth interface).

#include "engine/agent/agent_config.h"
#include "engine/net/announcer.h"
#include "engine/vm/vm_spec.h"

namespace ferry {

// Sends QEMU's schedule (5 frames over 800 ms) for every NIC and waits for it. Problems are
// warnings in the result, never errors.
AnnounceResult AnnounceVmNics(const AgentConfig& config, const VmSpec& vm);

}  // namespace ferry
