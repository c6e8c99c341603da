#include "engine/migration/migration_receiver.h"

#include <algorithm>
#include <chrono>
#include <thread>

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
  if (data_path_) {
    data_path_->Close();  // no page lands in memory that is about to be freed
    data_path_.reset();
  }
  disks_.reset();  // the caller removes the half-copied directory
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
    case v1::PeerMessage::kDiskBlocks: return OnDiskBlocks(msg.disk_blocks());
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
  if (s.protocol_version() < kOldestProtocolVersion || s.protocol_version() > kProtocolVersion) {
    return Fail(v1::PEER_ERROR_CODE_BAD_VERSION,
                absl::StrCat("protocol version ", s.protocol_version(), " is not supported (this agent speaks ",
                             kOldestProtocolVersion, " to ", kProtocolVersion, ")"));
  }
  if (s.has_data_path()) {
    const v1::DataPathOffer& d = s.data_path();
    if (s.protocol_version() < 2) {
      return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "data connections need protocol version 2");
    }
    if (d.connections() == 0 || d.connections() > 16) {
      return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                  absl::StrCat("data connections must be 1..16, not ", d.connections()));
    }
    if (d.secret().size() != 32) {
      return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                  absl::StrCat("data-path secret is ", d.secret().size(), " bytes, expected 32"));
    }
    if (!d.encrypted() && hooks_.require_encrypted_data) {
      return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                  "this agent runs with TLS and accepts only encrypted data connections");
    }
    if (!hooks_.open_data_path) {
      return Fail(v1::PEER_ERROR_CODE_RESOURCE, "this agent has no data port; use --transport grpc");
    }
  }
  if (s.has_storage() && s.protocol_version() < kStorageMigrationProtocolVersion) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("a storage migration needs protocol version ", kStorageMigrationProtocolVersion));
  }
  auto spec = VmSpecFromProto(s.spec());
  if (!spec.ok()) return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, std::string(spec.status().message()));
  auto vm = hooks_.create_vm(*spec);
  if (!vm.ok()) {
    auto code = absl::IsAlreadyExists(vm.status()) ? v1::PEER_ERROR_CODE_EXISTS : v1::PEER_ERROR_CODE_RESOURCE;
    v1::PeerReply refused = Fail(code, std::string(vm.status().message()));
    // Memory promised to other VMs or arrivals now may be free later: the source may ask again.
    refused.mutable_error()->set_temporary(absl::IsResourceExhausted(vm.status()));
    return refused;
  }
  vm_ = std::move(*vm);
  if (s.has_storage()) {
    // create_vm made the VM's new directory and pointed its disks there.
    std::vector<uint64_t> sizes(s.storage().disk_bytes().begin(), s.storage().disk_bytes().end());
    auto disks = DiskCopyReceiver::Open(vm_->spec(), sizes);
    if (!disks.ok()) {
      return Fail(v1::PEER_ERROR_CODE_RESOURCE, absl::StrCat("cannot receive the disks: ", disks.status().message()));
    }
    disks_ = std::move(*disks);
  }
  v1::PeerReply r;
  if (s.has_data_path()) {
    auto dp = hooks_.open_data_path(s, vm_->memory());
    if (!dp.ok()) {
      return Fail(v1::PEER_ERROR_CODE_RESOURCE, absl::StrCat("cannot open the data port: ", dp.status().message()));
    }
    data_path_ = std::move(dp->pages);
    // Disk frames go into the new disk files (before `started`: no connection exists yet).
    if (disks_) data_path_->ReceiveDisksInto(disks_.get());
    r.mutable_started()->mutable_data_path()->set_port(dp->port);
    r.mutable_started()->mutable_data_path()->set_connections(s.data_path().connections());
  }
  // On the gRPC stream one thread applies every page: fault the destination's memory in beside
  // it meanwhile. Data connections write with several threads, faulting in only the pages that
  // carry data (a pre-fault of the whole guest would compete with them for the CPUs and touch
  // never-used memory).
  if (!data_path_) prefault_ = std::thread([this, mem = &vm_->memory()] { mem->Prefault(&stop_prefault_); });
  start_ = s;
  state_ = State::kStarted;
  r.mutable_started()->set_destination_agent(hooks_.agent_name);
  r.mutable_started()->set_destination_boot_id(hooks_.boot_id);
  if (disks_) r.mutable_started()->set_disk_mirror_acks(true);
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::OnMemory(const v1::MemoryBatch& b) {
  if (state_ != State::kStarted && state_ != State::kReceiving) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("memory batch in state ", ReceiverStateName(state_), " (expected after start)"));
  }
  if (data_path_) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "memory batch on the control stream: pages travel on the data connections");
  }
  absl::Status st = ApplyMemoryBatch(b, vm_->memory(), &counters_);
  if (absl::IsOutOfRange(st)) return Fail(v1::PEER_ERROR_CODE_OUT_OF_RANGE, std::string(st.message()));
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_LENGTH_MISMATCH, std::string(st.message()));
  state_ = State::kReceiving;
  return std::nullopt;
}

