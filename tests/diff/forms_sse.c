/*
 * SIMD forms: SSE and SSE2 (arithmetic, compares with every predicate,
 * conversions under every rounding mode, logic, shuffles and unpacks,
 * packed integer arithmetic, moves aligned and not), SSE3, SSSE3, SSE4.1,
 * SSE4.2 and MMX. Floating-point forms take MXCSR as a dimension (rounding,
 * DAZ/FTZ, unmasked exceptions: #XM); 128-bit memory operands take their
 * alignment as one (#GP for the aligned forms, page crossings for all).
 */
#include <stdio.h>
#include <string.h>

#include "gen.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define M(x)	 ZYDIS_MNEMONIC_##x
#define FP	 F_MXCSR

static const int64_t preds[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 0x1f, 0xff};
static const int64_t shuf[] = {0x00, 0x1b, 0x4e, 0xb1, 0xe4, 0xff, 0x55, 0xaa, 0x39, 0x93, 0x0f, 0xf0, 0x01, 0x80};
static const int64_t align_counts[] = {0, 1, 4, 8, 15, 16, 17, 24, 31, 32, 33, 255};
static const int64_t round_modes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const int64_t dpps_masks[] = {0xff, 0xf1, 0x31, 0x7f, 0x00, 0x55, 0xf8, 0x8f, 0x1e, 0xe3};
static const int64_t dppd_masks[] = {0x33, 0x31, 0x13, 0x00, 0xff, 0x22, 0x11};
static const int64_t insertps_ctl[] = {0x00, 0x10, 0x30, 0xc0, 0xc5, 0x0f, 0x71, 0xff, 0x4a, 0x8e};
static const int64_t lanes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 0x81, 0xff};
static const int64_t mpsad[] = {0, 1, 2, 3, 4, 5, 6, 7};
static int64_t str_modes[128];

static struct form *op(ZydisMnemonic m, const char *ops, uint32_t fl, uint8_t feat)
{
	return form_add(NULL, NULL, m, 0, ops, fl, feat);
}

static void with_list(struct form *f, const int64_t *l, unsigned n)
{
	f->list = l;
	f->nlist = (uint16_t)n;
}

#define LIST(f, l) with_list(f, l, COUNT(l))

/* Packed: "x.e, x.e" and "x.e, m128.e". */
static void packed(ZydisMnemonic m, const char *e, uint32_t fl, uint8_t feat)
{
	char ops[48];
	snprintf(ops, sizeof(ops), "x.%s, x.%s", e, e);
	op(m, ops, fl, feat);
	snprintf(ops, sizeof(ops), "x.%s, m128.%s", e, e);
	op(m, ops, fl | F_ALIGN, feat);
}

/* Scalar: "x.e, x.e" and "x.e, m<bits>.e". */
static void scalar(ZydisMnemonic m, const char *e, unsigned bits, uint32_t fl, uint8_t feat)
{
	char ops[48];
	snprintf(ops, sizeof(ops), "x.%s, x.%s", e, e);
	op(m, ops, fl, feat);
	snprintf(ops, sizeof(ops), "x.%s, m%u.%s", e, bits, e);
	op(m, ops, fl | F_ALIGN, feat);
}

/* With an imm8 from a list: "x.e, x.e, u8" and "x.e, m<bits>.e, u8". */
static void with_imm(ZydisMnemonic m, const char *e, unsigned bits, const int64_t *l, unsigned n, uint32_t fl,
		     uint8_t feat)
{
	char ops[48];
	snprintf(ops, sizeof(ops), "x.%s, x.%s, u8", e, e);
	with_list(op(m, ops, fl, feat), l, n);
	snprintf(ops, sizeof(ops), "x.%s, m%u.%s, u8", e, bits, e);
	with_list(op(m, ops, fl | F_ALIGN, feat), l, n);
}

#define IMM(m, e, bits, l, fl, feat) with_imm(m, e, bits, l, COUNT(l), fl, feat)

