/*
 * LOCKed read-modify-write and the exchange family. vCPUs are host threads
 * sharing guest RAM, so these run as LOCK-prefixed host instructions on the
 * guest's host memory, with the flags they produce. Accesses the host
 * cannot lock for us (MMIO, a page-crossing or cache-line-crossing operand)
 * are done under one process-wide mutex instead: atomic among themselves,
 * not against other vCPUs' plain accesses (hardware split locks are a
 * pathology guests avoid; Linux warns about them).
 */
#include <pthread.h>

#include "dbt/hostop.h"
#include "dbt/internal.h"

static pthread_mutex_t split_lock = PTHREAD_MUTEX_INITIALIZER;

/* Host memory the host can lock for an access of size bytes, or NULL. */
static uint8_t *lockable(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc)
{
	uint8_t *p = tlb_host(cpu, lin, size, TLB_WRITE);
	if (!p)
		p = mem_translate(cpu, lin, size, acc | ACC_W);
	if (p && ((uintptr_t)p & 63) + size > 64)
		return NULL;
	return p;
}

/* ---- LOCK ALU op [mem], reg/imm ------------------------------------------------------ */

#define LOCK_BINOP(INSN, p, b, f)                                                                                      \
	do {                                                                                                           \
		uint16_t ax_ = flags_to_ax(f);                                                                         \
		__asm__ volatile(HOST_PRE "lock " INSN " %[bb], (%[pp])" HOST_POST                                     \
				 : "+a"(ax_)                                                                           \
				 : [pp] "r"(p), [bb] "q"(b)                                                            \
				 : "cc", "memory");                                                                    \
		(f) = lahf_flags(ax_);                                                                                 \
	} while (0)

