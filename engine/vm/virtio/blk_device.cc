#include "engine/vm/virtio/blk_device.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "engine/base/status.h"
#include "engine/guest/guest_abi.h"
#include "spdlog/spdlog.h"

namespace ferry {
namespace {

constexpr uint32_t kVirtioInterruptConfigChange = 2;

std::vector<uint8_t> BlkConfig(uint64_t capacity_sectors) {
  std::vector<uint8_t> config(0x3c, 0);  // virtio 1.1 5.2.4, up to and including the topology fields
  std::memcpy(config.data(), &capacity_sectors, 8);
  const uint32_t seg_max = FERRY_VIRTIO_BLK_SEG_MAX;
  std::memcpy(config.data() + 0x0c, &seg_max, 4);
  return config;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VirtioBlkDevice>> VirtioBlkDevice::Create(const std::string& path,
                                                                         uint32_t disk_index,
                                                                         const GuestRamAccess& ram,
                                                                         std::function<void(bool)> set_irq,
                                                                         DiskWriteSink on_disk_write,
                                                                         HostCache host_cache,
                                                                         UniqueFd open_file) {
  // Twice the queue: a request holds one submission, and the ring never needs to refuse one.
  constexpr unsigned kDepth = 2 * FERRY_VIRTIO_BLK_QUEUE_NUM_MAX;
  ASSIGN_OR_RETURN(auto file, open_file.valid() ? UringBlockFile::OverDescriptor(path, std::move(open_file), kDepth)
                                                : UringBlockFile::Open(path, kDepth));
  std::unique_ptr<VirtioBlkDevice> dev(new VirtioBlkDevice(std::move(file), disk_index, ram, std::move(set_irq),
                                                                std::move(on_disk_write), host_cache));
  dev->thread_ = std::thread([d = dev.get()] { d->Loop(); });
  return dev;
}

VirtioBlkDevice::VirtioBlkDevice(std::unique_ptr<UringBlockFile> file, uint32_t disk_index,
                                 const GuestRamAccess& ram, std::function<void(bool)> set_irq,
                                 DiskWriteSink on_disk_write, HostCache host_cache)
    : file_(std::move(file)), disk_index_(disk_index), ram_(ram), set_irq_(std::move(set_irq)),
      on_disk_write_(std::move(on_disk_write)), host_cache_(host_cache),
      transport_(kVirtioDeviceIdBlock, kVirtioFVersion1 | kVirtioBlkFFlush | kVirtioBlkFSegMax,
                 FERRY_VIRTIO_BLK_QUEUE_NUM_MAX, BlkConfig(file_->size_bytes() / kVirtioBlkSectorBytes)),
      slots_(FERRY_VIRTIO_BLK_QUEUE_NUM_MAX) {}

VirtioBlkDevice::~VirtioBlkDevice() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  file_->Wake();
  if (thread_.joinable()) thread_.join();
}

void VirtioBlkDevice::Loop() {
  for (;;) {
    file_->WaitForWork();
    bool retry_submit = false;
    {
      std::lock_guard lock(mu_);
      file_->Reap([this](uint64_t tag, int32_t result) { CompleteLocked(tag, result); });
      if (stopping_ && in_flight_ == 0) break;
      if (!stopping_ && !quiesced_ && draining_ == 0) TakeRequestsLocked();
      // Requests already counted in flight must reach the kernel even if the device is now
      // quiesced, or a quiesce would wait for them forever.
      if (file_->has_unsubmitted()) {
        absl::Status st = file_->Submit();
        if (!st.ok()) {
          spdlog::error("virtio-blk {}: {}; retrying", disk_index_, std::string(st.message()));
          retry_submit = true;
        }
      }
      cv_.notify_all();
    }
    if (retry_submit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      file_->Wake();
    }
  }
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

std::optional<uint32_t> VirtioBlkDevice::FreeSlotLocked() const {
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].used) return i;
  }
  return std::nullopt;
}

void VirtioBlkDevice::TakeRequestsLocked() {
  if (!queue_ || !transport_.queue_live()) return;
  while (in_flight_ < slots_.size() && transport_.queue_live()) {
    std::optional<uint16_t> head = queue_->PopAvailable();
    if (!head) break;
    auto chain = queue_->ReadChain(*head, FERRY_VIRTIO_BLK_SEG_MAX + 2);
    if (!chain.ok()) return NeedsResetLocked(std::string(chain.status().message()));
    auto request = ParseBlkRequest(*chain, file_->size_bytes());
    if (!request.ok()) return NeedsResetLocked(std::string(request.status().message()));
    StartLocked(*head, std::move(*request));
  }
}

