/*
 * The dbt engine's internals, shared by its files and by nothing else.
 *
 * Execution model: guest code is decoded once (Zydis) into blocks of
 * struct dinsn, each naming a specialised handler; blocks are cached by
 * guest-physical address and found by virtual RIP through a small jump
 * cache. Handlers run over struct dbt_cpu. Guest faults longjmp back to the
 * run loop, which delivers them with RIP at the faulting instruction, so a
 * handler must not change architectural state before its last faulting step.
 * docs/dbt-interpreter.md explains the mechanisms.
 */
#ifndef VIREO_DBT_INTERNAL_H
#define VIREO_DBT_INTERNAL_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "dbt/dbt.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- architectural constants ------------------------------------------- */

#define FL_CF	 (1ull << 0)
#define FL_FIXED (1ull << 1)
#define FL_PF	 (1ull << 2)
#define FL_AF	 (1ull << 4)
#define FL_ZF	 (1ull << 6)
#define FL_SF	 (1ull << 7)
#define FL_TF	 (1ull << 8)
#define FL_IF	 (1ull << 9)
#define FL_DF	 (1ull << 10)
#define FL_OF	 (1ull << 11)
#define FL_IOPL	 (3ull << 12)
#define FL_NT	 (1ull << 14)
#define FL_RF	 (1ull << 16)
#define FL_VM	 (1ull << 17)
#define FL_AC	 (1ull << 18)
#define FL_VIF	 (1ull << 19)
#define FL_VIP	 (1ull << 20)
#define FL_ID	 (1ull << 21)
#define FL_ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_AM (1ull << 18)
#define CR0_NW (1ull << 29)
#define CR0_CD (1ull << 30)
#define CR0_PG (1ull << 31)

#define CR4_VME	       (1ull << 0)
#define CR4_PVI	       (1ull << 1)
#define CR4_TSD	       (1ull << 2)
#define CR4_DE	       (1ull << 3)
#define CR4_PSE	       (1ull << 4)
#define CR4_PAE	       (1ull << 5)
#define CR4_MCE	       (1ull << 6)
#define CR4_PGE	       (1ull << 7)
#define CR4_PCE	       (1ull << 8)
#define CR4_OSFXSR     (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define CR4_OSXSAVE    (1ull << 18)

#define EFER_SCE (1ull << 0)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

enum {
	EXC_DE = 0,
	EXC_DB = 1,
	EXC_NMI = 2,
	EXC_BP = 3,
	EXC_OF = 4,
	EXC_BR = 5,
	EXC_UD = 6,
	EXC_NM = 7,
	EXC_DF = 8,
	EXC_TS = 10,
	EXC_NP = 11,
	EXC_SS = 12,
	EXC_GP = 13,
	EXC_PF = 14,
	EXC_MF = 16,
	EXC_AC = 17,
	EXC_MC = 18,
	EXC_XM = 19,
};

/* #PF error code bits. */
#define PFE_P	 (1u << 0)
#define PFE_W	 (1u << 1)
#define PFE_U	 (1u << 2)
#define PFE_RSVD (1u << 3)
#define PFE_I	 (1u << 4)

/* The guest's physical address width (CPUID 0x80000008): entry bits above
 * it are reserved and fault with PFE_RSVD. */
#define DBT_PHYS_BITS 40
#define DBT_PHYS_MASK ((1ull << DBT_PHYS_BITS) - 1)

#define PAGE_SIZE 4096ull
#define PAGE_MASK (~(PAGE_SIZE - 1))

/* ---- decoded instructions and blocks ------------------------------------- */

struct dbt_cpu;
struct dinsn;
typedef void (*dbt_handler)(struct dbt_cpu *cpu, const struct dinsn *d);

/* Register operand encoding: the GPR index, except for 8-bit operands,
 * which are byte offsets into gpr[] (AH = 1, CH = 9, ... ; SPL = 32). */
#define REG_NONE 16 /* gpr[16] is always zero: a missing base or index */
#define SEG_NONE 6  /* segbase[6] is always zero (LEA) */

