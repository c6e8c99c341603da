/* Multiboot entry of the built-in guest. The boot loader (Ferry's microVM, QEMU) enters here in
 * 32-bit protected mode with paging off; every vCPU of Ferry's microVM starts here at once (there
 * is no INIT/SIPI), so each finds its index from its initial APIC ID, takes its own stack, and all
 * but vCPU 0 wait while vCPU 0 builds the identity page tables. Then each switches to long mode
 * and calls guest_main(index), which drops to CPL 3 (enter_user) for everything but setup and
 * halting: see guest_main.c for why. The page tables and GDT therefore allow user access.
 * Constants mirror guest_abi.h (which is C): multiboot magics, FERRY_MAX_VCPUS = 8,
 * FERRY_GUEST_MAX_RAM_VIEW = 64 GiB. */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_BOOT_MAGIC 0x2BADB002
#define MB_FLAGS 0x00010003 /* page-align modules, memory info, address fields (a.out kludge) */
#define MAX_VCPUS 8
#define STACK_SHIFT 14      /* 16 KiB per vCPU */
#define MAX_GIB 64          /* page directories for 64 GiB of virtual space (FERRY_GUEST_MAX_RAM_VIEW) */

  .section .multiboot, "a"
  .balign 4
mb_header:
  .long MB_HEADER_MAGIC
  .long MB_FLAGS
  .long -(MB_HEADER_MAGIC + MB_FLAGS)
  .long mb_header     /* header_addr */
  .long __image_start /* load_addr */
  .long __data_end    /* load_end_addr */
  .long __image_end   /* bss_end_addr */
  .long _start32      /* entry_addr */

  .section .text.boot, "ax"
  .code32
  .globl _start32
_start32:
  cli
  cld
  mov %eax, %esi              /* boot loader magic */
  mov %ebx, %edi              /* multiboot info */
  mov $1, %eax
  cpuid
  shr $24, %ebx               /* initial APIC ID = vCPU index */
  mov %ebx, %ebp
  cmp $MAX_VCPUS, %ebp
  jae halt32
  mov %ebp, %eax
  inc %eax
  shl $STACK_SHIFT, %eax
  lea boot_stacks(%eax), %esp
  test %ebp, %ebp
  jnz wait_tables

  /* vCPU 0: keep the boot information, then map [0, N GiB) with 2 MiB pages, N from mem_upper
   * (RAM from 1 MiB up to the first hole). RAM above the hole is mapped later, in C (map_ram_view). */
  mov %esi, boot_magic
  mov %edi, boot_mbi
  mov $4, %ecx
  cmp $MB_BOOT_MAGIC, %esi
  jne 1f
  testl $1, (%edi)
  jz 1f
  mov 8(%edi), %eax           /* mem_upper: KiB above 1 MiB */
  shr $10, %eax               /* MiB above 1 MiB */
  add $1024, %eax             /* + 1 MiB, rounded up to a GiB */
  shr $10, %eax
  mov %eax, %ecx
1:
  cmp $MAX_GIB, %ecx
  jbe 2f
  mov $MAX_GIB, %ecx
2:
  cmp $1, %ecx
  jae 3f
  mov $1, %ecx
3:
  mov %ecx, boot_gib
  movl $(pdpt + 7), pml4       /* present, writable, user */
  movl $0, pml4 + 4
  xor %edx, %edx
4:
  mov %edx, %eax
  shl $12, %eax
  add $(pds + 7), %eax
  mov %eax, pdpt(, %edx, 8)
  movl $0, pdpt + 4(, %edx, 8)
  inc %edx
  cmp %ecx, %edx
  jb 4b
  mov %ecx, %ebx
  shl $9, %ebx
  xor %edx, %edx
5:
  mov %edx, %eax
  shl $21, %eax
  or $0x87, %eax              /* present, writable, user, 2 MiB page (write-back: PAT 0) */
  mov %eax, pds(, %edx, 8)
  mov %edx, %eax
  shr $11, %eax
  mov %eax, pds + 4(, %edx, 8)
  inc %edx
  cmp %ebx, %edx
  jb 5b
  movl $1, tables_ready
  jmp enter_long

wait_tables:
  pause
  cmpl $1, tables_ready
  jne wait_tables

enter_long:
  lgdt gdt_ptr
  mov $pml4, %eax
  mov %eax, %cr3
  mov %cr4, %eax
  or $0x20, %eax              /* PAE */
  mov %eax, %cr4
  mov $0xC0000080, %ecx       /* EFER.LME */
  rdmsr
  or $0x100, %eax
  wrmsr
  mov %cr0, %eax
  or $0x80000001, %eax        /* PG | PE */
  mov %eax, %cr0
  ljmp $0x08, $start64

halt32:
  cli
  hlt
  jmp halt32

  .code64
start64:
  mov $0x10, %eax
  mov %eax, %ds
  mov %eax, %es
  mov %eax, %ss
  xor %eax, %eax
  mov %eax, %fs
  mov %eax, %gs
  mov %ebp, %eax              /* zero-extends: upper halves are undefined after the switch */
  inc %eax
  shl $STACK_SHIFT, %eax
  lea boot_stacks(%rax), %rsp
  mov %ebp, %edi
  call guest_main
halt64:
  cli
  hlt
  jmp halt64

/* void enter_user(void (*fn)(uint32_t), uint32_t arg): continues at fn(arg) at CPL 3 on the current
 * stack, interrupts off, IOPL 3 so the port I/O of the serial and status ports still works. */
  .globl enter_user
enter_user:
  mov %rsp, %rcx              /* as after a call: fn sees the usual stack alignment */
  pushq $0x23                 /* SS: user data, RPL 3 */
  pushq %rcx
  pushq $0x3002               /* RFLAGS: IOPL 3, IF 0 */
  pushq $0x1b                 /* CS: 64-bit user code, RPL 3 */
  pushq %rdi
  mov %esi, %edi
  iretq

  .section .data
  .balign 8
gdt:
  .quad 0
  .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
  .quad 0x00cf92000000ffff    /* 0x10: flat data */
  .quad 0x00affa000000ffff    /* 0x18: 64-bit user code (DPL 3) */
  .quad 0x00cff2000000ffff    /* 0x20: flat user data (DPL 3) */
gdt_ptr:
  .word gdt_ptr - gdt - 1
  .long gdt
  .globl boot_magic, boot_mbi, boot_gib
boot_magic: .long 0
boot_mbi: .long 0
boot_gib: .long 0
tables_ready: .long 0

  .section .bss
  .balign 4096
  .globl pdpt, pds
pml4: .skip 4096
pdpt: .skip 4096
pds: .skip 4096 * MAX_GIB
boot_stacks: .skip (1 << STACK_SHIFT) * MAX_VCPUS
