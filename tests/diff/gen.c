/*
 * Case generation: the form table, the value-space machinery (dimensions,
 * enumeration and covering samples), register and memory allocation, and
 * encoding through the Zydis encoder. See gen.h for the model.
 */
#include <cpuid.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

static struct form *forms;
static unsigned nforms, forms_cap;
static struct diff_gen_options opts;
static struct diff_cpuid cpuid;
static struct diff_form_info *infos;

/* ---- randomness: xorshift, seeded per case ---- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
	return h;
}

uint64_t rnd(struct gen *g)
{
	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 7;
	g->rng ^= g->rng << 17;
	return g->rng;
}

void fail(struct gen *g, const char *fmt, ...)
{
	va_list ap;
	if (g->failed)
		return;
	g->failed = true;
	va_start(ap, fmt);
	vsnprintf(g->err, sizeof(g->err), fmt, ap);
	va_end(ap);
}

/* ---- dimensions ---- */

unsigned pick(struct gen *g, unsigned n)
{
	if (n == 0) {
		fail(g, "empty value list");
		return 0;
	}
	if (g->ndims >= MAX_DIMS) {
		fail(g, "too many dimensions");
		return 0;
	}
	unsigned d = g->ndims++;
	if (g->probe) {
		g->dims[d] = (uint16_t)n;
		return (unsigned)(rnd(g) % n);
	}
	if (g->f->dims[d] != n)
		fail(g, "dimension %u changed size (%u, was %u)", d, n, g->f->dims[d]);
	return g->idx[d] % n;
}

uint64_t pick_from(struct gen *g, unsigned n, const uint64_t *v)
{
	return v[pick(g, n)];
}

uint64_t pick_int(struct gen *g, unsigned bits)
{
	const uint64_t *v;
	unsigned n = int_vals(bits, &v);
	return pick_from(g, n, v);
}

/* ---- registers ---- */

void reserve_gpr(struct gen *g, int id)
{
	g->gpr_used |= (uint16_t)(1u << id);
}

int alloc_gpr(struct gen *g)
{
	uint16_t free = (uint16_t) ~(g->gpr_used | (1u << RSP));
	if (!free) {
		fail(g, "out of registers");
		return RAX;
	}
	unsigned n = (unsigned)__builtin_popcount(free), k = (unsigned)(rnd(g) % n);
	for (int id = 0; id < 16; id++)
		if ((free >> id & 1) && k-- == 0) {
			reserve_gpr(g, id);
			return id;
		}
	return RAX;
}

int alloc_xmm(struct gen *g)
{
	uint16_t free = (uint16_t)~g->xmm_used;
	unsigned n = (unsigned)__builtin_popcount(free), k = (unsigned)(rnd(g) % n);
	for (int id = 0; id < 16; id++)
		if ((free >> id & 1) && k-- == 0) {
			g->xmm_used |= (uint16_t)(1u << id);
			return id;
		}
	return 0;
}

int alloc_mm(struct gen *g)
{
	uint8_t free = (uint8_t)~g->mm_used;
	unsigned n = (unsigned)__builtin_popcount(free), k = (unsigned)(rnd(g) % n);
	for (int id = 0; id < 8; id++)
		if ((free >> id & 1) && k-- == 0) {
			g->mm_used |= (uint8_t)(1u << id);
			return id;
		}
	return 0;
}

ZydisRegister gpr_name(int id, unsigned bits)
{
	switch (bits) {
	case 8: return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR8, (ZyanU8)(id < 4 ? id : id + 4));
	case 16: return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR16, (ZyanU8)id);
	case 32: return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR32, (ZyanU8)id);
	default: return ZydisRegisterEncode(ZYDIS_REGCLASS_GPR64, (ZyanU8)id);
	}
}

/* The 64-bit register a GPR lives in and the bit where it starts (8 for AH..BH). */
static int gpr_id(ZydisRegister r, unsigned *shift)
{
	*shift = 0;
	if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH) {
		*shift = 8;
		return r - ZYDIS_REGISTER_AH;
	}
	ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
	if (ZydisRegisterGetClass(big) != ZYDIS_REGCLASS_GPR64)
		return -1;
	return ZydisRegisterGetId(big);
}

static void set_gpr_at(struct gen *g, int id, unsigned shift, unsigned bits, uint64_t v)
{
	uint64_t mask = bits == 64 ? ~0ull : ((1ull << bits) - 1) << shift;
	uint64_t *r = &g->c->init.gpr[id];
	*r = (*r & ~mask) | ((v << shift) & mask);
}

void set_gpr(struct gen *g, int id, unsigned bits, uint64_t v)
{
	set_gpr_at(g, id, 0, bits, v);
}

static void set_reg(struct gen *g, ZydisRegister r, uint64_t v)
{
	unsigned shift;
	int id = gpr_id(r, &shift);
	if (id >= 0)
		set_gpr_at(g, id, shift, ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, r), v);
}

/* ---- values into registers and memory ---- */

