/*
 * The translator's internals, shared by its files (translate.c, emit.c,
 * codecache.c, trampoline.c) and its front ends (dbt/user/).
 *
 * Guest basic blocks become host x86-64 code in a code cache. While that code
 * runs, the guest's general registers are the host's and the guest's RFLAGS
 * is the host's; the host GS base points at the thread's struct xlat_ctx,
 * which holds what the guest has no register for (spill slots, the guest FS
 * and GS bases, the lookup table, the runtime's stack). Leaving translated
 * code (an exit) saves the guest registers into the context and returns to
 * the front end's run loop. docs/dbt-translator.md explains the mechanisms.
 */
#ifndef VIREO_DBT_TRANSLATOR_H
#define VIREO_DBT_TRANSLATOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Guest register numbers: the x86 encoding order. */
enum {
	XR_RAX,
	XR_RCX,
	XR_RDX,
	XR_RBX,
	XR_RSP,
	XR_RBP,
	XR_RSI,
	XR_RDI,
	XR_R8,
	XR_R9,
	XR_R10,
	XR_R11,
	XR_R12,
	XR_R13,
	XR_R14,
	XR_R15,
};

/* Why translated code gave control back to the run loop. */
enum xlat_exit_kind {
	XEXIT_BRANCH,	   /* a direct branch to code not yet translated (then chained) */
	XEXIT_MISS,	   /* an indirect branch the lookup table did not know: target in ctx->target */
	XEXIT_SYSCALL,	   /* SYSCALL of a number the front end handles; target is the next RIP */
	XEXIT_UNSUPPORTED, /* an instruction the translator cannot run; target is its RIP */
	XEXIT_SIGNAL,	   /* a signal handler stopped the code: the guest resumes at ctx->target */
};

/* The data behind one exit stub, in the code cache after the stub's code.
 * Translated code loads its address into ctx->exit before leaving. */
struct xlat_exit {
	/* Where the stub's first instruction jumps: the stub's own exit code
	 * until the branch is chained, then the target's translation. */
	uint64_t slot;
	uint64_t target; /* guest RIP */
	/* The rel32 of the branch that reaches this stub: patched to the
	 * target's translation when it is within reach (NULL: not chainable). */
	int32_t *patch;
	uint32_t kind; /* enum xlat_exit_kind */
	uint32_t pad;
	uint64_t unchained; /* the slot's value before chaining: the exit code */
};

/* One lookup-table entry: the negated guest address (so that translated
 * code compares with LEA and JRCXZ, leaving the flags alone) and the host
 * code. An empty entry sends every address to the miss routine. */
struct xlat_lookup {
	uint64_t neg_guest;
	uint64_t host;
};
/* Indexed by the target's low 16 bits (MOVZX); a target is looked up in its
 * own entry, then in the next one, where the run loop moves the entry it
 * displaces (one more entry at the end serves the last). */
#define XLAT_LOOKUP_BITS    16
#define XLAT_LOOKUP_SETS    (1u << XLAT_LOOKUP_BITS)
#define XLAT_LOOKUP_ENTRIES (XLAT_LOOKUP_SETS + 1)

/* Spill slots of translated code. */
enum { XS_A, XS_B, XS_C, XS_COUNT };

/* One guest thread's translator context: the host GS base points here while
 * its translated code runs. Fields used by translated code are reached as
 * gs:offsetof(...), so they stay in the first 2 GiB (trivially). */
struct xlat_ctx {
	uint64_t gpr[16]; /* the guest's registers while the runtime runs */
	uint64_t rflags;
	uint64_t rflags_top; /* &rflags + 1: the stack PUSHFQ and POPFQ use */
	uint64_t rip;	     /* where the guest resumes */
	uint64_t fs_base, gs_base;
	uint64_t spill[XS_COUNT];
	uint64_t target; /* the indirect branch target a lookup missed */
	uint64_t jump;	 /* the host code an indirect branch or entry goes to */
	struct xlat_lookup *lookup;
	const uint8_t *sysfilter; /* per syscall number & 0xffff: nonzero exits */
	uint64_t host_rsp;	  /* the runtime's stack while guest code runs */
	const void *exit_code;	  /* xlat_exit_routine */
	const void *miss_code;	  /* xlat_miss_routine */
	const struct xlat_exit *exit;
	struct xlat_ctx *self;
	uint64_t xsave_mask;
	struct xlat_ctx *next; /* in the list of every thread's context */
	/* Front-end data (the user-mode thread). */
	void *owner;
	/* The guest's x87/SSE/AVX state while the runtime runs (XSAVE image). */
	uint8_t *xsave;
	/* The cache's epoch when the thread was last quiescent (outside
	 * translated code, holding nothing in it), or XLAT_QUIET_OUT while it
	 * is in the runtime for long (a system call it exited for): code
	 * retired before then may be reused. */
	uint64_t quiet;
};
#define XLAT_QUIET_OUT UINT64_MAX

