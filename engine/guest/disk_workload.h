/* The built-in guest's disk workload: it writes 4 KiB blocks of its disk whose content derives
 * from (block, generation) (guest_abi.h's ferry_block_word), keeps each block's generation in
 * guest memory as the memory workload keeps each page's, reads blocks back and verifies them,
 * and reports on the console. Compiled into ferry-guest.elf and, for unit tests, into the host
 * library ferry_workload. No libc.
 *
 * The workload talks to its disk through struct dw_disk (the guest's virtio-blk driver,
 * virtio_blk.c; an in-memory disk in tests), so it knows nothing of virtqueues. Its state block and
 * generation table live in guest RAM right after the memory working set, so a migration carries
 * them with the guest; at most one request per block is in flight, so a completed write's
 * generation is exactly what the disk must hold. Each write first reads the block back and
 * verifies it (as the memory workload checks a page before rewriting it), and a background sweep
 * reads the whole disk working set at the same rate. */
#ifndef FERRY_DISK_WORKLOAD_H
#define FERRY_DISK_WORKLOAD_H

#include <stdint.h>

#include "engine/guest/guest_abi.h"
#include "engine/guest/workload.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DW_BLOCK_BYTES 4096u
#define DW_BLOCK_WORDS 512u
#define DW_MAX_SLOTS 8 /* requests in flight at once */
#define DW_DEFAULT_RATE_MIBPS 4
#define DW_STATE_MAGIC 0x64616f6c6b736964ULL /* "diskload" */
#define DW_STATE_VERSION 1
#define DW_FLUSH_PERIOD_MS 1000
#define DW_MAX_BACKLOG_MS 2
#define DW_MAX_ERROR_LINES 8 /* I/O error lines printed; all are counted */

/* One virtio_mmio.device=<size>@<base>:<irq> from the command line. */
struct dw_mmio_device {
  uint64_t base, size;
  uint32_t irq, reserved;
};

struct dw_config {
  uint64_t ws_blocks;        /* disk_ws in 4 KiB blocks; 0 = no disk I/O */
  uint64_t rate_bytes_per_s; /* disk_rate: bytes written per second (and read back); 0 = unlimited */
  uint32_t ndevices;
  uint32_t reserved;
  struct dw_mmio_device devices[FERRY_VIRTIO_MAX_DISKS];
};

void dw_config_defaults(struct dw_config *c);
/* 1 when `key` (len bytes, no '=') is an option dw_parse_cmdline owns: fw_parse_cmdline skips it. */
int dw_owns_key(const char *key, uint32_t len);
/* Parses `disk_ws=<MiB> disk_rate=<MiB/s> virtio_mmio.device=<size>@<base>:<irq>` out of a whole
 * command line, ignoring every other word. Returns 0, or -1 with a message in err. */
int dw_parse_cmdline(const char *s, struct dw_config *c, char *err, uint32_t err_len);

/* A disk as the workload sees it: request slots, each with a 4 KiB data buffer. */
struct dw_disk {
  void *ctx;
  uint32_t slots;           /* 1..DW_MAX_SLOTS */
  uint32_t can_flush;       /* the device takes FLUSH requests */
  uint64_t capacity_blocks; /* whole 4 KiB blocks */
  uint64_t *(*buffer)(void *ctx, uint32_t slot);
  /* Queues a request (FERRY_VIRTIO_BLK_T_*) for `block` in `slot`; the device learns of it at kick. */
  void (*submit)(void *ctx, uint32_t slot, uint32_t type, uint64_t block);
  void (*kick)(void *ctx);
  /* Takes one finished request: 1 with its slot and status (FERRY_VIRTIO_BLK_S_*), 0 if none. */
  int (*complete)(void *ctx, uint32_t *slot, uint32_t *status);
};

/* A write is a CHECK (read and verify the block) followed in the same slot by the WRITE of its
 * next generation; READ is the background sweep's verification. */
enum dw_op { DW_OP_FREE = 0, DW_OP_WRITE = 1, DW_OP_READ = 2, DW_OP_FLUSH = 3, DW_OP_CHECK = 4 };

struct dw_slot {
  uint64_t block;
  uint32_t op; /* enum dw_op */
  uint32_t gen; /* WRITE: the generation written; READ, CHECK: the one expected when it was sent */
};

struct dw_state {
  uint64_t magic;
  uint32_t version, nslots;
  uint64_t ws_blocks;
  uint64_t ticks_per_ms, ticks_per_block; /* 0 = unlimited */
  uint64_t gen_offset;                    /* from the start of the disk region */
  uint64_t next_write_tick, next_read_tick, next_flush_tick, next_report_tick;
  uint64_t rng, sweep_cursor;
  uint64_t blocks_written, blocks_verified, corruptions, sweeps, flushes, io_errors;
  uint32_t can_flush, inflight;
  struct dw_slot slot[DW_MAX_SLOTS];
};

/* Bytes of the disk region (state block + generation table), a multiple of 4 KiB. */
uint64_t dw_region_bytes(const struct dw_config *c);
/* Lays out and zeroes the state and generation table at `region` for `disk`. */
void dw_init(void *region, const struct dw_config *c, const struct dw_disk *disk, uint64_t ticks_per_ms,
             uint64_t now);
uint32_t *dw_gen_table(void *region);
/* Checks a block's content read from the disk against generation `gen` (0 = not written since
 * boot: zeros or any generation of this block is fine). 1 = good, else 0 with the first wrong word. */
int dw_check_block(const uint64_t *data, uint64_t block, uint32_t gen, uint64_t *expected, uint64_t *got,
                   uint32_t *word);
/* Fills `data` with block `block` at generation `gen`. */
void dw_fill_block(uint64_t *data, uint64_t block, uint32_t gen);
/* Takes finished requests, sends due writes, verifying reads and flushes, and once a second a
 * "disk ..." progress line. Returns ticks until it next has work (0 = call again at once). */
uint64_t dw_step(void *region, const struct dw_disk *disk, uint64_t now, const struct fw_env *env);

#ifdef __cplusplus
}
#endif

#endif