static unsigned elem_size(unsigned e)
{
	switch (e) {
	case E_I8: return 1;
	case E_I16: return 2;
	case E_I32:
	case E_F32: return 4;
	default: return 8;
	}
}

static unsigned elem_vals(unsigned e, const uint64_t **v)
{
	switch (e) {
	case E_F32: return f32_vals(v);
	case E_F64: return f64_vals(v);
	default: return int_vals(elem_size(e) * 8, v);
	}
}

void fill_lanes(struct gen *g, uint8_t *dst, unsigned bytes, unsigned elem)
{
	const uint64_t *v;
	unsigned n = elem_vals(elem, &v), es = elem_size(elem);
	unsigned first = pick(g, n);
	for (unsigned off = 0; off < bytes; off += es) {
		uint64_t x = off == 0 ? v[first] : v[rnd(g) % n];
		memcpy(dst + off, &x, es < bytes - off ? es : bytes - off);
	}
}

int mem_place(struct gen *g, unsigned size, unsigned align)
{
	int span = 0x700 - (int)size;
	int off = (int)(rnd(g) % (uint64_t)(2 * span)) - span;
	return off & -(int)align;
}

/* Writes bytes at DIFF_BASE + off, clipped to the data page. */
static void put_data(struct gen *g, int off, const void *src, unsigned len)
{
	for (unsigned i = 0; i < len; i++) {
		int at = (int)DIFF_PAGE / 2 + off + (int)i;
		if (at >= 0 && at < (int)DIFF_PAGE)
			g->c->data[at] = ((const uint8_t *)src)[i];
	}
}

ZydisEncoderOperand mem_at(struct gen *g, int off, unsigned size)
{
	ZydisEncoderOperand o = {.type = ZYDIS_OPERAND_TYPE_MEMORY};
	uint64_t target = DIFF_BASE + (uint64_t)(int64_t)off;
	static const uint8_t scales[4] = {1, 2, 4, 8};
	o.mem.size = (ZyanU16)size;
	switch (rnd(g) % 8) {
	case 0:
	case 1:
	case 2: { /* [base + disp] */
		int b = alloc_gpr(g);
		set_gpr(g, b, 64, DIFF_BASE);
		o.mem.base = gpr_name(b, 64);
		o.mem.displacement = off;
		break;
	}
	case 3:
	case 4: { /* [base + index * scale + disp] */
		int b = alloc_gpr(g), x = alloc_gpr(g);
		uint8_t s = scales[rnd(g) % 4];
		int64_t k = (int64_t)(rnd(g) % 32) - 8;
		set_gpr(g, b, 64, DIFF_BASE);
		set_gpr(g, x, 64, (uint64_t)k);
		o.mem.base = gpr_name(b, 64);
		o.mem.index = gpr_name(x, 64);
		o.mem.scale = s;
		o.mem.displacement = off - k * s;
		break;
	}
	case 5: /* [rip + disp32] */
		o.mem.base = ZYDIS_REGISTER_RIP;
		o.mem.displacement = (int64_t)target;
		break;
	case 6: /* [disp32] */ o.mem.displacement = (int64_t)target; break;
	default: { /* [index * scale + disp32] */
		int x = alloc_gpr(g);
		uint8_t s = scales[rnd(g) % 4];
		uint64_t k = target / s - (rnd(g) % 64);
		set_gpr(g, x, 64, k);
		o.mem.index = gpr_name(x, 64);
		o.mem.scale = s;
		o.mem.displacement = (int64_t)(target - k * s);
		break;
	}
	}
	return o;
}

/* ---- encoding ---- */

ZydisEncoderOperand op_reg(ZydisRegister r)
{
	return (ZydisEncoderOperand){.type = ZYDIS_OPERAND_TYPE_REGISTER, .reg.value = r};
}

ZydisEncoderOperand op_imm(int64_t v)
{
	return (ZydisEncoderOperand){.type = ZYDIS_OPERAND_TYPE_IMMEDIATE, .imm.s = v};
}

ZydisEncoderRequest req(ZydisMnemonic m, unsigned nops, ...)
{
	ZydisEncoderRequest r;
	va_list ap;
	memset(&r, 0, sizeof(r));
	r.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	r.mnemonic = m;
	r.operand_count = (ZyanU8)nops;
	va_start(ap, nops);
	for (unsigned i = 0; i < nops; i++)
		r.operands[i] = va_arg(ap, ZydisEncoderOperand);
	va_end(ap);
	return r;
}

