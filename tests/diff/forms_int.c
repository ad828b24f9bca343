/*
 * Integer forms: ALU operations in every operand form and size (LOCKed
 * where legal), unary operations, shifts and rotates, multiply and divide,
 * bit tests and scans, moves and extensions, exchanges, conditional
 * operations over all sixteen conditions, LEA address forms, string
 * instructions, stack and control transfers, and what 64-bit mode or CPL 3
 * refuses.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define M(x)	 ZYDIS_MNEMONIC_##x
#define LOCK	 ZYDIS_ATTRIB_HAS_LOCK

static const unsigned widths[] = {8, 16, 32, 64};

static unsigned imm_bits(unsigned w)
{
	return w == 64 ? 32 : w;
}

static void addf(ZydisMnemonic m, uint32_t prefixes, uint32_t flags, uint8_t feat, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void addf(ZydisMnemonic m, uint32_t prefixes, uint32_t flags, uint8_t feat, const char *fmt, ...)
{
	char ops[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ops, sizeof(ops), fmt, ap);
	va_end(ap);
	form_add(NULL, NULL, m, prefixes, ops, flags, feat);
}

/* ---- builders for what the generic one cannot express ---- */

static unsigned enc_len(ZydisEncoderRequest *r)
{
	uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
	ZyanUSize len = sizeof(buf);
	if (!r->machine_mode)
		r->machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	return ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(r, buf, &len)) ? (unsigned)len : 0;
}

/* A marker the taken path skips: mov r32, imm32. */
static ZydisEncoderRequest marker(struct gen *g)
{
	int r = alloc_gpr(g);
	return req(M(MOV), 2, op_reg(gpr_name(r, 32)), op_imm(0x1badc0de));
}

/* Jcc, JRCXZ, LOOPcc: "branch over marker; marker". arg: branch width,
 * plus A32 for ECX as the counter. */
#define A32 0x100
static void build_branch(struct gen *g, const struct form *f)
{
	static const uint64_t counts[] = {0, 1, 2, 0xffffffff, 0x100000000ull, 0x100000001ull, ~0ull};
	ZydisEncoderRequest mk = marker(g);
	ZydisEncoderRequest j = req(f->mnem, 1, op_imm(enc_len(&mk)));
	j.prefixes = f->prefixes;
	if ((f->arg & 0xff) == 32) {
		j.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
		j.branch_width = ZYDIS_BRANCH_WIDTH_32;
	} else {
		j.branch_type = ZYDIS_BRANCH_TYPE_SHORT;
	}
	if (f->hidden >> RCX & 1) {
		set_gpr(g, RCX, 64, pick_from(g, COUNT(counts), counts));
		if (f->mnem == M(JECXZ) || (f->arg & A32))
			j.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
	}
	flags_setup(g, f->tested);
	emit(g, &j);
	emit(g, &mk);
}

/* CALL rel32: "call over marker; marker": the return address is pushed. */
static void build_call_rel(struct gen *g, const struct form *f)
{
	ZydisEncoderRequest mk = marker(g);
	ZydisEncoderRequest j = req(f->mnem, 1, op_imm(enc_len(&mk)));
	flags_setup(g, 0);
	emit(g, &j);
	emit(g, &mk);
}

/* CALL/JMP through a register or memory: to the end of the case. */
static void build_indirect(struct gen *g, const struct form *f)
{
	ZydisEncoderRequest mk = marker(g);
	bool mem = f->op[0].kind == O_MEM;
	int r = alloc_gpr(g);
	ZydisEncoderOperand o;
	int off = mem_place(g, 8, 8);
	if (mem)
		o = mem_at(g, off, 8);
	else
		o = op_reg(gpr_name(r, 64));
	ZydisEncoderRequest j = req(f->mnem, 1, o);
	unsigned len = enc_len(&j);
	if (!len) {
		fail(g, "cannot encode the branch");
		return;
	}
	/* RIP-relative operands are encoded twice; the length stays. */
	uint64_t target = DIFF_CODE + g->c->code_len + len + enc_len(&mk);
	if (mem) {
		uint8_t b[8];
		memcpy(b, &target, 8);
		memcpy(g->c->data + DIFF_PAGE / 2 + off, b, 8);
	} else {
		set_gpr(g, r, 64, target);
	}
	flags_setup(g, 0);
	emit(g, &j);
	emit(g, &mk);
}

/* RET and RET imm16: the return address on the stack is the case's end. */
static void build_ret(struct gen *g, const struct form *f)
{
	static const int64_t pops[] = {0, 8, 16, 0x100};
	ZydisEncoderRequest mk = marker(g);
	ZydisEncoderRequest r = req(f->mnem, 0);
	if (f->nops) {
		r.operand_count = 1;
		r.operands[0] = op_imm(pops[pick(g, COUNT(pops))]);
	}
	uint64_t target = DIFF_CODE + enc_len(&r) + enc_len(&mk);
	memcpy(g->c->stack + DIFF_PAGE / 2, &target, 8);
	flags_setup(g, 0);
	emit(g, &r);
	emit(g, &mk);
}

