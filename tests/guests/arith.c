/*
 * Integer arithmetic and flags. Every operation runs on the CPU over a grid
 * of edge values at 8, 16, 32 and 64 bits; a C model computes the result and
 * each defined flag from the operands, and the two must agree. Flags the SDM
 * leaves undefined for an operation are masked out of the comparison.
 */
#include "guest.h"

typedef unsigned __int128 u128;

static const uint64_t values[] = {
	0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000,
	0xffffffff, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff,
	0x123456789abcdef0, 0xfedcba9876543210, 0x0f0f0f0f0f0f0f0f, 0x10, 0x0f,
};
#define NVALUES (sizeof(values) / sizeof(values[0]))

enum op { ADD, ADC, SUB, SBB, AND, OR, XOR, CMP, TEST, INC, DEC, NEG, NOT, SHL, SHR, SAR, ROL, ROR, NOPS };
static const char *const op_names[NOPS] = {
	"add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test", "inc", "dec", "neg", "not",
	"shl", "shr", "sar", "rol", "ror",
};

struct outcome {
	uint64_t result, flags;
};

/* Runs one instruction with RFLAGS preset to flags_in. Shift counts live in CL. */
#define RUN(insn, width_suffix, modifier)                                                       \
	__asm__ volatile("pushq %[fin]\n\tpopfq\n\t" insn width_suffix " %" modifier "[b], %"  \
			 modifier "[a]\n\tpushfq\n\tpopq %[fout]"                            \
			 : [a] "+r"(a), [fout] "=&r"(out.flags)                                \
			 : [b] "r"(b), [fin] "r"(flags_in)                                       \
			 : "cc")
#define RUN1(insn, width_suffix, modifier)                                                      \
	__asm__ volatile("pushq %[fin]\n\tpopfq\n\t" insn width_suffix " %" modifier          \
			 "[a]\n\tpushfq\n\tpopq %[fout]"                                        \
			 : [a] "+r"(a), [fout] "=&r"(out.flags)                                \
			 : [fin] "r"(flags_in)                                                   \
			 : "cc")
#define RUNSH(insn, width_suffix, modifier)                                                     \
	__asm__ volatile("pushq %[fin]\n\tpopfq\n\t" insn width_suffix " %%cl, %" modifier    \
			 "[a]\n\tpushfq\n\tpopq %[fout]"                                        \
			 : [a] "+r"(a), [fout] "=&r"(out.flags)                                \
			 : "c"(b), [fin] "r"(flags_in)                                           \
			 : "cc")

#define WIDTH_CASES(width, suffix, mod)                                                          \
	case width:                                                                                   \
		switch (op) {                                                                         \
		case ADD: RUN("add", suffix, mod); break;                                             \
		case ADC: RUN("adc", suffix, mod); break;                                             \
		case SUB: RUN("sub", suffix, mod); break;                                             \
		case SBB: RUN("sbb", suffix, mod); break;                                             \
		case AND: RUN("and", suffix, mod); break;                                             \
		case OR: RUN("or", suffix, mod); break;                                               \
		case XOR: RUN("xor", suffix, mod); break;                                             \
		case CMP: RUN("cmp", suffix, mod); break;                                             \
		case TEST: RUN("test", suffix, mod); break;                                           \
		case INC: RUN1("inc", suffix, mod); break;                                            \
		case DEC: RUN1("dec", suffix, mod); break;                                            \
		case NEG: RUN1("neg", suffix, mod); break;                                            \
		case NOT: RUN1("not", suffix, mod); break;                                            \
		case SHL: RUNSH("shl", suffix, mod); break;                                           \
		case SHR: RUNSH("shr", suffix, mod); break;                                           \
		case SAR: RUNSH("sar", suffix, mod); break;                                           \
		case ROL: RUNSH("rol", suffix, mod); break;                                           \
		case ROR: RUNSH("ror", suffix, mod); break;                                           \
		default: break;                                                                       \
		}                                                                                     \
		break;

static struct outcome run_cpu(enum op op, int width, uint64_t a, uint64_t b, uint64_t flags_in)
{
	struct outcome out = {0, 0};
	switch (width) {
		WIDTH_CASES(8, "b", "b")
		WIDTH_CASES(16, "w", "w")
		WIDTH_CASES(32, "l", "k")
		WIDTH_CASES(64, "q", "q")
	}
	out.result = a;
	return out;
}