void emit(struct gen *g, ZydisEncoderRequest *r)
{
	struct diff_case *c = g->c;
	uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
	ZyanUSize len = sizeof(buf);
	int rip_op = -1;
	int64_t target = 0;

	if (g->failed)
		return;
	if (!r->machine_mode)
		r->machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	for (int i = 0; i < r->operand_count; i++)
		if (r->operands[i].type == ZYDIS_OPERAND_TYPE_MEMORY && r->operands[i].mem.base == ZYDIS_REGISTER_RIP) {
			rip_op = i;
			target = r->operands[i].mem.displacement;
			r->operands[i].mem.displacement = 0;
		}
	ZyanStatus st = ZydisEncoderEncodeInstruction(r, buf, &len);
	if (ZYAN_SUCCESS(st) && rip_op >= 0) {
		ZyanUSize first = len;
		r->operands[rip_op].mem.displacement = target - (int64_t)(DIFF_CODE + c->code_len + len);
		len = sizeof(buf);
		st = ZydisEncoderEncodeInstruction(r, buf, &len);
		if (ZYAN_SUCCESS(st) && len != first)
			st = ZYAN_STATUS_FAILED;
	}
	if (!ZYAN_SUCCESS(st)) {
		fail(g, "the encoder refuses %s (%d operands)", ZydisMnemonicGetString(r->mnemonic), r->operand_count);
		return;
	}
	if (g->ninsn >= DIFF_MAX_INSNS || c->code_len + len > DIFF_CODE_MAX) {
		fail(g, "case too long");
		return;
	}
	memcpy(c->code + c->code_len, buf, len);
	c->insn_off[g->ninsn++] = c->code_len;
	c->code_len = (uint8_t)(c->code_len + len);
}

/* ---- x87 and flags ---- */

void x87_setup(struct gen *g)
{
	struct x86_fxsave *fx = &g->c->init.fpu;
	const uint64_t *v;
	const uint8_t(*f80)[10];
	unsigned n, depth, a, b, top = (unsigned)(rnd(g) & 7);

	n = fcw_vals(&v);
	fx->fcw = (uint16_t)pick_from(g, n, v);
	n = x87_depth_vals(&v);
	depth = (unsigned)pick_from(g, n, v);
	n = f80_vals(&f80);
	a = pick(g, n);
	b = pick(g, n);
	fx->ftw = 0;
	for (unsigned j = 0; j < 8; j++) {
		memset(fx->st[j], 0, 16);
		memcpy(fx->st[j], f80[rnd(g) % n], 10);
		if (j < depth)
			fx->ftw |= (uint8_t)(1u << ((top + j) & 7));
	}
	memcpy(fx->st[0], f80[a], 10);
	memcpy(fx->st[g->sti], f80[b], 10);
	fx->fsw = (uint16_t)((top << 11) | (rnd(g) & 0x4700));
}

static void mmx_setup(struct gen *g)
{
	struct x86_fxsave *fx = &g->c->init.fpu;
	unsigned top = (unsigned)(rnd(g) & 7);
	fx->fsw = (uint16_t)(top << 11);
	fx->ftw = (uint8_t)rnd(g);
	for (unsigned j = 0; j < 8; j++) {
		uint64_t m = rnd(g);
		uint16_t e = (rnd(g) & 1) ? 0xffff : (uint16_t)rnd(g);
		memset(fx->st[j], 0, 16);
		memcpy(fx->st[j], &m, 8);
		memcpy(fx->st[j] + 8, &e, 2);
	}
}

static uint8_t *mm_slot(struct gen *g, int mm)
{
	unsigned top = g->c->init.fpu.fsw >> 11 & 7;
	return g->c->init.fpu.st[(unsigned)(mm - (int)top) & 7];
}

void flags_setup(struct gen *g, uint32_t tested)
{
	uint64_t fl = rnd(g) & DIFF_FLAGS_ARITH;
	uint32_t t = tested & DIFF_FLAGS_COMPARED;
	if (t) {
		unsigned s = pick(g, 1u << __builtin_popcount(t));
		fl &= ~(uint64_t)t;
		for (unsigned bit = 0; bit < 32; bit++)
			if (t >> bit & 1) {
				fl |= (uint64_t)(s & 1) << bit;
				s >>= 1;
			}
	}
	g->c->init.rflags = fl | 0x202;
}

/* ---- the generic builder ---- */

static uint64_t value_of(struct gen *g, const struct form *f, const struct opnd *o)
{
	const uint64_t *v;
	unsigned n;
	switch (o->vals) {
	case V_SHIFT: n = shift_vals(&v); break;
	case V_BITOFF: n = bitoff_vals(&v); break;
	case V_LIST: return (uint64_t)f->list[pick(g, f->nlist)];
	case V_ANY: return rnd(g);
	default: n = o->kind == O_IMM ? imm_vals(o->bits, &v) : int_vals(o->bits, &v); break;
	}
	return pick_from(g, n, v);
}