/* POPF: the popped value is a dimension (TF and AC stay clear: single-step
 * and alignment checks would fire in the runner, not in the case). */
static void build_popf(struct gen *g, const struct form *f)
{
	static const uint64_t vals[] = {0,     0x8d5,  0x400,	0x200000, 0x4000,  0x3000,
					0x200, 0x0002, 0x10000, ~0ull,	  0x80000, 0x100000};
	uint64_t v = pick_from(g, COUNT(vals), vals) & ~0x40100ull;
	if (f->arg == 16)
		memcpy(g->c->stack + DIFF_PAGE / 2, &v, 2);
	else
		memcpy(g->c->stack + DIFF_PAGE / 2, &v, 8);
	ZydisEncoderRequest r = req(f->mnem, 0);
	flags_setup(g, 0);
	emit(g, &r);
}

/* ENTER and LEAVE with RBP inside the stack page. */
static void build_frame(struct gen *g, const struct form *f)
{
	static const int64_t sizes[] = {0, 8, 0x18, 0x100};
	static const int64_t levels[] = {0, 1, 2, 5};
	set_gpr(g, RBP, 64, DIFF_RSP + 0x40 + 8 * (rnd(g) % 16));
	ZydisEncoderRequest r = req(f->mnem, 0);
	if (f->mnem == M(ENTER)) {
		r.operand_count = 2;
		r.operands[0] = op_imm(sizes[pick(g, COUNT(sizes))]);
		r.operands[1] = op_imm(levels[pick(g, COUNT(levels))]);
	}
	flags_setup(g, 0);
	emit(g, &r);
}

/* CMPXCHG: RAX equals the destination or not. */
static void build_cmpxchg(struct gen *g, const struct form *f)
{
	unsigned w = f->op[1].bits;
	bool eq = pick(g, 2);
	uint64_t other = pick_int(g, w), dst = pick_int(g, w), src = pick_int(g, w);
	ZydisEncoderOperand d;
	if (f->op[0].kind == O_MEM) {
		int off = mem_place(g, w / 8, w / 8);
		memcpy(g->c->data + DIFF_PAGE / 2 + off, &dst, w / 8);
		d = mem_at(g, off, w / 8);
	} else {
		int r = alloc_gpr(g);
		set_gpr(g, r, w, dst);
		d = op_reg(gpr_name(r, w));
	}
	int s = alloc_gpr(g);
	set_gpr(g, s, w, src);
	set_gpr(g, RAX, w, eq ? dst : other);
	ZydisEncoderRequest r = req(f->mnem, 2, d, op_reg(gpr_name(s, w)));
	r.prefixes = f->prefixes;
	flags_setup(g, f->tested);
	emit(g, &r);
}

/* CMPXCHG8B/16B: EDX:EAX (RDX:RAX) equals the memory or not; alignment. */
static void build_cmpxchgxb(struct gen *g, const struct form *f)
{
	unsigned size = f->op[0].bits / 8;
	bool eq = pick(g, 2);
	unsigned misalign = pick(g, 3);
	int off = mem_place(g, size, 16) + (misalign == 1 ? 8 : misalign == 2 ? 1 : 0);
	uint64_t m[2] = {pick_int(g, 64), pick_int(g, 64)};
	memcpy(g->c->data + DIFF_PAGE / 2 + off, m, size);
	if (size == 8) {
		set_gpr(g, RAX, 32, eq ? m[0] : rnd(g));
		set_gpr(g, RDX, 32, eq ? m[0] >> 32 : rnd(g));
	} else {
		set_gpr(g, RAX, 64, eq ? m[0] : rnd(g));
		set_gpr(g, RDX, 64, eq ? m[1] : rnd(g));
	}
	ZydisEncoderRequest r = req(f->mnem, 1, mem_at(g, off, size));
	r.prefixes = f->prefixes;
	flags_setup(g, 0);
	emit(g, &r);
}

/* Multi-word add/subtract: ADD/SUB then ADC/SBB through four words. */
static void build_carry_chain(struct gen *g, const struct form *f)
{
	bool sub = f->arg & 1, mem = f->arg & 2;
	int base_off = mem_place(g, 32, 8);
	for (int i = 0; i < 4; i++) {
		ZydisMnemonic m = i == 0 ? (sub ? M(SUB) : M(ADD)) : (sub ? M(SBB) : M(ADC));
		uint64_t a = pick_int(g, 64), b = pick_int(g, 64);
		int s = alloc_gpr(g);
		set_gpr(g, s, 64, b);
		ZydisEncoderOperand d;
		if (mem) {
			memcpy(g->c->data + DIFF_PAGE / 2 + base_off + 8 * i, &a, 8);
			d = mem_at(g, base_off + 8 * i, 8);
		} else {
			int r = alloc_gpr(g);
			set_gpr(g, r, 64, a);
			d = op_reg(gpr_name(r, 64));
		}
		ZydisEncoderRequest r = req(m, 2, d, op_reg(gpr_name(s, 64)));
		emit(g, &r);
	}
	flags_setup(g, 0);
}

