/* The workload core shared by ferry-guest.elf and the synthetic backend (see workload.h). */
#include "engine/guest/workload.h"

#include "engine/guest/disk_workload.h"

#define FW_PAGE_WORDS 512u
#define FW_WRITES_PER_STEP 16u

/* ---- formatting -------------------------------------------------------------------------------- */

char *fw_append_str(char *dst, char *end, const char *s) {
  while (*s && dst + 1 < end) *dst++ = *s++;
  if (dst < end) *dst = 0;
  return dst;
}

char *fw_append_u64(char *dst, char *end, uint64_t v) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n > 0 && dst + 1 < end) *dst++ = buf[--n];
  if (dst < end) *dst = 0;
  return dst;
}

char *fw_append_hex(char *dst, char *end, uint64_t v) {
  static const char kDigits[] = "0123456789abcdef";
  dst = fw_append_str(dst, end, "0x");
  for (int shift = 60; shift >= 0 && dst + 1 < end; shift -= 4) *dst++ = kDigits[(v >> shift) & 15];
  if (dst < end) *dst = 0;
  return dst;
}

/* ---- command line ------------------------------------------------------------------------------ */

void fw_config_defaults(struct fw_config *c) {
  c->ws_pages = (uint64_t)FW_DEFAULT_WS_MIB << 8;
  c->rate_bytes_per_s = (uint64_t)FW_DEFAULT_RATE_MIBPS << 20;
  c->seed = 1;
  c->tsc_khz = 0;
  c->pattern = FW_PATTERN_RANDOM;
  c->tick_ms = 0;
  c->ncpu = 1;
  c->ws_given = 0;
}

static int fw_streq(const char *a, uint32_t alen, const char *b) {
  uint32_t i = 0;
  for (; i < alen; ++i)
    if (b[i] != a[i]) return 0;
  return b[i] == 0;
}

int fw_error(char *err, uint32_t err_len, const char *what, const char *tok, uint32_t tok_len) {
  char *p = err, *end = err + err_len;
  p = fw_append_str(p, end, what);
  p = fw_append_str(p, end, " '");
  for (uint32_t i = 0; i < tok_len && p + 1 < end; ++i) *p++ = tok[i];
  if (p < end) *p = 0;
  fw_append_str(p, end, "'");
  return -1;
}

/* Decimal integer, the whole value. */
int fw_parse_u64(const char *v, uint32_t n, uint64_t *out) {
  uint64_t x = 0;
  if (n == 0) return -1;
  for (uint32_t i = 0; i < n; ++i) {
    if (v[i] < '0' || v[i] > '9') return -1;
    uint64_t d = (uint64_t)(v[i] - '0');
    if (x > (~0ULL - d) / 10) return -1;
    x = x * 10 + d;
  }
  *out = x;
  return 0;
}

/* A MiB/s figure as printf's %g writes it ("50", "0.5", "1e+06") -> bytes per second. */
int fw_parse_rate(const char *v, uint32_t n, uint64_t *bytes_per_s) {
  uint64_t mant = 0;
  int scale = 0, digits = 0, exp = 0, exp_neg = 0;
  uint32_t i = 0;
  for (; i < n && v[i] >= '0' && v[i] <= '9'; ++i, ++digits) {
    if (mant > 100000000000000ULL) return -1;
    mant = mant * 10 + (uint64_t)(v[i] - '0');
  }
  if (i < n && v[i] == '.') {
    for (++i; i < n && v[i] >= '0' && v[i] <= '9'; ++i, ++digits) {
      if (mant > 100000000000000ULL) continue; /* drop digits beyond precision */
      mant = mant * 10 + (uint64_t)(v[i] - '0');
      --scale;
    }
  }
  if (digits == 0) return -1;
  if (i < n && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < n && (v[i] == '+' || v[i] == '-')) exp_neg = v[i++] == '-';
    if (i >= n) return -1;
    for (; i < n && v[i] >= '0' && v[i] <= '9'; ++i) {
      exp = exp * 10 + (v[i] - '0');
      if (exp > 40) return -1;
    }
  }
  if (i != n) return -1;
  scale += exp_neg ? -exp : exp;
  uint64_t x = mant;
  if (x > (~0ULL >> 20)) return -1;
  x <<= 20;
  for (; scale > 0; --scale) {
    if (x > ~0ULL / 10) return -1;
    x *= 10;
  }
  for (; scale < 0; ++scale) x /= 10;
  if (mant != 0 && x == 0) x = 1;
  *bytes_per_s = x;
  return 0;
}

