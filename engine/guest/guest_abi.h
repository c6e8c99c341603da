/* The contract between the built-in guest and any VMM that runs it (Ferry's microVM, the synthetic
 * backend, QEMU). Plain C so the freestanding guest and the C++ VMM share one definition. Every
 * guest-physical address constant lives here. */
#ifndef FERRY_GUEST_ABI_H
#define FERRY_GUEST_ABI_H

/* ---- Guest-physical layout ------------------------------------------------------------------ */
#define FERRY_GPA_MULTIBOOT_INFO 0x00007000ULL /* VMM-written multiboot info struct */
#define FERRY_GPA_MMAP 0x00007800ULL           /* multiboot memory map entries */
#define FERRY_GPA_CMDLINE 0x00008000ULL        /* NUL-terminated command line, < 4 KiB */
#define FERRY_CMDLINE_MAX 4096
#define FERRY_GPA_IMAGE 0x00100000ULL          /* the guest image is linked and loaded at 1 MiB */
#define FERRY_GPA_IMAGE_LIMIT 0x00400000ULL    /* the image (incl. bss, page tables, stacks) ends below */
#define FERRY_GPA_WORKSET 0x00400000ULL        /* generation table, then working-set pages */
#define FERRY_GUEST_MIN_MEMORY (8ULL << 20)
/* Guest RAM is one memfd. The microVM maps it as QEMU's pc machine does around the 32-bit MMIO
 * hole: memfd [0, LOW_RAM_END) at GPA 0, and the rest (guests above 3 GiB) from GPA 4 GiB. The
 * multiboot memory map lists both ranges. docs/memory_layout.md draws the whole layout. */
#define FERRY_GPA_LOW_RAM_END 0xC0000000ULL  /* 3 GiB */
#define FERRY_GPA_HIGH_RAM 0x100000000ULL    /* 4 GiB: memfd offset FERRY_GPA_LOW_RAM_END */
/* The built-in guest maps RAM linearly: virtual [0, low end) is identity-mapped and each RAM range
 * of the memory map above it follows at the next virtual address, so under Ferry's microVM a
 * guest virtual address is a memfd offset (what the synthetic backend and the host-side checks
 * use). The working-set region starts at FERRY_GPA_WORKSET in that view and must end below this
 * (the guest's page directories cover 64 GiB). */
#define FERRY_GUEST_MAX_RAM_VIEW (64ULL << 30)
#define FERRY_MAX_VCPUS 8
/* The workload's state block (config, per-vCPU cursors, rng, counters) opens the working-set
 * region; the generation table (one 32-bit generation per page) follows, then the pages. */
#define FERRY_WORKLOAD_STATE_BYTES 0x1000ULL

/* ---- Status port: the guest's structured reports to the VMM ------------------------------------
 * Each report is one 32-bit OUT to one of these ports (value in EAX).
 * Heartbeats stay at one per millisecond of guest time: the gap between them is how Ferry measures
 * the stall a migration causes, and an OUT is an exit to the VMM costing ~27 us at the guest's
 * CPL 3 on the slowest host measured (PVM, nested, no VMX), ~3% of the vCPU; a few us under VMX.
 * The serial console's "hb <n> w=<pages>" line, once a second, gives the pages all workers
 * wrote in that second: the dirty rate the guest achieved. */
#define FERRY_STATUS_PORT_BASE 0x0f00
#define FERRY_STATUS_HEARTBEAT 0x0f00  /* value: heartbeat count (low 32 bits); ~1/ms, vCPU 0 only */
#define FERRY_STATUS_CORRUPTION 0x0f04 /* value: working-set page index whose content was wrong */
#define FERRY_STATUS_BOOTED 0x0f08     /* value: vCPU index that reached its workload loop */
#define FERRY_STATUS_SHUTDOWN 0x0f0c   /* value: exit code; the vCPU then halts */
#define FERRY_STATUS_ROUND 0x0f10      /* value: completed verification sweeps (vCPU 0) */
/* value: (worker << 24) | (its completed sweeps & 0xffffff). Every worker sends one as it finishes
 * re-checking its whole slice of the working set, so the VMM knows when every page has been
 * verified since a given moment (e.g. arrival by migration). */
#define FERRY_STATUS_SWEEP 0x0f14
#define FERRY_STATUS_PORT_END 0x0f18

/* ---- Disks: virtio-blk over virtio-mmio ---------------------------------------------------------
 * Modern virtio-mmio (version 2, virtio 1.x register layout), one 4 KiB register window per disk in
 * the 32-bit MMIO hole: disk i at FERRY_GPA_VIRTIO_MMIO_BASE + i * FERRY_VIRTIO_MMIO_STRIDE raising
 * IRQ FERRY_VIRTIO_IRQ_BASE + i. The VMM lists each on the multiboot command line in Linux's
 * syntax, " virtio_mmio.device=4K@0xd0000000:5", and the guest finds its disks by parsing that.
 * docs/virtio_blk.md (the device) and docs/guest_verification.md (the guest's disk workload). */