static uint64_t width_mask(int width)
{
	return width == 64 ? ~0ull : (1ull << width) - 1;
}

static bool even_parity(uint64_t v)
{
	return !(__builtin_popcount(v & 0xff) & 1);
}

static uint64_t szp(uint64_t r, int width)
{
	uint64_t f = 0;
	if (r == 0)
		f |= RFLAGS_ZF;
	if ((r >> (width - 1)) & 1)
		f |= RFLAGS_SF;
	if (even_parity(r))
		f |= RFLAGS_PF;
	return f;
}

/* The model: the result and flags the SDM defines, and which flags it defines. */
static struct outcome model(enum op op, int width, uint64_t a, uint64_t b, uint64_t flags_in, uint64_t *defined)
{
	uint64_t m = width_mask(width), sign = 1ull << (width - 1);
	uint64_t cin = flags_in & RFLAGS_CF ? 1 : 0;
	uint64_t r = a, f = 0;
	unsigned count;

	a &= m;
	b &= m;
	*defined = RFLAGS_ARITH;
	switch (op) {
	case ADD:
	case ADC: {
		uint64_t c = op == ADC ? cin : 0;
		u128 full = (u128)a + b + c;
		r = (uint64_t)full & m;
		if ((full >> width) & 1)
			f |= RFLAGS_CF;
		if ((a ^ r) & (b ^ r) & sign)
			f |= RFLAGS_OF;
		f |= (a ^ b ^ r) & RFLAGS_AF;
		f |= szp(r, width);
		break;
	}
	case SUB:
	case SBB:
	case CMP: {
		uint64_t c = op == SBB ? cin : 0;
		r = (a - b - c) & m;
		if ((u128)a < (u128)b + c)
			f |= RFLAGS_CF;
		if ((a ^ b) & (a ^ r) & sign)
			f |= RFLAGS_OF;
		f |= (a ^ b ^ r) & RFLAGS_AF;
		f |= szp(r, width);
		if (op == CMP)
			r = a;
		break;
	}
	case AND:
	case OR:
	case XOR:
	case TEST:
		r = op == OR ? a | b : op == XOR ? a ^ b : a & b;
		f = szp(r, width);
		*defined &= ~RFLAGS_AF;
		if (op == TEST)
			r = a;
		break;
	case INC:
	case DEC:
		r = (op == INC ? a + 1 : a - 1) & m;
		f = szp(r, width) | (flags_in & RFLAGS_CF) | ((a ^ 1 ^ r) & RFLAGS_AF);
		if (op == INC ? r == sign : a == sign)
			f |= RFLAGS_OF;
		break;
	case NEG:
		r = -a & m;
		f = szp(r, width) | (a ? RFLAGS_CF : 0) | ((a ^ r) & RFLAGS_AF) | (a == sign ? RFLAGS_OF : 0);
		break;
	case NOT:
		r = ~a & m;
		f = flags_in & RFLAGS_ARITH;
		break;
	case SHL:
	case SHR:
	case SAR:
	case ROL:
	case ROR:
		count = b & (width == 64 ? 63 : 31);
		if (count == 0) { /* flags untouched */
			f = flags_in & RFLAGS_ARITH;
			break;
		}
		if (op == SHL) {
			r = (count < 64 ? a << count : 0) & m;
			if (count <= (unsigned)width)
				f |= (a >> (width - count)) & 1 ? RFLAGS_CF : 0;
			else
				*defined &= ~RFLAGS_CF;
			f |= szp(r, width);
			if (((r & sign) != 0) != ((f & RFLAGS_CF) != 0))
				f |= RFLAGS_OF;
		} else if (op == SHR || op == SAR) {
			int64_t sa = (int64_t)(a << (64 - width)) >> (64 - width);
			if (op == SHR)
				r = count < 64 ? a >> count : 0;
			else
				r = (uint64_t)(sa >> (count < 64 ? count : 63)) & m;
			if (count <= (unsigned)width)
				f |= (op == SHR ? a >> (count - 1) : (uint64_t)(sa >> (count - 1))) & 1 ? RFLAGS_CF : 0;
			else
				*defined &= ~RFLAGS_CF;
			f |= szp(r, width);
			if (op == SHR && (a & sign))
				f |= RFLAGS_OF;
		} else {
			unsigned rot = count % width;
			r = rot ? ((a << rot) | (a >> (width - rot))) & m : a;
			if (op == ROR)
				r = rot ? ((a >> rot) | (a << (width - rot))) & m : a;
			/* Rotates leave SF, ZF, AF and PF alone and set CF from the result. */
			f = flags_in & (RFLAGS_SF | RFLAGS_ZF | RFLAGS_AF | RFLAGS_PF);
			if (op == ROL ? r & 1 : r & sign)
				f |= RFLAGS_CF;
			bool msb = r & sign, next = (r >> (width - 2)) & 1;
			if (op == ROL ? msb != ((f & RFLAGS_CF) != 0) : msb != next)
				f |= RFLAGS_OF;
		}
		*defined &= ~RFLAGS_AF;
		if (count != 1 && op != ROL && op != ROR)
			*defined &= ~RFLAGS_OF;
		if (count != 1 && (op == ROL || op == ROR))
			*defined &= ~RFLAGS_OF;
		break;
	default:
		break;
	}
	return (struct outcome){r, f};
}

