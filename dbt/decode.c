/*
 * From guest bytes to blocks: Zydis decodes each instruction once and this
 * file turns the result into a struct dinsn naming a specialised handler,
 * with registers, memory operand and immediate already extracted.
 */
#include <stdarg.h>
#include <stdio.h>

#include "dbt/internal.h"

void decode_init(struct dbt_cpu *cpu)
{
	static const struct {
		ZydisMachineMode mode;
		ZydisStackWidth stack;
	} modes[3] = {
	    {ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16},
	    {ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32},
	    {ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64},
	};
	for (int i = 0; i < 3; i++) {
		ZydisDecoderInit(&cpu->dec[i], modes[i].mode, modes[i].stack);
		/* What this CPU does not advertise decodes as the CPUs without it
		 * run it: MPX/CET/CLDEMOTE encodings are NOPs, TZCNT is BSF. */
		ZydisDecoderEnableMode(&cpu->dec[i], ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
		ZydisDecoderEnableMode(&cpu->dec[i], ZYDIS_DECODER_MODE_CET, ZYAN_FALSE);
		ZydisDecoderEnableMode(&cpu->dec[i], ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_FALSE);
		ZydisDecoderEnableMode(&cpu->dec[i], ZYDIS_DECODER_MODE_TZCNT, ZYAN_FALSE);
		ZydisDecoderEnableMode(&cpu->dec[i], ZYDIS_DECODER_MODE_LZCNT, cpuid_host_has(0x80000001, 5));
	}
}

struct dctx {
	struct dbt_cpu *cpu;
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	struct dinsn *d;
	uint64_t next; /* RIP of the next instruction */
	bool ends;     /* the block ends after this instruction */
};

static int sz_idx(unsigned bytes)
{
	switch (bytes) {
	case 1: return 0;
	case 2: return 1;
	case 4: return 2;
	default: return 3;
	}
}

/* Register operand encoding (see internal.h), or -1 for a non-GPR. */
static int gpr_enc(ZydisRegister r)
{
	int id = ZydisRegisterGetId(r);
	switch (ZydisRegisterGetClass(r)) {
	case ZYDIS_REGCLASS_GPR8:
		if (id < 4)
			return id * 8;
		if (id < 8)
			return (id - 4) * 8 + 1; /* AH, CH, DH, BH */
		return (id - 4) * 8;
	case ZYDIS_REGCLASS_GPR16:
	case ZYDIS_REGCLASS_GPR32:
	case ZYDIS_REGCLASS_GPR64: return id;
	default: return -1;
	}
}

static int seg_of(ZydisRegister r)
{
	switch (r) {
	case ZYDIS_REGISTER_ES: return SEG_ES;
	case ZYDIS_REGISTER_CS: return SEG_CS;
	case ZYDIS_REGISTER_SS: return SEG_SS;
	case ZYDIS_REGISTER_DS: return SEG_DS;
	case ZYDIS_REGISTER_FS: return SEG_FS;
	case ZYDIS_REGISTER_GS: return SEG_GS;
	default: return -1;
	}
}

static const ZydisDecodedOperand *op(const struct dctx *c, int i)
{
	return &c->ops[i];
}

static bool is_gpr(const ZydisDecodedOperand *o)
{
	return o->type == ZYDIS_OPERAND_TYPE_REGISTER && gpr_enc(o->reg.value) >= 0;
}

static bool is_mem(const ZydisDecodedOperand *o)
{
	return o->type == ZYDIS_OPERAND_TYPE_MEMORY;
}

static bool is_imm(const ZydisDecodedOperand *o)
{
	return o->type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
}

static void set_mem(struct dctx *c, const ZydisDecodedOperand *o, uint8_t flag)
{
	struct dinsn *d = c->d;
	ZydisRegister b = o->mem.base;

	d->flags |= flag;
	d->disp = o->mem.disp.value;
	if (b == ZYDIS_REGISTER_RIP || b == ZYDIS_REGISTER_EIP) {
		d->base = REG_NONE;
		d->disp = (int64_t)((c->next + (uint64_t)d->disp) & amask(d->asz));
	} else {
		d->base = b == ZYDIS_REGISTER_NONE ? REG_NONE : (uint8_t)ZydisRegisterGetId(b);
	}
	d->index = o->mem.index == ZYDIS_REGISTER_NONE ? REG_NONE : (uint8_t)ZydisRegisterGetId(o->mem.index);
	d->scale = o->mem.scale == 8 ? 3 : o->mem.scale == 4 ? 2 : o->mem.scale == 2 ? 1 : 0;
	int s = seg_of(o->mem.segment);
	d->seg = s < 0 ? SEG_DS : (uint8_t)s;
}

/* Operand 0 (register or memory) into r0 / memory. */
static bool set_op0(struct dctx *c, const ZydisDecodedOperand *o)
{
	if (is_gpr(o)) {
		c->d->r0 = (uint8_t)gpr_enc(o->reg.value);
		return true;
	}
	if (is_mem(o)) {
		set_mem(c, o, DI_MEM);
		return true;
	}
	return false;
}

/* Operand 1 (register, memory or immediate). */
static bool set_op1(struct dctx *c, const ZydisDecodedOperand *o)
{
	if (is_gpr(o)) {
		c->d->r1 = (uint8_t)gpr_enc(o->reg.value);
		return true;
	}
	if (is_mem(o)) {
		set_mem(c, o, DI_MEMSRC);
		return true;
	}
	if (is_imm(o)) {
		c->d->imm = o->imm.value.u;
		c->d->flags |= DI_IMM;
		return true;
	}
	return false;
}

static int form2(struct dctx *c)
{
	if (c->in.operand_count_visible < 2 || !set_op0(c, op(c, 0)) || !set_op1(c, op(c, 1)))
		return -1;
	bool m0 = c->d->flags & DI_MEM;
	if (c->d->flags & DI_IMM)
		return m0 ? FORM_MI : FORM_RI;
	if (c->d->flags & DI_MEMSRC)
		return FORM_RM;
	return m0 ? FORM_MR : FORM_RR;
}

/* The explicit operands, skipping implicit ones Zydis lists as visible. */
static int explicit_ops(const struct dctx *c, const ZydisDecodedOperand **out, int max)
{
	int n = 0;
	for (int i = 0; i < c->in.operand_count_visible && n < max; i++)
		if (c->ops[i].visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT)
			out[n++] = &c->ops[i];
	return n;
}

static int cond_code(ZydisMnemonic m, ZydisMnemonic o, ZydisMnemonic no, ZydisMnemonic b, ZydisMnemonic nb,
		     ZydisMnemonic z, ZydisMnemonic nz, ZydisMnemonic be, ZydisMnemonic nbe, ZydisMnemonic s,
		     ZydisMnemonic ns, ZydisMnemonic p, ZydisMnemonic np, ZydisMnemonic l, ZydisMnemonic nl,
		     ZydisMnemonic le, ZydisMnemonic nle)
{
	const ZydisMnemonic t[16] = {o, no, b, nb, z, nz, be, nbe, s, ns, p, np, l, nl, le, nle};
	for (int i = 0; i < 16; i++)
		if (t[i] == m)
			return i;
	return -1;
}

#define CC(m, X)                                                                                                       \
	cond_code(m, ZYDIS_MNEMONIC_##X##O, ZYDIS_MNEMONIC_##X##NO, ZYDIS_MNEMONIC_##X##B, ZYDIS_MNEMONIC_##X##NB,     \
		  ZYDIS_MNEMONIC_##X##Z, ZYDIS_MNEMONIC_##X##NZ, ZYDIS_MNEMONIC_##X##BE, ZYDIS_MNEMONIC_##X##NBE,      \
		  ZYDIS_MNEMONIC_##X##S, ZYDIS_MNEMONIC_##X##NS, ZYDIS_MNEMONIC_##X##P, ZYDIS_MNEMONIC_##X##NP,        \
		  ZYDIS_MNEMONIC_##X##L, ZYDIS_MNEMONIC_##X##NL, ZYDIS_MNEMONIC_##X##LE, ZYDIS_MNEMONIC_##X##NLE)

static uint64_t op_mask(const struct dctx *c)
{
	return c->d->osz == 8 ? ~0ull : c->d->osz == 4 ? 0xffffffffull : 0xffffull;
}

/* A relative branch: d->imm becomes the target. */
static void rel_target(struct dctx *c, const ZydisDecodedOperand *o, dbt_handler fast)
{
	struct dinsn *d = c->d;
	d->imm = (c->next + o->imm.value.u) & op_mask(c);
	d->fn = fast;
	if (c->cpu->mode == MODE_LONG64 && (uint64_t)((int64_t)(d->imm << 16) >> 16) != d->imm)
		d->fn = h_jmp_rel_checked; /* faults when taken */
	c->ends = true;
}

static bool alu(struct dctx *c, int aop)
{
	struct dinsn *d = c->d;
	int form = form2(c);
	if (form < 0)
		return false;
	int sz = sz_idx(d->osz);
	if (d->flags & DI_LOCK) {
		if (form != FORM_MR && form != FORM_MI)
			return false;
		d->fn = h_alu_lock[aop][form == FORM_MI][sz];
		return true;
	}
	d->fn = h_alu[aop][form][sz];
	if ((aop == ALU_XOR || aop == ALU_SUB) && form == FORM_RR && d->r0 == d->r1)
		d->fn = h_zero_idiom;
	return true;
}

/* The string instructions' element size from the mnemonic's suffix. */
static unsigned string_size(ZydisMnemonic m)
{
	const char *s = ZydisMnemonicGetString(m);
	switch (s[strlen(s) - 1]) {
	case 'b': return 1;
	case 'w': return 2;
	case 'd': return 4;
	default: return 8;
	}
}

static bool string_op(struct dctx *c, dbt_handler fn)
{
	struct dinsn *d = c->d;
	d->fn = fn;
	d->osz = (uint8_t)string_size(c->in.mnemonic);
	d->seg = SEG_DS;
	for (int i = 0; i < c->in.operand_count; i++) {
		const ZydisDecodedOperand *o = op(c, i);
		if (is_mem(o) && o->mem.base != ZYDIS_REGISTER_NONE && ZydisRegisterGetId(o->mem.base) == RSI) {
			int s = seg_of(o->mem.segment);
			d->seg = s < 0 ? SEG_DS : (uint8_t)s;
		}
	}
	if (c->in.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE))
		d->flags |= DI_REP;
	if (c->in.attributes & ZYDIS_ATTRIB_HAS_REPNE)
		d->flags |= DI_REPNE;
	return true;
}

/* Builds the dinsn; false if the instruction is not implemented (#UD). */
static bool build(struct dctx *c)
{
	struct dinsn *d = c->d;
	const ZydisDecodedInstruction *in = &c->in;
	const ZydisDecodedOperand *o0 = op(c, 0), *o1 = op(c, 1);
	const ZydisDecodedOperand *ex[3];
	int nex, cc;
	ZydisMnemonic m = in->mnemonic;

	if ((cc = CC(m, J)) >= 0) {
		d->cc = (uint8_t)cc;
		rel_target(c, o0, h_jcc[cc]);
		return true;
	}
	if ((cc = CC(m, CMOV)) >= 0) {
		if (!set_op0(c, o0) || !set_op1(c, o1))
			return false;
		d->cc = (uint8_t)cc;
		d->fn = h_cmov[cc];
		return true;
	}
	if ((cc = CC(m, SET)) >= 0) {
		if (!set_op0(c, o0))
			return false;
		d->fn = h_setcc[cc];
		return true;
	}

	switch (m) {
	/* ---- data movement ---- */
	case ZYDIS_MNEMONIC_MOV: {
		if (o0->type == ZYDIS_OPERAND_TYPE_REGISTER) {
			ZydisRegisterClass k = ZydisRegisterGetClass(o0->reg.value);
			if (k == ZYDIS_REGCLASS_SEGMENT) {
				d->cc = (uint8_t)seg_of(o0->reg.value);
				if (d->cc == SEG_CS || !set_op1(c, o1))
					return false;
				d->fn = h_mov_to_seg;
				c->ends = d->cc == SEG_SS;
				return true;
			}
			if (k == ZYDIS_REGCLASS_CONTROL || k == ZYDIS_REGCLASS_DEBUG) {
				d->cc = (uint8_t)ZydisRegisterGetId(o0->reg.value);
				d->r1 = (uint8_t)ZydisRegisterGetId(o1->reg.value);
				d->fn = k == ZYDIS_REGCLASS_CONTROL ? h_mov_to_cr : h_mov_to_dr;
				c->ends = true;
				return true;
			}
		}
		if (o1->type == ZYDIS_OPERAND_TYPE_REGISTER) {
			ZydisRegisterClass k = ZydisRegisterGetClass(o1->reg.value);
			if (k == ZYDIS_REGCLASS_SEGMENT) {
				d->cc = (uint8_t)seg_of(o1->reg.value);
				if (!set_op0(c, o0))
					return false;
				if (!(d->flags & DI_MEM))
					d->r0 = (uint8_t)ZydisRegisterGetId(o0->reg.value);
				d->osz = (uint8_t)(o0->size / 8);
				d->fn = h_mov_from_seg;
				return true;
			}
			if (k == ZYDIS_REGCLASS_CONTROL || k == ZYDIS_REGCLASS_DEBUG) {
				d->cc = (uint8_t)ZydisRegisterGetId(o1->reg.value);
				d->r0 = (uint8_t)ZydisRegisterGetId(o0->reg.value);
				d->fn = k == ZYDIS_REGCLASS_CONTROL ? h_mov_from_cr : h_mov_from_dr;
				return true;
			}
		}
		int form = form2(c);
		if (form < 0)
			return false;
		d->osz = (uint8_t)(o0->size / 8);
		d->fn = h_mov[form][sz_idx(d->osz)];
		return true;
	}
	case ZYDIS_MNEMONIC_MOVZX:
	case ZYDIS_MNEMONIC_MOVSX:
	case ZYDIS_MNEMONIC_MOVSXD:
		if (!set_op0(c, o0) || !set_op1(c, o1))
			return false;
		d->osz = (uint8_t)(o0->size / 8);
		d->ssz = (uint8_t)(o1->size / 8);
		d->fn = m == ZYDIS_MNEMONIC_MOVZX ? h_movzx : h_movsx;
		if (d->osz == 4 && d->ssz < 4 && m != ZYDIS_MNEMONIC_MOVSXD)
			d->fn = h_movx32[m == ZYDIS_MNEMONIC_MOVSX][d->ssz == 2][(d->flags & DI_MEMSRC) != 0];
		return true;
	case ZYDIS_MNEMONIC_LEA:
		if (!set_op0(c, o0) || !is_mem(o1))
			return false;
		set_mem(c, o1, DI_MEMSRC);
		d->fn = h_lea;
		return true;
	case ZYDIS_MNEMONIC_XCHG:
		if (is_mem(o1)) { /* memory first */
			const ZydisDecodedOperand *t = o0;
			o0 = o1;
			o1 = t;
		}
		if (!set_op0(c, o0) || !is_gpr(o1))
			return false;
		d->r1 = (uint8_t)gpr_enc(o1->reg.value);
		d->fn = h_xchg;
		return true;
	case ZYDIS_MNEMONIC_BSWAP:
		if (!set_op0(c, o0))
			return false;
		d->fn = h_bswap;
		return true;
	case ZYDIS_MNEMONIC_CBW:
	case ZYDIS_MNEMONIC_CWDE:
	case ZYDIS_MNEMONIC_CDQE: d->fn = h_cbw; return true;
	case ZYDIS_MNEMONIC_CWD:
	case ZYDIS_MNEMONIC_CDQ:
	case ZYDIS_MNEMONIC_CQO: d->fn = h_cwd; return true;
	case ZYDIS_MNEMONIC_MOVNTI: { /* a plain store: no SSE state involved */
		int form = form2(c);
		if (form != FORM_MR)
			return false;
		d->fn = h_mov[FORM_MR][sz_idx(d->osz)];
		return true;
	}
	case ZYDIS_MNEMONIC_CRC32:
		if (!set_op0(c, o0) || !set_op1(c, o1) || !cpuid_host_has(1, 20))
			return false;
		d->ssz = (uint8_t)(o1->size / 8);
		d->osz = (uint8_t)(o0->size / 8); /* r32 whatever a 66 prefix says */
		d->fn = h_crc32;
		return true;
	case ZYDIS_MNEMONIC_LAHF: d->fn = h_lahf; return true;
	case ZYDIS_MNEMONIC_SAHF: d->fn = h_sahf; return true;
	case ZYDIS_MNEMONIC_CLC:
		d->cc = 0;
		d->fn = h_flagop;
		return true;
	case ZYDIS_MNEMONIC_STC:
		d->cc = 1;
		d->fn = h_flagop;
		return true;
	case ZYDIS_MNEMONIC_CMC:
		d->cc = 2;
		d->fn = h_flagop;
		return true;
	case ZYDIS_MNEMONIC_CLD:
		d->cc = 3;
		d->fn = h_flagop;
		return true;
	case ZYDIS_MNEMONIC_STD:
		d->cc = 4;
		d->fn = h_flagop;
		return true;
	case ZYDIS_MNEMONIC_XLAT:
		set_mem(c, o0, 0);
		d->fn = h_xlat;
		return true;
	case ZYDIS_MNEMONIC_NOP:
	case ZYDIS_MNEMONIC_PREFETCHNTA:
	case ZYDIS_MNEMONIC_PREFETCHT0:
	case ZYDIS_MNEMONIC_PREFETCHT1:
	case ZYDIS_MNEMONIC_PREFETCHT2:
	case ZYDIS_MNEMONIC_PREFETCHW:
	case ZYDIS_MNEMONIC_PREFETCH: d->fn = h_nop; return true;
	case ZYDIS_MNEMONIC_PAUSE: d->fn = h_pause; return true;

	/* ---- arithmetic ---- */
	case ZYDIS_MNEMONIC_ADD: return alu(c, ALU_ADD);
	case ZYDIS_MNEMONIC_OR: return alu(c, ALU_OR);
	case ZYDIS_MNEMONIC_ADC: return alu(c, ALU_ADC);
	case ZYDIS_MNEMONIC_SBB: return alu(c, ALU_SBB);
	case ZYDIS_MNEMONIC_AND: return alu(c, ALU_AND);
	case ZYDIS_MNEMONIC_SUB: return alu(c, ALU_SUB);
	case ZYDIS_MNEMONIC_XOR: return alu(c, ALU_XOR);
	case ZYDIS_MNEMONIC_CMP: return alu(c, ALU_CMP);
	case ZYDIS_MNEMONIC_TEST: return alu(c, ALU_TEST);
	case ZYDIS_MNEMONIC_INC:
	case ZYDIS_MNEMONIC_DEC:
	case ZYDIS_MNEMONIC_NEG:
	case ZYDIS_MNEMONIC_NOT: {
		int u = m == ZYDIS_MNEMONIC_INC	  ? UN_INC
			: m == ZYDIS_MNEMONIC_DEC ? UN_DEC
			: m == ZYDIS_MNEMONIC_NEG ? UN_NEG
						  : UN_NOT;
		if (!set_op0(c, o0))
			return false;
		int sz = sz_idx(d->osz);
		if (d->flags & DI_LOCK)
			d->fn = h_unary_lock[u][sz];
		else
			d->fn = h_unary[u][(d->flags & DI_MEM) ? 1 : 0][sz];
		return true;
	}
	case ZYDIS_MNEMONIC_ROL: d->cc = 0; goto shift;
	case ZYDIS_MNEMONIC_ROR: d->cc = 1; goto shift;
	case ZYDIS_MNEMONIC_RCL: d->cc = 2; goto shift;
	case ZYDIS_MNEMONIC_RCR: d->cc = 3; goto shift;
	case ZYDIS_MNEMONIC_SHL: d->cc = 4; goto shift;
	case ZYDIS_MNEMONIC_SHR: d->cc = 5; goto shift;
	case ZYDIS_MNEMONIC_SAR:
		d->cc = 7;
		goto shift;
	shift:
		if (!set_op0(c, o0))
			return false;
		if (is_imm(o1))
			d->imm = o1->imm.value.u;
		else
			d->flags |= DI_CL;
		d->fn = h_shift;
		return true;
	case ZYDIS_MNEMONIC_SHLD:
	case ZYDIS_MNEMONIC_SHRD:
		if (!set_op0(c, o0) || !is_gpr(o1))
			return false;
		d->r1 = (uint8_t)gpr_enc(o1->reg.value);
		d->cc = m == ZYDIS_MNEMONIC_SHRD;
		if (is_imm(op(c, 2)))
			d->imm = op(c, 2)->imm.value.u;
		else
			d->flags |= DI_CL;
		d->fn = h_dshift;
		return true;
	case ZYDIS_MNEMONIC_MUL:
	case ZYDIS_MNEMONIC_DIV:
	case ZYDIS_MNEMONIC_IDIV:
	case ZYDIS_MNEMONIC_IMUL:
		nex = explicit_ops(c, ex, 3);
		if (nex == 1) {
			if (!set_op0(c, ex[0]))
				return false;
			d->cc = m == ZYDIS_MNEMONIC_IMUL || m == ZYDIS_MNEMONIC_IDIV;
			d->fn = (m == ZYDIS_MNEMONIC_MUL || m == ZYDIS_MNEMONIC_IMUL) ? h_mul1 : h_div;
			return true;
		}
		if (!set_op0(c, ex[0]) || !set_op1(c, ex[1]))
			return false;
		if (nex == 3) {
			d->imm = ex[2]->imm.value.u;
			d->fn = h_imul3;
		} else {
			d->fn = h_imul2;
		}
		return true;
	case ZYDIS_MNEMONIC_BT: d->cc = 0; goto bt;
	case ZYDIS_MNEMONIC_BTS: d->cc = 1; goto bt;
	case ZYDIS_MNEMONIC_BTR: d->cc = 2; goto bt;
	case ZYDIS_MNEMONIC_BTC:
		d->cc = 3;
		goto bt;
	bt:
		if (!set_op0(c, o0) || !set_op1(c, o1))
			return false;
		d->fn = h_bt;
		return true;
	case ZYDIS_MNEMONIC_BSF: d->cc = 0; goto scan;
	case ZYDIS_MNEMONIC_BSR: d->cc = 1; goto scan;
	case ZYDIS_MNEMONIC_LZCNT: d->cc = 2; goto scan;
	case ZYDIS_MNEMONIC_POPCNT:
		d->cc = 3;
		goto scan;
	scan:
		if (!set_op0(c, o0) || !set_op1(c, o1))
			return false;
		d->fn = h_bitscan;
		return true;
	case ZYDIS_MNEMONIC_DAA:
	case ZYDIS_MNEMONIC_DAS:
	case ZYDIS_MNEMONIC_AAA:
	case ZYDIS_MNEMONIC_AAS:
	case ZYDIS_MNEMONIC_AAM:
	case ZYDIS_MNEMONIC_AAD:
		d->imm = 10;
		for (int i = 0; i < in->operand_count_visible; i++)
			if (is_imm(op(c, i)))
				d->imm = op(c, i)->imm.value.u;
		d->fn = h_bcd;
		return true;
	case ZYDIS_MNEMONIC_CMPXCHG:
	case ZYDIS_MNEMONIC_XADD:
		if (!set_op0(c, o0) || !is_gpr(o1))
			return false;
		d->r1 = (uint8_t)gpr_enc(o1->reg.value);
		d->fn = m == ZYDIS_MNEMONIC_CMPXCHG ? h_cmpxchg : h_xadd;
		return true;
	case ZYDIS_MNEMONIC_CMPXCHG8B:
	case ZYDIS_MNEMONIC_CMPXCHG16B:
		if (!is_mem(o0))
			return false;
		set_mem(c, o0, DI_MEM);
		d->fn = m == ZYDIS_MNEMONIC_CMPXCHG8B ? h_cmpxchg8b : h_cmpxchg16b;
		return true;

	/* ---- stack ---- */
	case ZYDIS_MNEMONIC_PUSH:
		if (o0->type == ZYDIS_OPERAND_TYPE_REGISTER && seg_of(o0->reg.value) >= 0) {
			d->cc = (uint8_t)seg_of(o0->reg.value);
			d->fn = h_push_seg;
		} else if (is_imm(o0)) {
			d->imm = o0->imm.value.u;
			d->fn = h_push_i;
		} else if (set_op0(c, o0)) {
			d->fn = (d->flags & DI_MEM) ? h_push_m : d->osz == 8 ? h_push_r64 : h_push_r;
		} else {
			return false;
		}
		return true;
	case ZYDIS_MNEMONIC_POP:
		if (o0->type == ZYDIS_OPERAND_TYPE_REGISTER && seg_of(o0->reg.value) >= 0) {
			d->cc = (uint8_t)seg_of(o0->reg.value);
			d->fn = h_pop_seg;
			c->ends = d->cc == SEG_SS;
		} else if (set_op0(c, o0)) {
			d->fn = (d->flags & DI_MEM) ? h_pop_m : d->osz == 8 ? h_pop_r64 : h_pop_r;
		} else {
			return false;
		}
		return true;
	case ZYDIS_MNEMONIC_PUSHA:
	case ZYDIS_MNEMONIC_PUSHAD: d->fn = h_pusha; return true;
	case ZYDIS_MNEMONIC_POPA:
	case ZYDIS_MNEMONIC_POPAD: d->fn = h_popa; return true;
	case ZYDIS_MNEMONIC_PUSHF:
	case ZYDIS_MNEMONIC_PUSHFD:
	case ZYDIS_MNEMONIC_PUSHFQ: d->fn = h_pushf; return true;
	case ZYDIS_MNEMONIC_POPF:
	case ZYDIS_MNEMONIC_POPFD:
	case ZYDIS_MNEMONIC_POPFQ:
		d->fn = h_popf;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_ENTER:
		d->imm = o0->imm.value.u & 0xffff;
		d->ssz = (uint8_t)(o1->imm.value.u & 31);
		d->fn = h_enter;
		return true;
	case ZYDIS_MNEMONIC_LEAVE: d->fn = h_leave; return true;

	/* ---- control flow ---- */
	case ZYDIS_MNEMONIC_JMP:
	case ZYDIS_MNEMONIC_CALL: {
		bool call = m == ZYDIS_MNEMONIC_CALL;
		c->ends = true;
		if (in->meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) {
			d->fn = call ? h_call_far : h_jmp_far;
			if (o0->type == ZYDIS_OPERAND_TYPE_POINTER) {
				d->imm = o0->ptr.offset;
				d->disp = o0->ptr.segment;
				d->flags |= DI_IMM;
			} else if (is_mem(o0)) {
				set_mem(c, o0, DI_MEM);
				d->osz = (uint8_t)(o0->size / 8 - 2);
			} else {
				return false;
			}
			return true;
		}
		if (is_imm(o0)) {
			rel_target(c, o0, call ? h_call_rel : h_jmp_rel);
			if (call && d->fn == h_jmp_rel_checked)
				d->fn = h_call_rel; /* h_call_rel checks the target itself */
			return true;
		}
		if (!set_op0(c, o0))
			return false;
		d->fn = call ? h_call_ind : h_jmp_ind;
		return true;
	}
	case ZYDIS_MNEMONIC_JCXZ:
	case ZYDIS_MNEMONIC_JECXZ:
	case ZYDIS_MNEMONIC_JRCXZ:
		rel_target(c, o0, h_jrcxz);
		d->fn = h_jrcxz;
		return true;
	case ZYDIS_MNEMONIC_LOOP:
	case ZYDIS_MNEMONIC_LOOPE:
	case ZYDIS_MNEMONIC_LOOPNE:
		rel_target(c, o0, h_loop);
		d->fn = h_loop;
		d->cc = m == ZYDIS_MNEMONIC_LOOP ? 0 : m == ZYDIS_MNEMONIC_LOOPE ? 1 : 2;
		return true;
	case ZYDIS_MNEMONIC_RET:
		c->ends = true;
		d->imm = is_imm(o0) ? (o0->imm.value.u & 0xffff) : 0;
		d->fn = (in->opcode == 0xca || in->opcode == 0xcb) ? h_retf : h_ret;
		return true;
	case ZYDIS_MNEMONIC_INT:
		d->imm = o0->imm.value.u & 0xff;
		d->fn = h_int;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_INT3:
		d->fn = h_int3;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_INTO:
		d->fn = h_into;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_INT1:
		d->fn = h_int1;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_IRET:
	case ZYDIS_MNEMONIC_IRETD:
	case ZYDIS_MNEMONIC_IRETQ:
		d->fn = h_iret;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_BOUND:
		if (!set_op0(c, o0) || !is_mem(o1))
			return false;
		set_mem(c, o1, DI_MEMSRC);
		d->fn = h_bound;
		return true;

	/* ---- segments and descriptor tables ---- */
	case ZYDIS_MNEMONIC_LDS: d->cc = SEG_DS; goto lxs;
	case ZYDIS_MNEMONIC_LES: d->cc = SEG_ES; goto lxs;
	case ZYDIS_MNEMONIC_LFS: d->cc = SEG_FS; goto lxs;
	case ZYDIS_MNEMONIC_LGS: d->cc = SEG_GS; goto lxs;
	case ZYDIS_MNEMONIC_LSS:
		d->cc = SEG_SS;
		c->ends = true;
		goto lxs;
	lxs:
		if (!set_op0(c, o0) || !is_mem(o1))
			return false;
		set_mem(c, o1, DI_MEMSRC);
		d->fn = h_lxs;
		return true;
	case ZYDIS_MNEMONIC_LGDT:
	case ZYDIS_MNEMONIC_LIDT:
	case ZYDIS_MNEMONIC_SGDT:
	case ZYDIS_MNEMONIC_SIDT:
		if (!is_mem(o0))
			return false;
		set_mem(c, o0, DI_MEM);
		d->cc = m == ZYDIS_MNEMONIC_LIDT || m == ZYDIS_MNEMONIC_SIDT;
		d->fn = (m == ZYDIS_MNEMONIC_LGDT || m == ZYDIS_MNEMONIC_LIDT) ? h_lgdt : h_sgdt;
		return true;
	case ZYDIS_MNEMONIC_LLDT:
	case ZYDIS_MNEMONIC_LTR:
	case ZYDIS_MNEMONIC_VERR:
	case ZYDIS_MNEMONIC_VERW:
	case ZYDIS_MNEMONIC_LMSW:
		if (!set_op0(c, o0))
			return false;
		d->fn = m == ZYDIS_MNEMONIC_LLDT   ? h_lldt
			: m == ZYDIS_MNEMONIC_LTR  ? h_ltr
			: m == ZYDIS_MNEMONIC_LMSW ? h_lmsw
						   : h_verr;
		d->cc = m == ZYDIS_MNEMONIC_VERW;
		c->ends = m == ZYDIS_MNEMONIC_LMSW;
		return true;
	case ZYDIS_MNEMONIC_SLDT:
	case ZYDIS_MNEMONIC_STR:
	case ZYDIS_MNEMONIC_SMSW:
		if (!set_op0(c, o0))
			return false;
		d->osz = (uint8_t)(o0->size / 8);
		d->fn = m == ZYDIS_MNEMONIC_SLDT ? h_sldt : m == ZYDIS_MNEMONIC_STR ? h_str : h_smsw;
		return true;
	case ZYDIS_MNEMONIC_LAR:
	case ZYDIS_MNEMONIC_LSL:
		if (!set_op0(c, o0) || !set_op1(c, o1))
			return false;
		d->cc = m == ZYDIS_MNEMONIC_LSL;
		d->fn = h_lar;
		return true;
	case ZYDIS_MNEMONIC_ARPL:
		if (!set_op0(c, o0) || !is_gpr(o1))
			return false;
		d->r1 = (uint8_t)gpr_enc(o1->reg.value);
		d->fn = h_arpl;
		return true;
	case ZYDIS_MNEMONIC_SWAPGS: d->fn = h_swapgs; return true;
	case ZYDIS_MNEMONIC_SYSCALL:
		d->fn = h_syscall;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_SYSRET:
		d->fn = h_sysret;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_SYSENTER:
		d->fn = h_sysenter;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_SYSEXIT:
		d->fn = h_sysexit;
		c->ends = true;
		return true;

	/* ---- system ---- */
	case ZYDIS_MNEMONIC_CLTS: d->fn = h_clts; return true;
	case ZYDIS_MNEMONIC_INVLPG:
		set_mem(c, o0, DI_MEM);
		d->fn = h_invlpg;
		return true;
	case ZYDIS_MNEMONIC_WBINVD:
	case ZYDIS_MNEMONIC_INVD: d->fn = h_wbinvd; return true;
	case ZYDIS_MNEMONIC_RDMSR: d->fn = h_rdmsr; return true;
	case ZYDIS_MNEMONIC_WRMSR:
		d->fn = h_wrmsr;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_RDTSC: d->fn = h_rdtsc; return true;
	case ZYDIS_MNEMONIC_RDTSCP: d->fn = h_rdtscp; return true;
	case ZYDIS_MNEMONIC_RDPMC: d->fn = h_rdpmc; return true;
	case ZYDIS_MNEMONIC_CPUID:
		d->fn = h_cpuid;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_HLT:
		d->fn = h_hlt;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_CLI: d->fn = h_cli; return true;
	case ZYDIS_MNEMONIC_STI:
		d->fn = h_sti;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_XGETBV: d->fn = h_xgetbv; return true;
	case ZYDIS_MNEMONIC_XSETBV:
		d->fn = h_xsetbv;
		c->ends = true;
		return true;
	case ZYDIS_MNEMONIC_CLFLUSH:
	case ZYDIS_MNEMONIC_CLFLUSHOPT:
		set_mem(c, o0, DI_MEM);
		d->fn = h_clflush;
		return true;
	case ZYDIS_MNEMONIC_MFENCE:
	case ZYDIS_MNEMONIC_LFENCE:
	case ZYDIS_MNEMONIC_SFENCE: d->fn = h_mfence; return true;
	case ZYDIS_MNEMONIC_UD0:
	case ZYDIS_MNEMONIC_UD1:
	case ZYDIS_MNEMONIC_UD2: return false;

	/* ---- strings and I/O ---- */
	case ZYDIS_MNEMONIC_MOVSB:
	case ZYDIS_MNEMONIC_MOVSW:
	case ZYDIS_MNEMONIC_MOVSQ: return string_op(c, h_movs);
	case ZYDIS_MNEMONIC_MOVSD:
		if (in->operand_count_visible)
			break; /* the SSE2 MOVSD */
		return string_op(c, h_movs);
	case ZYDIS_MNEMONIC_CMPSB:
	case ZYDIS_MNEMONIC_CMPSW:
	case ZYDIS_MNEMONIC_CMPSQ: return string_op(c, h_cmps);
	case ZYDIS_MNEMONIC_CMPSD:
		if (in->operand_count_visible)
			break;
		return string_op(c, h_cmps);
	case ZYDIS_MNEMONIC_STOSB:
	case ZYDIS_MNEMONIC_STOSW:
	case ZYDIS_MNEMONIC_STOSD:
	case ZYDIS_MNEMONIC_STOSQ: return string_op(c, h_stos);
	case ZYDIS_MNEMONIC_LODSB:
	case ZYDIS_MNEMONIC_LODSW:
	case ZYDIS_MNEMONIC_LODSD:
	case ZYDIS_MNEMONIC_LODSQ: return string_op(c, h_lods);
	case ZYDIS_MNEMONIC_SCASB:
	case ZYDIS_MNEMONIC_SCASW:
	case ZYDIS_MNEMONIC_SCASD:
	case ZYDIS_MNEMONIC_SCASQ: return string_op(c, h_scas);
	case ZYDIS_MNEMONIC_INSB:
	case ZYDIS_MNEMONIC_INSW:
	case ZYDIS_MNEMONIC_INSD: c->ends = true; return string_op(c, h_ins);
	case ZYDIS_MNEMONIC_OUTSB:
	case ZYDIS_MNEMONIC_OUTSW:
	case ZYDIS_MNEMONIC_OUTSD: c->ends = true; return string_op(c, h_outs);
	case ZYDIS_MNEMONIC_IN:
	case ZYDIS_MNEMONIC_OUT: {
		const ZydisDecodedOperand *data = m == ZYDIS_MNEMONIC_IN ? o0 : o1;
		const ZydisDecodedOperand *port = m == ZYDIS_MNEMONIC_IN ? o1 : o0;
		d->osz = (uint8_t)(data->size / 8);
		if (is_imm(port)) {
			d->imm = port->imm.value.u & 0xff;
			d->flags |= DI_IMM;
		}
		d->fn = m == ZYDIS_MNEMONIC_IN ? h_in : h_out;
		c->ends = true;
		return true;
	}
	default: break;
	}
	switch (in->meta.isa_ext) {
	case ZYDIS_ISA_EXT_X87:
	case ZYDIS_ISA_EXT_MMX:
	case ZYDIS_ISA_EXT_SSE:
	case ZYDIS_ISA_EXT_SSE2:
	case ZYDIS_ISA_EXT_SSE3:
	case ZYDIS_ISA_EXT_SSSE3:
	case ZYDIS_ISA_EXT_SSE4:
	case ZYDIS_ISA_EXT_XSAVE:
		for (int i = 0; i < in->operand_count_visible; i++)
			if (is_mem(op(c, i))) {
				set_mem(c, op(c, i), DI_MEM);
				break;
			}
		return fpu_decode(c->cpu, d, in, c->ops);
	default: return false;
	}
}

static unsigned code_size_index(const struct dbt_cpu *cpu)
{
	switch (cpu->mode) {
	case MODE_LONG64: return 2;
	case MODE_PROT32:
	case MODE_COMPAT32: return 1;
	default: return 0;
	}
}

struct block *decode_block(struct dbt_cpu *cpu, uint64_t gpa)
{
	struct dinsn insn[BLOCK_MAX_INSNS];
	struct dctx c = {.cpu = cpu};
	const ZydisDecoder *dec = &cpu->dec[code_size_index(cpu)];
	uint64_t ip_mask = cpu->mode == MODE_LONG64 ? ~0ull : code_size_index(cpu) == 1 ? 0xffffffffull : 0xffffull;
	uint64_t rip = cpu->rip, start_lin = (rip + cpu->segbase[SEG_CS]) & cpu->lin_mask;
	uint32_t page[2], gen[2];
	uint64_t gpa2 = 0;
	unsigned n = 0, npages = 1;

	const uint8_t *host = ram_ptr(cpu, gpa & PAGE_MASK, PAGE_SIZE), *host2 = NULL;
	if (!host)
		dbt_fatal(cpu, "instruction fetch from guest-physical 0x%llx, which is not RAM",
			  (unsigned long long)gpa);
	gen[0] = cache_mark_page(cpu, gpa, &page[0]);
	const uint8_t *pg = host;
	unsigned off = gpa & 0xfff;

	while (n < BLOCK_MAX_INSNS) {
		uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
		unsigned avail = (unsigned)PAGE_SIZE - off;
		ZyanStatus st;

		if (avail >= ZYDIS_MAX_INSTRUCTION_LENGTH) {
			st = ZydisDecoderDecodeFull(dec, pg + off, ZYDIS_MAX_INSTRUCTION_LENGTH, &c.in, c.ops);
		} else {
			memcpy(buf, pg + off, avail);
			st = ZydisDecoderDecodeFull(dec, buf, avail, &c.in, c.ops);
			if (st == ZYDIS_STATUS_NO_MORE_DATA && pg == host) {
				if (n > 0)
					break; /* let it start its own block */
				uint64_t lin2 = ((start_lin & PAGE_MASK) + PAGE_SIZE) & cpu->lin_mask;
				gpa2 = mmu_translate_exec(cpu, lin2) & PAGE_MASK;
				host2 = ram_ptr(cpu, gpa2, PAGE_SIZE);
				if (!host2)
					dbt_fatal(cpu, "instruction fetch from guest-physical 0x%llx, which is not RAM",
						  (unsigned long long)gpa2);
				gen[1] = cache_mark_page(cpu, gpa2, &page[1]);
				npages = 2;
				memcpy(buf + avail, host2, ZYDIS_MAX_INSTRUCTION_LENGTH - avail);
				st = ZydisDecoderDecodeFull(dec, buf, ZYDIS_MAX_INSTRUCTION_LENGTH, &c.in, c.ops);
			}
		}

		struct dinsn *d = &insn[n];
		memset(d, 0, sizeof(*d));
		d->rip = rip;
		d->base = d->index = REG_NONE;
		d->seg = SEG_DS;
		c.d = d;
		c.ends = false;
		if (!ZYAN_SUCCESS(st)) {
			if (n > 0)
				break;
			d->len = 1;
			d->fn = st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG ? h_gp0 : h_ud;
			n++;
			break;
		}
		if (cpu->mode != MODE_LONG64 && rip + c.in.length - 1 > cpu->s.seg[SEG_CS].limit) {
			if (n > 0)
				break;
			d->len = c.in.length;
			d->fn = h_gp0;
			n++;
			break;
		}
		d->len = c.in.length;
		d->osz = (uint8_t)(c.in.operand_width / 8);
		d->asz = (uint8_t)(c.in.address_width / 8);
		d->mnem = (uint16_t)c.in.mnemonic;
		if (c.in.attributes & ZYDIS_ATTRIB_HAS_LOCK)
			d->flags |= DI_LOCK;
		if (c.in.attributes & ZYDIS_ATTRIB_HAS_REX && (c.in.raw.rex.W))
			d->flags |= DI_REX_W;
		c.next = (rip + c.in.length) & ip_mask;
		if (!build(&c)) {
			memset(d, 0, sizeof(*d));
			d->rip = rip;
			d->len = c.in.length;
			d->fn = h_ud;
			c.ends = true;
		}
		n++;
		rip = c.next;
		off += c.in.length;
		if (c.ends)
			break;
		if (off >= PAGE_SIZE) {
			if (pg == host && host2) {
				pg = host2;
				off -= (unsigned)PAGE_SIZE;
			} else {
				break;
			}
		}
	}

	size_t size = sizeof(struct block) + n * sizeof(struct dinsn);
	struct block *b = cache_alloc(cpu, size);
	b->hnext = NULL;
	b->rip = cpu->rip;
	b->gpa = gpa;
	b->gpa2 = gpa2;
	b->end_rip = rip;
	b->key = mode_key(cpu);
	b->count = (uint16_t)n;
	b->npages = (uint16_t)npages;
	b->page[0] = page[0];
	b->gen[0] = gen[0];
	b->page[1] = npages == 2 ? page[1] : 0;
	b->gen[1] = npages == 2 ? gen[1] : 0;
	memcpy(b->insn, insn, n * sizeof(struct dinsn));
	return b;
}
