#pragma once
// What crosses the VMM socket <-> the engine's own types.

#include "absl/status/status.h"
#include "engine/vm/vm.h"
#include "proto/ferry/v1/vmm.pb.h"

namespace ferry {

v1::VmmGuestHealth GuestHealthToVmm(const GuestHealth& h);
GuestHealth GuestHealthFromVmm(const v1::VmmGuestHealth& p);

v1::VmmRunState RunStateToVmm(VmRunState s);
// NO_VM and unknown values map to kStopped (nothing runs).
VmRunState RunStateFromVmm(v1::VmmRunState s);

void SetReplyStatus(const absl::Status& st, v1::VmmReply& reply);
absl::Status ReplyStatus(const v1::VmmReply& reply);

}  // namespace ferry
