/*
 * x87 forms: loads and stores of every format, arithmetic in all operand
 * forms, the transcendental and rounding instructions, compares, stack
 * management, constants and control. Every case starts from a stack of a
 * chosen depth (full, partial, empty: overflow and underflow) under a
 * chosen control word (precision, rounding, unmasked exceptions) and ends
 * with FWAIT, so an unmasked exception left pending faults (#MF).
 */
#include <stdio.h>
#include <string.h>

#include "gen.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define M(x)	 ZYDIS_MNEMONIC_##x
#define X87	 (F_X87 | F_FWAIT)

static void add(ZydisMnemonic m, const char *ops)
{
	form_add(NULL, NULL, m, 0, ops, X87, 0);
}

/* FLDENV, FRSTOR, FXRSTOR: an image made from another random x87 state,
 * with a control word (and MXCSR) from the edge lists. arg: image size. */
static void build_fpload(struct gen *g, const struct form *f)
{
	unsigned size = (unsigned)f->arg;
	int off = mem_place(g, size, 16);
	uint8_t *img = g->c->data + DIFF_PAGE / 2 + off;
	const uint64_t *v;
	unsigned n = fcw_vals(&v);
	uint16_t fcw = (uint16_t)pick_from(g, n, v);
	uint16_t fsw = (uint16_t)(rnd(g) & 0x7fff);
	n = mxcsr_vals(&v);
	uint32_t mxcsr = (uint32_t)pick_from(g, n, v);
	bool bad_mxcsr = pick(g, 4) == 0; /* a reserved MXCSR bit: #GP */
	if (size == 512) {
		memcpy(img, &fcw, 2);
		memcpy(img + 2, &fsw, 2);
		img[4] = (uint8_t)rnd(g);
		if (bad_mxcsr)
			mxcsr |= 0x80000000u;
		memcpy(img + 24, &mxcsr, 4);
	} else {
		uint16_t ftw = (uint16_t)rnd(g);
		memset(img, 0, 14);
		memcpy(img, &fcw, 2);
		memcpy(img + 4, &fsw, 2);
		memcpy(img + 8, &ftw, 2);
	}
	x87_setup(g);
	ZydisEncoderRequest r = req(f->mnem, 1, mem_at(g, off, size));
	flags_setup(g, 0);
	emit(g, &r);
	ZydisEncoderRequest w = req(ZYDIS_MNEMONIC_FWAIT, 0);
	emit(g, &w);
}

/* FWAIT with exception flags set, pending (unmasked: ES and B set) or not. */
static void build_pending(struct gen *g, const struct form *f)
{
	static const uint64_t flags[] = {0x00, 0x01, 0x04, 0x21, 0x41, 0x08, 0x10, 0x20, 0x02};
	x87_setup(g);
	uint16_t fl = (uint16_t)pick_from(g, COUNT(flags), flags);
	bool es = fl & ~g->c->init.fpu.fcw & 0x3f;
	g->c->init.fpu.fsw = (uint16_t)((g->c->init.fpu.fsw & 0x7f00) | fl | (es ? 0x8080 : 0));
	ZydisEncoderRequest r = req(f->mnem, 0);
	flags_setup(g, 0);
	emit(g, &r);
}

/* FXSAVE, aligned or not; MXCSR_MASK (bytes 28-31) is the CPU model's. */
static void build_fxsave(struct gen *g, const struct form *f)
{
	static const int skew[] = {0, 0, 8, 1};
	int off = mem_place(g, 512, 16) + skew[pick(g, 4)];
	g->c->ignore_off = (uint16_t)(DIFF_PAGE / 2 + off + 28);
	g->c->ignore_len = 4;
	x87_setup(g);
	ZydisEncoderRequest r = req(f->mnem, 1, mem_at(g, off, 512));
	flags_setup(g, 0);
	emit(g, &r);
	ZydisEncoderRequest w = req(ZYDIS_MNEMONIC_FWAIT, 0);
	emit(g, &w);
}

