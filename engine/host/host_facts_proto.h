#pragma once
// HostFacts <-> ferry.v1.HostFacts (proto/ferry/v1/host.proto), for agents to exchange facts.

#include "engine/host/host_facts.h"
#include "proto/ferry/v1/host.pb.h"

namespace ferry {

v1::HostFacts HostFactsToProto(const HostFacts& facts);
HostFacts HostFactsFromProto(const v1::HostFacts& proto);

}  // namespace ferry