static uint64_t merge_upper(uint64_t before, uint64_t low, int width)
{
	/* 32-bit writes zero the upper half; 8- and 16-bit writes keep it. */
	if (width == 32)
		return low & 0xffffffff;
	return (before & ~width_mask(width)) | (low & width_mask(width));
}

static void check_op(enum op op, int width)
{
	char name[48];
	unsigned tried = 0;

	snprintf(name, sizeof(name), "%s%d", op_names[op], width);
	for (unsigned i = 0; i < NVALUES; i++) {
		for (unsigned j = 0; j < NVALUES; j++) {
			for (uint64_t cf = 0; cf <= 1; cf++) {
				uint64_t a = values[i], b = values[j];
				/* Shifts and rotates: counts 0..width+1 and the grid's low bits. */
				if (op >= SHL)
					b = j < 8 ? (uint64_t[]){0, 1, 2, 7, 8, 31, 32, 63}[j] : values[j] & 0x3f;
				uint64_t flags_in = 0x2 | (cf ? RFLAGS_CF : 0) | (i & 1 ? RFLAGS_ZF | RFLAGS_AF : 0) |
						    (j & 1 ? RFLAGS_SF | RFLAGS_PF : 0);
				uint64_t defined;
				struct outcome want = model(op, width, a, b, flags_in, &defined);
				struct outcome got = run_cpu(op, width, a, b, flags_in);
				want.result = merge_upper(a, want.result, width);
				if (op == CMP || op == TEST)
					want.result = a;
				tried++;
				if (want.result != got.result || (want.flags & defined) != (got.flags & defined)) {
					check(false, name,
					      "a=0x%lx b=0x%lx flags_in=0x%lx: expected 0x%lx flags 0x%lx got 0x%lx flags 0x%lx (mask 0x%lx)",
					      a, b, flags_in, want.result, want.flags & defined, got.result, got.flags & defined,
					      defined);
					return;
				}
			}
		}
	}
	check(tried == NVALUES * NVALUES * 2, name, "ran %u cases", tried);
}

