/* The built-in guest's disk workload (see disk_workload.h). */
#include "engine/guest/disk_workload.h"

/* ---- command line ------------------------------------------------------------------------------ */

void dw_config_defaults(struct dw_config *c) {
  unsigned char *b = (unsigned char *)c;
  for (uint64_t i = 0; i < sizeof(*c); ++i) b[i] = 0;
  c->rate_bytes_per_s = (uint64_t)DW_DEFAULT_RATE_MIBPS << 20;
}

static int dw_keyeq(const char *a, uint32_t alen, const char *b) {
  uint32_t i = 0;
  for (; i < alen; ++i)
    if (b[i] != a[i]) return 0;
  return b[i] == 0;
}

int dw_owns_key(const char *key, uint32_t len) {
  return dw_keyeq(key, len, "disk_ws") || dw_keyeq(key, len, "disk_rate") ||
         dw_keyeq(key, len, "virtio_mmio.device");
}

/* A number in decimal or 0x-hex, with an optional K/M/G (binary) suffix when `suffix_ok`. */
static int dw_parse_num(const char *v, uint32_t n, int suffix_ok, uint64_t *out) {
  uint32_t shift = 0;
  if (suffix_ok && n > 0) {
    char s = v[n - 1];
    shift = s == 'K' || s == 'k' ? 10 : s == 'M' || s == 'm' ? 20 : s == 'G' || s == 'g' ? 30 : 0;
    if (shift) --n;
  }
  uint64_t x = 0;
  if (n > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    if (n - 2 > 16) return -1;
    for (uint32_t i = 2; i < n; ++i) {
      char ch = v[i];
      uint64_t d = ch >= '0' && ch <= '9' ? (uint64_t)(ch - '0')
                   : ch >= 'a' && ch <= 'f' ? (uint64_t)(ch - 'a' + 10)
                   : ch >= 'A' && ch <= 'F' ? (uint64_t)(ch - 'A' + 10)
                                            : 16;
      if (d == 16) return -1;
      x = x << 4 | d;
    }
  } else if (fw_parse_u64(v, n, &x)) {
    return -1;
  }
  if (shift && x > (~0ULL >> shift)) return -1;
  *out = x << shift;
  return 0;
}

/* Linux's virtio_mmio.device=<size>@<base>:<irq> */
static int dw_parse_device(const char *v, uint32_t n, struct dw_mmio_device *d) {
  uint32_t at = 0, colon;
  while (at < n && v[at] != '@') ++at;
  if (at == n) return -1;
  colon = at + 1;
  while (colon < n && v[colon] != ':') ++colon;
  if (colon == n) return -1;
  uint64_t irq = 0;
  if (dw_parse_num(v, at, 1, &d->size) || d->size == 0 || dw_parse_num(v + at + 1, colon - at - 1, 0, &d->base) ||
      fw_parse_u64(v + colon + 1, n - colon - 1, &irq) || irq > 255)
    return -1;
  d->irq = (uint32_t)irq;
  return 0;
}

int dw_parse_cmdline(const char *s, struct dw_config *c, char *err, uint32_t err_len) {
  if (err_len) err[0] = 0;
  if (!s) return 0;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == '\n') ++s;
    if (!*s) break;
    const char *tok = s;
    while (*s && *s != ' ' && *s != '\t' && *s != '\n') ++s;
    uint32_t len = (uint32_t)(s - tok), klen = 0;
    while (klen < len && tok[klen] != '=') ++klen;
    if (klen == len) continue;
    const char *v = tok + klen + 1;
    uint32_t vlen = len - klen - 1;
    uint64_t x = 0;
    if (dw_keyeq(tok, klen, "disk_ws")) {
      if (fw_parse_u64(v, vlen, &x) || x > (1ULL << 24))
        return fw_error(err, err_len, "disk_ws must be a whole number of MiB (0 = no disk I/O), got", tok, len);
      c->ws_blocks = x << 8;
    } else if (dw_keyeq(tok, klen, "disk_rate")) {
      if (fw_parse_rate(v, vlen, &x))
        return fw_error(err, err_len, "disk_rate must be MiB/s (0 = unlimited), got", tok, len);
      c->rate_bytes_per_s = x;
    } else if (dw_keyeq(tok, klen, "virtio_mmio.device")) {
      if (c->ndevices == FERRY_VIRTIO_MAX_DISKS)
        return fw_error(err, err_len, "more than 16 virtio_mmio.device options, at", tok, len);
      if (dw_parse_device(v, vlen, &c->devices[c->ndevices]))
        return fw_error(err, err_len, "virtio_mmio.device must be <size>@<base>:<irq>, got", tok, len);
      c->ndevices++;
    }
  }
  return 0;
}

