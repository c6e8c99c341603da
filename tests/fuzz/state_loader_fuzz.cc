// libFuzzer target: loading saved VM state. The first input byte picks the layer:
//   even: the rest is a whole state container (docs/state_format.md) for DecodeVmState;
//   odd:  the rest is a ferry.v1.VmState payload, wrapped in a valid container first so that the
//         fuzzer reaches restore validation behind the checksum.
// A decoded state is then restored into a real synthetic VM of the shape it claims (memory
// capped), which must refuse it or accept it, and the VM must then start or refuse to start.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "engine/memory/page.h"
#include "engine/state/state_file.h"
#include "engine/vm/synthetic_vm.h"

namespace {

constexpr uint64_t kMaxGuestMemory = 64ull << 20;

void Restore(const ferry::v1::VmState& state) {
  ferry::VmSpec spec;
  spec.name = "fuzz-vm";
  spec.backend = ferry::Backend::kSynthetic;
  spec.memory_bytes = state.memory_bytes();
  spec.vcpus = state.vcpu_count();
  spec.workload.working_set_bytes = 1ull << 20;
  if (spec.memory_bytes < (8ull << 20) || spec.memory_bytes > kMaxGuestMemory ||
      spec.memory_bytes % ferry::kPageSize != 0 || spec.vcpus == 0 || spec.vcpus > 8) {
    return;  // a shape no destination here would build
  }
  auto vm = ferry::CreateSyntheticVm(spec, /*for_restore=*/true);
  if (!vm.ok()) return;
  if ((*vm)->RestoreState(state).ok() && (*vm)->Start().ok()) (void)(*vm)->Pause();
  (void)(*vm)->Stop();
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; the fuzzer makes thousands a second.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string container;
  if (data[0] & 1) {
    ferry::v1::VmState payload;
    if (!payload.ParseFromArray(rest.data(), static_cast<int>(rest.size()))) return 0;
    container = ferry::EncodeVmState(payload);
    rest = container;
  }
  auto state = ferry::DecodeVmState(rest);
  if (state.ok()) Restore(*state);
  return 0;
}
