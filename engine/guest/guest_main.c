/* The built-in guest after boot.S: parse the command line, size the working set, calibrate the
 * TSC, then run the workload core (workload.c) on every vCPU, reporting on the serial and status
 * ports. Freestanding: no libc, interrupts stay off.
 *
 * Only checks that may end in a halt run at CPL 0; calibration, setup and the workload run at
 * CPL 3 (enter_user, IOPL 3 keeps port I/O working). Under a PVM host (KVM without VMX, e.g.
 * nested in a cloud VM) a guest that is not PVM-aware has its supervisor mode emulated
 * instruction by instruction, ~1000x slower (a register loop: ~2 us per iteration at CPL 0,
 * ~1 ns at CPL 3), while its user mode runs natively. Under VMX or SVM the CPL costs nothing. */
#include <stdint.h>

#include "engine/guest/disk_workload.h"
#include "engine/guest/guest_abi.h"
#include "engine/guest/virtio_blk.h"
#include "engine/guest/workload.h"

_Static_assert(FERRY_MAX_VCPUS == 8, "boot.S reserves stacks for 8 vCPUs");

extern uint32_t boot_magic, boot_mbi, boot_gib;
void guest_main(uint32_t idx);
/* boot.S: continues at fn(arg) at CPL 3 on the current stack. */
void enter_user(void (*fn)(uint32_t), uint32_t arg) __attribute__((noreturn));

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *d, int c, unsigned long n) {
  unsigned char *p = d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
  unsigned char *p = d;
  const unsigned char *q = s;
  while (n--) *p++ = *q++;
  return d;
}
void *memmove(void *d, const void *s, unsigned long n) {
  unsigned char *p = d;
  const unsigned char *q = s;
  if (p < q) {
    while (n--) *p++ = *q++;
  } else {
    while (n--) p[n] = q[n];
  }
  return d;
}
int memcmp(const void *a, const void *b, unsigned long n) {
  const unsigned char *p = a, *q = b;
  for (; n--; ++p, ++q)
    if (*p != *q) return *p < *q ? -1 : 1;
  return 0;
}

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt");
}

/* ---- serial, shared by all vCPUs under a spinlock -------------------------------------------- */

static int serial_lock;
static int serial_at_line_start = 1;

static void serial_putc(char c) {
  /* A VMM without a UART reads LSR as 0xff; bound the wait anyway. */
  for (int i = 0; i < 100000 && !(inb(FERRY_COM1_PORT + 5) & 0x20); ++i) cpu_relax();
  outb(FERRY_COM1_PORT, (uint8_t)c);
}

static void console(void *ctx, const char *text, int is_line) {
  (void)ctx;
  while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
  if (is_line && !serial_at_line_start) serial_putc('\n');
  char last = '\n';
  for (const char *p = text; *p; ++p) serial_putc(last = *p);
  if (is_line) serial_putc(last = '\n');
  serial_at_line_start = last == '\n';
  __atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

static void status(void *ctx, uint32_t port, uint32_t value) {
  (void)ctx;
  outl((uint16_t)port, value);
}

static const struct fw_env kEnv = {0, console, status};

static void shutdown(uint32_t code) {
  status(0, FERRY_STATUS_SHUTDOWN, code);
  halt_forever();
}

/* ---- TSC frequency ------------------------------------------------------------------------------ */

static int plausible_khz(uint64_t khz) { return khz >= 100000 && khz <= 20000000; }

/* Counts TSC ticks across ~10 ms of PIT channel 2 (gate on port 0x61, one-shot mode 0). */
static uint64_t pit_tsc_khz(void) {
  const uint32_t count = 11932; /* 1193182 Hz / 100 */
  uint8_t gate = inb(0x61);
  outb(0x61, (uint8_t)((gate & ~0x02) | 0x01));
  outb(0x43, 0xB0);
  outb(0x42, count & 0xff);
  outb(0x42, count >> 8);
  uint64_t t0 = rdtsc();
  for (uint64_t spins = 0; !(inb(0x61) & 0x20); ++spins)
    if (spins > 10000000) return 0;
  uint64_t t1 = rdtsc();
  outb(0x61, gate);
  return (t1 - t0) * 1193182 / count / 1000;
}

static uint64_t tsc_khz(const struct fw_config *c, const char **source) {
  uint32_t r[4];
  if (c->tsc_khz) {
    *source = "cmdline";
    return c->tsc_khz;
  }
  cpuid(0x40000000, r);
  if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
    cpuid(0x40000010, r);
    if (plausible_khz(r[0])) {
      *source = "cpuid 0x40000010";
      return r[0];
    }
  }
  /* The smallest of three: a late look at OUT2 (a slow VM exit) only ever adds ticks. */
  uint64_t khz = ~0ULL;
  for (int i = 0; i < 3; ++i) {
    uint64_t k = pit_tsc_khz();
    if (k < khz) khz = k;
  }
  if (plausible_khz(khz)) {
    *source = "pit";
    return khz;
  }
  cpuid(0, r);
  if (r[0] >= 0x15) {
    cpuid(0x15, r);
    if (r[0] && r[1] && r[2]) {
      khz = (uint64_t)r[2] / 1000 * r[1] / r[0];
      if (plausible_khz(khz)) {
        *source = "cpuid 0x15";
        return khz;
      }
    }
  }
  *source = "guess (no calibration source)";
  return 2000000;
}

