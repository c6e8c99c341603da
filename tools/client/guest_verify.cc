#include "tools/client/guest_verify.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/guest/workload.h"
#include "engine/transport/grpc_peer_channel.h"

namespace ferry::cli {

uint64_t FullSweepGuestBudgetMs(uint64_t working_set_bytes, uint32_t workers) {
  uint64_t pages_per_worker = working_set_bytes / 4096 / std::max<uint32_t>(workers, 1);
  return 6 * (pages_per_worker / FW_SWEEP_PAGES_PER_MS) + 2000;
}

absl::StatusOr<v1::VmInfo> WaitForFullSweep(v1::Agent::Stub& stub, const std::string& name, double max_wait_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(max_wait_s);
  bool first = true;
  uint64_t first_beat = 0, budget_ms = 0;
  for (;;) {
    grpc::ClientContext ctx;
    v1::GetVmRequest req;
    req.set_name(name);
    v1::VmInfo info;
    grpc::Status st = stub.GetVm(&ctx, req, &info);
    if (!st.ok()) return FromGrpcStatus(st);
    const v1::GuestHealth& h = info.health();
    if (h.corruptions() > 0) {
      return absl::DataLossError(absl::StrCat("the guest reported corruption: ",
                                              h.corruption_reports_size() ? h.corruption_reports(0) : "(no report line)"));
    }
    if (h.full_sweeps() > 0) return info;
    if (first) {
      first = false;
      first_beat = h.last_heartbeat_value();
      budget_ms = FullSweepGuestBudgetMs(info.spec().workload().working_set_bytes(), info.spec().vcpus());
    }
    uint64_t guest_ms = h.last_heartbeat_value() - std::min(first_beat, h.last_heartbeat_value());
    if (guest_ms > budget_ms || std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "the guest did not finish re-checking its working set here: %u ms of guest time (budget %u ms) and "
          "%.0f s at most of waiting",
          guest_ms, budget_ms, max_wait_s));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ferry::cli