void forms_x87(void)
{
	/* loads and stores */
	add(M(FLD), "m32.ps");
	add(M(FLD), "m64.pd");
	add(M(FLD), "m80");
	add(M(FLD), "sti");
	add(M(FST), "m32.ps");
	add(M(FST), "m64.pd");
	add(M(FST), "sti");
	add(M(FSTP), "m32.ps");
	add(M(FSTP), "m64.pd");
	add(M(FSTP), "m80");
	add(M(FSTP), "sti");
	add(M(FILD), "m16");
	add(M(FILD), "m32");
	add(M(FILD), "m64");
	add(M(FIST), "m16");
	add(M(FIST), "m32");
	add(M(FISTP), "m16");
	add(M(FISTP), "m32");
	add(M(FISTP), "m64");
	form_add(NULL, NULL, M(FISTTP), 0, "m16", X87, FEAT_SSE3);
	form_add(NULL, NULL, M(FISTTP), 0, "m32", X87, FEAT_SSE3);
	form_add(NULL, NULL, M(FISTTP), 0, "m64", X87, FEAT_SSE3);
	add(M(FBLD), "m80");
	add(M(FBSTP), "m80");

	/* arithmetic */
	static const struct {
		ZydisMnemonic m, p, i;
	} arith[] = {
	    {M(FADD), M(FADDP), M(FIADD)}, {M(FSUB), M(FSUBP), M(FISUB)}, {M(FSUBR), M(FSUBRP), M(FISUBR)},
	    {M(FMUL), M(FMULP), M(FIMUL)}, {M(FDIV), M(FDIVP), M(FIDIV)}, {M(FDIVR), M(FDIVRP), M(FIDIVR)},
	};
	for (unsigned i = 0; i < COUNT(arith); i++) {
		add(arith[i].m, "m32.ps");
		add(arith[i].m, "m64.pd");
		add(arith[i].m, "st0, sti");
		add(arith[i].m, "sti, st0");
		add(arith[i].p, "sti, st0");
		add(arith[i].i, "m16");
		add(arith[i].i, "m32");
	}
	static const ZydisMnemonic unary[] = {
	    M(FSQRT),  M(FABS),	   M(FCHS),    M(FRNDINT), M(FSCALE), M(FXTRACT), M(FPREM),  M(FPREM1),
	    M(FSIN),   M(FCOS),	   M(FSINCOS), M(FPTAN),   M(FPATAN), M(F2XM1),	  M(FYL2X),  M(FYL2XP1),
	    M(FTST),   M(FXAM),	   M(FLD1),    M(FLDZ),	   M(FLDPI),  M(FLDL2E),  M(FLDL2T), M(FLDLG2),
	    M(FLDLN2), M(FINCSTP), M(FDECSTP), M(FNOP),	   M(FCOMPP), M(FUCOMPP), M(FNCLEX), M(FNINIT),
	};
	for (unsigned i = 0; i < COUNT(unary); i++)
		add(unary[i], "");

	/* compares */
	add(M(FCOM), "m32.ps");
	add(M(FCOM), "m64.pd");
	add(M(FCOM), "sti");
	add(M(FCOMP), "m32.ps");
	add(M(FCOMP), "m64.pd");
	add(M(FCOMP), "sti");
	add(M(FUCOM), "sti");
	add(M(FUCOMP), "st0, sti");
	add(M(FICOM), "m16");
	add(M(FICOM), "m32");
	add(M(FICOMP), "m16");
	add(M(FICOMP), "m32");
	add(M(FCOMI), "st0, sti");
	add(M(FCOMIP), "st0, sti");
	add(M(FUCOMI), "st0, sti");
	add(M(FUCOMIP), "st0, sti");

	/* stack and conditional moves */
	add(M(FXCH), "sti");
	add(M(FFREE), "sti");
	static const ZydisMnemonic fcmov[] = {M(FCMOVB),  M(FCMOVE),  M(FCMOVBE),  M(FCMOVU),
					      M(FCMOVNB), M(FCMOVNE), M(FCMOVNBE), M(FCMOVNU)};
	for (unsigned i = 0; i < COUNT(fcmov); i++)
		add(fcmov[i], "st0, sti");

	/* control */
	add(M(FLDCW), "m16");
	add(M(FNSTCW), "m16");
	add(M(FNSTSW), "m16");
	add(M(FNSTSW), "ax");
	form_add("fwait (pending exceptions)", build_pending, M(FWAIT), 0, "", 0, 0);
	add(M(FNSTENV), "m224");
	add(M(FNSAVE), "m864");
	form_add("fldenv m224", build_fpload, M(FLDENV), 0, "", 0, 0)->arg = 28;
	form_add("frstor m864", build_fpload, M(FRSTOR), 0, "", 0, 0)->arg = 108;
	form_add("fxrstor m4096", build_fpload, M(FXRSTOR), 0, "", 0, 0)->arg = 512;
	form_add("fxsave m4096", build_fxsave, M(FXSAVE), 0, "", 0, 0);
}