/* ---- boot ------------------------------------------------------------------------------------- */

struct multiboot_info {
  uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
  uint32_t mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
};
struct multiboot_mmap_entry {
  uint32_t size; /* of the rest of the entry */
  uint64_t base, length;
  uint32_t type; /* 1 = RAM */
} __attribute__((packed));

/* boot.S's page tables: the PDPT and one page directory per GiB of virtual space. */
extern uint64_t pdpt[], pds[];
#define PAGE_2M (2ULL << 20)

/* boot.S identity-mapped RAM from GPA 0 up to the first hole ([0, low_end), as mem_upper says).
 * Every RAM range of the memory map above low_end follows it here, 2 MiB-aligned, at consecutive
 * virtual addresses: a linear view of all RAM (see FERRY_GUEST_MAX_RAM_VIEW). Under Ferry's
 * microVM a view address is then the memfd offset: GPA 4 GiB appears at 3 GiB. Returns the view's
 * size. Runs on vCPU 0 before any vCPU touches the view above low_end. */
static uint64_t map_ram_view(const struct multiboot_info *mbi, uint64_t low_end) {
  uint64_t mapped = (uint64_t)boot_gib << 30;
  uint64_t view = low_end < mapped ? low_end : mapped;
  if (!(mbi->flags & (1u << 6))) return view;
  const uint8_t *p = (const uint8_t *)(uintptr_t)mbi->mmap_addr, *end = p + mbi->mmap_length;
  int extended = 0;
  for (; p + sizeof(struct multiboot_mmap_entry) <= end; p += ((const struct multiboot_mmap_entry *)p)->size + 4) {
    const struct multiboot_mmap_entry *e = (const struct multiboot_mmap_entry *)p;
    if (e->type != 1 || e->base < low_end) continue;
    uint64_t gpa = (e->base + PAGE_2M - 1) & ~(PAGE_2M - 1), top = (e->base + e->length) & ~(PAGE_2M - 1);
    if (!extended) {
      view &= ~(PAGE_2M - 1); /* the view continues on a 2 MiB boundary */
      extended = 1;
    }
    for (; gpa < top && view < FERRY_GUEST_MAX_RAM_VIEW; gpa += PAGE_2M, view += PAGE_2M) {
      uint64_t gib = view >> 30;
      pdpt[gib] = (uint64_t)(uintptr_t)&pds[gib * 512] | 0x7; /* present, writable, user */
      pds[view >> 21] = gpa | 0x87;                            /* + 2 MiB page */
    }
  }
  if (extended) __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
  return view;
}

/* The 32-bit MMIO hole [FERRY_GPA_LOW_RAM_END, 4 GiB), where the VMM puts virtio-mmio disks, is
 * mapped uncached (PCD|PWT: PAT entry 3) and user-accessible, so the disk workload drives its disk
 * from CPL 3. It sits above the RAM view (whose addresses are memfd offsets and may reach past
 * 3 GiB), at virtual FERRY_GUEST_MAX_RAM_VIEW. */
#define MMIO_VIEW FERRY_GUEST_MAX_RAM_VIEW
static uint64_t mmio_pd[512] __attribute__((aligned(4096)));

static void map_mmio_hole(void) {
  for (uint64_t j = 0; j < 512; ++j) mmio_pd[j] = (FERRY_GPA_LOW_RAM_END + (j << 21)) | 0x9f;
  pdpt[MMIO_VIEW >> 30] = (uint64_t)(uintptr_t)mmio_pd | 0x7; /* present, writable, user */
  __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
}

static void line2(const char *a, const char *b) {
  char buf[320], *end = buf + sizeof(buf);
  fw_append_str(fw_append_str(buf, end, a), end, b);
  console(0, buf, 1);
}

static const char *pattern_name(uint32_t p) {
  return p == FW_PATTERN_SEQUENTIAL ? "sequential" : p == FW_PATTERN_HOTCOLD ? "hotcold" : "random";
}

static struct fw_config boot_cfg;
static uint64_t boot_mem;
static struct dw_config boot_disk_cfg; /* ws_blocks 0: no disk workload */
static struct dw_disk boot_disk;