static ZydisEncoderOperand gen_mem(struct gen *g, const struct form *f, const struct opnd *o)
{
	unsigned size = o->bits / 8, align = size >= 16 ? 16 : size == 10 ? 2 : size ? size : 1;
	int off = mem_place(g, size, align);
	uint8_t bytes[16] = {0};

	if (f->flags & F_ALIGN) {
		switch (pick(g, 4)) {
		case 1: off += 1; break;
		case 2: off += (int)(size / 2 ? size / 2 : 1); break;
		case 3: off = (int)DIFF_PAGE / 2 - (int)(size + 1) / 2; break; /* crosses into the guard page */
		default: break;
		}
	}
	if (size > sizeof(bytes)) /* state images: the random background will do */
		return mem_at(g, off, size);
	switch (o->vals) {
	case V_LANES: fill_lanes(g, bytes, size, o->elem); break;
	case V_F80: {
		const uint8_t(*f80)[10];
		unsigned n = f80_vals(&f80);
		memcpy(bytes, f80[pick(g, n)], 10);
		break;
	}
	case V_ANY:
		for (unsigned i = 0; i < size; i += 8) {
			uint64_t x = rnd(g);
			memcpy(bytes + i, &x, size - i < 8 ? size - i : 8);
		}
		break;
	default: {
		uint64_t x = value_of(g, f, o);
		memcpy(bytes, &x, size < 8 ? size : 8);
		break;
	}
	}
	put_data(g, off, bytes, size);
	return mem_at(g, off, size);
}

static ZydisEncoderOperand gen_operand(struct gen *g, const struct form *f, const struct opnd *o)
{
	switch (o->kind) {
	case O_GPR: {
		int id = alloc_gpr(g);
		bool hi = o->bits == 8 && id < 4 && rnd(g) % 3 == 0;
		set_gpr_at(g, id, hi ? 8 : 0, o->bits, value_of(g, f, o));
		return op_reg(hi ? (ZydisRegister)(ZYDIS_REGISTER_AH + id) : gpr_name(id, o->bits));
	}
	case O_FIXED: {
		unsigned shift;
		if (gpr_id(o->fixed, &shift) >= 0) /* not CR0, CS, ... */
			set_reg(g, o->fixed, value_of(g, f, o));
		return op_reg(o->fixed);
	}
	case O_CL: {
		const uint64_t *v;
		unsigned n = shift_vals(&v);
		set_gpr(g, RCX, 8, pick_from(g, n, v));
		return op_reg(ZYDIS_REGISTER_CL);
	}
	case O_MEM: return gen_mem(g, f, o);
	case O_IMM: return op_imm((int64_t)value_of(g, f, o));
	case O_XMM: {
		int x = alloc_xmm(g);
		fill_lanes(g, g->c->init.fpu.xmm[x], 16, o->elem);
		return op_reg((ZydisRegister)(ZYDIS_REGISTER_XMM0 + x));
	}
	case O_MM: {
		int m = alloc_mm(g);
		fill_lanes(g, mm_slot(g, m), 8, o->elem);
		return op_reg((ZydisRegister)(ZYDIS_REGISTER_MM0 + m));
	}
	case O_ST0: return op_reg(ZYDIS_REGISTER_ST0);
	case O_STI: return op_reg((ZydisRegister)(ZYDIS_REGISTER_ST0 + g->sti));
	default: fail(g, "bad operand kind"); return op_reg(ZYDIS_REGISTER_NONE);
	}
}

/* Values for the registers the instruction reads without naming them. */
static void hidden_values(struct gen *g, const struct form *f)
{
	for (int id = 0; id < 16; id++) {
		if (!(f->hidden_read >> id & 1))
			continue;
		unsigned bits = f->hidden_bits[id];
		const uint64_t *v;
		unsigned n;
		if ((f->flags & F_STRLEN) && (id == RAX || id == RDX)) {
			n = strlen_vals(&v);
			set_gpr(g, id, 64, pick_from(g, n, v));
		} else if ((f->flags & F_DIV) && id == RDX) {
			n = divhigh_vals(&v);
			set_gpr(g, id, bits, pick_from(g, n, v));
		} else if ((f->flags & F_DIV) && id == RAX && bits == 16) { /* AX / r8: AH is the high half */
			n = divhigh_vals(&v);
			uint64_t hi = pick_from(g, n, v);
			set_gpr(g, id, 16, (hi & 0xff) << 8 | (pick_int(g, 8) & 0xff));
		} else {
			set_gpr(g, id, bits, pick_int(g, bits));
		}
	}
}

void build_generic(struct gen *g, const struct form *f)
{
	ZydisEncoderRequest r = req(f->mnem, 0);
	if (f->flags & F_MMX)
		mmx_setup(g);
	r.prefixes = f->prefixes;
	r.operand_count = f->nops;
	if (f->mode)
		r.machine_mode = f->mode;
	for (unsigned i = 0; i < f->nops; i++)
		if (f->op[i].kind == O_STI)
			g->sti = 1 + (int)(rnd(g) % 7);
	for (unsigned i = 0; i < f->nops; i++)
		r.operands[i] = gen_operand(g, f, &f->op[i]);
	hidden_values(g, f);
	if (f->flags & F_X87)
		x87_setup(g);
	if (f->flags & F_MXCSR) {
		const uint64_t *v;
		unsigned n = mxcsr_vals(&v);
		g->c->init.fpu.mxcsr = (uint32_t)pick_from(g, n, v);
	}
	flags_setup(g, f->tested);
	emit(g, &r);
	if (f->flags & F_FWAIT) {
		ZydisEncoderRequest w = req(ZYDIS_MNEMONIC_FWAIT, 0);
		emit(g, &w);
	}
}

/* ---- the form table ---- */