/* dinsn.flags */
#define DI_MEM	  (1u << 0) /* the r/m operand is memory */
#define DI_LOCK	  (1u << 1) /* LOCK prefix */
#define DI_REP	  (1u << 2) /* REP / REPE */
#define DI_REPNE  (1u << 3) /* REPNE */
#define DI_CL	  (1u << 4) /* shift count in CL */
#define DI_MEMSRC (1u << 5) /* memory is the source (reg <- mem) */
#define DI_IMM	  (1u << 6) /* the source is an immediate */
#define DI_REX_W  (1u << 7)

struct dinsn {
	dbt_handler fn;
	uint64_t rip; /* start of this instruction (offset in CS) */
	uint64_t imm; /* immediate, sign-extended; branch target */
	int64_t disp; /* displacement; absolute for RIP-relative */
	uint8_t len;
	uint8_t osz; /* operand size in bytes */
	uint8_t asz; /* address size in bytes */
	uint8_t r0;  /* first register operand (destination) */
	uint8_t r1;  /* second register operand (source) */
	uint8_t base, index, scale;
	uint8_t seg;
	uint8_t flags;
	uint8_t cc;    /* condition code, operation number, segment or CR index */
	uint8_t ssz;   /* source size (MOVZX/MOVSX), second immediate */
	uint16_t mnem; /* ZydisMnemonic */
	uint16_t aux;  /* index of the host-execution stub (fpu.c) */
};

/* A run of decoded instructions entered only at its start. */
struct block {
	struct block *hnext; /* chain in the physical hash */
	uint64_t rip;	     /* virtual RIP of the first instruction */
	uint64_t gpa;	     /* its guest-physical address */
	uint64_t gpa2;	     /* page of the second page, if any */
	uint64_t end_rip;    /* RIP after the last instruction */
	uint32_t key;	     /* decode mode (mode_key) */
	uint32_t page[2];    /* guest page frames the bytes came from */
	uint32_t gen[2];     /* their code generations at decode time */
	uint16_t count;
	uint16_t npages;
	struct dinsn insn[];
};

#define BLOCK_MAX_INSNS 64
#define JCACHE_SIZE	4096
#define BLOCK_HASH_SIZE 16384

/* ---- the software TLB ------------------------------------------------------ */

/* One 4 KiB virtual page. tag[ACCESS] is the page address when the fast path
 * may use host = va + addend for that access; TLB_SLOW in a tag says the
 * translation is valid but the access needs the slow path (MMIO, code page
 * write); TLB_INVALID says nothing is known. */
enum { TLB_READ, TLB_WRITE, TLB_EXEC };
#define TLB_SLOW    1ull
#define TLB_INVALID 3ull
#define TLB_SIZE    1024

struct tlb_entry {
	uint64_t tag[3];
	uintptr_t addend; /* host address minus virtual address (RAM pages) */
	uint64_t gpa;	  /* guest-physical page address */
	uint8_t global;
	uint8_t mmio; /* not RAM: every access goes out through env->io */
};

/* Access kinds for the slow paths. */
#define ACC_R	  1u
#define ACC_W	  2u
#define ACC_X	  4u
#define ACC_SYS	  8u  /* implicit supervisor access (descriptor tables, TSS) */
#define ACC_STACK 16u /* a stack access: non-canonical gives #SS, not #GP */

/* ---- code pages shared by the vCPUs of one guest -------------------------- */

/* Per 4 KiB page of guest RAM: bit 0 says translations were made from it;
 * the rest counts invalidations. A block is valid while its pages' words
 * equal what they were at decode time. */
struct dbt_shared {
	uint8_t *ram_host; /* registry key: the first RAM range's host mapping */
	unsigned refs;
	uint64_t pages;		 /* number of words in gen[] */
	_Atomic uint32_t *gen;	 /* indexed by dense RAM page number */
	_Atomic uint64_t epoch;	 /* bumped when a page newly holds code */
	_Atomic uint64_t inval;	 /* bumped when translations are invalidated */
	struct dbt_shared *next; /* registry list */
	uint64_t ram_gpa[2], ram_size[2], ram_first_page[2];
	unsigned ram_count;
	int64_t tsc_offset; /* the guest's TSC - the host's, shared by its vCPUs */
	bool tsc_known;
};