/* The first disk on the command line, set up for the disk workload; on failure says why and halts. */
static void disk_check(struct dw_config *dw) {
  char buf[240], *end = buf + sizeof(buf), *p = buf;
  p = fw_append_str(p, end, "ferry-guest: disk_ws=");
  p = fw_append_u64(p, end, dw->ws_blocks >> 8);
  p = fw_append_str(p, end, " MiB but ");
  if (dw->ndevices == 0) {
    fw_append_str(p, end, "the guest has no disk (no virtio_mmio.device= on the command line)");
    console(0, buf, 1);
    shutdown(1);
  }
  const struct dw_mmio_device *d = &dw->devices[0];
  if (d->base < FERRY_GPA_LOW_RAM_END || d->base >= (4ULL << 30) || d->size < 0x200 ||
      d->size > (4ULL << 30) - d->base) {
    p = fw_append_str(p, end, "disk 0's registers at ");
    p = fw_append_hex(p, end, d->base);
    fw_append_str(p, end, " lie outside the 32-bit MMIO hole");
    console(0, buf, 1);
    shutdown(1);
  }
  map_mmio_hole();
  char err[160];
  volatile uint32_t *regs = (volatile uint32_t *)(uintptr_t)(MMIO_VIEW + (d->base - FERRY_GPA_LOW_RAM_END));
  if (vblk_probe(regs, &boot_disk, err, sizeof(err))) {
    p = fw_append_str(p, end, "disk 0 at ");
    p = fw_append_hex(p, end, d->base);
    p = fw_append_str(p, end, " is unusable: ");
    fw_append_str(p, end, err);
    console(0, buf, 1);
    shutdown(1);
  }
  if (boot_disk.capacity_blocks < dw->ws_blocks) {
    p = fw_append_str(p, end, "disk 0 holds only ");
    p = fw_append_u64(p, end, boot_disk.capacity_blocks >> 8);
    fw_append_str(p, end, " MiB");
    console(0, buf, 1);
    shutdown(1);
  }
}

/* vCPU 0's checks, at CPL 0 because a bad configuration ends in a halt; fills boot_cfg. */
static void boot_check(void) {
  console(0, "ferry-guest: booting", 1);
  if (boot_magic != FERRY_MULTIBOOT_BOOTLOADER_MAGIC) {
    console(0, "ferry-guest: not started by a multiboot loader (bad EAX magic)", 1);
    shutdown(3);
  }
  const struct multiboot_info *mbi = (const struct multiboot_info *)(uintptr_t)boot_mbi;
  struct fw_config cfg;
  struct dw_config dw;
  fw_config_defaults(&cfg);
  dw_config_defaults(&dw);
  if ((mbi->flags & 4) && mbi->cmdline) {
    char err[160];
    const char *cmdline = (const char *)(uintptr_t)mbi->cmdline;
    line2("ferry-guest: cmdline: ", cmdline);
    if (fw_parse_cmdline(cmdline, &cfg, err, sizeof(err)) || dw_parse_cmdline(cmdline, &dw, err, sizeof(err))) {
      line2("ferry-guest: bad command line: ", err);
      shutdown(2);
    }
  }
  if (dw.ws_blocks) disk_check(&dw);
  if (!(mbi->flags & 1)) {
    console(0, "ferry-guest: the boot loader gave no memory size (multiboot flags bit 0)", 1);
    shutdown(3);
  }
  uint64_t usable = map_ram_view(mbi, (1ULL << 20) + ((uint64_t)mbi->mem_upper << 10));
  /* The disk workload's state and generation table follow the memory working set. */
  uint64_t disk_bytes = dw.ws_blocks ? dw_region_bytes(&dw) : 0;
  uint64_t avail = usable > FERRY_GPA_WORKSET + disk_bytes ? usable - FERRY_GPA_WORKSET - disk_bytes : 0;
  if (!cfg.ws_given && fw_region_bytes(&cfg) > avail) {
    /* The default working set shrinks to what fits; an explicit one is refused below. */
    uint64_t pages = avail > 2 * 4096 ? (avail - 2 * 4096) / 4100 : 0;
    if (pages < cfg.ws_pages) cfg.ws_pages = pages;
  }
  if (cfg.ws_pages == 0 || fw_region_bytes(&cfg) > avail) {
    char buf[200], *end = buf + sizeof(buf), *p = buf;
    p = fw_append_str(p, end, "ferry-guest: working set of ");
    p = fw_append_u64(p, end, cfg.ws_pages >> 8);
    p = fw_append_str(p, end, " MiB needs ");
    p = fw_append_u64(p, end, (FERRY_GPA_WORKSET + fw_region_bytes(&cfg) + disk_bytes + (1 << 20) - 1) >> 20);
    p = fw_append_str(p, end, " MiB of guest memory; the guest has ");
    p = fw_append_u64(p, end, usable >> 20);
    fw_append_str(p, end, " MiB");
    console(0, buf, 1);
    shutdown(1);
  }
  boot_cfg = cfg;
  boot_disk_cfg = dw;
  boot_mem = usable;
}