/* ---- layout and content ------------------------------------------------------------------------ */

#define DW_STATE_BYTES 4096ULL

uint64_t dw_region_bytes(const struct dw_config *c) {
  return DW_STATE_BYTES + ((c->ws_blocks * 4 + 4095) & ~4095ULL);
}

uint32_t *dw_gen_table(void *region) {
  struct dw_state *st = (struct dw_state *)region;
  return (uint32_t *)((unsigned char *)region + st->gen_offset);
}

void dw_init(void *region, const struct dw_config *c, const struct dw_disk *disk, uint64_t ticks_per_ms,
             uint64_t now) {
  _Static_assert(sizeof(struct dw_state) <= DW_STATE_BYTES, "disk state block too large");
  struct dw_state *st = (struct dw_state *)region;
  unsigned char *b = (unsigned char *)region;
  for (uint64_t i = 0; i < sizeof(*st); ++i) b[i] = 0;
  st->ws_blocks = c->ws_blocks;
  st->nslots = disk->slots < DW_MAX_SLOTS ? disk->slots : DW_MAX_SLOTS;
  st->can_flush = disk->can_flush;
  st->ticks_per_ms = ticks_per_ms ? ticks_per_ms : 1;
  if (c->rate_bytes_per_s) {
    st->ticks_per_block = st->ticks_per_ms * 1000 * DW_BLOCK_BYTES / c->rate_bytes_per_s;
    if (st->ticks_per_block == 0) st->ticks_per_block = 1;
  }
  st->gen_offset = DW_STATE_BYTES;
  st->rng = ferry_mix64(c->ws_blocks ^ 0xd15cULL) | 1;
  st->next_write_tick = st->next_read_tick = now;
  st->next_flush_tick = now + st->ticks_per_ms * DW_FLUSH_PERIOD_MS;
  st->next_report_tick = now + st->ticks_per_ms * 1000;
  uint32_t *gens = dw_gen_table(region);
  for (uint64_t i = 0; i < c->ws_blocks; ++i) gens[i] = 0;
  st->version = DW_STATE_VERSION;
  st->magic = DW_STATE_MAGIC;
}

void dw_fill_block(uint64_t *data, uint64_t block, uint32_t gen) {
  for (uint32_t i = 0; i < DW_BLOCK_WORDS; ++i) data[i] = ferry_block_word(block, gen, i);
}