static const struct {
	const char *tok;
	uint8_t elem;
} elems[] = {{"ps", E_F32}, {"pd", E_F64}, {"b", E_I8}, {"w", E_I16}, {"d", E_I32}, {"q", E_I64}};

static bool parse_elem(const char *s, uint8_t *e)
{
	for (unsigned i = 0; i < sizeof(elems) / sizeof(elems[0]); i++)
		if (!strcmp(s, elems[i].tok)) {
			*e = elems[i].elem;
			return true;
		}
	return false;
}

static ZydisRegister reg_by_name(const char *s)
{
	for (int r = ZYDIS_REGISTER_NONE + 1; r <= ZYDIS_REGISTER_MAX_VALUE; r++) {
		const char *n = ZydisRegisterGetString((ZydisRegister)r);
		if (n && !strcmp(n, s))
			return (ZydisRegister)r;
	}
	return ZYDIS_REGISTER_NONE;
}

static bool parse_op(struct opnd *o, const char *t)
{
	char tok[16];
	const char *dot = strchr(t, '.');
	unsigned bits = 0;
	memset(o, 0, sizeof(*o));
	snprintf(tok, sizeof(tok), "%.*s", dot ? (int)(dot - t) : (int)strlen(t), t);
	if (dot && !parse_elem(dot + 1, &o->elem))
		return false;
	if (!strcmp(tok, "cl")) {
		o->kind = O_CL;
		o->bits = 8;
		return true;
	}
	if (!strcmp(tok, "st0") || !strcmp(tok, "sti")) {
		o->kind = tok[2] == '0' ? O_ST0 : O_STI;
		return true;
	}
	if (!strcmp(tok, "x") || !strcmp(tok, "mm")) {
		o->kind = tok[0] == 'x' ? O_XMM : O_MM;
		o->vals = V_LANES;
		if (!o->elem)
			o->elem = E_I64;
		return true;
	}
	if (!strcmp(tok, "u8") || !strcmp(tok, "c8")) {
		o->kind = O_IMM;
		o->bits = 8;
		o->vals = tok[0] == 'u' ? V_LIST : V_SHIFT;
		return true;
	}
	if (sscanf(tok + 1, "%u", &bits) == 1 && (tok[0] == 'r' || tok[0] == 'm' || tok[0] == 'i' || tok[0] == 'o')) {
		o->bits = (uint16_t)bits;
		switch (tok[0]) {
		case 'r':
			o->kind = O_GPR;
			o->vals = V_INT;
			break;
		case 'o':
			o->kind = O_GPR;
			o->vals = V_BITOFF;
			break;
		case 'i':
			o->kind = O_IMM;
			o->vals = V_INT;
			break;
		default:
			o->kind = O_MEM;
			o->vals = o->elem ? V_LANES : bits == 80 ? V_F80 : bits > 64 ? V_ANY : V_INT;
			break;
		}
		return true;
	}
	o->fixed = reg_by_name(tok);
	if (o->fixed == ZYDIS_REGISTER_NONE)
		return false;
	o->kind = O_FIXED;
	o->bits = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, o->fixed);
	o->vals = V_INT;
	return true;
}

bool parse_ops(struct form *f, const char *ops)
{
	char buf[96];
	f->nops = 0;
	if (!ops || !*ops)
		return true;
	snprintf(buf, sizeof(buf), "%s", ops);
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (f->nops >= 4 || !parse_op(&f->op[f->nops], t))
			return false;
		f->nops++;
	}
	return true;
}

/* "x.ps" -> "xmm", "c8" -> "imm8": the operand as a manual writes it. */
static void display_op(char *out, size_t n, const struct opnd *o, const char *tok)
{
	switch (o->kind) {
	case O_XMM: snprintf(out, n, "xmm"); break;
	case O_MM: snprintf(out, n, "mm"); break;
	case O_STI: snprintf(out, n, "st(i)"); break;
	case O_IMM: snprintf(out, n, "imm%u", o->bits); break;
	case O_GPR: snprintf(out, n, "r%u", o->bits); break;
	case O_MEM: snprintf(out, n, "m%u", o->bits); break;
	default: snprintf(out, n, "%s", tok); break;
	}
}

static void auto_name(struct form *f, const char *ops)
{
	char buf[96], *p = f->name, *end = f->name + sizeof(f->name);
	char m[32];
	snprintf(m, sizeof(m), "%s", ZydisMnemonicGetString(f->mnem));
	if (f->prefixes & ZYDIS_ATTRIB_HAS_LOCK)
		p += snprintf(p, (size_t)(end - p), "lock ");
	if (f->prefixes & ZYDIS_ATTRIB_HAS_REP)
		p += snprintf(p, (size_t)(end - p), "rep ");
	if (f->prefixes & ZYDIS_ATTRIB_HAS_REPE)
		p += snprintf(p, (size_t)(end - p), "repe ");
	if (f->prefixes & ZYDIS_ATTRIB_HAS_REPNE)
		p += snprintf(p, (size_t)(end - p), "repne ");
	p += snprintf(p, (size_t)(end - p), "%s", m);
	if (!ops || !*ops)
		return;
	snprintf(buf, sizeof(buf), "%s", ops);
	unsigned i = 0;
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t && p < end; t = strtok_r(NULL, ", ", &save), i++) {
		char d[16];
		display_op(d, sizeof(d), &f->op[i], t);
		p += snprintf(p, (size_t)(end - p), "%s%s", i ? ", " : " ", d);
	}
}