int fw_parse_cmdline(const char *s, struct fw_config *c, char *err, uint32_t err_len) {
  if (err_len) err[0] = 0;
  if (!s) return 0;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == '\n') ++s;
    if (!*s) break;
    const char *tok = s;
    while (*s && *s != ' ' && *s != '\t' && *s != '\n') ++s;
    uint32_t len = (uint32_t)(s - tok), klen = 0;
    while (klen < len && tok[klen] != '=') ++klen;
    if (klen == len) continue; /* no '=': the image path a boot loader puts first */
    const char *v = tok + klen + 1;
    uint32_t vlen = len - klen - 1;
    uint64_t x = 0;
    if (fw_streq(tok, klen, "ws")) {
      if (fw_parse_u64(v, vlen, &x) || x == 0 || x > (1ULL << 30))
        return fw_error(err, err_len, "ws must be a whole number of MiB >= 1, got", tok, len);
      c->ws_pages = x << 8;
      c->ws_given = 1;
    } else if (fw_streq(tok, klen, "rate")) {
      if (fw_parse_rate(v, vlen, &x))
        return fw_error(err, err_len, "rate must be MiB/s (0 = unlimited), got", tok, len);
      c->rate_bytes_per_s = x;
    } else if (fw_streq(tok, klen, "pattern")) {
      if (fw_streq(v, vlen, "sequential")) {
        c->pattern = FW_PATTERN_SEQUENTIAL;
      } else if (fw_streq(v, vlen, "random")) {
        c->pattern = FW_PATTERN_RANDOM;
      } else if (fw_streq(v, vlen, "hotcold")) {
        c->pattern = FW_PATTERN_HOTCOLD;
      } else {
        return fw_error(err, err_len, "pattern must be sequential, random or hotcold, got", tok, len);
      }
    } else if (fw_streq(tok, klen, "seed")) {
      if (fw_parse_u64(v, vlen, &x)) return fw_error(err, err_len, "seed must be a number, got", tok, len);
      c->seed = x;
    } else if (fw_streq(tok, klen, "tick_ms")) {
      if (fw_parse_u64(v, vlen, &x) || x > 3600000)
        return fw_error(err, err_len, "tick_ms must be 0..3600000, got", tok, len);
      c->tick_ms = (uint32_t)x;
    } else if (fw_streq(tok, klen, "ncpu")) {
      if (fw_parse_u64(v, vlen, &x) || x == 0 || x > FERRY_MAX_VCPUS)
        return fw_error(err, err_len, "ncpu must be 1..8, got", tok, len);
      c->ncpu = (uint32_t)x;
    } else if (fw_streq(tok, klen, "tsc_khz")) {
      if (fw_parse_u64(v, vlen, &x) || x < 1000 || x > 100000000)
        return fw_error(err, err_len, "tsc_khz must be 1000..100000000, got", tok, len);
      c->tsc_khz = x;
    } else if (dw_owns_key(tok, klen)) {
      /* the disk workload's: dw_parse_cmdline */
    } else {
      return fw_error(err, err_len, "unknown option", tok, len);
    }
  }
  return 0;
}

/* ---- layout ------------------------------------------------------------------------------------ */

static uint64_t fw_gen_table_bytes(uint64_t ws_pages) { return (ws_pages * 4 + 4095) & ~4095ULL; }

uint64_t fw_region_bytes(const struct fw_config *c) {
  return FERRY_WORKLOAD_STATE_BYTES + fw_gen_table_bytes(c->ws_pages) + (c->ws_pages << 12);
}

