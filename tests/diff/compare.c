/*
 * Comparing an engine's result with the oracle's, field by field: the
 * outcome (end reached, or the exception vector with its error code and
 * fault address), every GPR, RIP, RFLAGS without the flags Zydis says the
 * instructions leave undefined, FCW, FSW without undefined condition
 * codes, the abridged tag, ST0-7 as 80-bit values, MXCSR, XMM0-15 and
 * every byte of the data and stack pages. A mismatch is printed with the
 * instructions (Zydis formatter) and the initial state.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "diff.h"

static const char *const gpr_names[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
					  "r8",	 "r9",	"r10", "r11", "r12", "r13", "r14", "r15"};

static void outcome(char *buf, size_t n, const struct diff_result *r)
{
	static const char *const names[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "9",
					      "#TS", "#NP", "#SS", "#GP", "#PF", "15",	"#MF", "#AC", "#MC", "#XM"};
	switch (r->status) {
	case DIFF_STOP: snprintf(buf, n, "end reached"); break;
	case DIFF_FAULT:
		snprintf(buf, n, "%s (vector %u, error code 0x%x) at 0x%" PRIx64,
			 names[r->vector & 31] ? names[r->vector & 31] : "?", r->vector, r->error_code, r->st.rip);
		if (r->vector == 14)
			snprintf(buf + strlen(buf), n - strlen(buf), ", address 0x%" PRIx64, r->fault_addr);
		break;
	case DIFF_CRASH: snprintf(buf, n, "engine crashed: %s", r->message); break;
	case DIFF_TIMEOUT: snprintf(buf, n, "engine timed out"); break;
	default: snprintf(buf, n, "engine error: %s", r->message); break;
	}
}

/* Instructions done when the state was taken: the index of RIP among them. */
static unsigned insns_done(const struct diff_case *c, uint64_t rip)
{
	for (unsigned k = 0; k <= c->ninsn; k++)
		if (rip == DIFF_CODE + c->insn_off[k])
			return k;
	return c->ninsn;
}

static void f80_text(char *buf, size_t n, const uint8_t *p)
{
	uint64_t m;
	uint16_t se;
	long double x;
	memcpy(&m, p, 8);
	memcpy(&se, p + 8, 2);
	memcpy(&x, p, 10);
	snprintf(buf, n, "%04x:%016" PRIx64 " (%.20Lg)", se, m, x);
}

static void hex(char *buf, size_t n, const uint8_t *p, unsigned len)
{
	size_t at = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < len && at + 4 < n; i++)
		at += (size_t)snprintf(buf + at, n - at, "%s%02x", i && i % 4 == 0 ? "_" : "", p[len - 1 - i]);
}

struct cmp {
	FILE *out;
	unsigned diffs;
	const char *oname, *name;
};

static void diff_u64(struct cmp *k, const char *field, uint64_t a, uint64_t b)
{
	if (a == b)
		return;
	k->diffs++;
	if (k->out)
		fprintf(k->out, "      %-8s %s 0x%016" PRIx64 "  %s 0x%016" PRIx64 "  (xor 0x%" PRIx64 ")\n", field,
			k->oname, a, k->name, b, a ^ b);
}

static void diff_bytes(struct cmp *k, const char *what, uint64_t base, const uint8_t *a, const uint8_t *b, unsigned len)
{
	for (unsigned i = 0; i < len;) {
		if (a[i] == b[i]) {
			i++;
			continue;
		}
		unsigned j = i;
		while (j < len && j - i < 16 && a[j] != b[j])
			j++;
		/* Print the differing run, rounded out to whole 8-byte words. */
		unsigned from = i & ~7u, to = (j + 7) & ~7u;
		if (to > len)
			to = len;
		k->diffs++;
		if (k->out) {
			char ha[64], hb[64];
			hex(ha, sizeof(ha), a + from, to - from);
			hex(hb, sizeof(hb), b + from, to - from);
			fprintf(k->out, "      %s[0x%" PRIx64 "] (%u bytes, little-endian) %s %s  %s %s\n", what,
				base + from, to - from, k->oname, ha, k->name, hb);
		}
		i = to > j ? to : j;
	}
}