void VirtioBlkDevice::StartLocked(uint16_t head, BlkRequest r) {
  if (r.immediate_status) {
    if (*r.immediate_status == kVirtioBlkStatusIoErr) ++counters_.io_errors;
    return PublishLocked(head, r.status, *r.immediate_status, 1);
  }
  if (r.type == kVirtioBlkTypeGetId) {
    const std::string id = absl::StrCat("ferry-disk-", disk_index_);
    uint32_t written = 0;
    for (const ChainSegment& s : r.data) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(s.bytes, kVirtioBlkIdBytes - written));
      for (uint32_t i = 0; i < n; ++i, ++written) s.host[i] = written < id.size() ? id[written] : 0;
      if (n) ram_.MarkWritten(s.gpa, n);
      if (written == kVirtioBlkIdBytes) break;
    }
    return PublishLocked(head, r.status, kVirtioBlkStatusOk, written + 1);
  }
  const uint32_t tag = *FreeSlotLocked();  // in_flight_ < slots_.size()
  InFlight& f = slots_[tag];
  f.used = true;
  f.head = head;
  f.type = r.type;
  f.expected = r.data_bytes;
  f.offset = r.sector * kVirtioBlkSectorBytes;
  f.status = r.status;
  f.iov.clear();
  for (const ChainSegment& s : r.data) f.iov.push_back(iovec{s.host, s.bytes});
  f.data = std::move(r.data);
  const uint64_t offset = r.sector * kVirtioBlkSectorBytes;
  const unsigned count = static_cast<unsigned>(f.iov.size());
  bool queued = r.type == kVirtioBlkTypeIn    ? file_->QueueRead(tag, f.iov.data(), count, offset)
                : r.type == kVirtioBlkTypeOut ? file_->QueueWrite(tag, f.iov.data(), count, offset)
                                              : file_->QueueFlush(tag);
  if (!queued) {  // cannot happen with a ring twice the queue; answered, never dropped
    f.used = false;
    ++counters_.io_errors;
    return PublishLocked(head, r.status, kVirtioBlkStatusIoErr, 1);
  }
  ++in_flight_;
  counters_.max_in_flight = std::max<uint64_t>(counters_.max_in_flight, in_flight_);
}

void VirtioBlkDevice::CompleteLocked(uint64_t tag, int32_t result) {
  if (tag >= slots_.size() || !slots_[tag].used) return;
  InFlight& f = slots_[tag];
  f.used = false;
  --in_flight_;
  const bool ok = f.type == kVirtioBlkTypeFlush ? result >= 0 : result >= 0 && uint64_t(result) == f.expected;
  uint32_t written = 1;
  if (f.type == kVirtioBlkTypeIn) {
    // The kernel wrote guest RAM (perhaps partly, on an error): report it either way.
    for (const ChainSegment& s : f.data) ram_.MarkWritten(s.gpa, s.bytes);
    if (ok) written += static_cast<uint32_t>(f.expected);
  }
  if (f.type == kVirtioBlkTypeOut && on_disk_write_) on_disk_write_(f.offset, f.expected);
  if (f.type == kVirtioBlkTypeFlush) ++counters_.flushes;
  if (!ok) {
    ++counters_.io_errors;
    spdlog::warn("virtio-blk {}: request type {} failed: {}", disk_index_, f.type,
                 result < 0 ? strerror(-result) : absl::StrCat("short transfer of ", result, " bytes"));
  }
  const uint8_t value = ok ? kVirtioBlkStatusOk : kVirtioBlkStatusIoErr;
  if (f.type == kVirtioBlkTypeOut && mirroring_) {
    // Logged above; the guest sees it complete once the destination has its blocks.
    held_.push_back(HeldCompletion{f.head, f.status, value, written, 0});
    ++counters_.mirror_held;
    cv_.notify_all();
    return;
  }
  PublishLocked(f.head, f.status, value, written);
}

void VirtioBlkDevice::StartMirror() {
  std::lock_guard lock(mu_);
  mirroring_ = true;
}

uint64_t VirtioBlkDevice::CutMirror(std::chrono::milliseconds wait, const std::function<void()>& collect) {
  std::unique_lock lock(mu_);
  auto uncut = [this] { return std::any_of(held_.begin(), held_.end(), [](const HeldCompletion& h) { return h.cut == 0; }); };
  if (wait.count() > 0) cv_.wait_for(lock, wait, uncut);
  const uint64_t cut = ++last_cut_;
  for (HeldCompletion& h : held_) {
    if (h.cut == 0) h.cut = cut;
  }
  collect();
  return cut;
}

