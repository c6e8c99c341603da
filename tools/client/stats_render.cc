#include "tools/client/stats_render.h"

#include <cstdio>

#include "tools/client/agent_client.h"

namespace ferry::cli {

void PrintMigrationSummary(const v1::MigrationEvent& last) {
  const v1::MigrationStats& s = last.stats();
  if (!last.message().empty()) std::printf("%s\n", last.message().c_str());
  if (!last.error().empty()) std::printf("reason: %s\n", last.error().c_str());
  std::printf("  total %.0f ms (setup %.0f ms, pre-copy %.0f ms), %u rounds\n", s.total_ms(), s.setup_ms(),
              s.precopy_ms(), s.rounds());
  if (last.phase() == v1::MIGRATION_PHASE_COMPLETED) {
    std::printf("  downtime %.1f ms (expected %.1f ms)%s\n", s.downtime_ms(), s.expected_downtime_ms(),
                s.forced_switchover() ? "  [forced switch-over]" : "");
    const v1::PauseBreakdown& p = s.pause();
    std::printf("  pause parts: vCPU stop %.1f, dirty log %.1f, final pages %.1f, state save %.1f, state transfer %.1f, "
                "final pages landing %.1f, state load %.1f, resume %.1f, first guest instruction %.1f ms\n",
                p.vcpu_pause_ms(), p.dirty_log_ms(), p.final_pages_ms(), p.state_save_ms(), p.state_transfer_ms(),
                p.wait_final_pages_ms(), p.state_load_ms(), p.resume_ms(), p.first_instruction_ms());
  }
  std::printf("  %s transferred of %s guest memory, %lu zero pages as markers (%lu never touched), %.0f MiB/s over %s%s\n",
              FormatBytes(s.bytes_transferred()).c_str(), FormatBytes(s.guest_memory_bytes()).c_str(),
              (unsigned long)s.zero_pages(), (unsigned long)s.hole_pages(), s.throughput_mib_s(),
              s.transport().c_str(), s.zero_copy() ? " (zero-copy sends)" : "");
  if (s.max_throttle_percent() > 0) {
    std::printf("  auto-converge slowed the guest's vCPUs by up to %u%%\n", s.max_throttle_percent());
  }
  for (const auto& w : s.warnings()) std::printf("  warning: %s\n", w.c_str());
}

}  // namespace ferry::cli