uint32_t *fw_gen_table(void *ws) {
  struct fw_state *st = (struct fw_state *)ws;
  return (uint32_t *)((unsigned char *)ws + st->gen_offset);
}

uint64_t *fw_page(void *ws, uint64_t page) {
  struct fw_state *st = (struct fw_state *)ws;
  return (uint64_t *)((unsigned char *)ws + st->pages_offset + (page << 12));
}

int fw_valid(const void *ws) {
  const struct fw_state *st = (const struct fw_state *)ws;
  return st->magic == FW_STATE_MAGIC && st->version == FW_STATE_VERSION && st->nworkers >= 1 &&
         st->nworkers <= FERRY_MAX_VCPUS && st->ticks_per_ms != 0;
}

const char *fw_check(const void *ws, uint64_t region_bytes) {
  const struct fw_state *st = (const struct fw_state *)ws;
  if (region_bytes < FERRY_WORKLOAD_STATE_BYTES) return "no room for the state block";
  if (!fw_valid(ws)) return "no workload state block (magic, version, workers or clock)";
  const uint64_t ws_pages = st->cfg.ws_pages;
  if (ws_pages > (region_bytes - FERRY_WORKLOAD_STATE_BYTES) / 4096 || fw_region_bytes(&st->cfg) > region_bytes)
    return "working set larger than guest memory";
  if (st->gen_offset != FERRY_WORKLOAD_STATE_BYTES) return "generation table not where the layout puts it";
  if (st->pages_offset != FERRY_WORKLOAD_STATE_BYTES + fw_gen_table_bytes(ws_pages))
    return "pages not where the layout puts them";
  if (st->cfg.pattern < FW_PATTERN_SEQUENTIAL || st->cfg.pattern > FW_PATTERN_HOTCOLD) return "unknown write pattern";
  for (uint32_t i = 0; i < st->nworkers; ++i) {
    const struct fw_worker *w = &st->w[i];
    if (w->first_page > ws_pages || w->num_pages > ws_pages - w->first_page) return "a worker's pages lie outside the working set";
    if (w->num_pages != 0 && (w->cursor >= w->num_pages || w->sweep_cursor >= w->num_pages))
      return "a worker's cursor lies outside its pages";
  }
  return 0;
}

void fw_init(void *ws, const struct fw_config *c, uint64_t ticks_per_ms, uint64_t now) {
  _Static_assert(sizeof(struct fw_state) <= FERRY_WORKLOAD_STATE_BYTES, "state block too large");
  struct fw_state *st = (struct fw_state *)ws;
  unsigned char *b = (unsigned char *)ws;
  for (uint64_t i = 0; i < sizeof(struct fw_state); ++i) b[i] = 0;
  st->cfg = *c;
  st->nworkers = c->ncpu;
  st->ticks_per_ms = ticks_per_ms ? ticks_per_ms : 1;
  st->gen_offset = FERRY_WORKLOAD_STATE_BYTES;
  st->pages_offset = FERRY_WORKLOAD_STATE_BYTES + fw_gen_table_bytes(c->ws_pages);
  if (c->rate_bytes_per_s) {
    /* ticks per page for one worker, which gets 1/nworkers of the rate */
    uint64_t ticks_per_s = st->ticks_per_ms * 1000;
    st->ticks_per_page = ticks_per_s * 4096 * st->nworkers / c->rate_bytes_per_s;
    if (st->ticks_per_page == 0) st->ticks_per_page = 1;
  }
  uint32_t *gens = fw_gen_table(ws);
  for (uint64_t p = 0; p < c->ws_pages; ++p) gens[p] = 0;
  for (uint32_t i = 0; i < st->nworkers; ++i) {
    struct fw_worker *w = &st->w[i];
    w->first_page = c->ws_pages * i / st->nworkers;
    w->num_pages = c->ws_pages * (i + 1) / st->nworkers - w->first_page;
    w->rng = ferry_mix64(c->seed * 0x9E3779B97F4A7C15ULL + i + 1) | 1;
    w->next_write_tick = now;
    w->next_sweep_tick = now + st->ticks_per_ms;
    w->next_hb_tick = now + st->ticks_per_ms;
    w->next_sec_tick = now + st->ticks_per_ms * 1000;
    w->next_dot_tick = now + st->ticks_per_ms * c->tick_ms;
  }
  st->version = FW_STATE_VERSION;
  st->magic = FW_STATE_MAGIC; /* last: a half-initialized block is not valid */
}