int dw_check_block(const uint64_t *data, uint64_t block, uint32_t gen, uint64_t *expected, uint64_t *got,
                   uint32_t *word) {
  uint32_t want_gen = gen;
  if (gen == 0) {
    /* Not written since boot: all zeros, or any generation of this block (its tag says which). */
    uint64_t tag = data[0];
    if (tag == 0) {
      for (uint32_t i = 1; i < DW_BLOCK_WORDS; ++i) {
        if (data[i] != 0) {
          *expected = 0;
          *got = data[i];
          *word = i;
          return 0;
        }
      }
      return 1;
    }
    want_gen = (uint32_t)(tag >> 32);
    if (want_gen == 0 || (tag & 0xffffffffULL) != (block & 0xffffffffULL)) {
      *expected = ferry_block_tag(block, want_gen ? want_gen : 1);
      *got = tag;
      *word = 0;
      return 0;
    }
  }
  for (uint32_t i = 0; i < DW_BLOCK_WORDS; ++i) {
    uint64_t want = ferry_block_word(block, want_gen, i);
    if (data[i] != want) {
      *expected = want;
      *got = data[i];
      *word = i;
      return 0;
    }
  }
  return 1;
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static uint64_t dw_min(uint64_t a, uint64_t b) { return a < b ? a : b; }

static uint64_t dw_advance(uint64_t next, uint64_t period, uint64_t now) {
  next += period;
  return next <= now ? now + period : next;
}

static uint64_t dw_rng_next(struct dw_state *st) {
  uint64_t x = st->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  st->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static int dw_block_busy(const struct dw_state *st, uint64_t block) {
  for (uint32_t i = 0; i < st->nslots; ++i)
    if (st->slot[i].op != DW_OP_FREE && st->slot[i].op != DW_OP_FLUSH && st->slot[i].block == block) return 1;
  return 0;
}

static int dw_free_slot(const struct dw_state *st) {
  for (uint32_t i = 0; i < st->nslots; ++i)
    if (st->slot[i].op == DW_OP_FREE) return (int)i;
  return -1;
}

static void dw_report_corruption(struct dw_state *st, uint64_t block, uint32_t gen, uint64_t expected, uint64_t got,
                                 uint32_t word, const struct fw_env *env) {
  st->corruptions++;
  char line[200], *end = line + sizeof(line), *p = line;
  p = fw_append_str(p, end, "CORRUPTION block=");
  p = fw_append_u64(p, end, block);
  p = fw_append_str(p, end, " expected=");
  p = fw_append_hex(p, end, expected);
  p = fw_append_str(p, end, " got=");
  p = fw_append_hex(p, end, got);
  p = fw_append_str(p, end, " word=");
  p = fw_append_u64(p, end, word);
  p = fw_append_str(p, end, " gen=");
  p = fw_append_u64(p, end, gen);
  fw_append_str(p, end, " disk=0");
  env->console(env->ctx, line, 1);
}

static const char *dw_op_name(uint32_t op) {
  return op == DW_OP_WRITE ? "write" : op == DW_OP_FLUSH ? "flush" : "read";
}

static void dw_send(struct dw_state *st, const struct dw_disk *disk, uint32_t slot, uint32_t op, uint64_t block,
                    uint32_t gen);

/* Handles a finished request; returns 1 when it sent a follow-up in the same slot. */
static int dw_finish(struct dw_state *st, const struct dw_disk *disk, uint32_t slot, uint32_t status,
                      const struct fw_env *env) {
  struct dw_slot *s = &st->slot[slot];
  if (status != FERRY_VIRTIO_BLK_S_OK) {
    if (st->io_errors++ < DW_MAX_ERROR_LINES) {
      char line[120], *end = line + sizeof(line), *p = line;
      p = fw_append_str(p, end, "DISK ERROR op=");
      p = fw_append_str(p, end, dw_op_name(s->op));
      p = fw_append_str(p, end, " block=");
      p = fw_append_u64(p, end, s->block);
      p = fw_append_str(p, end, " status=");
      fw_append_u64(p, end, status);
      env->console(env->ctx, line, 1);
    }
    /* A failed write leaves the block's content unknown: verify it as "not written since boot". */
    if (s->op == DW_OP_WRITE) dw_gen_table(st)[s->block] = 0;
  } else if (s->op == DW_OP_WRITE) {
    dw_gen_table(st)[s->block] = s->gen;
    st->blocks_written++;
  } else if (s->op == DW_OP_READ || s->op == DW_OP_CHECK) {
    uint64_t expected = 0, got = 0;
    uint32_t word = 0;
    st->blocks_verified++;
    if (!dw_check_block(disk->buffer(disk->ctx, slot), s->block, s->gen, &expected, &got, &word))
      dw_report_corruption(st, s->block, s->gen, expected, got, word, env);
    if (s->op == DW_OP_CHECK) {
      /* The block stays in this slot: its next generation goes out now. */
      uint32_t gen = s->gen + 1;
      dw_send(st, disk, slot, DW_OP_WRITE, s->block, gen ? gen : 1);
      return 1;
    }
  } else if (s->op == DW_OP_FLUSH) {
    st->flushes++;
  }
  s->op = DW_OP_FREE;
  st->inflight--;
  return 0;
}

static void dw_send(struct dw_state *st, const struct dw_disk *disk, uint32_t slot, uint32_t op, uint64_t block,
                    uint32_t gen) {
  struct dw_slot *s = &st->slot[slot];
  if (s->op == DW_OP_FREE) st->inflight++;
  s->op = op;
  s->block = block;
  s->gen = gen;
  uint32_t type = op == DW_OP_WRITE ? FERRY_VIRTIO_BLK_T_OUT
                  : op == DW_OP_FLUSH ? FERRY_VIRTIO_BLK_T_FLUSH
                                      : FERRY_VIRTIO_BLK_T_IN;
  if (op == DW_OP_WRITE) dw_fill_block(disk->buffer(disk->ctx, slot), block, gen);
  disk->submit(disk->ctx, slot, type, block);
}

/* A random block with no request in flight, or ws_blocks when a few draws found none. */
static uint64_t dw_pick_write_block(struct dw_state *st) {
  for (int tries = 0; tries < 4; ++tries) {
    uint64_t b = (dw_rng_next(st) >> 11) % st->ws_blocks;
    if (!dw_block_busy(st, b)) return b;
  }
  return st->ws_blocks;
}

static void dw_report(struct dw_state *st, const struct fw_env *env) {
  /* Totals since boot (they travel with the guest), parsed by the VMM's GuestMonitor. */
  char line[240], *end = line + sizeof(line), *p = line;
  p = fw_append_u64(fw_append_str(p, end, "disk written="), end, st->blocks_written);
  p = fw_append_u64(fw_append_str(p, end, " verified="), end, st->blocks_verified);
  p = fw_append_u64(fw_append_str(p, end, " sweeps="), end, st->sweeps);
  p = fw_append_u64(fw_append_str(p, end, " flushes="), end, st->flushes);
  p = fw_append_u64(fw_append_str(p, end, " corruptions="), end, st->corruptions);
  fw_append_u64(fw_append_str(p, end, " errors="), end, st->io_errors);
  env->console(env->ctx, line, 1);
}

uint64_t dw_step(void *region, const struct dw_disk *disk, uint64_t now, const struct fw_env *env) {
  struct dw_state *st = (struct dw_state *)region;
  uint64_t tpm = st->ticks_per_ms, tpb = st->ticks_per_block;
  uint32_t slot = 0, status = 0, sent = 0;
  for (uint32_t n = 0; n < st->nslots && disk->complete(disk->ctx, &slot, &status); ++n) {
    if (slot < st->nslots && st->slot[slot].op != DW_OP_FREE) sent += (uint32_t)dw_finish(st, disk, slot, status, env);
  }
  if (now >= st->next_report_tick) {
    dw_report(st, env);
    st->next_report_tick = dw_advance(st->next_report_tick, tpm * 1000, now);
  }
  if (tpb) {
    /* As the memory workload: make up at most DW_MAX_BACKLOG_MS of missed work, no burst after a pause. */
    if (st->next_write_tick + tpm * DW_MAX_BACKLOG_MS < now) st->next_write_tick = now - tpm * DW_MAX_BACKLOG_MS;
    if (st->next_read_tick + tpm * DW_MAX_BACKLOG_MS < now) st->next_read_tick = now - tpm * DW_MAX_BACKLOG_MS;
  }
  if (st->can_flush && now >= st->next_flush_tick) {
    int s = dw_free_slot(st);
    if (s >= 0) {
      dw_send(st, disk, (uint32_t)s, DW_OP_FLUSH, 0, 0);
      ++sent;
      st->next_flush_tick = dw_advance(st->next_flush_tick, tpm * DW_FLUSH_PERIOD_MS, now);
    }
  }
  /* Writes and verifying reads alternate, each at the disk rate. */
  for (int progress = 1; progress;) {
    progress = 0;
    if (now >= st->next_write_tick) {
      int s = dw_free_slot(st);
      uint64_t b = s >= 0 ? dw_pick_write_block(st) : st->ws_blocks;
      if (b < st->ws_blocks) {
        /* As the memory workload checks a page before it rewrites it: read, verify, then write. */
        dw_send(st, disk, (uint32_t)s, DW_OP_CHECK, b, dw_gen_table(st)[b]);
        st->next_write_tick += tpb;
        ++sent;
        progress = 1;
      }
    }
    if (now >= st->next_read_tick) {
      int s = dw_free_slot(st);
      if (s >= 0) {
        uint64_t b = st->sweep_cursor;
        /* A block being written is verified on the next sweep. */
        if (!dw_block_busy(st, b)) {
          dw_send(st, disk, (uint32_t)s, DW_OP_READ, b, dw_gen_table(st)[b]);
          ++sent;
        }
        if (++st->sweep_cursor == st->ws_blocks) {
          st->sweep_cursor = 0;
          st->sweeps++;
        }
        st->next_read_tick += tpb;
        progress = 1;
      }
    }
  }
  if (sent) disk->kick(disk->ctx);
  if (st->inflight) return 0; /* poll for completions */
  uint64_t next = dw_min(st->next_report_tick, dw_min(st->next_write_tick, st->next_read_tick));
  if (st->can_flush) next = dw_min(next, st->next_flush_tick);
  return next > now ? next - now : 0;
}