/* MASKMOVDQU: the store goes to [RDI]. */
static void build_maskmov(struct gen *g, const struct form *f)
{
	int off = mem_place(g, 16, 1);
	set_gpr(g, RDI, 64, DIFF_BASE + (uint64_t)(int64_t)off);
	int a = alloc_xmm(g), b = alloc_xmm(g);
	fill_lanes(g, g->c->init.fpu.xmm[a], 16, E_I8);
	fill_lanes(g, g->c->init.fpu.xmm[b], 16, E_I8);
	ZydisEncoderRequest r = req(f->mnem, 2, op_reg((ZydisRegister)(ZYDIS_REGISTER_XMM0 + a)),
				    op_reg((ZydisRegister)(ZYDIS_REGISTER_XMM0 + b)));
	flags_setup(g, 0);
	emit(g, &r);
}

/* LDMXCSR: values from the MXCSR list, some with a reserved bit (#GP). */
static void build_ldmxcsr(struct gen *g, const struct form *f)
{
	/* Bit 17 is AMD's misaligned-SSE mode (MXCSR_MASK says whether a CPU
	 * has it): a model difference, not an instruction's, so it stays out. */
	static const uint32_t bad[] = {0, 0, 0, 0x10000, 0x40000, 0x80000000u, 0x40};
	const uint64_t *v;
	unsigned n = mxcsr_vals(&v);
	uint32_t x = (uint32_t)pick_from(g, n, v) | bad[pick(g, COUNT(bad))];
	int off = mem_place(g, 4, 4);
	memcpy(g->c->data + DIFF_PAGE / 2 + off, &x, 4);
	ZydisEncoderRequest r = req(f->mnem, 1, mem_at(g, off, 4));
	flags_setup(g, 0);
	emit(g, &r);
}