/* ---- pages ------------------------------------------------------------------------------------- */

int fw_check_page(void *ws, uint64_t page, uint64_t *expected, uint64_t *got, uint32_t *word) {
  uint32_t gen = fw_gen_table(ws)[page];
  const volatile uint64_t *q = fw_page(ws, page);
  for (uint32_t i = 0; i < FW_PAGE_WORDS; ++i) {
    uint64_t want = gen ? ferry_page_word(page, gen, i) : 0;
    uint64_t have = q[i];
    if (have != want) {
      *expected = want;
      *got = have;
      *word = i;
      return 0;
    }
  }
  return 1;
}

int fw_verify_page(void *ws, uint32_t idx, uint64_t page, const struct fw_env *env) {
  struct fw_state *st = (struct fw_state *)ws;
  uint64_t expected = 0, got = 0;
  uint32_t word = 0;
  st->w[idx].pages_verified++;
  if (fw_check_page(ws, page, &expected, &got, &word)) return 1;
  st->w[idx].corruptions++;
  char line[160], *end = line + sizeof(line), *p = line;
  p = fw_append_str(p, end, "CORRUPTION page=");
  p = fw_append_u64(p, end, page);
  p = fw_append_str(p, end, " expected=");
  p = fw_append_hex(p, end, expected);
  p = fw_append_str(p, end, " got=");
  p = fw_append_hex(p, end, got);
  p = fw_append_str(p, end, " word=");
  p = fw_append_u64(p, end, word);
  p = fw_append_str(p, end, " gen=");
  p = fw_append_u64(p, end, fw_gen_table(ws)[page]);
  p = fw_append_str(p, end, " vcpu=");
  fw_append_u64(p, end, idx);
  env->status(env->ctx, FERRY_STATUS_CORRUPTION, (uint32_t)page);
  env->console(env->ctx, line, 1);
  return 0;
}