/* ---- the CPU --------------------------------------------------------------- */

struct fpu_stub;

struct dbt_cpu {
	/* Hot state first. */
	uint64_t gpr[17]; /* gpr[16] == 0 */
	uint64_t rip;	  /* between blocks: next RIP; inside a block: fall-through */
	uint64_t rflags;
	const struct dinsn *cur; /* instruction executing */
	const struct block *cur_block;
	struct tlb_entry *tlb; /* the set for the current CPL (or the AC set) */
	uint64_t segbase[8];   /* effective segment bases; [SEG_NONE] = 0 */
	uint64_t lin_mask;     /* ~0 in long mode, 0xffffffff otherwise */
	uint64_t sp_mask;      /* 0xffff, 0xffffffff or ~0 (SS.B / long mode) */
	uint32_t seg_chk[2];   /* segments needing limit checks: [0] read, [1] write */
	bool stop;	       /* leave the block after this instruction */
	bool identity;	       /* user mode: linear = guest-physical = host address (usermode.c) */
	uint8_t cpl;
	uint8_t mode;	  /* MODE_* */
	uint32_t key;	  /* mode_key(): the decode mode blocks are made for */
	bool irq_shadow;  /* STI / MOV SS: no interrupt before the next instruction */
	bool irq_check;	  /* the hint was seen: ask for an interrupt once IF allows */
	bool nmi_check;	  /* the hint was seen: ask for an NMI once none is in service */
	bool nmi_blocked; /* an NMI handler runs: no NMI until IRET */
	bool delivered;	  /* an event was delivered since the block began */

	struct x86_state s; /* the rest of the state; s.gpr/rip/rflags are stale */
	int64_t tsc_offset;
	uint64_t mtrr[28]; /* variable, fixed and default-type MTRRs (msr.c) */

	struct dbt_env env;
	struct dbt_shared *shared;
	bool trace; /* VIREO_DBT_TRACE: one line per block to stderr */
	uint64_t icount;

	/* Exceptions: the run loop's recovery point and the event being raised. */
	jmp_buf jb;
	bool in_block;
	int exc_vector;
	uint32_t exc_error;
	uint64_t exc_rip;    /* RIP the fault is reported at */
	int delivering;	     /* vector being delivered, or -1 */
	int delivering_kind; /* exception, external interrupt or INT n */
	int exit_reason;     /* set with stop: leave dbt_cpu_run with it */
	struct vcpu_exit *exit;

	/* Soft TLB: supervisor, user, and an empty set used while alignment
	 * checking is on so that every access takes the slow path. */
	struct tlb_entry tlbs[3][TLB_SIZE];
	uint64_t large_lo, large_hi; /* virtual span of large-page entries */
	uint64_t seen_epoch, seen_inval;

	/* Block cache. */
	struct block *jcache[JCACHE_SIZE];
	struct block *bhash[BLOCK_HASH_SIZE];
	uint8_t *arena;
	size_t arena_size, arena_used;
	ZydisDecoder dec[3];

	/* Host-execution stubs for x87/MMX/SSE (fpu.c). */
	struct fpu_stub *stubs;
	unsigned nstubs, max_stubs;
	uint8_t *stub_code;
	size_t stub_code_size, stub_code_used;
	void *fx_scratch; /* 64-byte-aligned work area of fpu.c */
};

enum { MODE_REAL, MODE_PROT16, MODE_PROT32, MODE_LONG64, MODE_COMPAT16, MODE_COMPAT32 };

/* What a block is made for: code size, stack size, and user or supervisor
 * (jump-cache hits skip the fetch's page checks, so a block decoded for
 * ring 0 must not be found by ring 3). */
static inline uint32_t mode_key(const struct dbt_cpu *cpu)
{
	return cpu->mode | (cpu->sp_mask == 0xffff ? 0x10u : 0) | (cpu->cpl == 3 ? 0x20u : 0);
}

static inline bool mode_long(const struct dbt_cpu *cpu)
{
	return cpu->s.efer & EFER_LMA;
}
static inline bool mode_prot(const struct dbt_cpu *cpu)
{
	return cpu->s.cr0 & CR0_PE;
}

/* ---- registers ------------------------------------------------------------- */