std::optional<v1::PeerReply> MigrationReceiver::OnDiskBlocks(const v1::DiskBlocks& b) {
  if (state_ != State::kStarted && state_ != State::kReceiving) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("disk blocks in state ", ReceiverStateName(state_), " (expected after start)"));
  }
  if (!disks_) return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "disk blocks, but the start named no storage migration");
  absl::Status st = disks_->Apply(b);
  if (absl::IsOutOfRange(st)) return Fail(v1::PEER_ERROR_CODE_OUT_OF_RANGE, std::string(st.message()));
  if (absl::IsInvalidArgument(st)) return Fail(v1::PEER_ERROR_CODE_LENGTH_MISMATCH, std::string(st.message()));
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_RESOURCE, absl::StrCat("cannot write disk blocks: ", st.message()));
  state_ = State::kReceiving;
  if (b.mirror_cut() == 0) return std::nullopt;
  // A mirrored cut is written (page cache, as the source's own write): the source may now show
  // its writes complete to the guest.
  v1::PeerReply r;
  r.mutable_disk_mirror_ack()->set_disk(b.disk());
  r.mutable_disk_mirror_ack()->set_cut(b.mirror_cut());
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::OnDeviceState(const v1::DeviceStateMessage& d) {
  if (state_ != State::kReceiving && !(data_path_ && state_ == State::kStarted)) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("device state in state ", ReceiverStateName(state_),
                             " (expected after the memory rounds)"));
  }
  // The source has paused the guest: pre-faulting must not add to the downtime. Whatever is
  // not faulted in yet faults in on first touch after the resume.
  stop_prefault_.store(true);
  v1::PeerReply r;
  int64_t t0 = MonotonicNanos();
  if (data_path_) {
    // The ordering rule's last part: every final-round page has landed before the state loads.
    if (d.final_round() == 0) {
      return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE, "device state without the final round number");
    }
    absl::Status landed = data_path_->WaitRoundComplete(d.final_round(), kFinalPagesTimeoutMs);
    if (!landed.ok()) {
      return Fail(v1::PEER_ERROR_CODE_DATA_PATH,
                  absl::StrCat("final pages did not arrive: ", landed.message()));
    }
    counters_.pages = data_path_->pages_received();
    data_path_->Close();
    data_path_.reset();
  }
  int64_t t1 = MonotonicNanos();
  absl::Status st = vm_->RestoreState(d.state());
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_STATE, absl::StrCat("cannot load device state: ", st.message()));
  state_ = State::kStateLoaded;
  r.mutable_state_loaded()->set_wait_final_pages_ms(NanosToMillis(t1 - t0));
  r.mutable_state_loaded()->set_state_load_ms(NanosToMillis(MonotonicNanos() - t1));
  return r;
}

std::optional<v1::PeerReply> MigrationReceiver::OnCommit() {
  if (state_ != State::kStateLoaded) {
    return Fail(v1::PEER_ERROR_CODE_BAD_MESSAGE,
                absl::StrCat("commit in state ", ReceiverStateName(state_), " (expected after device state)"));
  }
  if (hooks_.take_ownership && (start_.has_home() || start_.has_storage())) {
    if (absl::Status owned = hooks_.take_ownership(start_); !owned.ok()) {
      return Fail(v1::PEER_ERROR_CODE_STATE, absl::StrCat("cannot take the VM's lock: ", owned.message()));
    }
  }
  int64_t t0 = MonotonicNanos();
  absl::Status st = vm_->Start();
  if (!st.ok()) return Fail(v1::PEER_ERROR_CODE_STATE, absl::StrCat("cannot resume the VM: ", st.message()));
  int64_t resumed = MonotonicNanos();
  // The first vCPU back in guest mode: wait for it briefly (the guest already runs; this only
  // delays the reply). Asked every 100 us, not in a yield loop: with a VMM process each ask is a
  // round trip to it, and a busy loop there keeps two threads (this one and the VMM's) running
  // beside the vCPU that is about to enter the guest, on hosts with few cores.
  int64_t first = 0;
  while ((first = vm_->first_guest_entry_ns()) == 0 && MonotonicNanos() - resumed < 20'000'000) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  StopPrefault();  // returns within one 16 MiB step; the VM runs already
  state_ = State::kResumed;
  if (hooks_.adopt_vm) hooks_.adopt_vm(std::move(vm_), start_);
  v1::PeerReply r;
  r.mutable_resumed()->set_resume_ns(resumed);
  r.mutable_resumed()->set_start_ms(NanosToMillis(resumed - t0));
  if (first > 0) r.mutable_resumed()->set_first_instruction_ms(NanosToMillis(std::max<int64_t>(0, first - resumed)));
  return r;
}

}  // namespace ferry