unsigned diff_compare(const struct diff_case *c, const struct diff_result *o, const char *oname,
		      const struct diff_result *r, const char *name, FILE *out)
{
	struct cmp k = {.out = out, .oname = oname, .name = name};
	char a[256], b[256];

	if (o->status != r->status || (o->status == DIFF_FAULT && o->vector != r->vector) || o->status > DIFF_FAULT) {
		k.diffs++;
		if (out) {
			outcome(a, sizeof(a), o);
			outcome(b, sizeof(b), r);
			fprintf(out, "      outcome  %s: %s\n               %s: %s\n", oname, a, name, b);
		}
		if (o->status > DIFF_FAULT || r->status > DIFF_FAULT || o->st.rip != r->st.rip)
			return k.diffs;
	}
	if (o->status == DIFF_FAULT) {
		if (o->vector == 14) {
			diff_u64(&k, "cr2", o->fault_addr, r->fault_addr);
			diff_u64(&k, "#PF code", o->error_code & 0x1f, r->error_code & 0x1f);
		} else if (o->vector == 13 || o->vector == 17 || (o->vector >= 10 && o->vector <= 12)) {
			diff_u64(&k, "err code", o->error_code, r->error_code);
		}
	}

	unsigned done = insns_done(c, o->st.rip);
	for (int i = 0; i < 16; i++)
		diff_u64(&k, gpr_names[i], o->st.gpr[i], r->st.gpr[i]);
	diff_u64(&k, "rip", o->st.rip, r->st.rip);
	uint64_t fmask = DIFF_FLAGS_COMPARED & ~(uint64_t)c->flags_undef[done];
	diff_u64(&k, "rflags", o->st.rflags & fmask, r->st.rflags & fmask);

	const struct x86_fxsave *fo = &o->st.fpu, *fr = &r->st.fpu;
	uint16_t swmask = (uint16_t)~c->fsw_undef[done];
	diff_u64(&k, "fcw", fo->fcw, fr->fcw);
	diff_u64(&k, "fsw", fo->fsw & swmask, fr->fsw & swmask);
	diff_u64(&k, "ftw", fo->ftw, fr->ftw);
	diff_u64(&k, "mxcsr", fo->mxcsr, fr->mxcsr);
	for (int i = 0; i < 8; i++)
		if (memcmp(fo->st[i], fr->st[i], 10)) {
			k.diffs++;
			if (out) {
				f80_text(a, sizeof(a), fo->st[i]);
				f80_text(b, sizeof(b), fr->st[i]);
				fprintf(out, "      st%d      %s %s  %s %s\n", i, oname, a, name, b);
			}
		}
	for (int i = 0; i < 16; i++)
		if (memcmp(fo->xmm[i], fr->xmm[i], 16)) {
			k.diffs++;
			if (out) {
				hex(a, sizeof(a), fo->xmm[i], 16);
				hex(b, sizeof(b), fr->xmm[i], 16);
				fprintf(out, "      xmm%-5d %s %s  %s %s\n", i, oname, a, name, b);
			}
		}
	if (c->ignore_len) {
		uint8_t od[DIFF_PAGE], rd[DIFF_PAGE];
		memcpy(od, o->data, DIFF_PAGE);
		memcpy(rd, r->data, DIFF_PAGE);
		memset(od + c->ignore_off, 0, c->ignore_len);
		memset(rd + c->ignore_off, 0, c->ignore_len);
		diff_bytes(&k, "data", DIFF_DATA, od, rd, DIFF_PAGE);
	} else {
		diff_bytes(&k, "data", DIFF_DATA, o->data, r->data, DIFF_PAGE);
	}
	diff_bytes(&k, "stack", DIFF_STACK, o->stack, r->stack, DIFF_PAGE);
	return k.diffs;
}

/* ---- printing a case ---- */

static bool names_reg(const ZydisDecodedOperand *ops, unsigned n, ZydisRegisterClass cls, int id)
{
	for (unsigned i = 0; i < n; i++)
		if (ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(ops[i].reg.value) == cls &&
		    ZydisRegisterGetId(ops[i].reg.value) == id)
			return true;
	return false;
}