void VirtioBlkDevice::ReleaseMirrored(uint64_t through) {
  std::lock_guard lock(mu_);
  PublishHeldLocked(through);
}

void VirtioBlkDevice::EndMirror() {
  std::lock_guard lock(mu_);
  mirroring_ = false;
  PublishHeldLocked(UINT64_MAX);
}

void VirtioBlkDevice::PublishHeldLocked(uint64_t through) {
  size_t kept = 0;
  for (HeldCompletion& h : held_) {
    // An uncut completion is released only by EndMirror (through = max).
    const bool release = through == UINT64_MAX || (h.cut != 0 && h.cut <= through);
    if (release) {
      PublishLocked(h.head, h.status, h.value, h.written);
    } else {
      held_[kept++] = h;
    }
  }
  held_.resize(kept);
  cv_.notify_all();
}

void VirtioBlkDevice::PublishLocked(uint16_t head, const ChainSegment& status, uint8_t value, uint32_t written) {
  *status.host = value;
  ram_.MarkWritten(status.gpa, 1);
  ++counters_.completed;
  if (!queue_) return;
  if (queue_->PushUsed(head, written)) RaiseInterruptLocked(kVirtioInterruptUsedBuffer);
}

void VirtioBlkDevice::RaiseInterruptLocked(uint32_t bits) {
  VirtioMmioRegisters& regs = transport_.mutable_registers();
  const bool was_raised = regs.interrupt_status != 0;
  regs.interrupt_status |= bits;
  if (!was_raised && set_irq_) set_irq_(true);
}

void VirtioBlkDevice::NeedsResetLocked(const std::string& why) {
  spdlog::warn("virtio-blk {}: the driver broke the queue ({}); the device needs a reset", disk_index_, why);
  VirtioMmioRegisters& regs = transport_.mutable_registers();
  regs.status |= kVirtioStatusNeedsReset;
  if (regs.status & kVirtioStatusDriverOk) RaiseInterruptLocked(kVirtioInterruptConfigChange);
}

void VirtioBlkDevice::ActivateLocked() {
  if (!transport_.queue_live()) return;
  const VirtioMmioRegisters& regs = transport_.registers();
  if (regs.queue_num > transport_.queue_num_max()) {
    return NeedsResetLocked(absl::StrCat("queue size ", regs.queue_num, " > ", transport_.queue_num_max()));
  }
  QueueLayout layout{static_cast<uint16_t>(regs.queue_num), regs.queue_desc, regs.queue_driver, regs.queue_device};
  auto queue = SplitQueue::Create(ram_, layout, 0, 0);
  if (!queue.ok()) return NeedsResetLocked(std::string(queue.status().message()));
  queue_ = std::move(*queue);
  file_->Wake();  // requests made available before DRIVER_OK
}

void VirtioBlkDevice::DrainLocked(std::unique_lock<std::mutex>& lock) {
  ++draining_;
  cv_.wait(lock, [this] { return in_flight_ == 0; });
  --draining_;
}

void VirtioBlkDevice::MmioRead(uint64_t offset, uint8_t* data, uint32_t size) {
  std::lock_guard lock(mu_);
  transport_.Read(offset, data, size);
}

void VirtioBlkDevice::MmioWrite(uint64_t offset, const uint8_t* data, uint32_t size) {
  std::unique_lock lock(mu_);
  switch (transport_.Write(offset, data, size)) {
    case MmioEvent::kNone:
      return;
    case MmioEvent::kNotify:
      file_->Wake();
      return;
    case MmioEvent::kReset:
      DrainLocked(lock);
      PublishHeldLocked(UINT64_MAX);  // still logged: the next mirror cut carries their blocks
      queue_.reset();
      if (transport_.registers().interrupt_status != 0 && set_irq_) set_irq_(false);
      transport_.Reset();
      return;
    case MmioEvent::kDriverOk:
      return ActivateLocked();
    case MmioEvent::kQueueReady:
      if (transport_.registers().queue_ready == 0) {
        DrainLocked(lock);
        PublishHeldLocked(UINT64_MAX);
        queue_.reset();
        return;
      }
      return ActivateLocked();
    case MmioEvent::kInterruptAck:
      if (transport_.registers().interrupt_status == 0 && set_irq_) set_irq_(false);
      return;
  }
}