struct form *form_add(const char *name, form_builder build, ZydisMnemonic m, uint32_t prefixes, const char *ops,
		      uint32_t flags, uint8_t feature)
{
	if (nforms == forms_cap) {
		forms_cap = forms_cap ? 2 * forms_cap : 1024;
		forms = realloc(forms, forms_cap * sizeof(*forms));
		if (!forms) {
			perror("realloc");
			exit(1);
		}
	}
	struct form *f = &forms[nforms++];
	memset(f, 0, sizeof(*f));
	f->build = build ? build : build_generic;
	f->mnem = m;
	f->prefixes = prefixes;
	f->flags = flags;
	f->feature = feature;
	if (!parse_ops(f, ops)) {
		fprintf(stderr, "diff: bad operand list \"%s\"\n", ops);
		exit(1);
	}
	if (name)
		snprintf(f->name, sizeof(f->name), "%s", name);
	else
		auto_name(f, ops);
	return f;
}

/* ---- features ---- */

static bool feature_ok(uint8_t feat, const struct diff_cpuid *c, const char **why)
{
	static const struct {
		const char *name;
		uint8_t leaf; /* 0: 1.ECX, 1: 7.EBX, 2: 0x80000001.ECX */
		uint8_t bit;
	} t[FEAT_COUNT] = {
	    [FEAT_SSE3] = {"SSE3", 0, 0},      [FEAT_SSSE3] = {"SSSE3", 0, 9},	    [FEAT_SSE41] = {"SSE4.1", 0, 19},
	    [FEAT_SSE42] = {"SSE4.2", 0, 20},  [FEAT_POPCNT] = {"POPCNT", 0, 23},   [FEAT_LZCNT] = {"LZCNT", 2, 5},
	    [FEAT_BMI1] = {"BMI1", 1, 3},      [FEAT_CX16] = {"CMPXCHG16B", 0, 13}, [FEAT_MOVBE] = {"MOVBE", 0, 22},
	    [FEAT_LAHF] = {"LAHF-SAHF", 2, 0},
	};
	static char msg[FEAT_COUNT][64];
	if (feat == FEAT_NONE)
		return true;
	uint32_t vals[3] = {c->ecx1, c->ebx7, c->ecx81};
	unsigned a, b, cc, d;
	uint32_t host[3] = {0, 0, 0};
	__cpuid_count(1, 0, a, b, cc, d);
	host[0] = cc;
	__cpuid_count(7, 0, a, b, cc, d);
	host[1] = b;
	__cpuid_count(0x80000001, 0, a, b, cc, d);
	host[2] = cc;
	if (!(vals[t[feat].leaf] >> t[feat].bit & 1)) {
		snprintf(msg[feat], sizeof(msg[feat]), "the interpreter's CPUID does not advertise %s", t[feat].name);
		*why = msg[feat];
		return false;
	}
	if (!(host[t[feat].leaf] >> t[feat].bit & 1)) {
		snprintf(msg[feat], sizeof(msg[feat]), "the host has no %s", t[feat].name);
		*why = msg[feat];
		return false;
	}
	return true;
}

/* ---- making cases ---- */

static void background(struct gen *g, struct diff_case *c, unsigned form, uint32_t k)
{
	memset(c, 0, sizeof(*c));
	c->form = form;
	c->index = k;
	for (int i = 0; i < 16; i++)
		c->init.gpr[i] = rnd(g);
	c->init.gpr[RSP] = DIFF_RSP;
	c->init.rflags = 0x202 | (rnd(g) & DIFF_FLAGS_ARITH);
	c->init.fpu.fcw = 0x37f;
	c->init.fpu.mxcsr = 0x1f80;
	const uint8_t(*f80)[10];
	unsigned n80 = f80_vals(&f80);
	for (int i = 0; i < 8; i++)
		memcpy(c->init.fpu.st[i], f80[rnd(g) % n80], 10);
	for (int i = 0; i < 16; i++) {
		static const uint8_t kinds[] = {E_F32, E_F64, E_I8, E_I16, E_I32, E_I64};
		unsigned e = kinds[rnd(g) % 6];
		const uint64_t *v;
		unsigned n = elem_vals(e, &v), es = elem_size(e);
		for (unsigned off = 0; off < 16; off += es)
			memcpy(c->init.fpu.xmm[i] + off, &v[rnd(g) % n], es);
	}
	for (unsigned i = 0; i < DIFF_PAGE; i += 8) {
		uint64_t a = rnd(g), b = rnd(g);
		memcpy(c->data + i, &a, 8);
		memcpy(c->stack + i, &b, 8);
	}
}