#define FERRY_GPA_VIRTIO_MMIO_BASE 0xD0000000ULL
#define FERRY_VIRTIO_MMIO_STRIDE 0x1000ULL
#define FERRY_VIRTIO_MMIO_SIZE 0x1000ULL
#define FERRY_VIRTIO_IRQ_BASE 5
#define FERRY_VIRTIO_MAX_DISKS 16
/* Registers (byte offsets in a device's window; all 32-bit, little-endian). */
#define FERRY_VIRTIO_MMIO_MAGIC 0x000 /* "virt" */
#define FERRY_VIRTIO_MMIO_VERSION 0x004
#define FERRY_VIRTIO_MMIO_DEVICE_ID 0x008
#define FERRY_VIRTIO_MMIO_VENDOR_ID 0x00c
#define FERRY_VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define FERRY_VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define FERRY_VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define FERRY_VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define FERRY_VIRTIO_MMIO_QUEUE_SEL 0x030
#define FERRY_VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define FERRY_VIRTIO_MMIO_QUEUE_NUM 0x038
#define FERRY_VIRTIO_MMIO_QUEUE_READY 0x044
#define FERRY_VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define FERRY_VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define FERRY_VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define FERRY_VIRTIO_MMIO_STATUS 0x070
#define FERRY_VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define FERRY_VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define FERRY_VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090 /* the available ring */
#define FERRY_VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define FERRY_VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0 /* the used ring */
#define FERRY_VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define FERRY_VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define FERRY_VIRTIO_MMIO_CONFIG 0x100 /* device config: virtio-blk's starts with le64 capacity */
#define FERRY_VIRTIO_MMIO_MAGIC_VALUE 0x74726976u
#define FERRY_VIRTIO_MMIO_VERSION_MODERN 2
#define FERRY_VIRTIO_DEVICE_ID_BLOCK 2
/* Device status bits. */
#define FERRY_VIRTIO_STATUS_ACKNOWLEDGE 1
#define FERRY_VIRTIO_STATUS_DRIVER 2
#define FERRY_VIRTIO_STATUS_DRIVER_OK 4
#define FERRY_VIRTIO_STATUS_FEATURES_OK 8
#define FERRY_VIRTIO_STATUS_NEEDS_RESET 64
#define FERRY_VIRTIO_STATUS_FAILED 128
/* Feature bits the built-in guest accepts (bit numbers). */
#define FERRY_VIRTIO_BLK_F_FLUSH 9
#define FERRY_VIRTIO_F_VERSION_1 32
/* Split-ring descriptor flags, request types and status. A request is three descriptors: the
 * 16-byte header (le32 type, le32 reserved, le64 sector of 512 bytes), the data, a status byte. */
#define FERRY_VIRTQ_DESC_F_NEXT 1
#define FERRY_VIRTQ_DESC_F_WRITE 2
#define FERRY_VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define FERRY_VIRTIO_BLK_T_IN 0
#define FERRY_VIRTIO_BLK_T_OUT 1
#define FERRY_VIRTIO_BLK_T_FLUSH 4
#define FERRY_VIRTIO_BLK_S_OK 0
#define FERRY_VIRTIO_BLK_S_IOERR 1
#define FERRY_VIRTIO_BLK_S_UNSUPP 2
#define FERRY_VIRTIO_BLK_SECTOR_SIZE 512
/* What Ferry's device offers (docs/virtio_blk.md): QueueNumMax, and seg_max (data descriptors per request). */
#define FERRY_VIRTIO_BLK_QUEUE_NUM_MAX 256
#define FERRY_VIRTIO_BLK_SEG_MAX 126

/* ---- Serial console ----------------------------------------------------------------------------- */
#define FERRY_COM1_PORT 0x3f8

/* ---- Multiboot ---------------------------------------------------------------------------------- */
#define FERRY_MULTIBOOT_HEADER_MAGIC 0x1BADB002u
#define FERRY_MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* ---- Page content --------------------------------------------------------------------------------
 * Page p of the working set at generation g holds 512 64-bit words: word i = ferry_page_word(p, g, i).
 * Generation 0 means "never written" and the page is all zeros. */
static inline unsigned long long ferry_mix64(unsigned long long x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
static inline unsigned long long ferry_page_word(unsigned long long page, unsigned int gen,
                                                 unsigned int i) {
  return ferry_mix64((page << 24) ^ ((unsigned long long)gen << 1) ^ 1ULL) + i * 0x9E3779B97F4A7C15ULL;
}

/* ---- Disk block content --------------------------------------------------------------------------
 * Block b (4 KiB) of the guest's disk working set at generation g >= 1 holds 512 64-bit words:
 * word 0 = ferry_block_tag(b, g), so a block names its own number and generation, and word i > 0 =
 * ferry_block_word(b, g, i). A block the guest has not written since it booted is all zeros (a
 * fresh sparse disk) or some generation of itself (a disk written before a reboot). */
static inline unsigned long long ferry_block_tag(unsigned long long block, unsigned int gen) {
  return ((unsigned long long)gen << 32) | (block & 0xffffffffULL);
}
static inline unsigned long long ferry_block_word(unsigned long long block, unsigned int gen,
                                                  unsigned int i) {
  if (i == 0) return ferry_block_tag(block, gen);
  return ferry_mix64((block << 24) ^ ((unsigned long long)gen << 1) ^ 0xb10c0000ULL) + i * 0x9E3779B97F4A7C15ULL;
}

#endif
