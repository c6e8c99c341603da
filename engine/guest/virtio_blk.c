/* The built-in guest's virtio-blk driver (see virtio_blk.h). One device, one queue. */
#include "engine/guest/virtio_blk.h"

#define VBLK_MAX_QUEUE 256u
#define VBLK_DESCS_PER_REQUEST 3u /* header, data, status */

struct vblk_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags, next;
};
struct vblk_avail {
  uint16_t flags, idx;
  uint16_t ring[VBLK_MAX_QUEUE];
  uint16_t used_event;
};
struct vblk_used_elem {
  uint32_t id, len;
};
struct vblk_used {
  uint16_t flags, idx;
  struct vblk_used_elem ring[VBLK_MAX_QUEUE];
  uint16_t avail_event;
};
struct vblk_req_header {
  uint32_t type, reserved;
  uint64_t sector;
};

/* All in the image's bss: guest RAM, identity-mapped, so a pointer is a guest-physical address. */
static struct vblk_desc desc[VBLK_MAX_QUEUE] __attribute__((aligned(4096)));
static struct vblk_avail avail __attribute__((aligned(4096)));
static struct vblk_used used __attribute__((aligned(4096)));
static uint64_t buffers[DW_MAX_SLOTS][DW_BLOCK_WORDS] __attribute__((aligned(4096)));
static struct vblk_req_header headers[DW_MAX_SLOTS] __attribute__((aligned(64)));
static uint8_t statuses[DW_MAX_SLOTS] __attribute__((aligned(64)));

static struct {
  volatile uint32_t *regs;
  uint32_t qsize;
  uint16_t next_avail, last_used;
} dev;

static uint32_t rd(uint32_t off) { return dev.regs[off / 4]; }
static void wr(uint32_t off, uint32_t v) { dev.regs[off / 4] = v; }
static void barrier(void) { __asm__ volatile("" ::: "memory"); }
static uint64_t gpa(const void *p) { return (uint64_t)(uintptr_t)p; }

static int fail(char *err, uint32_t err_len, const char *what, uint64_t value) {
  char *end = err + err_len;
  fw_append_hex(fw_append_str(err, end, what), end, value);
  if (dev.regs && rd(FERRY_VIRTIO_MMIO_MAGIC) == FERRY_VIRTIO_MMIO_MAGIC_VALUE)
    wr(FERRY_VIRTIO_MMIO_STATUS, rd(FERRY_VIRTIO_MMIO_STATUS) | FERRY_VIRTIO_STATUS_FAILED);
  return -1;
}

static uint64_t *vblk_buffer(void *ctx, uint32_t slot) {
  (void)ctx;
  return buffers[slot];
}

static void vblk_submit(void *ctx, uint32_t slot, uint32_t type, uint64_t block) {
  (void)ctx;
  uint16_t head = (uint16_t)(slot * VBLK_DESCS_PER_REQUEST);
  struct vblk_desc *d = &desc[head];
  headers[slot].type = type;
  headers[slot].reserved = 0;
  headers[slot].sector = block * (DW_BLOCK_BYTES / FERRY_VIRTIO_BLK_SECTOR_SIZE);
  statuses[slot] = 0xff;
  d[0].addr = gpa(&headers[slot]);
  d[0].len = sizeof(headers[slot]);
  d[0].flags = FERRY_VIRTQ_DESC_F_NEXT;
  if (type == FERRY_VIRTIO_BLK_T_FLUSH) {
    d[0].next = (uint16_t)(head + 2); /* no data */
  } else {
    d[0].next = (uint16_t)(head + 1);
    d[1].addr = gpa(buffers[slot]);
    d[1].len = DW_BLOCK_BYTES;
    d[1].flags = (uint16_t)(FERRY_VIRTQ_DESC_F_NEXT | (type == FERRY_VIRTIO_BLK_T_IN ? FERRY_VIRTQ_DESC_F_WRITE : 0));
    d[1].next = (uint16_t)(head + 2);
  }
  d[2].addr = gpa(&statuses[slot]);
  d[2].len = 1;
  d[2].flags = FERRY_VIRTQ_DESC_F_WRITE;
  d[2].next = 0;
  avail.ring[dev.next_avail & (dev.qsize - 1)] = head;
  barrier(); /* x86 keeps stores in order; the compiler must too: ring entry before index */
  dev.next_avail++;
  __atomic_store_n(&avail.idx, dev.next_avail, __ATOMIC_RELEASE);
}