static inline uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

static inline uint64_t sext(uint64_t v, unsigned size)
{
	switch (size) {
	case 1: return (uint64_t)(int64_t)(int8_t)v;
	case 2: return (uint64_t)(int64_t)(int16_t)v;
	case 4: return (uint64_t)(int64_t)(int32_t)v;
	default: return v;
	}
}

static inline uint64_t reg_get(const struct dbt_cpu *cpu, unsigned r, unsigned size)
{
	switch (size) {
	case 1: return (cpu->gpr[r >> 3] >> ((r & 7) * 8)) & 0xff;
	case 2: return cpu->gpr[r] & 0xffff;
	case 4: return cpu->gpr[r] & 0xffffffff;
	default: return cpu->gpr[r];
	}
}

static inline void reg_set(struct dbt_cpu *cpu, unsigned r, unsigned size, uint64_t v)
{
	switch (size) {
	case 1: {
		unsigned sh = (r & 7) * 8;
		cpu->gpr[r >> 3] = (cpu->gpr[r >> 3] & ~(0xffull << sh)) | ((v & 0xff) << sh);
		break;
	}
	case 2: cpu->gpr[r] = (cpu->gpr[r] & ~0xffffull) | (v & 0xffff); break;
	case 4: cpu->gpr[r] = (uint32_t)v; break;
	default: cpu->gpr[r] = v; break;
	}
}

/* Writes a register the way an instruction with this operand size does,
 * when the register is named by index (not the 8-bit byte encoding). */
static inline void reg_set_idx(struct dbt_cpu *cpu, unsigned idx, unsigned size, uint64_t v)
{
	reg_set(cpu, size == 1 ? idx * 8 : idx, size, v);
}

/* ---- exceptions (exception.c) ---------------------------------------------- */