static void sse_float(void)
{
	static const ZydisMnemonic ps[] = {M(ADDPS), M(SUBPS), M(MULPS), M(DIVPS), M(MINPS), M(MAXPS), M(SQRTPS)};
	static const ZydisMnemonic pd[] = {M(ADDPD), M(SUBPD), M(MULPD), M(DIVPD), M(MINPD), M(MAXPD), M(SQRTPD)};
	static const ZydisMnemonic ss[] = {M(ADDSS), M(SUBSS), M(MULSS), M(DIVSS), M(MINSS), M(MAXSS), M(SQRTSS)};
	static const ZydisMnemonic sd[] = {M(ADDSD), M(SUBSD), M(MULSD), M(DIVSD), M(MINSD), M(MAXSD), M(SQRTSD)};
	for (unsigned i = 0; i < COUNT(ps); i++) {
		packed(ps[i], "ps", FP, 0);
		packed(pd[i], "pd", FP, 0);
		scalar(ss[i], "ps", 32, FP, 0);
		scalar(sd[i], "pd", 64, FP, 0);
	}
	packed(M(RCPPS), "ps", FP, 0);
	packed(M(RSQRTPS), "ps", FP, 0);
	scalar(M(RCPSS), "ps", 32, FP, 0);
	scalar(M(RSQRTSS), "ps", 32, FP, 0);
	static const ZydisMnemonic logic[] = {M(ANDPS), M(ANDNPS), M(ORPS), M(XORPS)};
	static const ZydisMnemonic logicd[] = {M(ANDPD), M(ANDNPD), M(ORPD), M(XORPD)};
	for (unsigned i = 0; i < COUNT(logic); i++) {
		packed(logic[i], "ps", 0, 0);
		packed(logicd[i], "pd", 0, 0);
	}
	IMM(M(CMPPS), "ps", 128, preds, FP, 0);
	IMM(M(CMPPD), "pd", 128, preds, FP, 0);
	IMM(M(CMPSS), "ps", 32, preds, FP, 0);
	IMM(M(CMPSD), "pd", 64, preds, FP, 0);
	scalar(M(COMISS), "ps", 32, FP, 0);
	scalar(M(UCOMISS), "ps", 32, FP, 0);
	scalar(M(COMISD), "pd", 64, FP, 0);
	scalar(M(UCOMISD), "pd", 64, FP, 0);
	/* SSE3 */
	packed(M(ADDSUBPS), "ps", FP, FEAT_SSE3);
	packed(M(ADDSUBPD), "pd", FP, FEAT_SSE3);
	packed(M(HADDPS), "ps", FP, FEAT_SSE3);
	packed(M(HADDPD), "pd", FP, FEAT_SSE3);
	packed(M(HSUBPS), "ps", FP, FEAT_SSE3);
	packed(M(HSUBPD), "pd", FP, FEAT_SSE3);
	/* SSE4.1 */
	IMM(M(ROUNDPS), "ps", 128, round_modes, FP, FEAT_SSE41);
	IMM(M(ROUNDPD), "pd", 128, round_modes, FP, FEAT_SSE41);
	IMM(M(ROUNDSS), "ps", 32, round_modes, FP, FEAT_SSE41);
	IMM(M(ROUNDSD), "pd", 64, round_modes, FP, FEAT_SSE41);
	IMM(M(DPPS), "ps", 128, dpps_masks, FP, FEAT_SSE41);
	IMM(M(DPPD), "pd", 128, dppd_masks, FP, FEAT_SSE41);
	IMM(M(BLENDPS), "ps", 128, shuf, 0, FEAT_SSE41);
	IMM(M(BLENDPD), "pd", 128, shuf, 0, FEAT_SSE41);
	packed(M(BLENDVPS), "ps", 0, FEAT_SSE41);
	packed(M(BLENDVPD), "pd", 0, FEAT_SSE41);
	IMM(M(INSERTPS), "ps", 32, insertps_ctl, 0, FEAT_SSE41);
	LIST(op(M(EXTRACTPS), "r32, x.ps, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(EXTRACTPS), "m32, x.ps, u8", 0, FEAT_SSE41), lanes);
}

static void sse_convert(void)
{
	static const struct {
		ZydisMnemonic m;
		const char *rr, *rm;
	} cv[] = {
	    {M(CVTPS2PD), "x.pd, x.ps", "x.pd, m64.ps"}, {M(CVTPD2PS), "x.ps, x.pd", "x.ps, m128.pd"},
	    {M(CVTSS2SD), "x.pd, x.ps", "x.pd, m32.ps"}, {M(CVTSD2SS), "x.ps, x.pd", "x.ps, m64.pd"},
	    {M(CVTDQ2PS), "x.ps, x.d", "x.ps, m128.d"},	 {M(CVTPS2DQ), "x.d, x.ps", "x.d, m128.ps"},
	    {M(CVTTPS2DQ), "x.d, x.ps", "x.d, m128.ps"}, {M(CVTDQ2PD), "x.pd, x.d", "x.pd, m64.d"},
	    {M(CVTPD2DQ), "x.d, x.pd", "x.d, m128.pd"},	 {M(CVTTPD2DQ), "x.d, x.pd", "x.d, m128.pd"},
	    {M(CVTSI2SS), "x.ps, r32", "x.ps, m32"},	 {M(CVTSI2SD), "x.pd, r32", "x.pd, m32"},
	    {M(CVTSS2SI), "r32, x.ps", "r32, m32.ps"},	 {M(CVTTSS2SI), "r32, x.ps", "r32, m32.ps"},
	    {M(CVTSD2SI), "r32, x.pd", "r32, m64.pd"},	 {M(CVTTSD2SI), "r32, x.pd", "r32, m64.pd"},
	};
	for (unsigned i = 0; i < COUNT(cv); i++) {
		op(cv[i].m, cv[i].rr, FP, 0);
		op(cv[i].m, cv[i].rm, FP | F_ALIGN, 0);
	}
	op(M(CVTSI2SS), "x.ps, r64", FP, 0);
	op(M(CVTSI2SS), "x.ps, m64", FP, 0);
	op(M(CVTSI2SD), "x.pd, r64", FP, 0);
	op(M(CVTSI2SD), "x.pd, m64", FP, 0);
	op(M(CVTSS2SI), "r64, x.ps", FP, 0);
	op(M(CVTSS2SI), "r64, m32.ps", FP, 0);
	op(M(CVTTSS2SI), "r64, x.ps", FP, 0);
	op(M(CVTTSS2SI), "r64, m32.ps", FP, 0);
	op(M(CVTSD2SI), "r64, x.pd", FP, 0);
	op(M(CVTSD2SI), "r64, m64.pd", FP, 0);
	op(M(CVTTSD2SI), "r64, x.pd", FP, 0);
	op(M(CVTTSD2SI), "r64, m64.pd", FP, 0);
	/* to and from MMX */
	op(M(CVTPI2PS), "x.ps, mm.d", FP | F_MMX, 0);
	op(M(CVTPI2PS), "x.ps, m64.d", FP | F_MMX, 0);
	op(M(CVTPS2PI), "mm, x.ps", FP | F_MMX, 0);
	op(M(CVTPS2PI), "mm, m64.ps", FP | F_MMX, 0);
	op(M(CVTTPS2PI), "mm, x.ps", FP | F_MMX, 0);
	op(M(CVTTPS2PI), "mm, m64.ps", FP | F_MMX, 0);
	op(M(CVTPI2PD), "x.pd, mm.d", FP | F_MMX, 0);
	op(M(CVTPI2PD), "x.pd, m64.d", FP | F_MMX, 0);
	op(M(CVTPD2PI), "mm, x.pd", FP | F_MMX, 0);
	op(M(CVTPD2PI), "mm, m128.pd", FP | F_MMX | F_ALIGN, 0);
	op(M(CVTTPD2PI), "mm, x.pd", FP | F_MMX, 0);
	op(M(CVTTPD2PI), "mm, m128.pd", FP | F_MMX | F_ALIGN, 0);
}

static void sse_moves(void)
{
	static const struct {
		ZydisMnemonic m;
		const char *e;
	} mv[] = {{M(MOVAPS), "ps"}, {M(MOVUPS), "ps"}, {M(MOVAPD), "pd"},
		  {M(MOVUPD), "pd"}, {M(MOVDQA), "q"},	{M(MOVDQU), "q"}};
	for (unsigned i = 0; i < COUNT(mv); i++) {
		char ops[40];
		snprintf(ops, sizeof(ops), "x.%s, x.%s", mv[i].e, mv[i].e);
		op(mv[i].m, ops, 0, 0);
		snprintf(ops, sizeof(ops), "x.%s, m128.%s", mv[i].e, mv[i].e);
		op(mv[i].m, ops, F_ALIGN, 0);
		snprintf(ops, sizeof(ops), "m128.%s, x.%s", mv[i].e, mv[i].e);
		op(mv[i].m, ops, F_ALIGN, 0);
	}
	op(M(MOVNTPS), "m128.ps, x.ps", F_ALIGN, 0);
	op(M(MOVNTPD), "m128.pd, x.pd", F_ALIGN, 0);
	op(M(MOVNTDQ), "m128.q, x.q", F_ALIGN, 0);
	op(M(MOVNTI), "m32, r32", 0, 0);
	op(M(MOVNTI), "m64, r64", 0, 0);
	op(M(MOVSS), "x.ps, x.ps", 0, 0);
	op(M(MOVSS), "x.ps, m32.ps", F_ALIGN, 0);
	op(M(MOVSS), "m32.ps, x.ps", F_ALIGN, 0);
	op(M(MOVSD), "x.pd, x.pd", 0, 0);
	op(M(MOVSD), "x.pd, m64.pd", F_ALIGN, 0);
	op(M(MOVSD), "m64.pd, x.pd", F_ALIGN, 0);
	op(M(MOVD), "x.d, r32", 0, 0);
	op(M(MOVD), "x.d, m32", 0, 0);
	op(M(MOVD), "r32, x.d", 0, 0);
	op(M(MOVD), "m32, x.d", 0, 0);
	op(M(MOVQ), "x.q, r64", 0, 0);
	op(M(MOVQ), "x.q, m64", F_ALIGN, 0);
	op(M(MOVQ), "r64, x.q", 0, 0);
	op(M(MOVQ), "m64, x.q", 0, 0);
	op(M(MOVQ), "x.q, x.q", 0, 0);
	op(M(MOVLPS), "x.ps, m64.ps", 0, 0);
	op(M(MOVLPS), "m64.ps, x.ps", 0, 0);
	op(M(MOVHPS), "x.ps, m64.ps", 0, 0);
	op(M(MOVHPS), "m64.ps, x.ps", 0, 0);
	op(M(MOVLPD), "x.pd, m64.pd", 0, 0);
	op(M(MOVLPD), "m64.pd, x.pd", 0, 0);
	op(M(MOVHPD), "x.pd, m64.pd", 0, 0);
	op(M(MOVHPD), "m64.pd, x.pd", 0, 0);
	op(M(MOVLHPS), "x.ps, x.ps", 0, 0);
	op(M(MOVHLPS), "x.ps, x.ps", 0, 0);
	op(M(MOVMSKPS), "r32, x.ps", 0, 0);
	op(M(MOVMSKPS), "r64, x.ps", 0, 0);
	op(M(MOVMSKPD), "r32, x.pd", 0, 0);
	op(M(PMOVMSKB), "r32, x.b", 0, 0);
	LIST(op(M(PEXTRW), "r32, x.w, u8", 0, 0), lanes);
	LIST(op(M(PINSRW), "x.w, r32, u8", 0, 0), lanes);
	LIST(op(M(PINSRW), "x.w, m16, u8", 0, 0), lanes);
	form_add(NULL, build_maskmov, M(MASKMOVDQU), 0, "x.b, x.b", 0, 0);
	form_add("ldmxcsr m32", build_ldmxcsr, M(LDMXCSR), 0, "", 0, 0);
	op(M(STMXCSR), "m32", FP, 0);
	op(M(LDDQU), "x.q, m128.q", F_ALIGN, FEAT_SSE3);
	op(M(MOVDDUP), "x.pd, x.pd", 0, FEAT_SSE3);
	op(M(MOVDDUP), "x.pd, m64.pd", F_ALIGN, FEAT_SSE3);
	packed(M(MOVSLDUP), "ps", 0, FEAT_SSE3);
	packed(M(MOVSHDUP), "ps", 0, FEAT_SSE3);
	op(M(MOVNTDQA), "x.q, m128.q", F_ALIGN, FEAT_SSE41);
}

static void sse_shuffle(void)
{
	IMM(M(SHUFPS), "ps", 128, shuf, 0, 0);
	IMM(M(SHUFPD), "pd", 128, shuf, 0, 0);
	packed(M(UNPCKLPS), "ps", 0, 0);
	packed(M(UNPCKHPS), "ps", 0, 0);
	packed(M(UNPCKLPD), "pd", 0, 0);
	packed(M(UNPCKHPD), "pd", 0, 0);
	IMM(M(PSHUFD), "d", 128, shuf, 0, 0);
	IMM(M(PSHUFLW), "w", 128, shuf, 0, 0);
	IMM(M(PSHUFHW), "w", 128, shuf, 0, 0);
	static const struct {
		ZydisMnemonic m;
		const char *e;
	} un[] = {{M(PUNPCKLBW), "b"}, {M(PUNPCKLWD), "w"}, {M(PUNPCKLDQ), "d"}, {M(PUNPCKLQDQ), "q"},
		  {M(PUNPCKHBW), "b"}, {M(PUNPCKHWD), "w"}, {M(PUNPCKHDQ), "d"}, {M(PUNPCKHQDQ), "q"},
		  {M(PACKSSWB), "w"},  {M(PACKSSDW), "d"},  {M(PACKUSWB), "w"}};
	for (unsigned i = 0; i < COUNT(un); i++)
		packed(un[i].m, un[i].e, 0, 0);
	packed(M(PACKUSDW), "d", 0, FEAT_SSE41);
	packed(M(PSHUFB), "b", 0, FEAT_SSSE3);
	IMM(M(PALIGNR), "b", 128, align_counts, 0, FEAT_SSSE3);
	IMM(M(PBLENDW), "w", 128, shuf, 0, FEAT_SSE41);
	packed(M(PBLENDVB), "b", 0, FEAT_SSE41);
	LIST(op(M(PEXTRB), "r32, x.b, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRB), "m8, x.b, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRW), "m16, x.w, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRD), "r32, x.d, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRD), "m32, x.d, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRQ), "r64, x.q, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PEXTRQ), "m64, x.q, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRB), "x.b, r32, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRB), "x.b, m8, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRD), "x.d, r32, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRD), "x.d, m32, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRQ), "x.q, r64, u8", 0, FEAT_SSE41), lanes);
	LIST(op(M(PINSRQ), "x.q, m64, u8", 0, FEAT_SSE41), lanes);
	static const struct {
		ZydisMnemonic m;
		const char *d, *s;
		unsigned bits;
	} pmov[] = {{M(PMOVSXBW), "w", "b", 64}, {M(PMOVSXBD), "d", "b", 32}, {M(PMOVSXBQ), "q", "b", 16},
		    {M(PMOVSXWD), "d", "w", 64}, {M(PMOVSXWQ), "q", "w", 32}, {M(PMOVSXDQ), "q", "d", 64},
		    {M(PMOVZXBW), "w", "b", 64}, {M(PMOVZXBD), "d", "b", 32}, {M(PMOVZXBQ), "q", "b", 16},
		    {M(PMOVZXWD), "d", "w", 64}, {M(PMOVZXWQ), "q", "w", 32}, {M(PMOVZXDQ), "q", "d", 64}};
	for (unsigned i = 0; i < COUNT(pmov); i++) {
		char ops[40];
		snprintf(ops, sizeof(ops), "x.%s, x.%s", pmov[i].d, pmov[i].s);
		op(pmov[i].m, ops, 0, FEAT_SSE41);
		snprintf(ops, sizeof(ops), "x.%s, m%u.%s", pmov[i].d, pmov[i].bits, pmov[i].s);
		op(pmov[i].m, ops, F_ALIGN, FEAT_SSE41);
	}
}