/* LEA: every address form, with 64- and 32-bit address size. arg: 32 for 67h. */
static void build_lea(struct gen *g, const struct form *f)
{
	static const int64_t disps[] = {0, 1, -1, 0x7f, -0x80, 0x80, 0x7fffffff, -0x7fffffff - 1, 0x12345678};
	static const uint8_t scales[] = {1, 2, 4, 8};
	unsigned w = f->op[0].bits, asz = f->arg == 32 ? 32 : 64;
	unsigned mode = pick(g, 8);
	int64_t disp = disps[pick(g, COUNT(disps))];
	uint8_t scale = scales[pick(g, 4)];
	uint64_t bv = pick_int(g, 64), iv = pick_int(g, 64);
	int d = alloc_gpr(g);
	ZydisEncoderOperand m = {.type = ZYDIS_OPERAND_TYPE_MEMORY};
	m.mem.size = (ZyanU16)(asz / 8);
	/* Base: any register, RSP and the ones needing a SIB or a displacement included. */
	int b = (int)(rnd(g) % 16), x;
	do
		x = (int)(rnd(g) % 16);
	while (x == RSP);
	if (b != RSP && b != d)
		set_gpr(g, b, 64, bv);
	if (x != d)
		set_gpr(g, x, 64, iv);
	switch (mode) {
	case 0: m.mem.base = gpr_name(b, asz); break;
	case 1:
		m.mem.base = gpr_name(b, asz);
		m.mem.displacement = (int8_t)disp;
		break;
	case 2:
		m.mem.base = gpr_name(b, asz);
		m.mem.displacement = disp;
		break;
	case 3:
		m.mem.base = gpr_name(b, asz);
		m.mem.index = gpr_name(x, asz);
		m.mem.scale = scale;
		break;
	case 4:
		m.mem.base = gpr_name(b, asz);
		m.mem.index = gpr_name(x, asz);
		m.mem.scale = scale;
		m.mem.displacement = disp;
		break;
	case 5:
		m.mem.index = gpr_name(x, asz);
		m.mem.scale = scale;
		m.mem.displacement = disp;
		break;
	case 6: m.mem.displacement = disp & 0x7fffffff; break;
	default:
		m.mem.base = asz == 32 ? ZYDIS_REGISTER_EIP : ZYDIS_REGISTER_RIP;
		m.mem.displacement = disp;
		break;
	}
	ZydisEncoderRequest r = req(M(LEA), 2, op_reg(gpr_name(d, w)), m);
	if (mode == 7 && asz == 64) {
		/* emit() takes a RIP-relative displacement as a target. */
		ZydisEncoderRequest t = r;
		r.operands[1].mem.displacement = (int64_t)(DIFF_CODE + enc_len(&t)) + disp;
	}
	flags_setup(g, 0);
	emit(g, &r);
}

/* String instructions: RSI/RDI inside the data page going up or down,
 * small counts, data equal up to a chosen element for REPE/REPNE.
 * arg: element size, plus A32 for 32-bit addressing. */
