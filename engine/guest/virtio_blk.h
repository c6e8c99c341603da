/* The built-in guest's virtio-blk driver: modern virtio-mmio (version 2), one split virtqueue in
 * the guest image (identity-mapped, so its addresses are guest-physical), requests polled through
 * the used ring with interrupts left off. Freestanding guest code only. It serves the disk
 * workload through struct dw_disk; its register window must be mapped uncached (guest_main.c). */
#ifndef FERRY_VIRTIO_BLK_H
#define FERRY_VIRTIO_BLK_H

#include <stdint.h>

#include "engine/guest/disk_workload.h"

/* Resets and sets up the device whose registers are at `regs` (a virtual address): features
 * VERSION_1 and, when offered, BLK_F_FLUSH; queue 0 of up to 256 entries. 0 with `disk` ready for
 * the disk workload, or -1 with why not in err (the device is then marked FAILED when it is one). */
int vblk_probe(volatile uint32_t *regs, struct dw_disk *disk, char *err, uint32_t err_len);
/* The size of the queue vblk_probe chose (0 before). */
uint32_t vblk_queue_size(void);

#endif
