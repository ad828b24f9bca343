/*
 * Integer arithmetic and logic: the eight ALU operations and TEST in every
 * operand form, INC/DEC/NEG/NOT, shifts and rotates, double shifts,
 * multiplication and division, bit tests and scans, BCD adjustments.
 * Results and flags come from the host CPU (hostop.h).
 */
#include "dbt/hostop.h"
#include "dbt/internal.h"

/* ---- ADD OR ADC SBB AND SUB XOR CMP TEST ------------------------------------ */

#define ALU_SIZE(OP, INSN, WB, SZ, T)                                                                                  \
	static HANDLER(OP##_rr_##SZ)                                                                                   \
	{                                                                                                              \
		T a = (T)reg_get(cpu, d->r0, SZ), b = (T)reg_get(cpu, d->r1, SZ);                                      \
		uint64_t f = cpu->rflags;                                                                              \
		HOST_BINOP(INSN, a, b, f);                                                                             \
		if (WB)                                                                                                \
			reg_set(cpu, d->r0, SZ, a);                                                                    \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(OP##_ri_##SZ)                                                                                   \
	{                                                                                                              \
		T a = (T)reg_get(cpu, d->r0, SZ), b = (T)d->imm;                                                       \
		uint64_t f = cpu->rflags;                                                                              \
		HOST_BINOP(INSN, a, b, f);                                                                             \
		if (WB)                                                                                                \
			reg_set(cpu, d->r0, SZ, a);                                                                    \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(OP##_rm_##SZ)                                                                                   \
	{                                                                                                              \
		T a = (T)reg_get(cpu, d->r0, SZ), b = (T)d_read(cpu, d, SZ);                                           \
		uint64_t f = cpu->rflags;                                                                              \
		HOST_BINOP(INSN, a, b, f);                                                                             \
		if (WB)                                                                                                \
			reg_set(cpu, d->r0, SZ, a);                                                                    \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(OP##_mr_##SZ)                                                                                   \
	{                                                                                                              \
		uint64_t f = cpu->rflags;                                                                              \
		T b = (T)reg_get(cpu, d->r1, SZ), a;                                                                   \
		if (WB) {                                                                                              \
			struct wloc l;                                                                                 \
			unsigned acc = seg_acc(d->seg);                                                                \
			wloc_get(cpu, &l, d_lin(cpu, d, SZ, true), SZ, acc);                                           \
			a = (T)wloc_read(cpu, &l, SZ, acc);                                                            \
			HOST_BINOP(INSN, a, b, f);                                                                     \
			wloc_write(cpu, &l, SZ, a, acc);                                                               \
		} else {                                                                                               \
			a = (T)d_read(cpu, d, SZ);                                                                     \
			HOST_BINOP(INSN, a, b, f);                                                                     \
		}                                                                                                      \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(OP##_mi_##SZ)                                                                                   \
	{                                                                                                              \
		uint64_t f = cpu->rflags;                                                                              \
		T b = (T)d->imm, a;                                                                                    \
		if (WB) {                                                                                              \
			struct wloc l;                                                                                 \
			unsigned acc = seg_acc(d->seg);                                                                \
			wloc_get(cpu, &l, d_lin(cpu, d, SZ, true), SZ, acc);                                           \
			a = (T)wloc_read(cpu, &l, SZ, acc);                                                            \
			HOST_BINOP(INSN, a, b, f);                                                                     \
			wloc_write(cpu, &l, SZ, a, acc);                                                               \
		} else {                                                                                               \
			a = (T)d_read(cpu, d, SZ);                                                                     \
			HOST_BINOP(INSN, a, b, f);                                                                     \
		}                                                                                                      \
		set_arith(cpu, f);                                                                                     \
	}

#define ALU_OP(OP, INSN, WB)                                                                                           \
	ALU_SIZE(OP, INSN, WB, 1, uint8_t)                                                                             \
	ALU_SIZE(OP, INSN, WB, 2, uint16_t)                                                                            \
	ALU_SIZE(OP, INSN, WB, 4, uint32_t)                                                                            \
	ALU_SIZE(OP, INSN, WB, 8, uint64_t)

ALU_OP(add, "add", 1)
ALU_OP(or, "or", 1)
ALU_OP(adc, "adc", 1)
ALU_OP(sbb, "sbb", 1)
ALU_OP(and, "and", 1)
ALU_OP(sub, "sub", 1)
ALU_OP(xor, "xor", 1)
ALU_OP(cmp, "cmp", 0)
ALU_OP(test, "test", 0)

#define FORMS(OP)                                                                                                      \
	{                                                                                                              \
		{OP##_rr_1, OP##_rr_2, OP##_rr_4, OP##_rr_8}, {OP##_ri_1, OP##_ri_2, OP##_ri_4, OP##_ri_8},            \
		    {OP##_rm_1, OP##_rm_2, OP##_rm_4, OP##_rm_8}, {OP##_mr_1, OP##_mr_2, OP##_mr_4, OP##_mr_8},        \
		    {OP##_mi_1, OP##_mi_2, OP##_mi_4, OP##_mi_8},                                                      \
	}

const dbt_handler h_alu[ALU_OPS][FORM_COUNT][4] = {
    FORMS(add), FORMS(or), FORMS(adc), FORMS(sbb), FORMS(and), FORMS(sub), FORMS(xor), FORMS(cmp), FORMS(test),
};

/* XOR/SUB of a register with itself: the idiom that zeroes it. */
HANDLER(h_zero_idiom)
{
	reg_set(cpu, d->r0, d->osz, 0);
	set_arith(cpu, FL_ZF | FL_PF);
}

/* ---- INC DEC NEG NOT ---------------------------------------------------------- */

#define UNARY_SIZE(OP, INSN, SZ, T)                                                                                    \
	static HANDLER(OP##_r_##SZ)                                                                                    \
	{                                                                                                              \
		T a = (T)reg_get(cpu, d->r0, SZ);                                                                      \
		uint64_t f = cpu->rflags;                                                                              \
		HOST_UNOP(INSN, a, f);                                                                                 \
		reg_set(cpu, d->r0, SZ, a);                                                                            \
		set_arith(cpu, f);                                                                                     \
	}                                                                                                              \
	static HANDLER(OP##_m_##SZ)                                                                                    \
	{                                                                                                              \
		struct wloc l;                                                                                         \
		unsigned acc = seg_acc(d->seg);                                                                        \
		uint64_t f = cpu->rflags;                                                                              \
		wloc_get(cpu, &l, d_lin(cpu, d, SZ, true), SZ, acc);                                                   \
		T a = (T)wloc_read(cpu, &l, SZ, acc);                                                                  \
		HOST_UNOP(INSN, a, f);                                                                                 \
		wloc_write(cpu, &l, SZ, a, acc);                                                                       \
		set_arith(cpu, f);                                                                                     \
	}

#define UNARY_OP(OP, INSN)                                                                                             \
	UNARY_SIZE(OP, INSN, 1, uint8_t)                                                                               \
	UNARY_SIZE(OP, INSN, 2, uint16_t)                                                                              \
	UNARY_SIZE(OP, INSN, 4, uint32_t)                                                                              \
	UNARY_SIZE(OP, INSN, 8, uint64_t)

UNARY_OP(inc, "inc")
UNARY_OP(dec, "dec")
UNARY_OP(neg, "neg")
UNARY_OP(not, "not")

#define UFORMS(OP)                                                                                                     \
	{                                                                                                              \
		{OP##_r_1, OP##_r_2, OP##_r_4, OP##_r_8}, {OP##_m_1, OP##_m_2, OP##_m_4, OP##_m_8},                    \
	}

const dbt_handler h_unary[UNARY_OPS][2][4] = {UFORMS(inc), UFORMS(dec), UFORMS(neg), UFORMS(not )};

/* ---- shifts and rotates --------------------------------------------------------- */

/* op: 0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 6 SAL, 7 SAR (ModRM.reg order). */
#define SHIFT_CASES(T)                                                                                                 \
	{                                                                                                              \
		T x = (T)a;                                                                                            \
		switch (op) {                                                                                          \
		case 0: HOST_SHIFT("rol", x, count, f); break;                                                         \
		case 1: HOST_SHIFT("ror", x, count, f); break;                                                         \
		case 2: HOST_SHIFT("rcl", x, count, f); break;                                                         \
		case 3: HOST_SHIFT("rcr", x, count, f); break;                                                         \
		case 4:                                                                                                \
		case 6: HOST_SHIFT("shl", x, count, f); break;                                                         \
		case 5: HOST_SHIFT("shr", x, count, f); break;                                                         \
		default: HOST_SHIFT("sar", x, count, f); break;                                                        \
		}                                                                                                      \
		r = x;                                                                                                 \
		break;                                                                                                 \
	}

static uint64_t shift_op(unsigned op, unsigned size, uint64_t a, unsigned count, uint64_t *flags)
{
	uint64_t f = *flags, r;
	switch (size) {
	case 1: SHIFT_CASES(uint8_t)
	case 2: SHIFT_CASES(uint16_t)
	case 4: SHIFT_CASES(uint32_t)
	default: SHIFT_CASES(uint64_t)
	}
	*flags = f;
	return r;
}

HANDLER(h_shift)
{
	unsigned size = d->osz;
	unsigned count = (d->flags & DI_CL) ? (unsigned)cpu->gpr[RCX] : (unsigned)d->imm;
	count &= size == 8 ? 0x3f : 0x1f;
	struct rmw m;
	uint64_t a = rmw_begin(cpu, d, size, &m);
	if (count == 0) {
		/* No flags change, but a 32-bit register destination is still written. */
		rmw_end(cpu, d, size, &m, a);
		return;
	}
	uint64_t f = cpu->rflags;
	uint64_t r = shift_op(d->cc, size, a, count, &f);
	rmw_end(cpu, d, size, &m, r);
	set_arith(cpu, f);
}

/* SHLD/SHRD r/m, reg, imm8/CL; cc = 0 SHLD, 1 SHRD. */
#define DSHIFT_CASE(T)                                                                                                 \
	{                                                                                                              \
		T x = (T)a, y = (T)b;                                                                                  \
		if (d->cc == 0)                                                                                        \
			HOST_DSHIFT("shld", x, y, count, f);                                                           \
		else                                                                                                   \
			HOST_DSHIFT("shrd", x, y, count, f);                                                           \
		r = x;                                                                                                 \
		break;                                                                                                 \
	}

HANDLER(h_dshift)
{
	unsigned size = d->osz;
	unsigned count = (d->flags & DI_CL) ? (unsigned)cpu->gpr[RCX] : (unsigned)d->imm;
	count &= size == 8 ? 0x3f : 0x1f;
	struct rmw m;
	uint64_t a = rmw_begin(cpu, d, size, &m), b = reg_get(cpu, d->r1, size), r;
	if (count == 0) {
		rmw_end(cpu, d, size, &m, a);
		return;
	}
	uint64_t f = cpu->rflags;
	switch (size) {
	case 2: DSHIFT_CASE(uint16_t)
	case 4: DSHIFT_CASE(uint32_t)
	default: DSHIFT_CASE(uint64_t)
	}
	rmw_end(cpu, d, size, &m, r);
	set_arith(cpu, f);
}

/* ---- multiplication and division ------------------------------------------------ */

static uint64_t szp_flags(uint64_t r, unsigned size)
{
	uint64_t f = 0;
	r &= size_mask(size);
	if (r == 0)
		f |= FL_ZF;
	if (r >> (size * 8 - 1))
		f |= FL_SF;
	if (!(__builtin_popcount((unsigned)(r & 0xff)) & 1))
		f |= FL_PF;
	return f;
}

/* MUL/IMUL with one operand: rDX:rAX = rAX * r/m. cc = 0 MUL, 1 IMUL. */
HANDLER(h_mul1)
{
	unsigned size = d->osz;
	uint64_t src = rm_read(cpu, d, size), lo, hi;
	bool over;
	if (d->cc == 0) {
		unsigned __int128 p = (unsigned __int128)reg_get(cpu, RAX, size) * src;
		if (size == 8) {
			lo = (uint64_t)p;
			hi = (uint64_t)(p >> 64);
		} else {
			lo = (uint64_t)p & size_mask(size);
			hi = (uint64_t)(p >> (size * 8)) & size_mask(size);
		}
		over = hi != 0;
	} else {
		__int128 p = (__int128)(int64_t)sext(reg_get(cpu, RAX, size), size) * (int64_t)sext(src, size);
		if (size == 8) {
			lo = (uint64_t)p;
			hi = (uint64_t)((unsigned __int128)p >> 64);
		} else {
			lo = (uint64_t)p & size_mask(size);
			hi = (uint64_t)(p >> (size * 8)) & size_mask(size);
		}
		over = p != (__int128)(int64_t)sext(lo, size);
	}
	if (size == 1) {
		reg_set(cpu, RAX, 2, lo | (hi << 8));
	} else {
		reg_set(cpu, RAX, size, lo);
		reg_set(cpu, RDX, size, hi);
	}
	set_arith(cpu, szp_flags(lo, size) | (over ? FL_CF | FL_OF : 0));
}

/* Two- and three-operand IMUL on the host: a = a * b, with its flags. */
static uint64_t imul_host(uint64_t a, uint64_t b, unsigned size, uint64_t *flags)
{
	uint64_t f = *flags;
	switch (size) {
	case 2: {
		uint16_t x = (uint16_t)a, y = (uint16_t)b;
		HOST_BINOP("imul", x, y, f);
		a = x;
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)a, y = (uint32_t)b;
		HOST_BINOP("imul", x, y, f);
		a = x;
		break;
	}
	default: {
		uint64_t x = a, y = b;
		HOST_BINOP("imul", x, y, f);
		a = x;
		break;
	}
	}
	*flags = f;
	return a;
}

/* IMUL r, r/m */
HANDLER(h_imul2)
{
	unsigned size = d->osz;
	uint64_t b = (d->flags & DI_MEMSRC) ? d_read(cpu, d, size) : reg_get(cpu, d->r1, size);
	uint64_t f = cpu->rflags;
	uint64_t r = imul_host(reg_get(cpu, d->r0, size), b, size, &f);
	reg_set(cpu, d->r0, size, r);
	set_arith(cpu, f);
}

/* IMUL r, r/m, imm */
HANDLER(h_imul3)
{
	unsigned size = d->osz;
	uint64_t b = (d->flags & DI_MEMSRC) ? d_read(cpu, d, size) : reg_get(cpu, d->r1, size);
	uint64_t f = cpu->rflags;
	uint64_t r = imul_host(b, d->imm, size, &f);
	reg_set(cpu, d->r0, size, r);
	set_arith(cpu, f);
}

/* DIV/IDIV: cc = 0 DIV, 1 IDIV. #DE on division by zero or overflow. Flags
 * are undefined; they are left as they were. */
HANDLER(h_div)
{
	unsigned size = d->osz, bits = size * 8;
	uint64_t src = rm_read(cpu, d, size);
	unsigned __int128 n;
	if (size == 1)
		n = reg_get(cpu, RAX, 2);
	else
		n = ((unsigned __int128)reg_get(cpu, RDX, size) << bits) | reg_get(cpu, RAX, size);
	if (src == 0)
		dbt_raise(cpu, EXC_DE, NO_ERROR);
	uint64_t q, r;
	if (d->cc == 0) {
		unsigned __int128 qq = n / src;
		if (qq > size_mask(size))
			dbt_raise(cpu, EXC_DE, NO_ERROR);
		q = (uint64_t)qq;
		r = (uint64_t)(n % src);
	} else {
		__int128 sn;
		if (size == 8)
			sn = (__int128)n;
		else /* sign-extend the 2*bits dividend */
			sn = (__int128)((int64_t)((uint64_t)n << (64 - 2 * bits)) >> (64 - 2 * bits));
		__int128 sd = (int64_t)sext(src, size);
		if (sd == -1 && size == 8 && sn == (__int128)((unsigned __int128)1 << 127))
			dbt_raise(cpu, EXC_DE, NO_ERROR);
		__int128 qq = sn / sd, rr = sn % sd;
		__int128 lim = (__int128)1 << (bits - 1);
		if (qq >= lim || qq < -lim)
			dbt_raise(cpu, EXC_DE, NO_ERROR);
		q = (uint64_t)qq & size_mask(size);
		r = (uint64_t)rr & size_mask(size);
	}
	if (size == 1) {
		reg_set(cpu, RAX, 2, q | (r << 8));
	} else {
		reg_set(cpu, RAX, size, q);
		reg_set(cpu, RDX, size, r);
	}
}

/* ---- bit tests and scans ---------------------------------------------------------- */

/* BT/BTS/BTR/BTC (cc 0-3). With a register bit offset and a memory operand
 * the offset addresses the whole bit string, beyond the operand. */
HANDLER(h_bt)
{
	unsigned size = d->osz, bits = size * 8;
	uint64_t off = (d->flags & DI_IMM) ? d->imm : reg_get(cpu, d->r1, size);
	uint64_t f = cpu->rflags & ~FL_CF;
	if (!(d->flags & DI_MEM)) {
		unsigned bit = off & (bits - 1);
		uint64_t v = reg_get(cpu, d->r0, size);
		if ((v >> bit) & 1)
			f |= FL_CF;
		switch (d->cc) {
		case 1: v |= 1ull << bit; break;
		case 2: v &= ~(1ull << bit); break;
		case 3: v ^= 1ull << bit; break;
		}
		if (d->cc)
			reg_set(cpu, d->r0, size, v);
		cpu->rflags = f;
		return;
	}
	int64_t byte_off = 0;
	unsigned bit;
	if (d->flags & DI_IMM) {
		bit = off & (bits - 1);
	} else {
		int64_t soff = (int64_t)sext(off, size);
		byte_off = (soff >> 3) & ~(int64_t)(size - 1);
		bit = (unsigned)(soff & (bits - 1));
	}
	uint64_t ea = (d_ea(cpu, d) + (uint64_t)byte_off) & amask(d->asz);
	unsigned acc = seg_acc(d->seg);
	if (d->cc == 0) {
		uint64_t v = mem_read(cpu, seg_lin(cpu, d->seg, ea, size, false), size, acc);
		if ((v >> bit) & 1)
			f |= FL_CF;
		cpu->rflags = f;
		return;
	}
	uint64_t lin = seg_lin(cpu, d->seg, ea, size, true), mask = 1ull << bit;
	struct wloc l;
	wloc_get(cpu, &l, lin, size, acc);
	if ((d->flags & DI_LOCK) && l.p) {
		uint64_t old;
		switch (size) {
		case 2: {
			uint16_t m16 = (uint16_t)mask, o;
			if (d->cc == 1)
				o = __atomic_fetch_or((uint16_t *)l.p, m16, __ATOMIC_SEQ_CST);
			else if (d->cc == 2)
				o = __atomic_fetch_and((uint16_t *)l.p, (uint16_t)~m16, __ATOMIC_SEQ_CST);
			else
				o = __atomic_fetch_xor((uint16_t *)l.p, m16, __ATOMIC_SEQ_CST);
			old = o;
			break;
		}
		case 4: {
			uint32_t m32 = (uint32_t)mask, o;
			if (d->cc == 1)
				o = __atomic_fetch_or((uint32_t *)l.p, m32, __ATOMIC_SEQ_CST);
			else if (d->cc == 2)
				o = __atomic_fetch_and((uint32_t *)l.p, ~m32, __ATOMIC_SEQ_CST);
			else
				o = __atomic_fetch_xor((uint32_t *)l.p, m32, __ATOMIC_SEQ_CST);
			old = o;
			break;
		}
		default:
			if (d->cc == 1)
				old = __atomic_fetch_or((uint64_t *)l.p, mask, __ATOMIC_SEQ_CST);
			else if (d->cc == 2)
				old = __atomic_fetch_and((uint64_t *)l.p, ~mask, __ATOMIC_SEQ_CST);
			else
				old = __atomic_fetch_xor((uint64_t *)l.p, mask, __ATOMIC_SEQ_CST);
			break;
		}
		if (old & mask)
			f |= FL_CF;
		cpu->rflags = f;
		return;
	}
	uint64_t v = wloc_read(cpu, &l, size, acc);
	if (v & mask)
		f |= FL_CF;
	switch (d->cc) {
	case 1: v |= mask; break;
	case 2: v &= ~mask; break;
	default: v ^= mask; break;
	}
	wloc_write(cpu, &l, size, v, acc);
	cpu->rflags = f;
}

/* BSF/BSR/LZCNT/POPCNT (cc 0-3) on the host, over the whole destination
 * register: when BSF/BSR see zero, what the host leaves in it (all of it on
 * AMD; Intel writes the 32-bit form, clearing bits 63:32) is the guest's. */
#define SCAN(INSN, W)                                                                                                  \
	__asm__(HOST_PRE INSN " %" W "[s], %" W "[x]" HOST_POST : "+a"(ax_), [x] "+r"(x) : [s] "r"(src) : "cc")
#define SCAN_SIZE(W)                                                                                                   \
	switch (d->cc) {                                                                                               \
	case 0: SCAN("bsf", W); break;                                                                                 \
	case 1: SCAN("bsr", W); break;                                                                                 \
	case 2: SCAN("lzcnt", W); break;                                                                               \
	default: SCAN("popcnt", W); break;                                                                             \
	}

HANDLER(h_bitscan)
{
	unsigned size = d->osz;
	uint64_t src = (d->flags & DI_MEMSRC) ? d_read(cpu, d, size) : reg_get(cpu, d->r1, size);
	uint64_t x = cpu->gpr[d->r0];
	uint16_t ax_ = flags_to_ax(cpu->rflags);
	switch (size) {
	case 2: SCAN_SIZE("w") break;
	case 4: SCAN_SIZE("k") break;
	default: SCAN_SIZE("q") break;
	}
	cpu->gpr[d->r0] = x;
	set_arith(cpu, lahf_flags(ax_));
}

/* ---- BCD (legacy modes only; #UD in 64-bit mode is the decoder's job) ---------------- */

HANDLER(h_bcd)
{
	uint64_t f = cpu->rflags;
	uint8_t al = (uint8_t)cpu->gpr[RAX], ah = (uint8_t)(cpu->gpr[RAX] >> 8);
	switch (d->mnem) {
	case ZYDIS_MNEMONIC_DAA:
	case ZYDIS_MNEMONIC_DAS: {
		uint8_t old_al = al;
		bool old_cf = f & FL_CF, add = d->mnem == ZYDIS_MNEMONIC_DAA;
		f &= ~(FL_CF | FL_AF);
		if ((al & 0xf) > 9 || (cpu->rflags & FL_AF)) {
			al = add ? al + 6 : al - 6;
			f |= FL_AF;
			if (old_cf || (add ? al < old_al : old_al < 6))
				f |= FL_CF;
		}
		if (old_al > 0x99 || old_cf) {
			al = add ? al + 0x60 : al - 0x60;
			f |= FL_CF;
		}
		f = (f & ~(FL_SF | FL_ZF | FL_PF | FL_OF)) | szp_flags(al, 1);
		reg_set(cpu, 0, 1, al);
		break;
	}
	case ZYDIS_MNEMONIC_AAA:
	case ZYDIS_MNEMONIC_AAS: {
		bool add = d->mnem == ZYDIS_MNEMONIC_AAA;
		if ((al & 0xf) > 9 || (f & FL_AF)) {
			uint16_t ax = (uint16_t)cpu->gpr[RAX];
			ax = add ? ax + 0x106 : ax - 6;
			if (!add)
				ax = (uint16_t)((ax & 0xff) | ((((ax >> 8) - 1) & 0xff) << 8));
			reg_set(cpu, RAX, 2, ax & 0xff0f);
			f |= FL_AF | FL_CF;
		} else {
			reg_set(cpu, RAX, 2, cpu->gpr[RAX] & 0xff0f);
			f &= ~(FL_AF | FL_CF);
		}
		break;
	}
	case ZYDIS_MNEMONIC_AAM: {
		uint8_t base = (uint8_t)d->imm;
		if (base == 0)
			dbt_raise(cpu, EXC_DE, NO_ERROR);
		ah = al / base;
		al = al % base;
		reg_set(cpu, RAX, 2, (uint16_t)(al | (ah << 8)));
		f = (f & ~FL_ARITH) | szp_flags(al, 1);
		break;
	}
	default: { /* AAD */
		uint8_t base = (uint8_t)d->imm;
		al = (uint8_t)(al + ah * base);
		reg_set(cpu, RAX, 2, al);
		f = (f & ~FL_ARITH) | szp_flags(al, 1);
		break;
	}
	}
	cpu->rflags = f;
}

/* CRC32 r32/r64, r/m8/16/32/64 (SSE4.2, but a general-register instruction:
 * no SSE state, no CR0.TS check). */
HANDLER(h_crc32)
{
	uint64_t src = (d->flags & DI_MEMSRC) ? d_read(cpu, d, d->ssz) : reg_get(cpu, d->r1, d->ssz);
	uint32_t crc = (uint32_t)reg_get(cpu, d->r0, 4);
	switch (d->ssz) {
	case 1: __asm__("crc32b %1, %0" : "+r"(crc) : "q"((uint8_t)src)); break;
	case 2: __asm__("crc32w %1, %0" : "+r"(crc) : "r"((uint16_t)src)); break;
	case 4: __asm__("crc32l %1, %0" : "+r"(crc) : "r"((uint32_t)src)); break;
	default: {
		uint64_t c64 = crc;
		__asm__("crc32q %1, %0" : "+r"(c64) : "r"(src));
		crc = (uint32_t)c64;
		break;
	}
	}
	reg_set(cpu, d->r0, d->osz, crc);
}