static void build_string(struct gen *g, const struct form *f)
{
	static const uint64_t counts[] = {0, 1, 2, 3, 7, 16, 33};
	unsigned es = (unsigned)f->arg & 0xff;
	bool rep = f->prefixes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE | ZYDIS_ATTRIB_HAS_REPNE);
	bool a32 = f->arg & A32;
	ZydisMnemonic m = f->mnem;
	bool cmps = m == M(CMPSB) || m == M(CMPSW) || m == M(CMPSD) || m == M(CMPSQ);
	bool scas = m == M(SCASB) || m == M(SCASW) || m == M(SCASD) || m == M(SCASQ);
	bool movs = m == M(MOVSB) || m == M(MOVSW) || m == M(MOVSD) || m == M(MOVSQ);

	uint64_t n = rep ? pick_from(g, COUNT(counts), counts) : 0;
	unsigned layout = movs || cmps ? pick(g, 3) : 0;
	unsigned stop = cmps || scas ? pick(g, 4) : 0; /* which element breaks the run */
	flags_setup(g, f->tested);
	bool down = g->c->init.rflags & DIFF_FLAG_DF;
	unsigned elems = n ? (unsigned)n : 1, span = elems * es;

	/* The lowest byte each pointer's run touches, from DIFF_DATA. */
	unsigned src = 0x100 + (unsigned)(rnd(g) % 0x200) * es, dst = 0x900 + (unsigned)(rnd(g) % 0x100) * es;
	if (layout == 1)
		dst = src + es; /* overlapping, destination above */
	else if (layout == 2)
		dst = src >= es ? src - es : src + es;
	uint8_t *ps = g->c->data + src, *pd = g->c->data + dst;
	unsigned at = stop == 0 ? elems : stop == 1 ? 0 : stop == 2 ? elems / 2 : elems - 1;
	if (cmps) {
		for (unsigned i = 0; i < span; i++)
			pd[i] = (f->prefixes & ZYDIS_ATTRIB_HAS_REPNE) ? (uint8_t)(ps[i] ^ 0x5a) : ps[i];
		if (at < elems)
			for (unsigned i = 0; i < es; i++)
				pd[at * es + i] = (f->prefixes & ZYDIS_ATTRIB_HAS_REPNE)
						      ? ps[at * es + i]
						      : (uint8_t)(ps[at * es + i] ^ 0x81);
	}
	if (scas) {
		uint64_t a = rnd(g);
		for (unsigned i = 0; i < elems; i++)
			memcpy(pd + i * es, &a, es);
		if (f->prefixes & ZYDIS_ATTRIB_HAS_REPNE)
			for (unsigned i = 0; i < span; i++)
				pd[i] ^= 0x3c;
		if (at < elems)
			for (unsigned i = 0; i < es; i++)
				pd[at * es + i] = (f->prefixes & ZYDIS_ATTRIB_HAS_REPNE)
						      ? (uint8_t)(a >> (8 * i))
						      : (uint8_t)(a >> (8 * i) ^ 0x42);
		set_gpr(g, RAX, 64, a);
	}
	uint64_t rsi = DIFF_DATA + src + (down ? span - es : 0), rdi = DIFF_DATA + dst + (down ? span - es : 0);
	uint64_t junk = a32 ? rnd(g) << 32 : 0;
	set_gpr(g, RSI, 64, rsi | junk);
	set_gpr(g, RDI, 64, rdi | (a32 ? rnd(g) << 32 : 0));
	set_gpr(g, RCX, 64, rep ? (n | (a32 ? rnd(g) << 32 : 0)) : rnd(g));
	ZydisEncoderRequest r = req(m, 0);
	r.prefixes = f->prefixes;
	if (a32)
		r.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
	emit(g, &r);
}

/* XLAT: AL indexes a table at RBX. */
static void build_xlat(struct gen *g, const struct form *f)
{
	int off = mem_place(g, 256, 1);
	set_gpr(g, RBX, 64, DIFF_BASE + (uint64_t)(int64_t)off);
	set_gpr(g, RAX, 8, pick_int(g, 8));
	ZydisEncoderRequest r = req(f->mnem, 0);
	flags_setup(g, 0);
	emit(g, &r);
}

/* ---- the table ---- */

static void alu_forms(void)
{
	static const struct {
		ZydisMnemonic m;
		bool lockable;
	} ops[] = {{M(ADD), true}, {M(OR), true},  {M(ADC), true},  {M(SBB), true},  {M(AND), true},
		   {M(SUB), true}, {M(XOR), true}, {M(CMP), false}, {M(TEST), false}};
	static const char *acc[] = {"al", "ax", "eax", "rax"};
	for (unsigned i = 0; i < COUNT(ops); i++)
		for (unsigned k = 0; k < 4; k++) {
			unsigned w = widths[k], iw = imm_bits(w);
			ZydisMnemonic m = ops[i].m;
			addf(m, 0, 0, 0, "r%u, r%u", w, w);
			if (m != M(TEST))
				addf(m, 0, 0, 0, "r%u, m%u", w, w);
			addf(m, 0, 0, 0, "m%u, r%u", w, w);
			addf(m, 0, 0, 0, "r%u, i%u", w, iw);
			addf(m, 0, 0, 0, "m%u, i%u", w, iw);
			addf(m, 0, 0, 0, "%s, i%u", acc[k], iw);
			if (ops[i].lockable) {
				addf(m, LOCK, 0, 0, "m%u, r%u", w, w);
				addf(m, LOCK, 0, 0, "m%u, i%u", w, iw);
			}
		}
	static const ZydisMnemonic unary[] = {M(INC), M(DEC), M(NEG), M(NOT)};
	for (unsigned i = 0; i < COUNT(unary); i++)
		for (unsigned k = 0; k < 4; k++) {
			addf(unary[i], 0, 0, 0, "r%u", widths[k]);
			addf(unary[i], 0, 0, 0, "m%u", widths[k]);
			addf(unary[i], LOCK, 0, 0, "m%u", widths[k]);
		}
}