static void *disk_region(void) {
  return (void *)(uintptr_t)(FERRY_GPA_WORKSET + fw_region_bytes(&boot_cfg));
}

/* vCPU 0's setup after boot_check, at CPL 3: the TSC calibration and laying out the working set
 * run natively there (see the top of this file). */
static void boot_setup(void) {
  const struct fw_config cfg = boot_cfg;
  const uint64_t mem = boot_mem;
  const char *source = "";
  uint64_t khz = tsc_khz(&cfg, &source);
  fw_init((void *)(uintptr_t)FERRY_GPA_WORKSET, &cfg, khz, rdtsc());

  char buf[320], *end = buf + sizeof(buf), *p = buf;
  p = fw_append_str(p, end, "ferry-guest: ws=");
  p = fw_append_u64(p, end, cfg.ws_pages >> 8);
  p = fw_append_str(p, end, "MiB rate=");
  p = fw_append_u64(p, end, cfg.rate_bytes_per_s >> 10);
  p = fw_append_str(p, end, "KiB/s pattern=");
  p = fw_append_str(p, end, pattern_name(cfg.pattern));
  p = fw_append_str(p, end, " seed=");
  p = fw_append_u64(p, end, cfg.seed);
  p = fw_append_str(p, end, " tick_ms=");
  p = fw_append_u64(p, end, cfg.tick_ms);
  p = fw_append_str(p, end, " ncpu=");
  p = fw_append_u64(p, end, cfg.ncpu);
  p = fw_append_str(p, end, " mem=");
  p = fw_append_u64(p, end, mem >> 20);
  p = fw_append_str(p, end, "MiB tsc_khz=");
  p = fw_append_u64(p, end, khz);
  p = fw_append_str(p, end, " (");
  p = fw_append_str(p, end, source);
  fw_append_str(p, end, ")");
  console(0, buf, 1);
  if (!boot_disk_cfg.ws_blocks) return;

  dw_init(disk_region(), &boot_disk_cfg, &boot_disk, khz, rdtsc());
  const struct dw_mmio_device *d = &boot_disk_cfg.devices[0];
  p = buf;
  p = fw_append_str(p, end, "ferry-guest: disk 0 at ");
  p = fw_append_hex(p, end, d->base);
  p = fw_append_str(p, end, " irq ");
  p = fw_append_u64(p, end, d->irq);
  p = fw_append_str(p, end, ": ");
  p = fw_append_u64(p, end, boot_disk.capacity_blocks >> 8);
  p = fw_append_str(p, end, " MiB, queue ");
  p = fw_append_u64(p, end, vblk_queue_size());
  p = fw_append_str(p, end, boot_disk.can_flush ? ", flush" : ", no flush");
  p = fw_append_str(p, end, "; disk_ws=");
  p = fw_append_u64(p, end, boot_disk_cfg.ws_blocks >> 8);
  p = fw_append_str(p, end, "MiB disk_rate=");
  p = fw_append_u64(p, end, boot_disk_cfg.rate_bytes_per_s >> 10);
  fw_append_str(p, end, "KiB/s");
  console(0, buf, 1);
}

static uint32_t boot_done; /* 1 once vCPU 0 has set up the workload */

/* At CPL 3: never halts (HLT would fault), so every path that halts stays in guest_main. */
static void user_main(uint32_t idx) {
  void *ws = (void *)(uintptr_t)FERRY_GPA_WORKSET;
  if (idx == 0) {
    boot_setup();
    __atomic_store_n(&boot_done, 1, __ATOMIC_RELEASE);
  }
  /* The last worker also runs the disk workload (vCPU 0 keeps the heartbeat to itself when it can). */
  const struct fw_state *st = (const struct fw_state *)ws;
  const int disk_worker = boot_disk_cfg.ws_blocks && idx == st->nworkers - 1;
  void *disk = disk_region();
  for (;;) {
    uint64_t wait = fw_step(ws, idx, rdtsc(), &kEnv);
    if (disk_worker && dw_step(disk, &boot_disk, rdtsc(), &kEnv) == 0) wait = 0;
    if (wait) cpu_relax();
  }
}

void guest_main(uint32_t idx) {
  if (idx == 0) {
    boot_check();
    enter_user(user_main, 0);
  }
  while (!__atomic_load_n(&boot_done, __ATOMIC_ACQUIRE)) cpu_relax();
  /* vCPU 0 may have extended the page tables (map_ram_view) after this vCPU loaded them. */
  __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
  const struct fw_state *st = (const struct fw_state *)(uintptr_t)FERRY_GPA_WORKSET;
  if (idx >= st->nworkers) halt_forever(); /* more vCPUs than ncpu= */
  enter_user(user_main, idx);
}