static const ZydisDecoder *decoder(void)
{
	static ZydisDecoder d;
	static bool init;
	if (!init) {
		ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
		init = true;
	}
	return &d;
}

static uint16_t fpu_bits(uint32_t zf)
{
	return (uint16_t)(((zf & ZYDIS_FPUFLAG_C0) ? 0x100 : 0) | ((zf & ZYDIS_FPUFLAG_C1) ? 0x200 : 0) |
			  ((zf & ZYDIS_FPUFLAG_C2) ? 0x400 : 0) | ((zf & ZYDIS_FPUFLAG_C3) ? 0x4000 : 0));
}

/* The undefined-flag masks after each instruction, from Zydis's tables. */
static void undefined_masks(struct diff_case *c)
{
	uint32_t und = 0;
	uint16_t fund = 0;
	c->flags_undef[0] = 0;
	c->fsw_undef[0] = 0;
	for (unsigned k = 0; k < c->ninsn; k++) {
		ZydisDecodedInstruction in;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
		if (ZYAN_SUCCESS(ZydisDecoderDecodeFull(decoder(), c->code + c->insn_off[k],
							c->code_len - c->insn_off[k], &in, ops))) {
			const ZydisAccessedFlags *cf = in.cpu_flags, *ff = in.fpu_flags;
			if (cf) {
				uint32_t def = (cf->modified | cf->set_0 | cf->set_1) & ~cf->undefined;
				und = (und & ~def) | cf->undefined;
			}
			if (ff) {
				uint16_t def = fpu_bits((ff->modified | ff->set_0 | ff->set_1) & ~ff->undefined);
				fund = (uint16_t)((fund & ~def) | fpu_bits(ff->undefined));
			}
		}
		c->flags_undef[k + 1] = und;
		c->fsw_undef[k + 1] = fund;
	}
}

static bool run_builder(struct gen *g, struct form *f, struct diff_case *c, unsigned fi, uint32_t k, uint64_t seed)
{
	g->c = c;
	g->f = f;
	g->rng = mix(seed) | 1;
	g->ndims = 0;
	g->failed = false;
	g->err[0] = 0;
	g->ninsn = 0;
	g->sti = 1;
	g->xmm_used = 0;
	g->mm_used = 0;
	background(g, c, fi, k);
	g->gpr_used = f->hidden;
	for (unsigned i = 0; i < f->nops; i++)
		if (f->op[i].kind == O_CL)
			reserve_gpr(g, RCX);
		else if (f->op[i].kind == O_FIXED) {
			unsigned sh;
			int id = gpr_id(f->op[i].fixed, &sh);
			if (id >= 0)
				reserve_gpr(g, id);
		}
	f->build(g, f);
	if (g->failed)
		return false;
	if (!g->probe && g->ndims != f->ndims) {
		fail(g, "the builder made %u dimensions, the probe %u", g->ndims, f->ndims);
		return false;
	}
	c->ninsn = (uint8_t)g->ninsn;
	c->insn_off[c->ninsn] = c->code_len;
	undefined_masks(c);
	return true;
}

/* What the probe learns from the first instruction: implicit registers
 * and the flags it reads. */
static void learn(struct form *f, const struct diff_case *c)
{
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(decoder(), c->code, c->code_len, &in, ops)))
		return;
	f->tested = in.cpu_flags ? in.cpu_flags->tested : 0;
	for (unsigned i = 0; i < in.operand_count; i++) {
		const ZydisDecodedOperand *o = &ops[i];
		unsigned sh;
		int id;
		if (o->visibility != ZYDIS_OPERAND_VISIBILITY_HIDDEN)
			continue;
		if (o->type == ZYDIS_OPERAND_TYPE_MEMORY) {
			if ((id = gpr_id(o->mem.base, &sh)) >= 0)
				f->hidden |= (uint16_t)(1u << id);
			if ((id = gpr_id(o->mem.index, &sh)) >= 0)
				f->hidden |= (uint16_t)(1u << id);
			continue;
		}
		if (o->type != ZYDIS_OPERAND_TYPE_REGISTER || (id = gpr_id(o->reg.value, &sh)) < 0 || id == RSP)
			continue;
		f->hidden |= (uint16_t)(1u << id);
		if (o->actions & ZYDIS_OPERAND_ACTION_MASK_READ) {
			f->hidden_read |= (uint16_t)(1u << id);
			unsigned w = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, o->reg.value) + sh;
			if (w > f->hidden_bits[id])
				f->hidden_bits[id] = (uint8_t)w;
		}
	}
}

