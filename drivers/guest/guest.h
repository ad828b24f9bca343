/*
 * The freestanding runtime for Vireo's test and benchmark guests.
 *
 * A guest is a multiboot v1 image: boot.S enters long mode with the first
 * 4 GiB identity-mapped (2 MiB pages, user-accessible), builds the GDT, TSS
 * and IDT, and calls the guest's main(). Checks print one line each
 * ("PASS name" or "FAIL name: expected X got Y"); when main returns, the
 * guest prints a summary and leaves through the debug-exit port at 0xf4
 * with 0 if every check passed and 1 otherwise.
 */
#ifndef VIREO_GUEST_H
#define VIREO_GUEST_H

#ifdef __ASSEMBLER__
#define BIT(n) (1 << (n))
#define BIT64(n) (1 << (n))
#else
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define BIT(n) (1u << (n))
#define BIT64(n) (1ull << (n))
#endif

/* Segment selectors of the runtime's GDT. SYSCALL/SYSRET need this order. */
#define GDT_KERNEL_CODE 0x08
#define GDT_KERNEL_DATA 0x10
#define GDT_USER_CODE32 0x18
#define GDT_USER_DATA 0x20
#define GDT_USER_CODE 0x28
#define GDT_TSS 0x30
#define GDT_ENTRIES 9 /* the TSS descriptor takes two slots */

#define RFLAGS_CF BIT(0)
#define RFLAGS_PF BIT(2)
#define RFLAGS_AF BIT(4)
#define RFLAGS_ZF BIT(6)
#define RFLAGS_SF BIT(7)
#define RFLAGS_TF BIT(8)
#define RFLAGS_IF BIT(9)
#define RFLAGS_DF BIT(10)
#define RFLAGS_OF BIT(11)
#define RFLAGS_IOPL (BIT(12) | BIT(13))
#define RFLAGS_AC BIT(18)
#define RFLAGS_ID BIT(21)
#define RFLAGS_ARITH (RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF)

/* #PF error code bits. */
#define PF_P BIT(0)
#define PF_W BIT(1)
#define PF_U BIT(2)
#define PF_RSVD BIT(3)
#define PF_I BIT(4)

/* Page-table entry bits. */
#define PTE_P BIT64(0)
#define PTE_W BIT64(1)
#define PTE_U BIT64(2)
#define PTE_PWT BIT64(3)
#define PTE_PCD BIT64(4)
#define PTE_A BIT64(5)
#define PTE_D BIT64(6)
#define PTE_PS BIT64(7)
#define PTE_G BIT64(8)
#define PTE_NX BIT64(63)
#define PTE_ADDR_MASK 0x000ffffffffff000

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_FMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103
#define MSR_APIC_BASE 0x1b
#define MSR_TSC 0x10
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_PAT 0x277
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176

#define EFER_SCE BIT(0)
#define EFER_LME BIT(8)
#define EFER_LMA BIT(10)
#define EFER_NXE BIT(11)

#define MULTIBOOT_BOOT_MAGIC 0x2badb002

/* System call number 0 returns from ring 3 to user_run. */
#define SYS_USER_EXIT 0

/* smp_start(): at most the BSP and 15 APs, one 16 KiB stack per AP, the APs'
 * real-mode entry copied to this page (conventional memory no loader uses). */
#define SMP_MAX_CPUS 16
#define SMP_STACK_SIZE 16384
#define SMP_TRAMPOLINE 0x70000

#ifndef __ASSEMBLER__

/* Exception vectors. */
enum {
	VEC_DE = 0, VEC_DB = 1, VEC_NMI = 2, VEC_BP = 3, VEC_OF = 4, VEC_BR = 5,
	VEC_UD = 6, VEC_NM = 7, VEC_DF = 8, VEC_TS = 10, VEC_NP = 11, VEC_SS = 12,
	VEC_GP = 13, VEC_PF = 14, VEC_MF = 16, VEC_AC = 17, VEC_MC = 18, VEC_XM = 19,
};

/* ---- checks and exit ---------------------------------------------------- */

/* The guest's entry point, called by the runtime once the machine is set up. */
void main(void);