/* MUL/IMUL/DIV/IDIV at 64 bits against 128-bit C arithmetic. */
static void check_muldiv(void)
{
	bool ok = true;
	for (unsigned i = 0; i < NVALUES && ok; i++) {
		for (unsigned j = 0; j < NVALUES && ok; j++) {
			uint64_t a = values[i], b = values[j], lo, hi, fl;
			__asm__("mulq %[b]; pushfq; popq %[fl]" : "=a"(lo), "=d"(hi), [fl] "=r"(fl) : "a"(a), [b] "r"(b) : "cc");
			u128 p = (u128)a * b;
			bool over = (p >> 64) != 0;
			if (lo != (uint64_t)p || hi != (uint64_t)(p >> 64) || ((fl & RFLAGS_CF) != 0) != over ||
			    ((fl & RFLAGS_OF) != 0) != over) {
				check(false, "mul64", "0x%lx*0x%lx: expected 0x%lx:%lx got 0x%lx:%lx flags 0x%lx", a, b,
				      (uint64_t)(p >> 64), (uint64_t)p, hi, lo, fl);
				ok = false;
				break;
			}
			int64_t sl;
			__asm__("imulq %[b], %[a]; pushfq; popq %[fl]" : [a] "=r"(sl), [fl] "=r"(fl) : "0"(a), [b] "r"(b) : "cc");
			__int128 sp = (__int128)(int64_t)a * (int64_t)b;
			bool sover = sp != (int64_t)sp;
			if ((uint64_t)sl != (uint64_t)sp || ((fl & RFLAGS_CF) != 0) != sover || ((fl & RFLAGS_OF) != 0) != sover) {
				check(false, "imul64", "0x%lx*0x%lx: expected 0x%lx got 0x%lx flags 0x%lx", a, b, (uint64_t)sp,
				      (uint64_t)sl, fl);
				ok = false;
				break;
			}
			if (b == 0)
				continue;
			uint64_t q, r;
			__asm__("divq %[b]" : "=a"(q), "=d"(r) : "a"(a), "d"(0ull), [b] "r"(b) : "cc");
			if (q != a / b || r != a % b) {
				check(false, "div64", "0x%lx/0x%lx: expected q=0x%lx r=0x%lx got q=0x%lx r=0x%lx", a, b, a / b,
				      a % b, q, r);
				ok = false;
				break;
			}
			int64_t sa = (int64_t)a, sb = (int64_t)b;
			if (sa == INT64_MIN && sb == -1)
				continue; /* #DE, covered by the exceptions guest */
			int64_t sq, sr;
			__asm__("cqto; idivq %[b]" : "=a"(sq), "=d"(sr) : "a"(sa), [b] "r"(sb) : "cc");
			if (sq != sa / sb || sr != sa % sb) {
				check(false, "idiv64", "%ld/%ld: expected q=%ld r=%ld got q=%ld r=%ld", sa, sb, sa / sb, sa % sb,
				      sq, sr);
				ok = false;
				break;
			}
		}
	}
	if (ok)
		check_pass("muldiv64");
}

/* Every condition code, as SETcc, JCC and CMOVcc see it, over all 32
 * combinations of CF, PF, ZF, SF and OF. */
static bool cond_model(unsigned cc, uint64_t f)
{
	bool cf = f & RFLAGS_CF, pf = f & RFLAGS_PF, zf = f & RFLAGS_ZF, sf = f & RFLAGS_SF, of = f & RFLAGS_OF;
	bool v;
	switch (cc >> 1) {
	case 0: v = of; break;
	case 1: v = cf; break;
	case 2: v = zf; break;
	case 3: v = cf || zf; break;
	case 4: v = sf; break;
	case 5: v = pf; break;
	case 6: v = sf != of; break;
	default: v = zf || sf != of; break;
	}
	return cc & 1 ? !v : v;
}