/* ---- trampolines (trampoline.c) ---- */

/* Loads the guest state from ctx (which must be the GS base), jumps to code
 * and returns when translated code exits, with the guest state in ctx and
 * ctx->exit saying why. */
void xlat_enter(struct xlat_ctx *ctx, const void *code);
/* Reached by jumps from translated code, never called. */
void xlat_exit_routine(void);
void xlat_miss_routine(void);
void xlat_signal_routine(void);
extern const struct xlat_exit xlat_miss_exit, xlat_signal_exit;

/* ---- the translator (codecache.c, translate.c) ---- */

/* What the translator needs from its front end. */
struct xlat_env {
	/* How many bytes from addr on the guest may execute (0: none). */
	size_t (*fetchable)(void *opaque, uint64_t addr, size_t len);
	/* The guest page at addr now holds translations (code true), or no
	 * longer does: the front end write-protects it while the guest may
	 * write it (NULL: nothing to do). Called with the cache's lock held. */
	void (*code_page)(void *opaque, uint64_t page, bool code);
	void *opaque;
};

/* Sets up the code cache and the syscall filter (numbers below 65536 the
 * front end wants to see; others pass to the host). */
int xlat_init(const struct xlat_env *env, const uint16_t *syscalls, size_t nsyscalls);
/* Makes SYSCALL of nr (below 65536) exit to the front end from now on. */
void xlat_filter_syscall(unsigned nr);
/* A context for the calling thread: allocates it, points GS at it. */
int xlat_ctx_create(struct xlat_ctx **out, void *owner);
void xlat_ctx_destroy(struct xlat_ctx *ctx);
/* A new thread starts with its creator's x87/SSE/AVX state. */
void xlat_ctx_copy_fpu(struct xlat_ctx *dst, const struct xlat_ctx *src);
/* In the child of a fork: ctx is the only thread left. */
void xlat_after_fork(struct xlat_ctx *ctx);
/* The host code for guest rip, translated now if needed; NULL with *err set
 * (-EFAULT: rip cannot execute; -EILSEQ: no valid instruction there). from,
 * when not NULL, is the XEXIT_BRANCH stub that exited towards rip: it is
 * chained to the code unless the cache was flushed since generation gen
 * (xlat_flush_gen read before entering translated code). */
const void *xlat_code_for(struct xlat_ctx *ctx, uint64_t rip, const struct xlat_exit *from, unsigned gen, int *err);
extern unsigned xlat_flush_gen;
/* ctx's thread is in the runtime and holds no pointer into the code cache
 * (no stub to chain) until its next xlat_code_for: code memory retired
 * meanwhile may be reused without waiting for it. */
void xlat_quiesce(struct xlat_ctx *ctx);
/* Remembers in ctx's lookup table that guest rip runs at code. */
void xlat_remember(struct xlat_ctx *ctx, uint64_t rip, const void *code);
/* Guest memory [addr, addr + len) changed or was unmapped: drops the
 * translations made from it (per page: their incoming chains unlinked,
 * their lookup-table entries emptied). Returns the pages that held code. */
unsigned xlat_invalidate(uint64_t addr, uint64_t len);
/* Is the guest page at addr one translations were made from? */
bool xlat_page_has_code(uint64_t addr);

/* For signal handlers (async-signal-safe): is pc translated code, and which
 * guest instruction was it running (0: none known)? */
bool xlat_code_at(uint64_t pc);
uint64_t xlat_guest_rip(uint64_t pc);
/* At a fault at pc: the register whose guest value is in ctx->spill[XS_A]
 * (the scratch of a rewritten memory operand), or -1. */
int xlat_spilled_reg(uint64_t pc);
/* Is pc where a guest instruction's host code starts (the guest state
 * exact)? */