static void shift_forms(void)
{
	static const ZydisMnemonic sh[] = {M(ROL), M(ROR), M(RCL), M(RCR), M(SHL), M(SHR), M(SAR)};
	for (unsigned i = 0; i < COUNT(sh); i++)
		for (unsigned k = 0; k < 4; k++) {
			unsigned w = widths[k];
			addf(sh[i], 0, 0, 0, "r%u, c8", w);
			addf(sh[i], 0, 0, 0, "m%u, c8", w);
			addf(sh[i], 0, 0, 0, "r%u, cl", w);
			addf(sh[i], 0, 0, 0, "m%u, cl", w);
		}
	static const ZydisMnemonic dsh[] = {M(SHLD), M(SHRD)};
	for (unsigned i = 0; i < 2; i++)
		for (unsigned k = 1; k < 4; k++) {
			unsigned w = widths[k];
			addf(dsh[i], 0, 0, 0, "r%u, r%u, c8", w, w);
			addf(dsh[i], 0, 0, 0, "m%u, r%u, c8", w, w);
			addf(dsh[i], 0, 0, 0, "r%u, r%u, cl", w, w);
			addf(dsh[i], 0, 0, 0, "m%u, r%u, cl", w, w);
		}
}

static void muldiv_forms(void)
{
	for (unsigned k = 0; k < 4; k++) {
		unsigned w = widths[k];
		addf(M(MUL), 0, 0, 0, "r%u", w);
		addf(M(MUL), 0, 0, 0, "m%u", w);
		addf(M(IMUL), 0, 0, 0, "r%u", w);
		addf(M(IMUL), 0, 0, 0, "m%u", w);
		addf(M(DIV), 0, F_DIV, 0, "r%u", w);
		addf(M(DIV), 0, F_DIV, 0, "m%u", w);
		addf(M(IDIV), 0, F_DIV, 0, "r%u", w);
		addf(M(IDIV), 0, F_DIV, 0, "m%u", w);
		if (w == 8)
			continue;
		addf(M(IMUL), 0, 0, 0, "r%u, r%u", w, w);
		addf(M(IMUL), 0, 0, 0, "r%u, m%u", w, w);
		addf(M(IMUL), 0, 0, 0, "r%u, r%u, i%u", w, w, imm_bits(w));
		addf(M(IMUL), 0, 0, 0, "r%u, m%u, i%u", w, w, imm_bits(w));
	}
}

static void bit_forms(void)
{
	static const ZydisMnemonic bt[] = {M(BT), M(BTS), M(BTR), M(BTC)};
	for (unsigned i = 0; i < COUNT(bt); i++)
		for (unsigned k = 1; k < 4; k++) {
			unsigned w = widths[k];
			addf(bt[i], 0, 0, 0, "r%u, r%u", w, w);
			addf(bt[i], 0, 0, 0, "r%u, c8", w);
			addf(bt[i], 0, 0, 0, "m%u, o%u", w, w);
			addf(bt[i], 0, 0, 0, "m%u, c8", w);
			if (i) {
				addf(bt[i], LOCK, 0, 0, "m%u, o%u", w, w);
				addf(bt[i], LOCK, 0, 0, "m%u, c8", w);
			}
		}
	static const struct {
		ZydisMnemonic m;
		uint8_t feat;
	} scans[] = {{M(BSF), 0}, {M(BSR), 0}, {M(POPCNT), FEAT_POPCNT}, {M(LZCNT), FEAT_LZCNT}, {M(TZCNT), FEAT_BMI1}};
	for (unsigned i = 0; i < COUNT(scans); i++)
		for (unsigned k = 1; k < 4; k++) {
			addf(scans[i].m, 0, 0, scans[i].feat, "r%u, r%u", widths[k], widths[k]);
			addf(scans[i].m, 0, 0, scans[i].feat, "r%u, m%u", widths[k], widths[k]);
		}
	addf(M(BSWAP), 0, 0, 0, "r32");
	addf(M(BSWAP), 0, 0, 0, "r64");
	static const char *crc[] = {"r32, r8",	"r32, m8", "r32, r16", "r32, m16", "r32, r32",
				    "r32, m32", "r64, r8", "r64, m8",  "r64, r64", "r64, m64"};
	for (unsigned i = 0; i < COUNT(crc); i++)
		addf(M(CRC32), 0, 0, FEAT_SSE42, "%s", crc[i]);
}