#define LOCK_ALU_SIZE(OP, INSN, SZ, T)                                                                                 \
	static void lock_##OP##_##SZ(struct dbt_cpu *cpu, const struct dinsn *d, T b)                                  \
	{                                                                                                              \
		unsigned acc = seg_acc(d->seg);                                                                        \
		uint64_t lin = d_lin(cpu, d, SZ, true), f = cpu->rflags;                                               \
		uint8_t *p = lockable(cpu, lin, SZ, acc);                                                              \
		if (p) {                                                                                               \
			LOCK_BINOP(INSN, p, b, f);                                                                     \
		} else {                                                                                               \
			pthread_mutex_lock(&split_lock);                                                               \
			T a = (T)mem_read_slow(cpu, lin, SZ, acc);                                                     \
			HOST_BINOP(INSN, a, b, f);                                                                     \
			mem_write_slow(cpu, lin, SZ, a, acc);                                                          \
			pthread_mutex_unlock(&split_lock);                                                             \
		}                                                                                                      \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(lock_##OP##_mr_##SZ)                                                                            \
	{                                                                                                              \
		lock_##OP##_##SZ(cpu, d, (T)reg_get(cpu, d->r1, SZ));                                                  \
	}                                                                                                              \
	static HANDLER(lock_##OP##_mi_##SZ)                                                                            \
	{                                                                                                              \
		lock_##OP##_##SZ(cpu, d, (T)d->imm);                                                                   \
	}

#define LOCK_ALU(OP, INSN)                                                                                             \
	LOCK_ALU_SIZE(OP, INSN, 1, uint8_t)                                                                            \
	LOCK_ALU_SIZE(OP, INSN, 2, uint16_t)                                                                           \
	LOCK_ALU_SIZE(OP, INSN, 4, uint32_t)                                                                           \
	LOCK_ALU_SIZE(OP, INSN, 8, uint64_t)

LOCK_ALU(add, "add")
LOCK_ALU(or, "or")
LOCK_ALU(adc, "adc")
LOCK_ALU(sbb, "sbb")
LOCK_ALU(and, "and")
LOCK_ALU(sub, "sub")
LOCK_ALU(xor, "xor")

#define LFORMS(OP)                                                                                                     \
	{                                                                                                              \
		{lock_##OP##_mr_1, lock_##OP##_mr_2, lock_##OP##_mr_4, lock_##OP##_mr_8},                              \
		    {lock_##OP##_mi_1, lock_##OP##_mi_2, lock_##OP##_mi_4, lock_##OP##_mi_8},                          \
	}

const dbt_handler h_alu_lock[ALU_CMP][2][4] = {
    LFORMS(add), LFORMS(or), LFORMS(adc), LFORMS(sbb), LFORMS(and), LFORMS(sub), LFORMS(xor),
};

/* ---- LOCK INC/DEC/NEG/NOT [mem] -------------------------------------------------------- */

#define LOCK_UNARY_SIZE(OP, INSN, SFX, SZ, T)                                                                          \
	static HANDLER(lock_##OP##_##SZ)                                                                               \
	{                                                                                                              \
		unsigned acc = seg_acc(d->seg);                                                                        \
		uint64_t lin = d_lin(cpu, d, SZ, true), f = cpu->rflags;                                               \
		uint8_t *p = lockable(cpu, lin, SZ, acc);                                                              \
		if (p) {                                                                                               \
			uint16_t ax_ = flags_to_ax(f);                                                                 \
			__asm__ volatile(HOST_PRE "lock " INSN SFX " (%[pp])" HOST_POST                                \
					 : "+a"(ax_)                                                                   \
					 : [pp] "r"(p)                                                                 \
					 : "cc", "memory");                                                            \
			f = lahf_flags(ax_);                                                                           \
		} else {                                                                                               \
			pthread_mutex_lock(&split_lock);                                                               \
			T a = (T)mem_read_slow(cpu, lin, SZ, acc);                                                     \
			HOST_UNOP(INSN, a, f);                                                                         \
			mem_write_slow(cpu, lin, SZ, a, acc);                                                          \
			pthread_mutex_unlock(&split_lock);                                                             \
		}                                                                                                      \
		set_arith(cpu, f);                                                                                     \
	}

#define LOCK_UNARY(OP, INSN)                                                                                           \
	LOCK_UNARY_SIZE(OP, INSN, "b", 1, uint8_t)                                                                     \
	LOCK_UNARY_SIZE(OP, INSN, "w", 2, uint16_t)                                                                    \
	LOCK_UNARY_SIZE(OP, INSN, "l", 4, uint32_t)                                                                    \
	LOCK_UNARY_SIZE(OP, INSN, "q", 8, uint64_t)

LOCK_UNARY(inc, "inc")
LOCK_UNARY(dec, "dec")
LOCK_UNARY(neg, "neg")
LOCK_UNARY(not, "not")

const dbt_handler h_unary_lock[UNARY_OPS][4] = {
    {lock_inc_1, lock_inc_2, lock_inc_4, lock_inc_8},
    {lock_dec_1, lock_dec_2, lock_dec_4, lock_dec_8},
    {lock_neg_1, lock_neg_2, lock_neg_4, lock_neg_8},
    {lock_not_1, lock_not_2, lock_not_4, lock_not_8},
};

/* ---- XCHG, CMPXCHG, XADD ----------------------------------------------------------------- */

#define SIZE_SWITCH(sz, ...)                                                                                           \
	switch (sz) {                                                                                                  \
	case 1: {                                                                                                      \
		typedef uint8_t T;                                                                                     \
		__VA_ARGS__ break;                                                                                     \
	}                                                                                                              \
	case 2: {                                                                                                      \
		typedef uint16_t T;                                                                                    \
		__VA_ARGS__ break;                                                                                     \
	}                                                                                                              \
	case 4: {                                                                                                      \
		typedef uint32_t T;                                                                                    \
		__VA_ARGS__ break;                                                                                     \
	}                                                                                                              \
	default: {                                                                                                     \
		typedef uint64_t T;                                                                                    \
		__VA_ARGS__ break;                                                                                     \
	}                                                                                                              \
	}

/* XCHG with memory is locked whether or not it says so. */
HANDLER(h_xchg)
{
	unsigned sz = d->osz;
	if (!(d->flags & DI_MEM)) {
		uint64_t a = reg_get(cpu, d->r0, sz), b = reg_get(cpu, d->r1, sz);
		reg_set(cpu, d->r0, sz, b);
		reg_set(cpu, d->r1, sz, a);
		return;
	}
	unsigned acc = seg_acc(d->seg);
	uint64_t lin = d_lin(cpu, d, sz, true), old;
	uint8_t *p = lockable(cpu, lin, sz, acc);
	if (p) {
		SIZE_SWITCH(sz, {
			T v = (T)reg_get(cpu, d->r1, sz);
			__asm__ volatile("xchg %[v], (%[pp])" : [v] "+q"(v) : [pp] "r"(p) : "memory");
			old = v;
		})
	} else {
		pthread_mutex_lock(&split_lock);
		old = mem_read_slow(cpu, lin, sz, acc);
		mem_write_slow(cpu, lin, sz, reg_get(cpu, d->r1, sz), acc);
		pthread_mutex_unlock(&split_lock);
	}
	reg_set(cpu, d->r1, sz, old);
}

/* A 32-bit CMPXCHG with a register destination, on the host over whole
 * registers: which of RAX and the destination it writes, and so
 * zero-extends, is the host's answer (AMD leaves a destination it does not
 * store alone). */
static void cmpxchg32_reg(struct dbt_cpu *cpu, unsigned r, uint64_t src)
{
	uint64_t a = cpu->gpr[RAX], x = cpu->gpr[r];
	if (r == RAX) {
		__asm__("cmpxchg %k[s], %%eax" : "+a"(a) : [s] "r"(src) : "cc");
	} else {
		__asm__("cmpxchg %k[s], %k[x]" : "+a"(a), [x] "+r"(x) : [s] "r"(src) : "cc");
		cpu->gpr[r] = x;
	}
	cpu->gpr[RAX] = a;
}

HANDLER(h_cmpxchg)
{
	unsigned sz = d->osz;
	uint64_t acc_v = reg_get(cpu, RAX, sz), src = reg_get(cpu, d->r1, sz), old, f = cpu->rflags;
	bool rax_done = false;

	if (!(d->flags & DI_MEM)) {
		old = reg_get(cpu, d->r0, sz);
		if (sz == 4) {
			cmpxchg32_reg(cpu, d->r0, src);
			rax_done = true;
		} else {
			reg_set(cpu, d->r0, sz, old == acc_v ? src : old);
		}
	} else {
		unsigned acc = seg_acc(d->seg);
		uint64_t lin = d_lin(cpu, d, sz, true);
		uint8_t *p = lockable(cpu, lin, sz, acc);
		if (p) {
			SIZE_SWITCH(sz, {
				T a = (T)acc_v, s = (T)src;
				__asm__ volatile("lock cmpxchg %[s], (%[pp])"
						 : "+a"(a)
						 : [s] "q"(s), [pp] "r"(p)
						 : "cc", "memory");
				old = a;
			})
		} else {
			pthread_mutex_lock(&split_lock);
			old = mem_read_slow(cpu, lin, sz, acc);
			mem_write_slow(cpu, lin, sz, old == acc_v ? src : old, acc);
			pthread_mutex_unlock(&split_lock);
		}
	}
	SIZE_SWITCH(sz, {
		T a = (T)acc_v, b = (T)old;
		HOST_BINOP("cmp", a, b, f);
	})
	set_arith(cpu, f);
	if (old != acc_v && !rax_done)
		reg_set_idx(cpu, RAX, sz, old);
}

HANDLER(h_xadd)
{
	unsigned sz = d->osz;
	uint64_t b = reg_get(cpu, d->r1, sz), old, f = cpu->rflags, sum = 0;

	if (!(d->flags & DI_MEM)) {
		old = reg_get(cpu, d->r0, sz);
	} else {
		unsigned acc = seg_acc(d->seg);
		uint64_t lin = d_lin(cpu, d, sz, true);
		uint8_t *p = lockable(cpu, lin, sz, acc);
		if (p) {
			SIZE_SWITCH(sz, {
				T v = (T)b;
				__asm__ volatile("lock xadd %[v], (%[pp])"
						 : [v] "+q"(v)
						 : [pp] "r"(p)
						 : "cc", "memory");
				old = v;
			})
		} else {
			pthread_mutex_lock(&split_lock);
			old = mem_read_slow(cpu, lin, sz, acc);
			mem_write_slow(cpu, lin, sz, old + b, acc);
			pthread_mutex_unlock(&split_lock);
		}
	}
	SIZE_SWITCH(sz, {
		T x = (T)old, y = (T)b;
		HOST_BINOP("add", x, y, f);
		sum = x;
	})
	set_arith(cpu, f);
	reg_set(cpu, d->r1, sz, old);
	if (!(d->flags & DI_MEM))
		reg_set(cpu, d->r0, sz, sum);
}

HANDLER(h_cmpxchg8b)
{
	unsigned acc = seg_acc(d->seg);
	uint64_t lin = d_lin(cpu, d, 8, true);
	uint32_t lo = (uint32_t)cpu->gpr[RAX], hi = (uint32_t)cpu->gpr[RDX];
	uint64_t expect = ((uint64_t)hi << 32) | lo, old;
	uint64_t repl = (cpu->gpr[RCX] << 32) | (uint32_t)cpu->gpr[RBX];
	uint8_t *p = lockable(cpu, lin, 8, acc);
	if (p) {
		uint32_t a = lo, dd = hi;
		__asm__ volatile("lock cmpxchg8b (%[pp])"
				 : "+a"(a), "+d"(dd)
				 : [pp] "r"(p), "b"((uint32_t)repl), "c"((uint32_t)(repl >> 32))
				 : "cc", "memory");
		old = ((uint64_t)dd << 32) | a;
	} else {
		pthread_mutex_lock(&split_lock);
		old = mem_read_slow(cpu, lin, 8, acc);
		mem_write_slow(cpu, lin, 8, old == expect ? repl : old, acc);
		pthread_mutex_unlock(&split_lock);
	}
	if (old == expect) {
		cpu->rflags |= FL_ZF;
	} else {
		cpu->rflags &= ~FL_ZF;
		cpu->gpr[RAX] = (uint32_t)old;
		cpu->gpr[RDX] = old >> 32;
	}
}

HANDLER(h_cmpxchg16b)
{
	unsigned acc = seg_acc(d->seg);
	uint64_t lin = d_lin(cpu, d, 16, true);
	if (lin & 15)
		raise_gp(cpu, 0);
	uint64_t lo = cpu->gpr[RAX], hi = cpu->gpr[RDX], olo, ohi;
	uint8_t *p = tlb_host(cpu, lin, 16, TLB_WRITE);
	if (!p)
		p = mem_translate(cpu, lin, 16, acc | ACC_W);
	if (p) {
		uint64_t a = lo, dd = hi;
		__asm__ volatile("lock cmpxchg16b (%[pp])"
				 : "+a"(a), "+d"(dd)
				 : [pp] "r"(p), "b"(cpu->gpr[RBX]), "c"(cpu->gpr[RCX])
				 : "cc", "memory");
		olo = a;
		ohi = dd;
	} else {
		pthread_mutex_lock(&split_lock);
		uint64_t buf[2];
		mem_read_buf(cpu, lin, buf, 16, acc);
		olo = buf[0];
		ohi = buf[1];
		if (olo == lo && ohi == hi) {
			buf[0] = cpu->gpr[RBX];
			buf[1] = cpu->gpr[RCX];
		}
		mem_write_buf(cpu, lin, buf, 16, acc);
		pthread_mutex_unlock(&split_lock);
	}
	if (olo == lo && ohi == hi) {
		cpu->rflags |= FL_ZF;
	} else {
		cpu->rflags &= ~FL_ZF;
		cpu->gpr[RAX] = olo;
		cpu->gpr[RDX] = ohi;
	}
}
