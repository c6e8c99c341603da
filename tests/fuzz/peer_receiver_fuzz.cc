// libFuzzer target: the destination's Peer message handling. The input is a sequence of
// ferry.v1.PeerMessage in protobuf's length-delimited form (varint size, then the message), fed in
// order to one MigrationReceiver that creates real synthetic VMs (guest memory in a memfd, the
// workload on host threads once committed). docs/fuzzing.md describes the targets and corpus.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/migration/migration_receiver.h"
#include "engine/vm/synthetic_vm.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"

namespace {

// A destination with little free memory: keeps every run fast and the fuzzer's RSS bounded.
constexpr uint64_t kMaxGuestMemory = 64ull << 20;
constexpr int kMaxMessages = 64;

ferry::ReceiverHooks FuzzHooks() {
  ferry::ReceiverHooks h;
  h.create_vm = [](const ferry::VmSpec& spec) -> absl::StatusOr<std::unique_ptr<ferry::Vm>> {
    if (spec.backend != ferry::Backend::kSynthetic) {
      return absl::FailedPreconditionError("the fuzzed destination runs synthetic VMs only");
    }
    if (spec.memory_bytes > kMaxGuestMemory) {
      return absl::ResourceExhaustedError(absl::StrCat("VM asks for ", spec.memory_bytes, " bytes of memory"));
    }
    return ferry::CreateSyntheticVm(spec, /*for_restore=*/true);
  };
  // The VM ran here: stop it at once (the next input needs the CPU).
  h.adopt_vm = [](std::unique_ptr<ferry::Vm> vm, const ferry::v1::StartMigration&) { (void)vm->Stop(); };
  h.agent_name = "fuzz-destination";
  h.boot_id = "fuzz";
  return h;
}

// The receiver's contract, checked on every message: an error reply leaves it aborted.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; the fuzzer makes thousands a second.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  google::protobuf::io::ArrayInputStream raw(data, static_cast<int>(size));
  google::protobuf::io::CodedInputStream in(&raw);
  ferry::MigrationReceiver receiver(FuzzHooks());
  for (int i = 0; i < kMaxMessages; ++i) {
    ferry::v1::PeerMessage msg;
    bool clean_eof = false;
    if (!google::protobuf::util::ParseDelimitedFromCodedStream(&msg, &in, &clean_eof)) break;
    auto reply = receiver.Handle(msg);
    if (reply && reply->has_error()) {
      Check(receiver.state() == ferry::MigrationReceiver::State::kAborted, "an error reply without aborting");
      Check(reply->error().code() != ferry::v1::PEER_ERROR_CODE_UNSPECIFIED, "an error reply without a code");
      Check(!reply->error().message().empty(), "an error reply without a message");
    }
  }
  receiver.OnStreamEnd();
  Check(receiver.state() == ferry::MigrationReceiver::State::kResumed ||
            receiver.state() == ferry::MigrationReceiver::State::kAborted,
        "the stream ended and the receiver neither resumed nor discarded the VM");
  return 0;
}