static void sse_integer(void)
{
	static const struct {
		ZydisMnemonic m;
		const char *e;
		uint8_t feat;
	} pi[] = {
	    {M(PADDB), "b", 0},
	    {M(PADDW), "w", 0},
	    {M(PADDD), "d", 0},
	    {M(PADDQ), "q", 0},
	    {M(PSUBB), "b", 0},
	    {M(PSUBW), "w", 0},
	    {M(PSUBD), "d", 0},
	    {M(PSUBQ), "q", 0},
	    {M(PADDSB), "b", 0},
	    {M(PADDSW), "w", 0},
	    {M(PADDUSB), "b", 0},
	    {M(PADDUSW), "w", 0},
	    {M(PSUBSB), "b", 0},
	    {M(PSUBSW), "w", 0},
	    {M(PSUBUSB), "b", 0},
	    {M(PSUBUSW), "w", 0},
	    {M(PMULLW), "w", 0},
	    {M(PMULHW), "w", 0},
	    {M(PMULHUW), "w", 0},
	    {M(PMULUDQ), "d", 0},
	    {M(PMADDWD), "w", 0},
	    {M(PCMPEQB), "b", 0},
	    {M(PCMPEQW), "w", 0},
	    {M(PCMPEQD), "d", 0},
	    {M(PCMPGTB), "b", 0},
	    {M(PCMPGTW), "w", 0},
	    {M(PCMPGTD), "d", 0},
	    {M(PMINUB), "b", 0},
	    {M(PMAXUB), "b", 0},
	    {M(PMINSW), "w", 0},
	    {M(PMAXSW), "w", 0},
	    {M(PAVGB), "b", 0},
	    {M(PAVGW), "w", 0},
	    {M(PSADBW), "b", 0},
	    {M(PAND), "q", 0},
	    {M(PANDN), "q", 0},
	    {M(POR), "q", 0},
	    {M(PXOR), "q", 0},
	    {M(PSLLW), "q", 0},
	    {M(PSLLD), "q", 0},
	    {M(PSLLQ), "q", 0},
	    {M(PSRLW), "q", 0},
	    {M(PSRLD), "q", 0},
	    {M(PSRLQ), "q", 0},
	    {M(PSRAW), "q", 0},
	    {M(PSRAD), "q", 0},
	    {M(PHADDW), "w", FEAT_SSSE3},
	    {M(PHADDD), "d", FEAT_SSSE3},
	    {M(PHADDSW), "w", FEAT_SSSE3},
	    {M(PHSUBW), "w", FEAT_SSSE3},
	    {M(PHSUBD), "d", FEAT_SSSE3},
	    {M(PHSUBSW), "w", FEAT_SSSE3},
	    {M(PMADDUBSW), "b", FEAT_SSSE3},
	    {M(PMULHRSW), "w", FEAT_SSSE3},
	    {M(PSIGNB), "b", FEAT_SSSE3},
	    {M(PSIGNW), "w", FEAT_SSSE3},
	    {M(PSIGND), "d", FEAT_SSSE3},
	    {M(PABSB), "b", FEAT_SSSE3},
	    {M(PABSW), "w", FEAT_SSSE3},
	    {M(PABSD), "d", FEAT_SSSE3},
	    {M(PCMPEQQ), "q", FEAT_SSE41},
	    {M(PMAXSB), "b", FEAT_SSE41},
	    {M(PMAXSD), "d", FEAT_SSE41},
	    {M(PMAXUW), "w", FEAT_SSE41},
	    {M(PMAXUD), "d", FEAT_SSE41},
	    {M(PMINSB), "b", FEAT_SSE41},
	    {M(PMINSD), "d", FEAT_SSE41},
	    {M(PMINUW), "w", FEAT_SSE41},
	    {M(PMINUD), "d", FEAT_SSE41},
	    {M(PMULDQ), "d", FEAT_SSE41},
	    {M(PMULLD), "d", FEAT_SSE41},
	    {M(PHMINPOSUW), "w", FEAT_SSE41},
	    {M(PTEST), "q", FEAT_SSE41},
	    {M(PCMPGTQ), "q", FEAT_SSE42},
	};
	for (unsigned i = 0; i < COUNT(pi); i++)
		packed(pi[i].m, pi[i].e, 0, pi[i].feat);
	static const ZydisMnemonic shi[] = {M(PSLLW), M(PSLLD), M(PSLLQ), M(PSRLW),  M(PSRLD),
					    M(PSRLQ), M(PSRAW), M(PSRAD), M(PSLLDQ), M(PSRLDQ)};
	for (unsigned i = 0; i < COUNT(shi); i++)
		op(shi[i], "x.q, c8", 0, 0);
	IMM(M(MPSADBW), "b", 128, mpsad, 0, FEAT_SSE41);
	for (unsigned i = 0; i < 128; i++)
		str_modes[i] = i;
	static const ZydisMnemonic str[] = {M(PCMPESTRI), M(PCMPESTRM), M(PCMPISTRI), M(PCMPISTRM)};
	for (unsigned i = 0; i < COUNT(str); i++)
		with_imm(str[i], "b", 128, str_modes, 128, i < 2 ? F_STRLEN : 0, FEAT_SSE42);
}

