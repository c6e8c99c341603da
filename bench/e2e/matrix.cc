#include "bench/e2e/matrix.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/size_parse.h"

namespace ferry::bench {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

Scenario Make(const std::string& group, const std::string& backend, uint64_t memory, uint64_t ws, double rate,
              const std::string& pattern, bool tls) {
  Scenario s;
  s.group = group;
  s.backend = backend;
  s.memory_bytes = memory;
  s.working_set_bytes = ws;
  s.dirty_rate_mibps = rate;
  s.pattern = pattern;
  s.tls = tls;
  return s;
}

struct Rate {
  double mibps = 0;
  bool unlimited = false;
};

absl::StatusOr<Rate> ParseRate(const std::string& text) {
  if (text == "max" || text == "unlimited") return Rate{0, true};
  auto r = ParseRateMiBps(text);
  if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat("--dirty-rate '", text, "': ", r.status().message()));
  return Rate{*r, false};
}

absl::StatusOr<std::vector<uint64_t>> ParseSizes(const std::string& flag, const std::vector<std::string>& list) {
  std::vector<uint64_t> out;
  for (const std::string& t : list) {
    auto v = ParseByteSize(t);
    if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, " '", t, "': ", v.status().message()));
    out.push_back(*v);
  }
  return out;
}

std::vector<Scenario> DefaultMatrix(const MatrixFlags& f) {
  std::vector<Scenario> out;
  const bool main_tls = f.tls_modes.front();
  for (const std::string& b : f.backends) {
    // Total time vs memory size: a small working set at a modest rate, so size dominates.
    std::vector<uint64_t> sizes = {256 * kMiB, 512 * kMiB, 1 * kGiB, 2 * kGiB, 4 * kGiB};
    if (b == "synthetic") sizes.push_back(8 * kGiB);
    for (uint64_t m : sizes) {
      if (b == "kvm" && m > f.max_kvm_memory) continue;
      out.push_back(Make("memory", b, m, 64 * kMiB, 32, "random", main_tls));
    }
    // Downtime vs dirty rate: 1 GiB guest, 256 MiB working set, from idle to unlimited.
    for (double r : {0.0, 32.0, 128.0, 512.0, -1.0}) {
      Scenario s = Make("dirty-rate", b, 1 * kGiB, 256 * kMiB, r < 0 ? 0 : r, "random", main_tls);
      s.unlimited_rate = r < 0;
      out.push_back(s);
    }
    // Access pattern at a fixed rate.
    for (const char* p : {"sequential", "random", "hotcold"}) {
      out.push_back(Make("pattern", b, 1 * kGiB, 256 * kMiB, 128, p, main_tls));
    }
    // TLS versus plaintext, same run, idle guests so the wire is the only variable.
    for (uint64_t m : {512 * kMiB, 1 * kGiB, 2 * kGiB}) {
      for (bool tls : f.tls_modes) out.push_back(Make("tls", b, m, 16 * kMiB, 0, "random", tls));
    }
  }
  return out;
}

}  // namespace

std::string DescribeRate(const Scenario& s) {
  if (s.unlimited_rate) return "max";
  return absl::StrFormat("%g", s.dirty_rate_mibps);
}

absl::StatusOr<std::vector<Scenario>> BuildMatrix(const MatrixFlags& f) {
  if (f.backends.empty()) return absl::InvalidArgumentError("no backend to run (--backend)");
  if (f.tls_modes.empty()) return absl::InvalidArgumentError("no TLS mode to run (--tls)");
  if (f.repeat < 1 || f.repeat > 100) {
    return absl::InvalidArgumentError(absl::StrCat("--repeat ", f.repeat, " must be 1..100"));
  }
  std::vector<Scenario> base;
  const bool custom = !f.memory.empty() || !f.working_set.empty() || !f.dirty_rate.empty() || !f.pattern.empty();
  if (f.smoke) {
    for (const std::string& b : f.backends) {
      for (bool tls : f.tls_modes) base.push_back(Make("smoke", b, 128 * kMiB, 16 * kMiB, 16, "random", tls));
    }
  } else if (custom) {
    auto mem = ParseSizes("--memory", f.memory.empty() ? std::vector<std::string>{"1GiB"} : f.memory);
    if (!mem.ok()) return mem.status();
    auto ws = ParseSizes("--working-set", f.working_set.empty() ? std::vector<std::string>{"64MiB"} : f.working_set);
    if (!ws.ok()) return ws.status();
    std::vector<Rate> rates;
    for (const std::string& t : f.dirty_rate.empty() ? std::vector<std::string>{"32"} : f.dirty_rate) {
      auto r = ParseRate(t);
      if (!r.ok()) return r.status();
      rates.push_back(*r);
    }
    std::vector<std::string> patterns = f.pattern.empty() ? std::vector<std::string>{"random"} : f.pattern;
    for (const std::string& p : patterns) {
      if (p != "sequential" && p != "random" && p != "hotcold") {
        return absl::InvalidArgumentError(absl::StrCat("--pattern '", p, "' must be sequential, random or hotcold"));
      }
    }
    for (const std::string& b : f.backends)
      for (bool tls : f.tls_modes)
        for (uint64_t m : *mem)
          for (uint64_t w : *ws)
            for (const Rate& r : rates)
              for (const std::string& p : patterns) {
                Scenario s = Make("custom", b, m, w, r.mibps, p, tls);
                s.unlimited_rate = r.unlimited;
                base.push_back(s);
              }
  } else {
    base = DefaultMatrix(f);
  }
  std::vector<Scenario> out;
  for (int i = 0; i < f.repeat; ++i) {
    for (Scenario s : base) {
      s.repeat_index = i;
      out.push_back(s);
    }
  }
  return out;
}

}  // namespace ferry::bench
