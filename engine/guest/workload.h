/* The built-in guest's workload: page content, pacing, write patterns and verification. One
 * source of truth, compiled twice: freestanding into ferry-guest.elf, and for the host as the
 * library ferry_workload that the synthetic backend runs. No libc: only <stdint.h>.
 *
 * Every bit of workload state lives in the working-set region of guest memory (a state block at
 * FERRY_GPA_WORKSET, then the generation table, then the pages), so copying guest memory moves
 * the workload with it. Time is in "ticks" (the TSC in the guest, nanoseconds of a virtual clock
 * in the synthetic backend); the caller says how many ticks make a millisecond. */
#ifndef FERRY_WORKLOAD_H
#define FERRY_WORKLOAD_H

#include <stdint.h>

#include "engine/guest/guest_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

enum fw_pattern { FW_PATTERN_SEQUENTIAL = 1, FW_PATTERN_RANDOM = 2, FW_PATTERN_HOTCOLD = 3 };

#define FW_DEFAULT_WS_MIB 64
#define FW_DEFAULT_RATE_MIBPS 50
#define FW_STATE_MAGIC 0x64616f6c6b726f77ULL /* "workload" */
#define FW_STATE_VERSION 1
#define FW_SWEEP_PAGES_PER_MS 8 /* background verification per worker */
#define FW_MAX_BACKLOG_MS 2     /* writes a late worker may make up (see fw_step); below a throttle slice */

struct fw_config {
  uint64_t ws_pages;         /* working-set size in 4 KiB pages */
  uint64_t rate_bytes_per_s; /* all workers together; 0 = unlimited */
  uint64_t seed;
  uint64_t tsc_khz; /* 0 = not given (the guest calibrates) */
  uint32_t pattern; /* enum fw_pattern */
  uint32_t tick_ms; /* 0 = no '.' ticks */
  uint32_t ncpu;    /* workers, 1..FERRY_MAX_VCPUS */
  uint32_t ws_given; /* ws= was on the command line (else the default may shrink to fit) */
};

/* One worker's state; worker i is vCPU i and owns pages [first_page, first_page + num_pages). */
struct fw_worker {
  uint64_t first_page, num_pages;
  uint64_t cursor, rng, sweep_cursor;
  uint64_t next_write_tick, next_sweep_tick, next_hb_tick, next_sec_tick, next_dot_tick;
  uint64_t heartbeats, seconds;
  uint64_t pages_written, pages_verified, corruptions, sweeps;
  uint32_t booted, reserved;
};

struct fw_state {
  uint64_t magic;
  uint32_t version, nworkers;
  struct fw_config cfg;
  uint64_t ticks_per_ms;
  uint64_t ticks_per_page; /* per worker; 0 = unlimited */
  uint64_t gen_offset;     /* from the start of the working-set region */
  uint64_t pages_offset;
  struct fw_worker w[FERRY_MAX_VCPUS];
  uint64_t written_at_last_hb_line; /* all workers' pages_written when worker 0 last wrote "hb" */
};

/* How the workload reports: the guest's serial port and status port, or the synthetic backend. */
struct fw_env {
  void *ctx;
  /* is_line: the text is a whole line (started on a fresh line, newline appended); else raw. */
  void (*console)(void *ctx, const char *text, int is_line);
  void (*status)(void *ctx, uint32_t port, uint32_t value);
};

void fw_config_defaults(struct fw_config *c);
/* Parses `ws=<MiB> rate=<MiB/s> pattern=<..> seed=<n> tick_ms=<n> ncpu=<n> tsc_khz=<n>`
 * (space separated, any order, later wins; words without '=' — the image path a boot loader puts
 * first — are skipped, and so are the disk workload's options, see dw_owns_key). Returns 0, or -1 with a message in err. */
int fw_parse_cmdline(const char *s, struct fw_config *c, char *err, uint32_t err_len);
/* Bytes of the working-set region (state block + generation table + pages). */
uint64_t fw_region_bytes(const struct fw_config *c);
/* Lays out and zeroes the state block and generation table at `ws` (the FERRY_GPA_WORKSET region). */
void fw_init(void *ws, const struct fw_config *c, uint64_t ticks_per_ms, uint64_t now);
/* 1 when `ws` holds an initialized workload state. */
int fw_valid(const void *ws);
/* NULL when the state block at `ws` is one fw_init could have laid out in `region_bytes` of memory
 * and every offset, page range and cursor in it stays inside that region; else why not. A host
 * that runs the workload over memory it received (the synthetic backend) checks this first. */
const char *fw_check(const void *ws, uint64_t region_bytes);
/* Runs a bounded slice of worker `idx` at time `now`. Returns ticks until it next has work
 * (0 = call again at once). */
uint64_t fw_step(void *ws, uint32_t idx, uint64_t now, const struct fw_env *env);

uint32_t *fw_gen_table(void *ws);
uint64_t *fw_page(void *ws, uint64_t page);
/* Checks a page against its generation; 1 = good, 0 = bad with the first wrong word's values. */
int fw_check_page(void *ws, uint64_t page, uint64_t *expected, uint64_t *got, uint32_t *word);
/* Verifies a page, reporting a mismatch as CORRUPTION; returns 1 when it was good. */
int fw_verify_page(void *ws, uint32_t idx, uint64_t page, const struct fw_env *env);
/* Checks then rewrites a page at its next generation. */
void fw_write_page(void *ws, uint32_t idx, uint64_t page, const struct fw_env *env);

/* Command-line helpers shared with the disk workload's parser: a whole decimal number; a MiB/s
 * figure as printf's %g writes it, in bytes per second; an error "<what> '<token>'" (returns -1). */
int fw_parse_u64(const char *v, uint32_t n, uint64_t *out);
int fw_parse_rate(const char *v, uint32_t n, uint64_t *bytes_per_s);
int fw_error(char *err, uint32_t err_len, const char *what, const char *tok, uint32_t tok_len);

/* Tiny formatting helpers (no libc); return the end of the written text (NUL-terminated). */
char *fw_append_str(char *dst, char *end, const char *s);
char *fw_append_u64(char *dst, char *end, uint64_t v);
char *fw_append_hex(char *dst, char *end, uint64_t v);

#ifdef __cplusplus
}
#endif

#endif