static void vblk_kick(void *ctx) {
  (void)ctx;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  wr(FERRY_VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static int vblk_complete(void *ctx, uint32_t *slot, uint32_t *status) {
  (void)ctx;
  if (__atomic_load_n(&used.idx, __ATOMIC_ACQUIRE) == dev.last_used) return 0;
  struct vblk_used_elem e = used.ring[dev.last_used & (dev.qsize - 1)];
  dev.last_used++;
  *slot = e.id / VBLK_DESCS_PER_REQUEST;
  *status = *slot < DW_MAX_SLOTS ? __atomic_load_n(&statuses[*slot], __ATOMIC_ACQUIRE) : FERRY_VIRTIO_BLK_S_IOERR;
  return 1;
}

uint32_t vblk_queue_size(void) { return dev.qsize; }

int vblk_probe(volatile uint32_t *regs, struct dw_disk *disk, char *err, uint32_t err_len) {
  dev.regs = regs;
  dev.qsize = 0;
  uint32_t magic = rd(FERRY_VIRTIO_MMIO_MAGIC);
  if (magic != FERRY_VIRTIO_MMIO_MAGIC_VALUE) return fail(err, err_len, "no virtio-mmio device there: magic ", magic);
  uint32_t version = rd(FERRY_VIRTIO_MMIO_VERSION);
  if (version != FERRY_VIRTIO_MMIO_VERSION_MODERN)
    return fail(err, err_len, "virtio-mmio version is not 2 (modern): ", version);
  uint32_t id = rd(FERRY_VIRTIO_MMIO_DEVICE_ID);
  if (id != FERRY_VIRTIO_DEVICE_ID_BLOCK) return fail(err, err_len, "not a block device: device id ", id);

  wr(FERRY_VIRTIO_MMIO_STATUS, 0);
  for (int i = 0; rd(FERRY_VIRTIO_MMIO_STATUS) != 0; ++i)
    if (i > 1000000) return fail(err, err_len, "device did not reset: status ", rd(FERRY_VIRTIO_MMIO_STATUS));
  uint32_t st = FERRY_VIRTIO_STATUS_ACKNOWLEDGE;
  wr(FERRY_VIRTIO_MMIO_STATUS, st);
  st |= FERRY_VIRTIO_STATUS_DRIVER;
  wr(FERRY_VIRTIO_MMIO_STATUS, st);

  wr(FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  uint64_t offered = rd(FERRY_VIRTIO_MMIO_DEVICE_FEATURES);
  wr(FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  offered |= (uint64_t)rd(FERRY_VIRTIO_MMIO_DEVICE_FEATURES) << 32;
  if (!(offered & (1ULL << FERRY_VIRTIO_F_VERSION_1)))
    return fail(err, err_len, "device does not offer VIRTIO_F_VERSION_1: features ", offered);
  uint64_t accepted = (1ULL << FERRY_VIRTIO_F_VERSION_1) | (offered & (1ULL << FERRY_VIRTIO_BLK_F_FLUSH));
  wr(FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  wr(FERRY_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)accepted);
  wr(FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  wr(FERRY_VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(accepted >> 32));
  st |= FERRY_VIRTIO_STATUS_FEATURES_OK;
  wr(FERRY_VIRTIO_MMIO_STATUS, st);
  if (!(rd(FERRY_VIRTIO_MMIO_STATUS) & FERRY_VIRTIO_STATUS_FEATURES_OK))
    return fail(err, err_len, "device refused features ", accepted);

  wr(FERRY_VIRTIO_MMIO_QUEUE_SEL, 0);
  if (rd(FERRY_VIRTIO_MMIO_QUEUE_READY)) return fail(err, err_len, "queue 0 is ready before setup: ", 1);
  uint32_t max = rd(FERRY_VIRTIO_MMIO_QUEUE_NUM_MAX);
  uint32_t qsize = VBLK_MAX_QUEUE;
  while (qsize > max) qsize >>= 1; /* a power of two: the free-running indices wrap with it */
  if (qsize < VBLK_DESCS_PER_REQUEST) return fail(err, err_len, "queue 0 too small: QueueNumMax ", max);
  wr(FERRY_VIRTIO_MMIO_QUEUE_NUM, qsize);
  wr(FERRY_VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)gpa(desc));
  wr(FERRY_VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(gpa(desc) >> 32));
  wr(FERRY_VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)gpa(&avail));
  wr(FERRY_VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(gpa(&avail) >> 32));
  wr(FERRY_VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)gpa(&used));
  wr(FERRY_VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(gpa(&used) >> 32));
  avail.flags = FERRY_VIRTQ_AVAIL_F_NO_INTERRUPT; /* the guest polls the used ring */
  avail.idx = 0;
  used.idx = 0;
  dev.next_avail = dev.last_used = 0;
  wr(FERRY_VIRTIO_MMIO_QUEUE_READY, 1);

  uint32_t gen, lo, hi;
  do {
    gen = rd(FERRY_VIRTIO_MMIO_CONFIG_GENERATION);
    lo = rd(FERRY_VIRTIO_MMIO_CONFIG);
    hi = rd(FERRY_VIRTIO_MMIO_CONFIG + 4);
  } while (gen != rd(FERRY_VIRTIO_MMIO_CONFIG_GENERATION));
  uint64_t sectors = (uint64_t)hi << 32 | lo;

  st |= FERRY_VIRTIO_STATUS_DRIVER_OK;
  wr(FERRY_VIRTIO_MMIO_STATUS, st);
  if (rd(FERRY_VIRTIO_MMIO_STATUS) & FERRY_VIRTIO_STATUS_NEEDS_RESET)
    return fail(err, err_len, "device needs a reset after setup: status ", rd(FERRY_VIRTIO_MMIO_STATUS));
  dev.qsize = qsize;

  uint32_t slots = qsize / VBLK_DESCS_PER_REQUEST;
  disk->ctx = 0;
  disk->slots = slots < DW_MAX_SLOTS ? slots : DW_MAX_SLOTS;
  disk->can_flush = (offered & (1ULL << FERRY_VIRTIO_BLK_F_FLUSH)) != 0;
  disk->capacity_blocks = sectors / (DW_BLOCK_BYTES / FERRY_VIRTIO_BLK_SECTOR_SIZE);
  disk->buffer = vblk_buffer;
  disk->submit = vblk_submit;
  disk->kick = vblk_kick;
  disk->complete = vblk_complete;
  return 0;
}