static int probe(struct form *f, unsigned fi, char *err, size_t errlen)
{
	static struct diff_case c;
	struct gen g = {.probe = true};
	bool ok = false;
	for (unsigned attempt = 0; attempt < 64 && !ok; attempt++)
		ok = run_builder(&g, f, &c, fi, 0, hash_str(f->name) + attempt);
	if (!ok) {
		snprintf(err, errlen, "%s: %s", f->name, g.err);
		return -1;
	}
	learn(f, &c);
	ok = false;
	for (unsigned attempt = 0; attempt < 64 && !ok; attempt++)
		ok = run_builder(&g, f, &c, fi, 0, hash_str(f->name) + 1000 + attempt);
	if (!ok) {
		snprintf(err, errlen, "%s: %s", f->name, g.err);
		return -1;
	}
	f->ndims = (uint8_t)g.ndims;
	memcpy(f->dims, g.dims, sizeof(f->dims));
	f->product = 1;
	unsigned maxd = 1;
	for (unsigned d = 0; d < f->ndims; d++) {
		if (f->product < (1ull << 40))
			f->product *= f->dims[d];
		if (f->dims[d] > maxd)
			maxd = f->dims[d];
	}
	uint64_t limit = opts.full ? opts.full_cap : opts.sample;
	if (limit < maxd)
		limit = maxd; /* every value of every list at least once */
	if (f->product <= limit)
		f->ncases = (uint32_t)(f->product < 4 ? 4 : f->product);
	else
		f->ncases = (uint32_t)limit;
	return 0;
}

static bool name_selected(const char *name)
{
	if (!opts.nfilters)
		return true;
	for (unsigned i = 0; i < opts.nfilters; i++)
		if (strstr(name, opts.filters[i]))
			return true;
	return false;
}

unsigned diff_forms_init(const struct diff_gen_options *o, const struct diff_cpuid *c)
{
	char err[256];
	opts = *o;
	cpuid = *c;
	values_init();
	forms_int();
	forms_x87();
	forms_sse();

	unsigned kept = 0;
	for (unsigned i = 0; i < nforms; i++) {
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(forms[i].name, forms[j].name)) {
				fprintf(stderr, "diff: two forms named \"%s\"\n", forms[i].name);
				exit(1);
			}
		if (name_selected(forms[i].name))
			forms[kept++] = forms[i];
	}
	nforms = kept;
	infos = calloc(nforms, sizeof(*infos));
	unsigned bad = 0;
	for (unsigned i = 0; i < nforms; i++) {
		struct form *f = &forms[i];
		const char *why = NULL;
		if (!feature_ok(f->feature, &cpuid, &why)) {
			f->skipped = true;
			f->skip_why = why;
		} else if (probe(f, i, err, sizeof(err))) {
			fprintf(stderr, "dbt-diff: cannot generate cases: %s\n", err);
			bad++;
		}
		infos[i] = (struct diff_form_info){f->name, f->skipped ? 0 : f->ncases, f->skipped, f->skip_why};
	}
	if (bad)
		exit(2);
	return nforms;
}

const struct diff_form_info *diff_form(unsigned i)
{
	return &infos[i];
}

/* An affine permutation of [0, n): a value list walked in a form-specific order. */
static unsigned permute(uint64_t h, unsigned j, unsigned n)
{
	uint64_t a = (h >> 17) % n;
	while (n > 1) {
		uint64_t x = a ? a : 1, y = n;
		while (y) {
			uint64_t t = x % y;
			x = y;
			y = t;
		}
		if (a && x == 1)
			break;
		a = (a + 1) % n;
	}
	return (unsigned)((a * j + (h % n)) % n);
}

int diff_generate(unsigned fi, uint32_t k, struct diff_case *c, char *err, size_t errlen)
{
	struct form *f = &forms[fi];
	struct gen g = {0};
	uint64_t h = hash_str(f->name) ^ mix(opts.seed);
	unsigned maxd = 1;

	for (unsigned d = 0; d < f->ndims; d++)
		if (f->dims[d] > maxd)
			maxd = f->dims[d];
	if (f->product <= f->ncases) {
		uint64_t x = k % f->product;
		for (unsigned d = 0; d < f->ndims; d++) {
			g.idx[d] = (uint32_t)(x % f->dims[d]);
			x /= f->dims[d];
		}
	} else {
		for (unsigned d = 0; d < f->ndims; d++) {
			uint64_t hd = mix(h + d);
			g.idx[d] = k < maxd ? permute(hd, k % f->dims[d], f->dims[d])
					    : (uint32_t)(mix(hd ^ mix(k)) % f->dims[d]);
		}
	}
	for (unsigned attempt = 0; attempt < 64; attempt++)
		if (run_builder(&g, f, c, fi, k, h ^ mix((uint64_t)k << 8 | attempt)))
			return 0;
	snprintf(err, errlen, "%s, case %u: %s", f->name, k, g.err);
	return -1;
}

void diff_cpuid_case(struct diff_case *c, uint32_t leaf)
{
	struct gen g = {.c = c, .rng = 1};
	ZydisEncoderRequest r = req(ZYDIS_MNEMONIC_CPUID, 0);
	static struct form f;
	g.f = &f;
	values_init();
	background(&g, c, 0, leaf);
	c->init.gpr[RAX] = leaf;
	c->init.gpr[RCX] = 0;
	emit(&g, &r);
	c->ninsn = (uint8_t)g.ninsn;
	c->insn_off[c->ninsn] = c->code_len;
}
