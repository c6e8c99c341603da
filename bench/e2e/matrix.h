#pragma once
// Which scenarios a migrate-bench invocation runs.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/e2e/bench_record.h"

namespace ferry::bench {

struct MatrixFlags {
  bool smoke = false;
  std::vector<std::string> backends;     // kvm, synthetic (resolved: never "both")
  std::vector<std::string> memory;       // sizes ("256MiB"); empty = the default matrix
  std::vector<std::string> working_set;
  std::vector<std::string> dirty_rate;   // MiB/s, 0 = idle, "max" = unlimited
  std::vector<std::string> pattern;
  std::vector<bool> tls_modes;           // resolved from --tls (on first when both)
  int repeat = 1;
  uint64_t max_kvm_memory = 4ull << 30;  // the default matrix's largest KVM guest
};

// smoke: one tiny run per backend. Any of memory/working_set/dirty_rate/pattern given: their
// cartesian product (x backends x TLS modes). Otherwise the default matrix: a memory sweep,
// a dirty-rate sweep, a pattern sweep and a TLS-versus-plaintext sweep.
absl::StatusOr<std::vector<Scenario>> BuildMatrix(const MatrixFlags& flags);

std::string DescribeRate(const Scenario& s);  // "0", "128", "max"

}  // namespace ferry::bench