static void move_forms(void)
{
	for (unsigned k = 0; k < 4; k++) {
		unsigned w = widths[k];
		addf(M(MOV), 0, 0, 0, "r%u, r%u", w, w);
		addf(M(MOV), 0, 0, 0, "r%u, m%u", w, w);
		addf(M(MOV), 0, 0, 0, "m%u, r%u", w, w);
		addf(M(MOV), 0, 0, 0, "r%u, i%u", w, imm_bits(w));
		addf(M(MOV), 0, 0, 0, "m%u, i%u", w, imm_bits(w));
		addf(M(XCHG), 0, 0, 0, "r%u, r%u", w, w);
		addf(M(XCHG), 0, 0, 0, "m%u, r%u", w, w);
		addf(M(XADD), 0, 0, 0, "r%u, r%u", w, w);
		addf(M(XADD), 0, 0, 0, "m%u, r%u", w, w);
		addf(M(XADD), LOCK, 0, 0, "m%u, r%u", w, w);
	}
	form_add("mov r64, imm64", NULL, M(MOV), 0, "r64, i64", 0, 0);
	static const char *acc[] = {"al", "ax", "eax", "rax"};
	for (unsigned k = 0; k < 4; k++) {
		char ops[32];
		/* The accumulator forms: absolute addresses encode as moffs. */
		snprintf(ops, sizeof(ops), "%s, m%u", acc[k], widths[k]);
		form_add(NULL, NULL, M(MOV), 0, ops, 0, 0);
	}
	static const char *ext[] = {"r16, r8", "r16, m8",  "r32, r8",  "r32, m8",  "r64, r8",
				    "r64, m8", "r32, r16", "r32, m16", "r64, r16", "r64, m16"};
	for (unsigned i = 0; i < COUNT(ext); i++) {
		addf(M(MOVSX), 0, 0, 0, "%s", ext[i]);
		addf(M(MOVZX), 0, 0, 0, "%s", ext[i]);
	}
	addf(M(MOVSXD), 0, 0, 0, "r64, r32");
	addf(M(MOVSXD), 0, 0, 0, "r64, m32");
	addf(M(MOVSXD), 0, 0, 0, "r32, r32");
	addf(M(MOVBE), 0, 0, FEAT_MOVBE, "r64, m64");
	static const ZydisMnemonic conv[] = {M(CBW), M(CWDE), M(CDQE), M(CWD), M(CDQ), M(CQO)};
	for (unsigned i = 0; i < COUNT(conv); i++)
		form_add(NULL, NULL, conv[i], 0, "", 0, 0);
	static const ZydisMnemonic fl[] = {M(CLC), M(STC), M(CMC), M(CLD), M(STD), M(NOP), M(PAUSE)};
	for (unsigned i = 0; i < COUNT(fl); i++)
		form_add(NULL, NULL, fl[i], 0, "", 0, 0);
	form_add(NULL, NULL, M(LAHF), 0, "", 0, FEAT_LAHF);
	form_add(NULL, NULL, M(SAHF), 0, "", 0, FEAT_LAHF);
	form_add(NULL, NULL, M(NOP), 0, "m32", 0, 0);
	form_add(NULL, build_xlat, M(XLAT), 0, "", 0, 0);
	static const char *segs[] = {"cs", "ss", "ds", "es", "fs", "gs"};
	for (unsigned i = 0; i < COUNT(segs); i++) {
		char ops[16];
		snprintf(ops, sizeof(ops), "r64, %s", segs[i]);
		form_add(NULL, NULL, M(MOV), 0, ops, 0, 0);
	}
}

static void exchange_forms(void)
{
	for (unsigned k = 0; k < 4; k++) {
		char ops[32];
		unsigned w = widths[k];
		snprintf(ops, sizeof(ops), "r%u, r%u", w, w);
		form_add(NULL, build_cmpxchg, M(CMPXCHG), 0, ops, 0, 0);
		snprintf(ops, sizeof(ops), "m%u, r%u", w, w);
		form_add(NULL, build_cmpxchg, M(CMPXCHG), 0, ops, 0, 0);
		form_add(NULL, build_cmpxchg, M(CMPXCHG), LOCK, ops, 0, 0);
	}
	form_add(NULL, build_cmpxchgxb, M(CMPXCHG8B), 0, "m64", 0, 0);
	form_add(NULL, build_cmpxchgxb, M(CMPXCHG8B), LOCK, "m64", 0, 0);
	form_add(NULL, build_cmpxchgxb, M(CMPXCHG16B), 0, "m128", 0, FEAT_CX16);
	form_add(NULL, build_cmpxchgxb, M(CMPXCHG16B), LOCK, "m128", 0, FEAT_CX16);
	form_add("add/adc chain r64, r64", build_carry_chain, M(ADC), 0, "", 0, 0)->arg = 0;
	form_add("sub/sbb chain r64, r64", build_carry_chain, M(SBB), 0, "", 0, 0)->arg = 1;
	form_add("add/adc chain m64, r64", build_carry_chain, M(ADC), 0, "", 0, 0)->arg = 2;
	form_add("sub/sbb chain m64, r64", build_carry_chain, M(SBB), 0, "", 0, 0)->arg = 3;
}