bool xlat_insn_start(uint64_t pc);
/* Makes ctx's thread leave translated code at its next block end: every
 * chained branch goes back to its stub, ctx's lookup table misses.
 * For signal handlers of threads interrupted in translated code (it takes
 * the cache's lock, which such a thread never holds); branches chain again
 * as they exit. */
void xlat_unlink(struct xlat_ctx *ctx);
/* The XSAVE image of the guest's vector state: its size and components. */
uint32_t xlat_xsave_size(void);
uint64_t xlat_xsave_mask(void);

/* Counters, for VIREO_XLAT_STATS. */
struct xlat_stats {
	uint64_t blocks, insns, bytes, chained, flushes, misses, exits, invalidated;
	uint64_t reclaimed, abandoned; /* zones reused after a flush, and given up */
};
extern struct xlat_stats xlat_stats;

/* ---- translating one block (translate.c) ---- */

#define XLAT_BLOCK_INSNS 64

/* Where each guest instruction's host code starts, for mapping a host PC
 * back to the guest RIP. */
struct xlat_insn_map {
	uint32_t host_off, guest_off;
	/* The register whose guest value is in ctx->spill[XS_A] while the
	 * instruction's rewritten form runs, plus one (0: none). */
	uint8_t spilled;
};

struct xlat_block {
	uint64_t rip, end; /* the guest bytes it was made from */
	uint8_t *code;
	uint32_t size, ninsns;
	struct xlat_block *hnext;
	/* In the lists of the (one or two) guest pages it was made from:
	 * pnext[0] for the page of rip, pnext[1] for the page of end - 1. */
	struct xlat_block *pnext[2];
	bool dead; /* invalidated: out of the hash, its code kept until its zone is reused */
	struct xlat_insn_map map[];
};

/* The direct-branch exits of a block, for chaining at translation time:
 * exit[i] in the order the block takes them; exit[n - 1] is the block's
 * last (its fall-through, or its only successor when taken is false). */
#define XLAT_BLOCK_EXITS 16
struct xlat_succ {
	struct xlat_exit *exit[XLAT_BLOCK_EXITS];
	unsigned n;
	bool conditional; /* the block ends in a conditional branch */
};

/* Translates the guest block at rip into [buf, buf + cap): returns the
 * bytes used, -ENOSPC when it does not fit, -EFAULT when rip cannot
 * execute, -EILSEQ when its first instruction does not decode. map gets
 * XLAT_BLOCK_INSNS entries at most, *ninsns says how many; succ gets its
 * chainable exits. */
int xlat_translate(const struct xlat_env *env, uint64_t rip, uint8_t *buf, size_t cap, uint64_t *end,
		   struct xlat_insn_map *map, uint32_t *ninsns, struct xlat_succ *succ);

/* ---- the host code emitter (emit.c) ---- */

struct emit {
	uint8_t *p, *end;
	bool full;
};

void emit_bytes(struct emit *e, const void *bytes, size_t n);
void emit_u8(struct emit *e, uint8_t v);
void emit_u32(struct emit *e, uint32_t v);
void emit_u64(struct emit *e, uint64_t v);
/* mov gs:[off], reg / mov reg, gs:[off] (64-bit). */
void emit_store_ctx(struct emit *e, unsigned off, int reg);
void emit_load_ctx(struct emit *e, int reg, unsigned off);
/* jmp qword gs:[off] */
void emit_jmp_ctx(struct emit *e, unsigned off);
/* movabs reg, imm (shorter forms where the value allows) */
void emit_mov_imm(struct emit *e, int reg, uint64_t imm);
/* lea dst, [base + index * scale + disp] (base or index -1: none) */
void emit_lea(struct emit *e, int dst, int base, int index, unsigned scale, int32_t disp);
/* mov dst, qword [base + disp] / mov qword [base + disp], src */
void emit_load(struct emit *e, int dst, int base, int32_t disp);
void emit_store(struct emit *e, int base, int32_t disp, int src);
/* jmp rel32 / jcc rel32 with the rel32 aligned to 4 bytes so it can be
 * patched while other threads run; returns the rel32's address. */
int32_t *emit_jmp32(struct emit *e);
int32_t *emit_jcc32(struct emit *e, unsigned cc);
void emit_nops(struct emit *e, size_t n);
/* Points a rel32 at target (false: out of reach). */
bool rel32_set(int32_t *rel, const void *target);

#endif