#define NO_ERROR ((uint32_t)-1)
__attribute__((noreturn)) void dbt_raise(struct dbt_cpu *cpu, int vector, uint32_t error);
__attribute__((noreturn)) static inline void raise_gp(struct dbt_cpu *cpu, uint32_t error)
{
	dbt_raise(cpu, EXC_GP, error);
}
__attribute__((noreturn)) static inline void raise_ud(struct dbt_cpu *cpu)
{
	dbt_raise(cpu, EXC_UD, NO_ERROR);
}
/* Leaves dbt_cpu_run with a VCPU_EXIT_ERROR saying why. */
__attribute__((noreturn)) void dbt_fatal(struct dbt_cpu *cpu, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Delivers an exception or interrupt through the IDT/IVT with return RIP
 * ret_rip (faults nest: see exception.c). */
void dbt_deliver(struct dbt_cpu *cpu, int vector, uint32_t error, uint64_t ret_rip, bool soft, bool ext);
/* Handles the event recorded by dbt_raise after the longjmp. Returns false
 * on triple fault (exit filled). */
bool dbt_handle_exception(struct dbt_cpu *cpu);
void h_iret(struct dbt_cpu *cpu, const struct dinsn *d);

/* ---- memory (mmu.c) -------------------------------------------------------- */

uint64_t mem_read_slow(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc);
void mem_write_slow(struct dbt_cpu *cpu, uint64_t lin, unsigned size, uint64_t v, unsigned acc);
/* Translates [lin, lin + size) for acc, faulting as the access would; returns
 * the host address if it lies in one RAM page (and, for writes, may be written
 * directly), else NULL (then use the slow read/write, which will not fault). */
uint8_t *mem_translate(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc);
/* Bulk copies through the MMU (descriptor tables, FXSAVE areas, ...). */
void mem_read_buf(struct dbt_cpu *cpu, uint64_t lin, void *buf, unsigned len, unsigned acc);
void mem_write_buf(struct dbt_cpu *cpu, uint64_t lin, const void *buf, unsigned len, unsigned acc);
/* Checks that [lin, lin + len) may be written (faults if not). */
void mem_probe_write(struct dbt_cpu *cpu, uint64_t lin, unsigned len, unsigned acc);
/* Instruction fetch for the decoder: the guest-physical address of lin. */
uint64_t mmu_translate_exec(struct dbt_cpu *cpu, uint64_t lin);
/* Host address of guest-physical [gpa, gpa + len) if all RAM, else NULL. */
uint8_t *ram_ptr(struct dbt_cpu *cpu, uint64_t gpa, uint64_t len);
uint64_t phys_read(struct dbt_cpu *cpu, uint64_t gpa, unsigned size);
void phys_write(struct dbt_cpu *cpu, uint64_t gpa, unsigned size, uint64_t v);
void tlb_flush_all(struct dbt_cpu *cpu, bool keep_global);
void tlb_flush_page(struct dbt_cpu *cpu, uint64_t lin);
void tlb_flush_writes(struct dbt_cpu *cpu);
/* Picks the TLB set for the current CPL and alignment-check state. */
void tlb_select(struct dbt_cpu *cpu);
/* Segment limit/type check for a non-flat segment (32-bit and 16-bit modes). */
void seg_check(struct dbt_cpu *cpu, unsigned seg, uint64_t off, unsigned size, bool write);

static inline uint64_t ld_host(const uint8_t *p, unsigned size)
{
	switch (size) {
	case 1: return *p;
	case 2: {
		uint16_t v;
		memcpy(&v, p, 2);
		return v;
	}
	case 4: {
		uint32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	default: {
		uint64_t v;
		memcpy(&v, p, 8);
		return v;
	}
	}
}

static inline void st_host(uint8_t *p, unsigned size, uint64_t v)
{
	switch (size) {
	case 1: *p = (uint8_t)v; break;
	case 2: {
		uint16_t x = (uint16_t)v;
		memcpy(p, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(p, &x, 4);
		break;
	}
	default: memcpy(p, &v, 8); break;
	}
}

static inline uint8_t *tlb_host(struct dbt_cpu *cpu, uint64_t lin, unsigned size, int kind)
{
	struct tlb_entry *e = &cpu->tlb[(lin >> 12) & (TLB_SIZE - 1)];
	if (likely(e->tag[kind] == (lin & PAGE_MASK) && (lin & 0xfff) <= PAGE_SIZE - size))
		return (uint8_t *)(uintptr_t)(lin + e->addend);
	return NULL;
}

static inline uint64_t mem_read(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc)
{
	uint8_t *p = tlb_host(cpu, lin, size, TLB_READ);
	if (likely(p))
		return ld_host(p, size);
	return mem_read_slow(cpu, lin, size, acc | ACC_R);
}

static inline void mem_write(struct dbt_cpu *cpu, uint64_t lin, unsigned size, uint64_t v, unsigned acc)
{
	uint8_t *p = tlb_host(cpu, lin, size, TLB_WRITE);
	if (likely(p))
		st_host(p, size, v);
	else
		mem_write_slow(cpu, lin, size, v, acc | ACC_W);
}

/* A memory destination translated once for read-modify-write. */
struct wloc {
	uint8_t *p; /* host address, or NULL: use lin through the slow path */
	uint64_t lin;
};

static inline void wloc_get(struct dbt_cpu *cpu, struct wloc *l, uint64_t lin, unsigned size, unsigned acc)
{
	l->lin = lin;
	l->p = tlb_host(cpu, lin, size, TLB_WRITE);
	if (unlikely(!l->p))
		l->p = mem_translate(cpu, lin, size, acc | ACC_W);
}

static inline uint64_t wloc_read(struct dbt_cpu *cpu, const struct wloc *l, unsigned size, unsigned acc)
{
	if (likely(l->p))
		return ld_host(l->p, size);
	return mem_read_slow(cpu, l->lin, size, acc | ACC_R);
}

static inline void wloc_write(struct dbt_cpu *cpu, const struct wloc *l, unsigned size, uint64_t v, unsigned acc)
{
	if (likely(l->p))
		st_host(l->p, size, v);
	else
		mem_write_slow(cpu, l->lin, size, v, acc | ACC_W);
}

/* ---- effective addresses --------------------------------------------------- */

static inline uint64_t amask(unsigned asz)
{
	return asz == 8 ? ~0ull : asz == 4 ? 0xffffffffull : 0xffffull;
}

/* The offset (effective address) of the memory operand. */
static inline uint64_t d_ea(const struct dbt_cpu *cpu, const struct dinsn *d)
{
	uint64_t a = cpu->gpr[d->base] + (cpu->gpr[d->index] << d->scale) + (uint64_t)d->disp;
	return d->asz == 8 ? a : a & amask(d->asz);
}

static inline unsigned seg_acc(unsigned seg)
{
	return seg == SEG_SS ? ACC_STACK : 0;
}

/* Segment offset to linear address, with the limit check where needed. */
static inline uint64_t seg_lin(struct dbt_cpu *cpu, unsigned seg, uint64_t off, unsigned size, bool write)
{
	if (unlikely(cpu->seg_chk[write] & (1u << seg)))
		seg_check(cpu, seg, off, size, write);
	return (off + cpu->segbase[seg]) & cpu->lin_mask;
}

/* The linear address of the memory operand for an access of size bytes. */
static inline uint64_t d_lin(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size, bool write)
{
	return seg_lin(cpu, d->seg, d_ea(cpu, d), size, write);
}

static inline uint64_t d_read(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size)
{
	return mem_read(cpu, d_lin(cpu, d, size, false), size, seg_acc(d->seg));
}

static inline void d_write(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size, uint64_t v)
{
	mem_write(cpu, d_lin(cpu, d, size, true), size, v, seg_acc(d->seg));
}

/* The r/m operand (operand 0 when it is a destination). */
static inline uint64_t rm_read(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size)
{
	return (d->flags & DI_MEM) ? d_read(cpu, d, size) : reg_get(cpu, d->r0, size);
}

static inline void rm_write(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size, uint64_t v)
{
	if (d->flags & DI_MEM)
		d_write(cpu, d, size, v);
	else
		reg_set(cpu, d->r0, size, v);
}

/* Read-modify-write of the r/m operand: the write permission is checked
 * before anything is read, so a faulting RMW changes nothing. */
struct rmw {
	struct wloc l;
	bool mem;
};

static inline uint64_t rmw_begin(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size, struct rmw *m)
{
	m->mem = d->flags & DI_MEM;
	m->l.p = NULL;
	m->l.lin = 0;
	if (!m->mem)
		return reg_get(cpu, d->r0, size);
	wloc_get(cpu, &m->l, d_lin(cpu, d, size, true), size, seg_acc(d->seg));
	return wloc_read(cpu, &m->l, size, seg_acc(d->seg));
}

static inline void rmw_end(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size, struct rmw *m, uint64_t v)
{
	if (m->mem)
		wloc_write(cpu, &m->l, size, v, seg_acc(d->seg));
	else
		reg_set(cpu, d->r0, size, v);
}

/* ---- the stack -------------------------------------------------------------- */

static inline uint64_t stack_lin(struct dbt_cpu *cpu, uint64_t sp, unsigned size, bool write)
{
	return seg_lin(cpu, SEG_SS, sp & cpu->sp_mask, size, write);
}

static inline void set_sp(struct dbt_cpu *cpu, uint64_t sp)
{
	cpu->gpr[RSP] = (cpu->gpr[RSP] & ~cpu->sp_mask) | (sp & cpu->sp_mask);
}

static inline void push(struct dbt_cpu *cpu, uint64_t v, unsigned size)
{
	uint64_t sp = cpu->gpr[RSP] - size;
	mem_write(cpu, stack_lin(cpu, sp, size, true), size, v, ACC_STACK);
	set_sp(cpu, sp);
}

/* Reads the top of the stack without popping. */
static inline uint64_t stack_peek(struct dbt_cpu *cpu, unsigned offset, unsigned size)
{
	return mem_read(cpu, stack_lin(cpu, cpu->gpr[RSP] + offset, size, false), size, ACC_STACK);
}

static inline uint64_t pop(struct dbt_cpu *cpu, unsigned size)
{
	uint64_t v = stack_peek(cpu, 0, size);
	set_sp(cpu, cpu->gpr[RSP] + size);
	return v;
}

/* ---- flags ------------------------------------------------------------------- */

static inline void set_arith(struct dbt_cpu *cpu, uint64_t f)
{
	cpu->rflags = (cpu->rflags & ~FL_ARITH) | (f & FL_ARITH);
}

/* LAHF + SETO output (AH = SF ZF 0 AF 0 PF 1 CF, AL = OF) to RFLAGS bits. */
static inline uint64_t lahf_flags(uint16_t ax)
{
	return ((ax >> 8) & 0xd5) | ((uint64_t)(ax & 1) << 11);
}

static inline bool cond_true(uint64_t f, unsigned cc)
{
	bool r;
	switch (cc >> 1) {
	case 0: r = f & FL_OF; break;
	case 1: r = f & FL_CF; break;
	case 2: r = f & FL_ZF; break;
	case 3: r = f & (FL_CF | FL_ZF); break;
	case 4: r = f & FL_SF; break;
	case 5: r = f & FL_PF; break;
	case 6: r = !(f & FL_SF) != !(f & FL_OF); break;
	default: r = (f & FL_ZF) || (!(f & FL_SF) != !(f & FL_OF)); break;
	}
	return r ^ (cc & 1);
}

/* ---- CPU state (cpu.c, segment.c, system.c) --------------------------------- */

/* Recomputes mode, CPL-derived masks, segment bases and check masks after a
 * change to CR0, CR4, EFER, a segment register or RFLAGS.AC. */
void cpu_update_mode(struct dbt_cpu *cpu);
void cpu_set_rflags(struct dbt_cpu *cpu, uint64_t f);
/* Ends the block after this instruction, continuing at next. */
static inline void end_block(struct dbt_cpu *cpu, uint64_t next)
{
	cpu->rip = next;
	cpu->stop = true;
}
static inline uint64_t next_rip(const struct dinsn *d)
{
	return d->rip + d->len;
}
/* Branch target checks: canonical in long mode, CS limit elsewhere. */
void branch_to(struct dbt_cpu *cpu, uint64_t target);
uint64_t host_tsc(void);
uint64_t guest_tsc(struct dbt_cpu *cpu);

/* Segments (segment.c). */
struct desc {
	uint32_t lo, hi;
};
void seg_load_real(struct dbt_cpu *cpu, unsigned seg, uint16_t sel);
/* MOV/POP to a segment register in protected mode, with all checks. */
void seg_load(struct dbt_cpu *cpu, unsigned seg, uint16_t sel);
void seg_from_desc(struct x86_segment *s, uint16_t sel, struct desc d);
/* Reads a GDT/LDT descriptor; returns false if sel is outside the table. */
bool desc_read(struct dbt_cpu *cpu, uint16_t sel, struct desc *d);
void desc_set_accessed(struct dbt_cpu *cpu, uint16_t sel, struct desc *d);
/* Far control transfers. */
void far_jump(struct dbt_cpu *cpu, uint16_t sel, uint64_t off, uint64_t ret);
void far_call(struct dbt_cpu *cpu, uint16_t sel, uint64_t off, unsigned osz, uint64_t ret);
void far_ret(struct dbt_cpu *cpu, unsigned osz, unsigned extra);
/* Loads CS for a transfer to CPL cpl (checks done by the caller). */
void load_cs(struct dbt_cpu *cpu, uint16_t sel, struct desc d, unsigned cpl);
/* Returns (IRET, RETF): checks of the CS and SS popped, the transfer, and
 * the nulling of data segments the outer level may not use. */
struct desc return_cs(struct dbt_cpu *cpu, uint16_t sel);
void return_ss(struct dbt_cpu *cpu, uint16_t sel, unsigned cpl, bool to64, struct x86_segment *out);
void return_to(struct dbt_cpu *cpu, uint16_t cs_sel, struct desc cd, uint64_t rip, unsigned new_cpl);
void null_outer_segments(struct dbt_cpu *cpu, unsigned cpl);
uint64_t popf_mask(struct dbt_cpu *cpu, unsigned size);

/* Block cache (cache.c). */
int cache_init(struct dbt_cpu *cpu);
void cache_destroy(struct dbt_cpu *cpu);
struct block *cache_lookup_slow(struct dbt_cpu *cpu);

/* The jump cache keeps each virtual page's entries in one group of 64, so
 * INVLPG can drop a page's entries without a search. */
static inline unsigned jc_hash(uint64_t rip)
{
	return (unsigned)((((rip >> 12) ^ (rip >> 18)) & 63) << 6) | (unsigned)((rip ^ (rip >> 6)) & 63);
}

/* The block at cpu->rip. Jump-cache entries need no validity check: the
 * run loop empties the jump cache whenever translations were invalidated. */
static inline struct block *cache_lookup(struct dbt_cpu *cpu)
{
	struct block *b = cpu->jcache[jc_hash(cpu->rip)];
	if (likely(b && b->rip == cpu->rip && b->key == cpu->key))
		return b;
	return cache_lookup_slow(cpu);
}
void cache_flush_jumps(struct dbt_cpu *cpu);
void cache_flush_jumps_page(struct dbt_cpu *cpu, uint64_t lin);
void cache_flush_all(struct dbt_cpu *cpu);
void *cache_alloc(struct dbt_cpu *cpu, size_t size);
bool cache_has_room(struct dbt_cpu *cpu);
/* Marks the page of gpa as holding code; returns its word for the block. */
uint32_t cache_mark_page(struct dbt_cpu *cpu, uint64_t gpa, uint32_t *index);
/* Dense page number of a guest-physical address in RAM, or -1. */
int64_t code_page_index(const struct dbt_shared *sh, uint64_t gpa);
/* A write hit page gpa that holds translations: drop them. */
void code_page_written(struct dbt_cpu *cpu, uint64_t gpa);
static inline bool code_page_is_code(const struct dbt_shared *sh, int64_t idx)
{
	return idx >= 0 && (atomic_load_explicit(&sh->gen[idx], memory_order_relaxed) & 1);
}
struct dbt_shared *shared_get(const struct dbt_env *env);
void shared_put(struct dbt_shared *sh);

/* Decoder (decode.c): decodes the block at cpu->rip (gpa already known). */
struct block *decode_block(struct dbt_cpu *cpu, uint64_t gpa);
void decode_init(struct dbt_cpu *cpu);

/* I/O (io.c). */
uint32_t io_in(struct dbt_cpu *cpu, uint16_t port, unsigned size);
void io_out(struct dbt_cpu *cpu, uint16_t port, unsigned size, uint32_t v);
void io_check(struct dbt_cpu *cpu, uint16_t port, unsigned size);

/* MSRs and CPUID (msr.c, cpuid.c). */
bool msr_read(struct dbt_cpu *cpu, uint32_t index, uint64_t *v);
bool msr_write(struct dbt_cpu *cpu, uint32_t index, uint64_t v);
/* The interrupt controller's MSRs, which go out as VCPU_EXIT_MSR. */
bool msr_is_foreign(uint32_t index);
void cpuid_query(struct dbt_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4]);
void cpuid_host_init(void);
/* Does the host CPU have CPUID leaf (1 or 0x80000001) ECX bit? */
bool cpuid_host_has(uint32_t leaf, unsigned ecx_bit);
void cr0_write(struct dbt_cpu *cpu, uint64_t v);
void cr4_write(struct dbt_cpu *cpu, uint64_t v);
void cr3_write(struct dbt_cpu *cpu, uint64_t v);
bool efer_write(struct dbt_cpu *cpu, uint64_t v);

/* FPU (fpu.c). */
int fpu_init(struct dbt_cpu *cpu);
void fpu_destroy(struct dbt_cpu *cpu);
void fpu_reset_stubs(struct dbt_cpu *cpu);
bool fpu_has_room(struct dbt_cpu *cpu);
/* Builds the handler of an x87/MMX/SSE instruction; false if not one. */
bool fpu_decode(struct dbt_cpu *cpu, struct dinsn *d, const ZydisDecodedInstruction *in,
		const ZydisDecodedOperand *ops);
void fpu_sanitize(struct x86_fxsave *fx);

/* Handler declarations shared between decode.c and the semantic files. */
#define HANDLER(name) void name(struct dbt_cpu *cpu, const struct dinsn *d)
#define HANDLER_UNUSED(name)                                                                                           \
	void name(__attribute__((unused)) struct dbt_cpu *cpu, __attribute__((unused)) const struct dinsn *d)
#include "dbt/handlers.h"

#endif