static void cond_forms(void)
{
	static const char *cc[16] = {"o", "no", "b", "nb", "z", "nz", "be", "nbe",
				     "s", "ns", "p", "np", "l", "nl", "le", "nle"};
	for (unsigned i = 0; i < 16; i++) {
		char n[16], name[64];
		snprintf(n, sizeof(n), "SET%s", cc[i]);
		ZydisMnemonic set = M(INVALID), cmov = M(INVALID), j = M(INVALID);
		for (int m = 1; m <= ZYDIS_MNEMONIC_MAX_VALUE; m++) {
			const char *s = ZydisMnemonicGetString((ZydisMnemonic)m);
			char want[3][16];
			snprintf(want[0], 16, "set%s", cc[i]);
			snprintf(want[1], 16, "cmov%s", cc[i]);
			snprintf(want[2], 16, "j%s", cc[i]);
			if (!strcmp(s, want[0]))
				set = (ZydisMnemonic)m;
			if (!strcmp(s, want[1]))
				cmov = (ZydisMnemonic)m;
			if (!strcmp(s, want[2]))
				j = (ZydisMnemonic)m;
		}
		addf(set, 0, 0, 0, "r8");
		addf(set, 0, 0, 0, "m8");
		for (unsigned k = 1; k < 4; k++) {
			addf(cmov, 0, 0, 0, "r%u, r%u", widths[k], widths[k]);
			addf(cmov, 0, 0, 0, "r%u, m%u", widths[k], widths[k]);
		}
		snprintf(name, sizeof(name), "j%s rel8", cc[i]);
		form_add(name, build_branch, j, 0, "", 0, 0)->arg = 8;
		snprintf(name, sizeof(name), "j%s rel32", cc[i]);
		form_add(name, build_branch, j, 0, "", 0, 0)->arg = 32;
	}
	form_add("jrcxz rel8", build_branch, M(JRCXZ), 0, "", 0, 0)->arg = 8;
	form_add("jecxz rel8", build_branch, M(JECXZ), 0, "", 0, 0)->arg = 8;
	form_add("loop rel8", build_branch, M(LOOP), 0, "", 0, 0)->arg = 8;
	form_add("loope rel8", build_branch, M(LOOPE), 0, "", 0, 0)->arg = 8;
	form_add("loopne rel8", build_branch, M(LOOPNE), 0, "", 0, 0)->arg = 8;
	form_add("loop rel8 (ecx)", build_branch, M(LOOP), 0, "", 0, 0)->arg = 8 | A32;
	form_add("jmp rel8", build_branch, M(JMP), 0, "", 0, 0)->arg = 8;
	form_add("jmp rel32", build_branch, M(JMP), 0, "", 0, 0)->arg = 32;
}

static void lea_forms(void)
{
	for (unsigned k = 1; k < 4; k++) {
		char name[48];
		char ops[8];
		snprintf(ops, sizeof(ops), "r%u", widths[k]);
		snprintf(name, sizeof(name), "lea r%u, m", widths[k]);
		form_add(name, build_lea, M(LEA), 0, ops, 0, 0)->arg = 64;
		snprintf(name, sizeof(name), "lea r%u, m (32-bit address)", widths[k]);
		form_add(name, build_lea, M(LEA), 0, ops, 0, 0)->arg = 32;
	}
}

static void string_forms(void)
{
	static const struct {
		const char *base;
		ZydisMnemonic m[4];
		bool cond; /* REPE/REPNE apply */
	} s[] = {
	    {"movs", {M(MOVSB), M(MOVSW), M(MOVSD), M(MOVSQ)}, false},
	    {"stos", {M(STOSB), M(STOSW), M(STOSD), M(STOSQ)}, false},
	    {"lods", {M(LODSB), M(LODSW), M(LODSD), M(LODSQ)}, false},
	    {"scas", {M(SCASB), M(SCASW), M(SCASD), M(SCASQ)}, true},
	    {"cmps", {M(CMPSB), M(CMPSW), M(CMPSD), M(CMPSQ)}, true},
	};
	static const char sfx[4] = {'b', 'w', 'd', 'q'};
	for (unsigned i = 0; i < COUNT(s); i++)
		for (unsigned k = 0; k < 4; k++) {
			uint32_t pre[3] = {0, s[i].cond ? ZYDIS_ATTRIB_HAS_REPE : ZYDIS_ATTRIB_HAS_REP,
					   s[i].cond ? ZYDIS_ATTRIB_HAS_REPNE : 0};
			const char *pn[3] = {"", s[i].cond ? "repe " : "rep ", "repne "};
			for (unsigned p = 0; p < 3; p++) {
				char name[48];
				if (p == 2 && !s[i].cond)
					continue;
				snprintf(name, sizeof(name), "%s%s%c", pn[p], s[i].base, sfx[k]);
				form_add(name, build_string, s[i].m[k], pre[p], "", 0, 0)->arg = 1 << k;
				if (p == 1) {
					snprintf(name, sizeof(name), "%s%s%c (32-bit address)", pn[p], s[i].base,
						 sfx[k]);
					form_add(name, build_string, s[i].m[k], pre[p], "", 0, 0)->arg = (1 << k) | A32;
				}
			}
		}
}