#define SETCC(cc)                                                                   \
	case 0x##cc:                                                                \
		__asm__ volatile("pushq %1; popfq; set" #cc " %0" : "=r"(set) : "r"(f) : "cc"); \
		break;

static uint8_t run_setcc(unsigned cc, uint64_t f)
{
	uint8_t set = 0xee;
	switch (cc) {
	case 0: __asm__ volatile("pushq %1; popfq; seto %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 1: __asm__ volatile("pushq %1; popfq; setno %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 2: __asm__ volatile("pushq %1; popfq; setb %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 3: __asm__ volatile("pushq %1; popfq; setae %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 4: __asm__ volatile("pushq %1; popfq; sete %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 5: __asm__ volatile("pushq %1; popfq; setne %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 6: __asm__ volatile("pushq %1; popfq; setbe %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 7: __asm__ volatile("pushq %1; popfq; seta %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 8: __asm__ volatile("pushq %1; popfq; sets %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 9: __asm__ volatile("pushq %1; popfq; setns %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 10: __asm__ volatile("pushq %1; popfq; setp %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 11: __asm__ volatile("pushq %1; popfq; setnp %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 12: __asm__ volatile("pushq %1; popfq; setl %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 13: __asm__ volatile("pushq %1; popfq; setge %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 14: __asm__ volatile("pushq %1; popfq; setle %0" : "=r"(set) : "r"(f) : "cc"); break;
	case 15: __asm__ volatile("pushq %1; popfq; setg %0" : "=r"(set) : "r"(f) : "cc"); break;
	}
	return set;
}

static void check_conditions(void)
{
	static const uint64_t bits[5] = {RFLAGS_CF, RFLAGS_PF, RFLAGS_ZF, RFLAGS_SF, RFLAGS_OF};
	for (unsigned cc = 0; cc < 16; cc++) {
		char name[32];
		snprintf(name, sizeof(name), "setcc.%u", cc);
		bool ok = true;
		for (unsigned combo = 0; combo < 32 && ok; combo++) {
			uint64_t f = 0x2;
			for (int k = 0; k < 5; k++)
				if (combo & (1u << k))
					f |= bits[k];
			uint8_t got = run_setcc(cc, f);
			if (got != cond_model(cc, f)) {
				check(false, name, "flags 0x%lx: expected %d got %d", f, cond_model(cc, f), got);
				ok = false;
			}
		}
		if (ok)
			check_pass(name);
	}
}

/* BSF, BSR, POPCNT, BT, BSWAP against bit-by-bit loops. */
static void check_bits(void)
{
	bool ok = true;
	bool popcnt = cpuid(1, 0).ecx & BIT(23);
	for (unsigned i = 0; i < NVALUES && ok; i++) {
		uint64_t v = values[i], got, fl;
		if (v) {
			int lo = 0, hi = 63;
			while (!((v >> lo) & 1))
				lo++;
			while (!((v >> hi) & 1))
				hi--;
			__asm__("bsfq %1, %0" : "=r"(got) : "r"(v) : "cc");
			if (got != (uint64_t)lo) {
				check(false, "bsf64", "0x%lx: expected %d got %lu", v, lo, got);
				ok = false;
			}
			__asm__("bsrq %1, %0" : "=r"(got) : "r"(v) : "cc");
			if (got != (uint64_t)hi) {
				check(false, "bsr64", "0x%lx: expected %d got %lu", v, hi, got);
				ok = false;
			}
		} else {
			got = 0x5555;
			__asm__("bsfq %2, %0; pushfq; popq %1" : "+r"(got), "=r"(fl) : "r"(v) : "cc");
			if (!(fl & RFLAGS_ZF) || got != 0x5555) { /* AMD and Intel both keep the destination */
				check(false, "bsf64.zero", "expected ZF and 0x5555 got flags 0x%lx dest 0x%lx", fl, got);
				ok = false;
			}
		}
		if (popcnt) {
			uint64_t n = 0;
			for (int b = 0; b < 64; b++)
				n += (v >> b) & 1;
			__asm__("popcntq %2, %0; pushfq; popq %1" : "=r"(got), "=r"(fl) : "r"(v) : "cc");
			if (got != n || ((fl & RFLAGS_ZF) != 0) != (v == 0) || (fl & (RFLAGS_CF | RFLAGS_OF | RFLAGS_SF))) {
				check(false, "popcnt64", "0x%lx: expected %lu got %lu flags 0x%lx", v, n, got, fl);
				ok = false;
			}
		}
		for (uint64_t b = 0; b < 64 && ok; b += 7) {
			__asm__("btq %2, %1; pushfq; popq %0" : "=r"(fl) : "r"(v), "r"(b) : "cc");
			if (((fl & RFLAGS_CF) != 0) != ((v >> b) & 1)) {
				check(false, "bt64", "0x%lx bit %lu: flags 0x%lx", v, b, fl);
				ok = false;
			}
		}
		uint64_t swapped = v, want = 0;
		for (int b = 0; b < 8; b++)
			want |= ((v >> (8 * b)) & 0xff) << (56 - 8 * b);
		__asm__("bswapq %0" : "+r"(swapped));
		if (swapped != want) {
			check(false, "bswap64", "0x%lx: expected 0x%lx got 0x%lx", v, want, swapped);
			ok = false;
		}
	}
	if (ok)
		check_pass("bits64");
}

void main(void)
{
	static const int widths[] = {8, 16, 32, 64};
	for (int op = 0; op < NOPS; op++)
		for (int w = 0; w < 4; w++)
			check_op(op, widths[w]);
	check_muldiv();
	check_conditions();
	check_bits();
}