static void mmx(void)
{
	static const struct {
		ZydisMnemonic m;
		const char *e;
	} mi[] = {
	    {M(PADDB), "b"},	 {M(PADDW), "w"},    {M(PADDD), "d"},	 {M(PADDQ), "q"},     {M(PSUBB), "b"},
	    {M(PSUBW), "w"},	 {M(PSUBD), "d"},    {M(PSUBQ), "q"},	 {M(PADDSB), "b"},    {M(PADDUSW), "w"},
	    {M(PSUBSW), "w"},	 {M(PSUBUSB), "b"},  {M(PMULLW), "w"},	 {M(PMULHW), "w"},    {M(PMULHUW), "w"},
	    {M(PMULUDQ), "d"},	 {M(PMADDWD), "w"},  {M(PCMPEQB), "b"},	 {M(PCMPGTW), "w"},   {M(PCMPGTD), "d"},
	    {M(PACKSSWB), "w"},	 {M(PACKSSDW), "d"}, {M(PACKUSWB), "w"}, {M(PUNPCKLBW), "b"}, {M(PUNPCKHWD), "w"},
	    {M(PUNPCKLDQ), "d"}, {M(PAND), "q"},     {M(PANDN), "q"},	 {M(POR), "q"},	      {M(PXOR), "q"},
	    {M(PSLLW), "q"},	 {M(PSRLD), "q"},    {M(PSRAW), "q"},	 {M(PSRLQ), "q"},     {M(PAVGB), "b"},
	    {M(PMINUB), "b"},	 {M(PMAXSW), "w"},   {M(PSADBW), "b"},
	};
	for (unsigned i = 0; i < COUNT(mi); i++) {
		char ops[40];
		/* The low-half unpacks read only 32 bits of memory. */
		unsigned bits = mi[i].m == M(PUNPCKLBW) || mi[i].m == M(PUNPCKLDQ) ? 32 : 64;
		snprintf(ops, sizeof(ops), "mm.%s, mm.%s", mi[i].e, mi[i].e);
		op(mi[i].m, ops, F_MMX, 0);
		snprintf(ops, sizeof(ops), "mm.%s, m%u.%s", mi[i].e, bits, mi[i].e);
		op(mi[i].m, ops, F_MMX | F_ALIGN, 0);
	}
	op(M(PSLLQ), "mm.q, c8", F_MMX, 0);
	op(M(PSRAD), "mm.q, c8", F_MMX, 0);
	LIST(op(M(PSHUFW), "mm.w, mm.w, u8", F_MMX, 0), shuf);
	LIST(op(M(PEXTRW), "r32, mm.w, u8", F_MMX, 0), lanes);
	LIST(op(M(PINSRW), "mm.w, r32, u8", F_MMX, 0), lanes);
	op(M(PMOVMSKB), "r32, mm.b", F_MMX, 0);
	op(M(MOVD), "mm.d, r32", F_MMX, 0);
	op(M(MOVD), "r32, mm.d", F_MMX, 0);
	op(M(MOVQ), "mm.q, r64", F_MMX, 0);
	op(M(MOVQ), "m64, mm.q", F_MMX, 0);
	op(M(MOVQ), "mm.q, m64", F_MMX, 0);
	op(M(MOVQ), "mm.q, mm.q", F_MMX, 0);
	op(M(MOVQ2DQ), "x.q, mm.q", F_MMX, 0);
	op(M(MOVDQ2Q), "mm.q, x.q", F_MMX, 0);
	op(M(PSHUFB), "mm.b, mm.b", F_MMX, FEAT_SSSE3);
	op(M(PABSW), "mm.w, mm.w", F_MMX, FEAT_SSSE3);
	LIST(op(M(PALIGNR), "mm.b, mm.b, u8", F_MMX, FEAT_SSSE3), align_counts);
	op(M(EMMS), "", F_MMX, 0);
}

void forms_sse(void)
{
	sse_float();
	sse_convert();
	sse_moves();
	sse_shuffle();
	sse_integer();
	mmx();
}