/* Records one check: prints "PASS name" or "FAIL name: <why>". */
void check(bool ok, const char *name, const char *why_fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Records a check that passed (its own comparisons are done by the caller). */
void check_pass(const char *name);
/* Compares integers; the failure line shows both in hex. */
void check_eq(const char *name, uint64_t expected, uint64_t got);
/* Names built at run time: CHECK_EQ("add %d", i)(expected, got) is awkward in
 * C, so check_eqf formats the name first. */
void check_eqf(uint64_t expected, uint64_t got, const char *name_fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prints the summary and ends the VM: status 0 if every check passed. */
__attribute__((noreturn)) void guest_finish(void);
/* Ends the VM at once through the debug-exit port: QEMU exits (v << 1) | 1. */
__attribute__((noreturn)) void guest_exit(uint32_t v);

extern unsigned guest_checks_passed, guest_checks_failed;

/* ---- serial console (16550 at 0x3f8) ------------------------------------ */

void serial_putc(char c);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- freestanding C library --------------------------------------------- */

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- port I/O, MMIO, MSRs, control registers, CPUID --------------------- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint64_t mmio_read64(uint64_t addr) { return *(volatile uint64_t *)addr; }
static inline void mmio_write64(uint64_t addr, uint64_t v) { *(volatile uint64_t *)addr = v; }

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

struct cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};
static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
	struct cpuid_regs r;
	__asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(subleaf));
	return r;
}
/* CPUID feature tests used by several guests. */
bool cpu_has_nx(void);
bool cpu_has_1g_pages(void);
bool cpu_has_x2apic(void);
bool cpu_has_tsc_deadline(void);
bool cpu_has_xsave(void);

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

#define DEFINE_CR(n)                                                          \
	static inline uint64_t read_cr##n(void)                               \
	{                                                                     \
		uint64_t v;                                                   \
		__asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));             \
		return v;                                                     \
	}                                                                     \
	static inline void write_cr##n(uint64_t v) { __asm__ volatile("mov %0, %%cr" #n ::"r"(v) : "memory"); }
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR

