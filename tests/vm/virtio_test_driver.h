#pragma once
// A virtio-blk driver on the host side, for tests: split rings in a GuestMemory, registers through
// the device's MmioRead/MmioWrite, completions found by polling the used ring (as the built-in
// guest does). Raw helpers (WriteDesc, PublishAvail) let a test build malformed chains. No gtest
// here: tests and the benchmark (bench/micro/virtio_blk_bench.cc) check what it returns.

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "engine/guest/guest_abi.h"
#include "engine/memory/guest_memory.h"
#include "engine/vm/virtio/blk_device.h"
#include "engine/vm/virtio/mmio_transport.h"

namespace ferry::virtio_test {

struct UsedElem {
  uint32_t id;
  uint32_t len;
};

class TestBlkDriver {
 public:
  static constexpr uint64_t kDescGpa = 0x10000;
  static constexpr uint64_t kAvailGpa = 0x11000;
  static constexpr uint64_t kUsedGpa = 0x12000;
  static constexpr uint64_t kHeaderGpa = 0x20000;  // 16 bytes per head
  static constexpr uint64_t kStatusGpa = 0x30000;  // 1 byte per head
  static constexpr uint64_t kDataGpa = 0x100000;

  TestBlkDriver(GuestMemory& mem, MmioDevice& dev, uint16_t queue_size = 128)
      : mem_(mem), dev_(dev), queue_size_(queue_size) {}

  uint32_t Reg(uint64_t offset) {
    uint32_t v = 0;
    dev_.MmioRead(offset, reinterpret_cast<uint8_t*>(&v), 4);
    return v;
  }
  void SetReg(uint64_t offset, uint32_t v) { dev_.MmioWrite(offset, reinterpret_cast<uint8_t*>(&v), 4); }
  uint64_t Config64(uint64_t at) {
    uint64_t v = 0;
    dev_.MmioRead(FERRY_VIRTIO_MMIO_CONFIG + at, reinterpret_cast<uint8_t*>(&v), 8);
    return v;
  }

  // Virtio 1.1 3.1.1 with the given features; true when the device kept FEATURES_OK.
  bool Negotiate(uint64_t features) {
    SetReg(FERRY_VIRTIO_MMIO_STATUS, 0);
    SetReg(FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge);
    SetReg(FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver);
    SetReg(FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    SetReg(FERRY_VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features));
    SetReg(FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    SetReg(FERRY_VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features >> 32));
    SetReg(FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk);
    return (Reg(FERRY_VIRTIO_MMIO_STATUS) & kVirtioStatusFeaturesOk) != 0;
  }

  // Negotiates the offered features and sets up queue 0 at `desc`/`avail`/`used`; false when the
  // device refused the features.
  [[nodiscard]] bool Init(uint64_t desc = kDescGpa, uint64_t avail = kAvailGpa, uint64_t used = kUsedGpa) {
    std::memset(mem_.data() + kDescGpa, 0, 0x3000);
    next_desc_ = 0;
    avail_idx_ = 0;
    used_seen_ = 0;
    if (!Negotiate(kVirtioFVersion1 | kVirtioBlkFFlush | kVirtioBlkFSegMax)) return false;
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_SEL, 0);
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_NUM, queue_size_);
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(desc));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DESC_HIGH, static_cast<uint32_t>(desc >> 32));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DRIVER_LOW, static_cast<uint32_t>(avail));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, static_cast<uint32_t>(avail >> 32));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DEVICE_LOW, static_cast<uint32_t>(used));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, static_cast<uint32_t>(used >> 32));
    SetReg(FERRY_VIRTIO_MMIO_QUEUE_READY, 1);
    SetReg(FERRY_VIRTIO_MMIO_STATUS, kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk |
                                         kVirtioStatusDriverOk);
    return true;
  }

  void WriteDesc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = mem_.data() + kDescGpa + 16ull * index;
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  }
  void PublishAvail(uint16_t head) {
    uint8_t* avail = mem_.data() + kAvailGpa;
    std::memcpy(avail + 4 + 2 * (avail_idx_ % queue_size_), &head, 2);
    ++avail_idx_;
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(avail + 2)).store(avail_idx_, std::memory_order_release);
  }

  // Puts a request on the available ring: header, `data` buffers (gpa, bytes), status. Returns its head.
  uint16_t Post(uint32_t type, uint64_t sector, const std::vector<std::pair<uint64_t, uint32_t>>& data) {
    const bool device_writes = type == 0 || type == 8;
    const uint16_t head = next_desc_;
    uint8_t* header = mem_.data() + kHeaderGpa + 16ull * head;
    uint32_t reserved = 0;
    std::memcpy(header, &type, 4);
    std::memcpy(header + 4, &reserved, 4);
    std::memcpy(header + 8, &sector, 8);
    mem_.data()[kStatusGpa + head] = 0xee;
    uint16_t i = head;
    auto next = [&](uint16_t x) { return static_cast<uint16_t>((x + 1) % queue_size_); };
    WriteDesc(i, kHeaderGpa + 16ull * head, 16, 1, next(i));
    for (const auto& [gpa, bytes] : data) {
      i = next(i);
      WriteDesc(i, gpa, bytes, static_cast<uint16_t>(1 | (device_writes ? 2 : 0)), next(i));
    }
    i = next(i);
    WriteDesc(i, kStatusGpa + head, 1, 2, 0);
    next_desc_ = next(i);
    PublishAvail(head);
    return head;
  }
  void Notify() { SetReg(FERRY_VIRTIO_MMIO_QUEUE_NOTIFY, 0); }

  uint16_t UsedIdx() {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(mem_.data() + kUsedGpa + 2))
        .load(std::memory_order_acquire);
  }
  // Waits (at most 10 s: a hang fails, not a slow host) for `count` new used elements; returns
  // those that came (fewer on a timeout).
  std::vector<UsedElem> WaitUsed(size_t count) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (static_cast<uint16_t>(UsedIdx() - used_seen_) < count && std::chrono::steady_clock::now() < end) {
      std::this_thread::yield();  // a polling driver; a sleep here would be most of a request's latency
    }
    std::vector<UsedElem> out;
    while (out.size() < count && used_seen_ != UsedIdx()) {
      UsedElem e;
      std::memcpy(&e, mem_.data() + kUsedGpa + 4 + 8ull * (used_seen_ % queue_size_), 8);
      out.push_back(e);
      ++used_seen_;
    }
    return out;
  }
  uint8_t StatusOf(uint16_t head) { return mem_.data()[kStatusGpa + head]; }
  uint8_t* Data(uint64_t gpa) { return mem_.data() + gpa; }
  uint16_t avail_idx() const { return avail_idx_; }
  // A driver taking over a restored device continues from the same ring indices.
  void ContinueFrom(const TestBlkDriver& other) {
    next_desc_ = other.next_desc_;
    avail_idx_ = other.avail_idx_;
    used_seen_ = other.used_seen_;
  }

 private:
  GuestMemory& mem_;
  MmioDevice& dev_;
  uint16_t queue_size_;
  uint16_t next_desc_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t used_seen_ = 0;
};

}  // namespace ferry::virtio_test