static void stack_forms(void)
{
	form_add(NULL, NULL, M(PUSH), 0, "r64", 0, 0);
	form_add(NULL, NULL, M(PUSH), 0, "r16", 0, 0);
	form_add(NULL, NULL, M(PUSH), 0, "m64", 0, 0);
	form_add(NULL, NULL, M(PUSH), 0, "i8", 0, 0);
	form_add(NULL, NULL, M(PUSH), 0, "i32", 0, 0);
	form_add(NULL, NULL, M(POP), 0, "r64", 0, 0);
	form_add(NULL, NULL, M(POP), 0, "r16", 0, 0);
	form_add(NULL, NULL, M(POP), 0, "m64", 0, 0);
	form_add(NULL, NULL, M(PUSHFQ), 0, "", 0, 0);
	form_add(NULL, NULL, M(PUSHF), 0, "", 0, 0);
	form_add(NULL, build_popf, M(POPFQ), 0, "", 0, 0)->arg = 64;
	form_add(NULL, build_popf, M(POPF), 0, "", 0, 0)->arg = 16;
	form_add("call rel32", build_call_rel, M(CALL), 0, "", 0, 0);
	form_add(NULL, build_indirect, M(CALL), 0, "r64", 0, 0);
	form_add(NULL, build_indirect, M(CALL), 0, "m64", 0, 0);
	form_add(NULL, build_indirect, M(JMP), 0, "r64", 0, 0);
	form_add(NULL, build_indirect, M(JMP), 0, "m64", 0, 0);
	form_add(NULL, build_ret, M(RET), 0, "", 0, 0);
	form_add(NULL, build_ret, M(RET), 0, "i16", 0, 0);
	form_add(NULL, build_frame, M(ENTER), 0, "", 0, 0);
	form_add(NULL, build_frame, M(LEAVE), 0, "", 0, 0);
}

/* Encodings of 32-bit mode that 64-bit mode refuses (#UD), and what CPL 3
 * may not do (#GP) or what traps (INT3, INT1, UD2). */
static void refused_forms(void)
{
	static const struct {
		ZydisMnemonic m;
		const char *ops;
	} legacy[] = {
	    {M(DAA), ""},    {M(DAS), ""},    {M(AAA), ""},   {M(AAS), ""},   {M(AAM), "u8"},  {M(AAD), "u8"},
	    {M(INTO), ""},   {M(PUSHAD), ""}, {M(POPAD), ""}, {M(SALC), ""},  {M(PUSH), "es"}, {M(PUSH), "cs"},
	    {M(PUSH), "ss"}, {M(PUSH), "ds"}, {M(POP), "es"}, {M(POP), "ss"}, {M(POP), "ds"},
	};
	static const int64_t tens[] = {10, 0, 16, 255};
	for (unsigned i = 0; i < COUNT(legacy); i++) {
		struct form *f = form_add(NULL, NULL, legacy[i].m, 0, legacy[i].ops, 0, 0);
		size_t len = strlen(f->name);
		snprintf(f->name + len, sizeof(f->name) - len, " (32-bit only)");
		f->mode = ZYDIS_MACHINE_MODE_LONG_COMPAT_32;
		f->list = tens;
		f->nlist = COUNT(tens);
	}
	static const struct {
		ZydisMnemonic m;
		const char *ops;
	} priv[] = {
	    {M(HLT), ""},      {M(CLI), ""},	   {M(STI), ""},	 {M(CLTS), ""},	       {M(WBINVD), ""},
	    {M(INVD), ""},     {M(RDMSR), ""},	   {M(WRMSR), ""},	 {M(SWAPGS), ""},      {M(SYSRET), ""},
	    {M(IN), "al, u8"}, {M(OUT), "u8, al"}, {M(IN), "eax, dx"},	 {M(OUT), "dx, eax"},  {M(LGDT), "m80"},
	    {M(LIDT), "m80"},  {M(INVLPG), "m8"},  {M(MOV), "r64, cr0"}, {M(MOV), "cr3, r64"}, {M(UD2), ""},
	    {M(INT3), ""},     {M(INT1), ""},
	};
	static const int64_t ports[] = {0x80, 0x60, 0x00, 0xff};
	for (unsigned i = 0; i < COUNT(priv); i++) {
		struct form *f = form_add(NULL, NULL, priv[i].m, 0, priv[i].ops, 0, 0);
		f->list = ports;
		f->nlist = COUNT(ports);
	}
}

void forms_int(void)
{
	alu_forms();
	shift_forms();
	muldiv_forms();
	bit_forms();
	move_forms();
	exchange_forms();
	cond_forms();
	lea_forms();
	string_forms();
	stack_forms();
	refused_forms();
}
