#include "engine/migration/migration_receiver.h"

#include "absl/strings/str_cat.h"
#include "engine/base/clock.h"
#include "engine/migration/protocol.h"
#include "engine/vm/vm_spec_proto.h"

namespace ferry {

const char* ReceiverStateName(MigrationReceiver::State s) {
  switch (s) {
    case MigrationReceiver::State::kEstablished: return "established";
    case MigrationReceiver::State::kStarted: return "started";
    case MigrationReceiver::State::kReceiving: return "receiving";
    case MigrationReceiver::State::kStateLoaded: return "state-loaded";
    case MigrationReceiver::State::kResumed: return "resumed";
    case MigrationReceiver::State::kAborted: return "aborted";
  }
  return "unknown";
}

MigrationReceiver::MigrationReceiver(ReceiverHooks hooks) : hooks_(std::move(hooks)) {}

MigrationReceiver::~MigrationReceiver() {
  OnStreamEnd();
  StopPrefault();
}

void MigrationReceiver::StopPrefault() {
  stop_prefault_.store(true);
  if (prefault_.joinable()) prefault_.join();
}

void MigrationReceiver::Discard() {
  StopPrefault();
  if (vm_) {
    (void)vm_->Stop();
    vm_.reset();  // frees guest memory
  }
  state_ = State::kAborted;
}

void MigrationReceiver::OnStreamEnd() {
  if (state_ != State::kResumed && state_ != State::kAborted) Discard();
}

v1::PeerReply MigrationReceiver::Fail(v1::PeerErrorCode code, const std::string& message) {
  Discard();
  v1::PeerReply r;
  r.mutable_error()->set_code(code);
  r.mutable_error()->set_message(message);
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::Handle(const v1::PeerMessage& msg) {
  if (state_ == State::kAborted) {
    if (msg.has_abort()) return std::nullopt;
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "migration already aborted");
  }
  switch (msg.body_case()) {
    case v1::PeerMessage::kStart: return OnStart(msg.start());
    case v1::PeerMessage::kMemory: return OnMemory(msg.memory());
    case v1::PeerMessage::kDeviceState: return OnDeviceState(msg.device_state());
    case v1::PeerMessage::kCommit: return OnCommit();
    case v1::PeerMessage::kAbort:
      if (state_ == State::kResumed) {
        return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "abort after the VM resumed here is not possible");
      }
      Discard();
      return std::nullopt;
    default: return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "empty peer message");
  }
}

std::optional<v1::PeerReply> MigrationReceiver::OnStart(const v1::StartMigration& s) {
  if (state_ != State::kEstablished) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("duplicate start: this migration is already ", ReceiverStateName(state_)));
  }
  if (s.protocol_version() != kProtocolVersion) {
    return Fail(v1::PEER_ERROR_CODE_BAD_VERSION,
                absl::StrCat("protocol version ", s.protocol_version(), " is not supported (this agent speaks ",
                             kProtocolVersion, ")"));
  }
  auto spec = VmSpecFromProto(s.spec());
  if (!spec.ok()) return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, std::string(spec.status().message()));
  auto vm = hooks_.create_vm(*spec);
  if (!vm.ok()) {
    auto code = absl::IsAlreadyExists(vm.status()) ? v1::PEER_ERROR_CODE_EXISTS : v1::PEER_ERROR_CODE_RESOURCE;
    return Fail(code, std::string(vm.status().message()));
  }
  vm_ = std::move(*vm);
  // Fault in the destination's memory now, while the first pages are still on their way.
  prefault_ = std::thread([this, mem = &vm_->memory()] { mem->Prefault(&stop_prefault_); });
  start_ = s;
  state_ = State::kStarted;
  v1::PeerReply r;
  r.mutable_started()->set_destination_agent(hooks_.agent_name);
  r.mutable_started()->set_destination_boot_id(hooks_.boot_id);
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::OnMemory(const v1::MemoryBatch& b) {
  if (state_ != State::kStarted && state_ != State::kReceiving) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("memory batch in state ", ReceiverStateName(state_), " (expected after start)"));
  }
  absl::Status st = ApplyMemoryBatch(b, vm_->memory(), &counters_);
  if (absl::IsOutOfRange(st)) return Fail(v1::PEER_ERROR_CODE_OUT_OF_RANGE, std::string(st.message()));
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_LENGTH_MISMATCH, std::string(st.message()));
  state_ = State::kReceiving;
  return std::nullopt;
}

std::optional<v1::PeerReply> MigrationReceiver::OnDeviceState(const v1::DeviceStateMessage& d) {
  if (state_ != State::kReceiving) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("device state in state ", ReceiverStateName(state_),
                             " (expected after the memory rounds)"));
  }
  // The source has paused the guest: pre-faulting must not add to the downtime. Whatever is
  // not faulted in yet faults in on first touch after the resume.
  stop_prefault_.store(true);
  absl::Status st = vm_->RestoreState(d.state());
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_STATE, absl::StrCat("cannot load device state: ", st.message()));
  state_ = State::kStateLoaded;
  v1::PeerReply r;
  r.mutable_state_loaded();
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::OnCommit() {
  if (state_ != State::kStateLoaded) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("commit in state ", ReceiverStateName(state_), " (expected after device state)"));
  }
  absl::Status st = vm_->Start();
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_STATE, absl::StrCat("cannot resume the VM: ", st.message()));
  int64_t resumed = MonotonicNanos();
  StopPrefault();  // returns within one 16 MiB step; the VM runs already
  state_ = State::kResumed;
  if (hooks_.adopt_vm) hooks_.adopt_vm(std::move(vm_), start_);
  v1::PeerReply r;
  r.mutable_resumed()->set_resume_ns(resumed);
  return r;
}

}  // namespace ferry
