#include "engine/vm/virtio/mmio_transport.h"

#include <cstring>

#include "engine/guest/guest_abi.h"

namespace ferry {
namespace {

void SetHalf(uint64_t& v, bool high, uint32_t half) {
  v = high ? (v & 0xffffffffull) | (uint64_t{half} << 32) : (v & ~0xffffffffull) | half;
}

}  // namespace

VirtioMmioTransport::VirtioMmioTransport(uint32_t device_id, uint64_t device_features, uint16_t queue_num_max,
                                         std::vector<uint8_t> config)
    : device_id_(device_id), device_features_(device_features), queue_num_max_(queue_num_max),
      config_(std::move(config)) {}

bool VirtioMmioTransport::queue_live() const {
  return (regs_.status & kVirtioStatusDriverOk) && !(regs_.status & kVirtioStatusNeedsReset) &&
         regs_.queue_ready == 1;
}

bool VirtioMmioTransport::queue_writable() const {
  return regs_.queue_sel == 0 && regs_.queue_ready == 0 && !(regs_.status & kVirtioStatusDriverOk);
}

void VirtioMmioTransport::Read(uint64_t offset, uint8_t* data, uint32_t size) const {
  std::memset(data, 0, size);
  if (offset >= FERRY_VIRTIO_MMIO_CONFIG) {
    uint64_t at = offset - FERRY_VIRTIO_MMIO_CONFIG;
    for (uint32_t i = 0; i < size; ++i) {
      if (at + i < config_.size()) data[i] = config_[at + i];
    }
    return;
  }
  if (size != 4 || offset % 4 != 0) return;
  uint32_t v = ReadRegister(offset);
  std::memcpy(data, &v, 4);
}

uint32_t VirtioMmioTransport::ReadRegister(uint64_t offset) const {
  const bool q0 = regs_.queue_sel == 0;
  switch (offset) {
    case FERRY_VIRTIO_MMIO_MAGIC: return kVirtioMmioMagic;
    case FERRY_VIRTIO_MMIO_VERSION: return kVirtioMmioVersion;
    case FERRY_VIRTIO_MMIO_DEVICE_ID: return device_id_;
    case FERRY_VIRTIO_MMIO_VENDOR_ID: return kVirtioVendorFerry;
    case FERRY_VIRTIO_MMIO_DEVICE_FEATURES:
      if (regs_.device_features_sel > 1) return 0;
      return static_cast<uint32_t>(device_features_ >> (32 * regs_.device_features_sel));
    case FERRY_VIRTIO_MMIO_QUEUE_NUM_MAX: return q0 ? queue_num_max_ : 0;
    case FERRY_VIRTIO_MMIO_QUEUE_READY: return q0 ? regs_.queue_ready : 0;
    case FERRY_VIRTIO_MMIO_INTERRUPT_STATUS: return regs_.interrupt_status;
    case FERRY_VIRTIO_MMIO_STATUS: return regs_.status;
    case FERRY_VIRTIO_MMIO_CONFIG_GENERATION: return 0;
    default: return 0;
  }
}

MmioEvent VirtioMmioTransport::Write(uint64_t offset, const uint8_t* data, uint32_t size) {
  if (offset >= FERRY_VIRTIO_MMIO_CONFIG || size != 4 || offset % 4 != 0) return MmioEvent::kNone;
  uint32_t v;
  std::memcpy(&v, data, 4);
  return WriteRegister(offset, v);
}

MmioEvent VirtioMmioTransport::WriteRegister(uint64_t offset, uint32_t v) {
  switch (offset) {
    case FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL: regs_.device_features_sel = v; return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL: regs_.driver_features_sel = v; return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_DRIVER_FEATURES:
      // Features are fixed once FEATURES_OK is set.
      if (regs_.driver_features_sel <= 1 && !(regs_.status & kVirtioStatusFeaturesOk)) {
        SetHalf(regs_.driver_features, regs_.driver_features_sel == 1, v);
      }
      return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_QUEUE_SEL: regs_.queue_sel = v; return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_QUEUE_NUM:
      if (queue_writable()) regs_.queue_num = v;
      return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_QUEUE_READY:
      if (regs_.queue_sel != 0 || (v != 0 && v != 1) || v == regs_.queue_ready) return MmioEvent::kNone;
      regs_.queue_ready = v;
      return MmioEvent::kQueueReady;
    case FERRY_VIRTIO_MMIO_QUEUE_NOTIFY: return v == 0 ? MmioEvent::kNotify : MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_INTERRUPT_ACK:
      if ((regs_.interrupt_status & v) == 0) return MmioEvent::kNone;
      regs_.interrupt_status &= ~v;
      return MmioEvent::kInterruptAck;
    case FERRY_VIRTIO_MMIO_STATUS: return WriteStatus(v);
    case FERRY_VIRTIO_MMIO_QUEUE_DESC_LOW:
    case FERRY_VIRTIO_MMIO_QUEUE_DESC_HIGH:
      if (queue_writable()) SetHalf(regs_.queue_desc, offset == FERRY_VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
      return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case FERRY_VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
      if (queue_writable()) SetHalf(regs_.queue_driver, offset == FERRY_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, v);
      return MmioEvent::kNone;
    case FERRY_VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case FERRY_VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
      if (queue_writable()) SetHalf(regs_.queue_device, offset == FERRY_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, v);
      return MmioEvent::kNone;
    default: return MmioEvent::kNone;
  }
}

MmioEvent VirtioMmioTransport::WriteStatus(uint32_t v) {
  if (v == 0) return MmioEvent::kReset;
  const uint32_t was = regs_.status;
  // The device's own bit survives a driver write; the driver cannot set it.
  uint32_t next = (v & ~kVirtioStatusNeedsReset) | (was & kVirtioStatusNeedsReset);
  if ((next & kVirtioStatusFeaturesOk) && !(was & kVirtioStatusFeaturesOk)) {
    const bool subset = (regs_.driver_features & ~device_features_) == 0;
    const bool modern = (regs_.driver_features & kVirtioFVersion1) != 0;
    if (!subset || !modern) next &= ~kVirtioStatusFeaturesOk;  // the driver reads it back and gives up
  }
  // DRIVER_OK without FEATURES_OK is a driver bug: the queue stays stopped.
  if ((next & kVirtioStatusDriverOk) && !(next & kVirtioStatusFeaturesOk)) next &= ~kVirtioStatusDriverOk;
  regs_.status = next;
  if ((next & kVirtioStatusDriverOk) && !(was & kVirtioStatusDriverOk)) return MmioEvent::kDriverOk;
  return MmioEvent::kNone;
}

}  // namespace ferry