void diff_print_case(const struct diff_case *c, FILE *out)
{
	ZydisDecoder dec;
	ZydisFormatter fmt;
	ZydisDecodedInstruction in[DIFF_MAX_INSNS];
	ZydisDecodedOperand ops[DIFF_MAX_INSNS][ZYDIS_MAX_OPERAND_COUNT];
	bool ok[DIFF_MAX_INSNS] = {0};
	bool x87 = false;
	char text[128], a[128];

	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL);
	fprintf(out, "    case %u:", c->index);
	for (unsigned k = 0; k < c->ninsn; k++) {
		unsigned off = c->insn_off[k], len = c->insn_off[k + 1] - off;
		ok[k] = ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, c->code + off, len, &in[k], ops[k]));
		if (ok[k]) {
			ZydisFormatterFormatInstruction(&fmt, &in[k], ops[k], in[k].operand_count_visible, text,
							sizeof(text), DIFF_CODE + off, NULL);
			x87 |= in[k].meta.isa_ext == ZYDIS_ISA_EXT_X87 || in[k].meta.isa_ext == ZYDIS_ISA_EXT_MMX;
		} else {
			snprintf(text, sizeof(text), "(not valid in 64-bit mode)");
		}
		fprintf(out, "%s %s [", k ? ";" : "", text);
		for (unsigned i = 0; i < len; i++)
			fprintf(out, "%s%02x", i ? " " : "", c->code[off + i]);
		fprintf(out, "]");
	}
	fprintf(out, "\n    initial state:\n");
	for (int i = 0; i < 16; i++)
		fprintf(out, "%s%-3s 0x%016" PRIx64, i % 4 == 0 ? "      " : "  ", gpr_names[i], c->init.gpr[i]);
	fprintf(out, "\n      rflags 0x%" PRIx64 "  mxcsr 0x%04x  fcw 0x%04x  fsw 0x%04x  ftw 0x%02x\n", c->init.rflags,
		c->init.fpu.mxcsr, c->init.fpu.fcw, c->init.fpu.fsw, c->init.fpu.ftw);
	if (x87)
		for (int i = 0; i < 8; i++) {
			f80_text(a, sizeof(a), c->init.fpu.st[i]);
			fprintf(out, "      st%d %s\n", i, a);
		}
	for (int x = 0; x < 16; x++) {
		bool named = false;
		for (unsigned k = 0; k < c->ninsn; k++)
			named |= ok[k] && names_reg(ops[k], in[k].operand_count, ZYDIS_REGCLASS_XMM, x);
		if (named) {
			hex(a, sizeof(a), c->init.fpu.xmm[x], 16);
			fprintf(out, "      xmm%d %s\n", x, a);
		}
	}
	/* The memory the instructions name, from the initial registers. */
	ZydisRegisterContext ctx;
	memset(&ctx, 0, sizeof(ctx));
	for (int i = 0; i < 16; i++)
		ctx.values[ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, (ZyanU8)i)] = c->init.gpr[i];
	for (unsigned k = 0; k < c->ninsn; k++) {
		if (!ok[k])
			continue;
		for (unsigned i = 0; i < in[k].operand_count; i++) {
			const ZydisDecodedOperand *o = &ops[k][i];
			ZyanU64 ea;
			if (o->type != ZYDIS_OPERAND_TYPE_MEMORY || o->mem.type != ZYDIS_MEMOP_TYPE_MEM)
				continue;
			ctx.values[ZYDIS_REGISTER_RIP] = DIFF_CODE + c->insn_off[k + 1];
			if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddressEx(&in[k], o, DIFF_CODE + c->insn_off[k], &ctx, &ea)))
				continue;
			unsigned size = o->size / 8 ? o->size / 8 : 1;
			if (size > 16)
				size = 16;
			if (ea >= DIFF_DATA && ea + size <= DIFF_DATA + DIFF_PAGE) {
				hex(a, sizeof(a), c->data + (ea - DIFF_DATA), size);
				fprintf(out, "      [0x%" PRIx64 "] %s\n", (uint64_t)ea, a);
			} else if (ea >= DIFF_STACK && ea + size <= DIFF_STACK + DIFF_PAGE) {
				hex(a, sizeof(a), c->stack + (ea - DIFF_STACK), size);
				fprintf(out, "      [0x%" PRIx64 "] %s\n", (uint64_t)ea, a);
			} else {
				fprintf(out, "      [0x%" PRIx64 "] (outside the data and stack pages)\n",
					(uint64_t)ea);
			}
		}
	}
}