static inline uint64_t read_rflags(void)
{
	uint64_t v;
	__asm__ volatile("pushfq; popq %0" : "=r"(v));
	return v;
}
static inline uint16_t read_cs(void)
{
	uint16_t v;
	__asm__ volatile("mov %%cs, %0" : "=r"(v));
	return v;
}
static inline void irq_enable(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void irq_disable(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void cpu_pause(void) { __asm__ volatile("pause"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

/* ---- traps and interrupts ----------------------------------------------- */

/* What the interrupt stubs push, lowest address first. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

typedef void (*trap_handler)(struct trap_frame *f);

/* Installs a handler for a vector; NULL restores the default, which reports
 * an unexpected exception (vector, error code, RIP) and fails the guest. */
void trap_set_handler(unsigned vector, trap_handler h);
/* Gate DPL 3 lets ring 3 raise the vector with INT n. */
void idt_set_dpl(unsigned vector, unsigned dpl);
/* Runs the vector's handler on interrupt stack table entry ist (1..7, 0 = none). */
void idt_set_ist(unsigned vector, unsigned ist);
/* Bounds of IST stack n (1..7), for checks that a handler ran on it. */
void ist_stack_bounds(unsigned ist, uint64_t *lo, uint64_t *hi);
/* Bounds of the ring-0 stack loaded from TSS.RSP0 on entry from ring 3. */
void rsp0_stack_bounds(uint64_t *lo, uint64_t *hi);

/* What trap_run saw when the function it ran faulted. */
struct trap_record {
	uint64_t vector, error, rip, cr2, cs, rsp;
};
/* Runs fn(arg). If an exception (vector < 32) is raised while it runs, in
 * ring 0 or ring 3, records it in *rec, abandons fn and returns true. */
bool trap_run(void (*fn)(void *), void *arg, struct trap_record *rec);

/* ---- ring 3 ------------------------------------------------------------- */

/* Runs fn(arg) in ring 3 on its own stack and returns what it returned. The
 * user side goes back through SYSCALL (usys_exit). */
uint64_t user_run(uint64_t (*fn)(void *), void *arg);

/* System calls from ring 3: number in RAX, arguments in RDI, RSI, RDX.
 * SYS_USER_EXIT is the runtime's way back to user_run; other numbers go to
 * the handler set here, which receives the saved user registers. */
struct syscall_frame {
	uint64_t r15, r14, r13, r12, rbp, rbx;
	uint64_t rax, rdi, rsi, rdx, r10, r8, r9;
	uint64_t rcx, r11; /* user RIP and RFLAGS saved by SYSCALL */
	uint64_t rsp;      /* user RSP */
	uint64_t cs;       /* CS at the time the handler runs */
};
typedef uint64_t (*syscall_handler)(struct syscall_frame *f);
void syscall_set_handler(syscall_handler h);
static inline uint64_t usys(uint64_t nr, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t ret;
	register uint64_t rdx __asm__("rdx") = c;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "r"(rdx) : "rcx", "r11", "memory");
	return ret;
}

/* ---- paging ------------------------------------------------------------- */

/* A zeroed 4 KiB page from the runtime's pool; the pool is identity-mapped. */
void *page_alloc(void);
/* Maps va to pa in the current tables at the given size (4 KiB, 2 MiB or
 * 1 GiB), creating intermediate tables as needed; flags are PTE_* bits. */
void paging_map(uint64_t va, uint64_t pa, uint64_t size, uint64_t flags);
/* The leaf entry that maps va, or NULL if none. */
uint64_t *paging_leaf(uint64_t va);

/* ---- interrupt controllers and timers ----------------------------------- */

#define LAPIC_BASE 0xfee00000ull
#define IOAPIC_BASE 0xfec00000ull

enum {
	LAPIC_ID = 0x20, LAPIC_VERSION = 0x30, LAPIC_TPR = 0x80, LAPIC_EOI = 0xb0,
	LAPIC_LDR = 0xd0, LAPIC_DFR = 0xe0, LAPIC_SVR = 0xf0, LAPIC_ISR = 0x100,
	LAPIC_TMR = 0x180, LAPIC_IRR = 0x200, LAPIC_ESR = 0x280, LAPIC_ICR_LO = 0x300,
	LAPIC_ICR_HI = 0x310, LAPIC_LVT_TIMER = 0x320, LAPIC_LVT_LINT0 = 0x350,
	LAPIC_LVT_LINT1 = 0x360, LAPIC_LVT_ERROR = 0x370, LAPIC_TIMER_INIT = 0x380,
	LAPIC_TIMER_CURRENT = 0x390, LAPIC_TIMER_DIVIDE = 0x3e0,
};
#define LAPIC_TIMER_PERIODIC BIT(17)
#define LAPIC_TIMER_TSC_DEADLINE BIT(18)
#define LAPIC_LVT_MASKED BIT(16)

uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
/* Software-enables the LAPIC with the given spurious vector. */
void lapic_enable(uint8_t spurious_vector);
void lapic_eoi(void);
uint32_t lapic_id(void);

uint32_t ioapic_read(uint32_t reg);
void ioapic_write(uint32_t reg, uint32_t v);
/* Routes IOAPIC input pin to vector on the LAPIC with the given ID
 * (edge-triggered, active high, fixed delivery), unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, uint8_t apic_id);
void ioapic_mask(unsigned pin);

/* Remaps the 8259 PICs to vectors 0x20-0x2f and masks every line. */
void pic_disable(void);

/* Reads CMOS/RTC register reg (NMI stays enabled). */
uint8_t cmos_read(uint8_t reg);
void cmos_write(uint8_t reg, uint8_t v);

#define PIT_HZ 1193182u
/* Counts down channel 2 (gate through port 0x61, no interrupt) for count
 * ticks of 1.193182 MHz and busy-waits until its output goes high. */
void pit_wait_ticks(uint16_t count);

/* Spins until *counter >= target or max_spins iterations pass; says which. */
bool wait_count(volatile uint64_t *counter, uint64_t target, uint64_t max_spins);

/* ---- SMP ---------------------------------------------------------------- */

/* Starts every application processor: copies the real-mode entry to
 * SMP_TRAMPOLINE, broadcasts INIT, then two start-up IPIs, to all but self
 * (enabling the BSP's LAPIC first, spurious vector 0xff, if it is off), and
 * waits up to 1 s of PIT time, ending early once no AP has checked in for
 * 200 ms. Each AP enters long mode on boot_pml4 with the BSP's EFER bits,
 * loads the runtime's GDT and IDT (no TSS: APs stay in ring 0), enables its
 * LAPIC with the BSP's spurious vector and calls ap_main(cpu), cpu = 1..15,
 * interrupts off, on its own stack. If ap_main returns, the AP idles in a
 * STI; HLT loop and still takes interrupts. Returns how many APs checked in.
 * Call it once. */
unsigned smp_start(void (*ap_main)(unsigned cpu));

/* ---- ACPI --------------------------------------------------------------- */

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

/* The table with this signature from the XSDT (or the RSDT), or NULL when
 * absent or when a checksum on the way is wrong. */
const struct acpi_header *acpi_find_table(const char *signature);
/* The byte sum of n bytes: 0 for a valid ACPI structure. */
uint8_t acpi_checksum(const void *p, size_t n);

/* ---- multiboot ---------------------------------------------------------- */

#define MBI_MEMORY BIT(0)
#define MBI_CMDLINE BIT(2)
#define MBI_MODS BIT(3)
#define MBI_MMAP BIT(6)

struct multiboot_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
} __attribute__((packed));

struct multiboot_module {
	uint32_t start, end, string, reserved;
};

struct multiboot_mmap {
	uint32_t size; /* of the rest of the entry: entries advance by size + 4 */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

/* What the loader handed over in EAX and EBX. */
extern uint32_t multiboot_magic, multiboot_info;
extern char __image_start[], __image_end[];

#endif /* __ASSEMBLER__ */
#endif