void VirtioBlkDevice::Quiesce() {
  std::unique_lock lock(mu_);
  quiesced_ = true;
  DrainLocked(lock);
}

void VirtioBlkDevice::Resume() {
  {
    std::lock_guard lock(mu_);
    quiesced_ = false;
  }
  file_->Wake();
}

VirtioBlkCounters VirtioBlkDevice::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

absl::StatusOr<v1::VirtioBlkState> VirtioBlkDevice::Save() {
  std::lock_guard lock(mu_);
  if (!quiesced_ || in_flight_ != 0) {
    return absl::FailedPreconditionError(absl::StrCat("virtio-blk ", disk_index_, ": save needs a quiesced device"));
  }
  if (!held_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("virtio-blk ", disk_index_, ": ", held_.size(),
                                                      " write completions still wait for the disk mirror"));
  }
  // What the guest wrote but never flushed may sit in this host's page cache only; the next host
  // (a shared datastore over NFS) reads the file server's copy.
  RETURN_IF_ERROR(file_->SyncNow());
  const VirtioMmioRegisters& r = transport_.registers();
  v1::VirtioBlkState s;
  s.set_disk_index(disk_index_);
  s.set_capacity_sectors(capacity_sectors());
  s.set_status(r.status);
  s.set_device_features_sel(r.device_features_sel);
  s.set_driver_features_sel(r.driver_features_sel);
  s.set_driver_features(r.driver_features);
  s.set_queue_sel(r.queue_sel);
  s.set_queue_num(r.queue_num);
  s.set_queue_ready(r.queue_ready);
  s.set_queue_desc(r.queue_desc);
  s.set_queue_driver(r.queue_driver);
  s.set_queue_device(r.queue_device);
  s.set_interrupt_status(r.interrupt_status);
  s.set_next_avail_index(queue_ ? queue_->next_avail() : 0);
  s.set_next_used_index(queue_ ? queue_->next_used() : 0);
  return s;
}

absl::Status VirtioBlkDevice::Restore(const v1::VirtioBlkState& s) {
  std::lock_guard lock(mu_);
  const std::string who = absl::StrCat("virtio-blk state of disk ", disk_index_);
  if (!quiesced_ || in_flight_ != 0) return absl::FailedPreconditionError(absl::StrCat(who, ": device is running"));
  if (s.disk_index() != disk_index_) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": saved for disk ", s.disk_index()));
  }
  if (s.capacity_sectors() != capacity_sectors()) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": saved disk had ", s.capacity_sectors(), " sectors, ",
                                                   file_->path(), " has ", capacity_sectors()));
  }
  if (s.queue_num() > transport_.queue_num_max() || s.next_avail_index() > 0xffff || s.next_used_index() > 0xffff) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": queue size ", s.queue_num(), " or indices ",
                                                   s.next_avail_index(), "/", s.next_used_index(), " out of range"));
  }
  if ((s.driver_features() & ~transport_.device_features()) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": driver features 0x", absl::Hex(s.driver_features()),
                                                   " were never offered"));
  }
  VirtioMmioRegisters r;
  r.status = s.status();
  r.device_features_sel = s.device_features_sel();
  r.driver_features_sel = s.driver_features_sel();
  r.driver_features = s.driver_features();
  r.queue_sel = s.queue_sel();
  r.queue_num = s.queue_num();
  r.queue_ready = s.queue_ready();
  r.queue_desc = s.queue_desc();
  r.queue_driver = s.queue_driver();
  r.queue_device = s.queue_device();
  r.interrupt_status = s.interrupt_status();
  std::optional<SplitQueue> queue;
  VirtioMmioTransport check = transport_;
  check.mutable_registers() = r;
  if (check.queue_live()) {
    QueueLayout layout{static_cast<uint16_t>(r.queue_num), r.queue_desc, r.queue_driver, r.queue_device};
    auto q = SplitQueue::Create(ram_, layout, static_cast<uint16_t>(s.next_avail_index()),
                                static_cast<uint16_t>(s.next_used_index()));
    if (!q.ok()) return absl::InvalidArgumentError(absl::StrCat(who, ": ", q.status().message()));
    queue = std::move(*q);
  }
  if (host_cache_ == HostCache::kMayBeStale) file_->DropCache();
  transport_.mutable_registers() = r;
  queue_ = std::move(queue);
  if (r.interrupt_status != 0 && set_irq_) set_irq_(true);
  return absl::OkStatus();
}

}  // namespace ferry