void fw_write_page(void *ws, uint32_t idx, uint64_t page, const struct fw_env *env) {
  struct fw_state *st = (struct fw_state *)ws;
  fw_verify_page(ws, idx, page, env);
  uint32_t *gens = fw_gen_table(ws);
  uint32_t gen = gens[page] + 1;
  if (gen == 0) gen = 1; /* 0 means never written */
  volatile uint64_t *q = fw_page(ws, page);
  for (uint32_t i = 0; i < FW_PAGE_WORDS; ++i) q[i] = ferry_page_word(page, gen, i);
  gens[page] = gen;
  /* Worker 0 sums every worker's count for its "hb" line: one writer, relaxed atomics. */
  __atomic_store_n(&st->w[idx].pages_written, st->w[idx].pages_written + 1, __ATOMIC_RELAXED);
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static uint64_t fw_rng_next(struct fw_worker *w) {
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t fw_next_page(const struct fw_state *st, struct fw_worker *w) {
  uint64_t n = w->num_pages, p;
  switch (st->cfg.pattern) {
    case FW_PATTERN_SEQUENTIAL:
      p = w->cursor;
      w->cursor = (w->cursor + 1) % n;
      break;
    case FW_PATTERN_HOTCOLD: {
      /* 90% of writes go to the hottest 10% of the slice */
      uint64_t hot = n / 10 ? n / 10 : 1, r = fw_rng_next(w);
      if (r % 10 < 9 || n == hot) {
        p = (r >> 8) % hot;
      } else {
        p = hot + (r >> 8) % (n - hot);
      }
      break;
    }
    default:
      p = (fw_rng_next(w) >> 11) % n;
      break;
  }
  return w->first_page + p;
}

/* The next deadline after `next`; a clock that jumped past it (a pause) restarts from now. */
static uint64_t fw_advance(uint64_t next, uint64_t period, uint64_t now) {
  next += period;
  return next <= now ? now + period : next;
}

static uint64_t fw_min(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t fw_step(void *ws, uint32_t idx, uint64_t now, const struct fw_env *env) {
  struct fw_state *st = (struct fw_state *)ws;
  if (idx >= st->nworkers) return ~0ULL;
  struct fw_worker *w = &st->w[idx];
  uint64_t tpm = st->ticks_per_ms, next = ~0ULL;
  if (!w->booted) {
    w->booted = 1;
    env->status(env->ctx, FERRY_STATUS_BOOTED, idx);
  }
  if (idx == 0) {
    if (now >= w->next_hb_tick) {
      w->heartbeats++;
      env->status(env->ctx, FERRY_STATUS_HEARTBEAT, (uint32_t)w->heartbeats);
      w->next_hb_tick = fw_advance(w->next_hb_tick, tpm, now);
    }
    if (now >= w->next_sec_tick) {
      /* "hb <seconds> w=<pages written by all workers since the last hb line>": the dirty rate
       * the guest achieved, to compare with the one it was asked for. */
      char line[64], *end = line + sizeof(line), *p = line;
      uint64_t written = 0;
      for (uint32_t i = 0; i < st->nworkers; ++i)
        written += __atomic_load_n(&st->w[i].pages_written, __ATOMIC_RELAXED);
      w->seconds++;
      p = fw_append_u64(fw_append_str(p, end, "hb "), end, w->seconds);
      fw_append_u64(fw_append_str(p, end, " w="), end, written - st->written_at_last_hb_line);
      st->written_at_last_hb_line = written;
      env->console(env->ctx, line, 1);
      w->next_sec_tick = fw_advance(w->next_sec_tick, tpm * 1000, now);
    }
    next = fw_min(w->next_hb_tick, w->next_sec_tick);
    if (st->cfg.tick_ms) {
      if (now >= w->next_dot_tick) {
        env->console(env->ctx, ".", 0);
        w->next_dot_tick = fw_advance(w->next_dot_tick, tpm * st->cfg.tick_ms, now);
      }
      next = fw_min(next, w->next_dot_tick);
    }
  }
  if (w->num_pages == 0) return next - now;
  if (now >= w->next_sweep_tick) {
    for (uint32_t k = 0; k < FW_SWEEP_PAGES_PER_MS; ++k) {
      fw_verify_page(ws, idx, w->first_page + w->sweep_cursor, env);
      if (++w->sweep_cursor == w->num_pages) {
        w->sweep_cursor = 0;
        w->sweeps++;
        if (idx == 0) env->status(env->ctx, FERRY_STATUS_ROUND, (uint32_t)w->sweeps);
        env->status(env->ctx, FERRY_STATUS_SWEEP, (idx << 24) | (uint32_t)(w->sweeps & 0xffffff));
      }
    }
    w->next_sweep_tick = fw_advance(w->next_sweep_tick, tpm, now);
  }
  next = fw_min(next, w->next_sweep_tick);
  if (st->ticks_per_page == 0) {
    for (uint32_t n = 0; n < FW_WRITES_PER_STEP; ++n) fw_write_page(ws, idx, fw_next_page(st, w), env);
    return 0;
  }
  /* Paced, with at most FW_MAX_BACKLOG_MS of backlog: a vCPU that a busy host preempted for a
   * few milliseconds makes up the writes it missed (else a shared host quietly lowers the rate),
   * but a pause (stop-and-copy, snapshot) is not followed by a burst. */
  if (w->next_write_tick + tpm * FW_MAX_BACKLOG_MS < now) w->next_write_tick = now - tpm * FW_MAX_BACKLOG_MS;
  for (uint32_t n = 0; n < FW_WRITES_PER_STEP && now >= w->next_write_tick; ++n) {
    fw_write_page(ws, idx, fw_next_page(st, w), env);
    w->next_write_tick += st->ticks_per_page;
  }
  next = fw_min(next, w->next_write_tick);
  return next > now ? next - now : 0;
}
