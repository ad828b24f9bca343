/*
 * Edge values: the operand values every form is tried with. Integers at
 * each width (0, 1, -1, the signed limits, carries across nibbles and
 * halves), shift counts around every width, IEEE singles and doubles
 * (signed zeros and infinities, quiet and signalling NaNs with payloads,
 * denormals, the normal limits, ties that round differently, the limits of
 * integer conversions) and x87 extended values (the same plus the formats
 * the x87 calls unsupported: pseudo-denormals, unnormals, pseudo-NaNs).
 */
#include <float.h>
#include <string.h>

#include "gen.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const uint64_t int_base[] = {
    0,
    1,
    2,
    3,
    0x0f,
    0x10,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x10000,
    0x7fffffff,
    0x80000000,
    0xffffffff,
    0x100000000ull,
    0x7fffffffffffffffull,
    0x8000000000000000ull,
    0xffffffffffffffffull,
    0xfffffffffffffffeull,
    0x8000000000000001ull,
    0x5555555555555555ull,
    0xaaaaaaaaaaaaaaaaull,
    0x0123456789abcdefull,
    0xfedcba9876543210ull,
    0x00000000ffffff00ull,
    0xffffffff00000001ull,
};
static uint64_t ints[4][COUNT(int_base)];
static unsigned nints[4];

static const uint64_t shifts[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255};

/* Bit offsets of BT* on memory: the base points to the middle of the data
 * page, so +-0x4000 bits stay inside and 0x4000, 0x7fff, -0x4001 leave it. */
static const uint64_t bitoffs[] = {
    0,
    1,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    100,
    0x3fc0,
    0x4000,
    0x7fff,
    (uint64_t)-1,
    (uint64_t)-8,
    (uint64_t)-16,
    (uint64_t)-63,
    (uint64_t)-64,
    (uint64_t)-65,
    (uint64_t)-0x4000,
    (uint64_t)-0x4001,
};

static const uint64_t imm8s[] = {
    0, 1, 2, (uint64_t)-1, (uint64_t)-2, 0x7f, (uint64_t)-0x80, 0x10, 0x55, (uint64_t)-0x56};
static const uint64_t imm16s[] = {0, 1, (uint64_t)-1, 0x7fff, (uint64_t)-0x8000, 0x1234, (uint64_t)-0x1234, 0x80, 0xff};
static const uint64_t imm32s[] = {
    0,	  1,	(uint64_t)-1, 0x7fffffff, (uint64_t)-0x80000000ll, 0x12345678, (uint64_t)-0x12345678,
    0x80, 0xff, 0xffff,	      0x10000};

static uint64_t f32s[64], f64s[64];
static unsigned nf32, nf64;
static uint8_t f80s[64][10];
static unsigned nf80;

static const uint64_t fcws[] = {
    0x037f, 0x037f, /* default: extended precision, nearest, all masked */
    0x027f,	    /* double precision */
    0x007f,	    /* single precision */
    0x077f,	    /* round down */
    0x0b7f,	    /* round up */
    0x0f7f,	    /* round toward zero */
    0x087f,	    /* single precision, round up */
    0x037e,	    /* invalid unmasked */
    0x037b,	    /* divide by zero unmasked */
    0x0377,	    /* overflow unmasked */
    0x0340,	    /* everything unmasked */
};

static const uint64_t mxcsrs[] = {
    0x1f80, 0x1f80, 0x1f80, /* default */
    0x3f80,		    /* round down */
    0x5f80,		    /* round up */
    0x7f80,		    /* round toward zero */
    0x9f80,		    /* FTZ */
    0x1fc0,		    /* DAZ */
    0x9fc0,		    /* FTZ + DAZ */
    0x1fbf,		    /* every status flag already set */
    0x1f00,		    /* invalid unmasked */
    0x1e80,		    /* denormal unmasked */
    0x1d80,		    /* divide by zero unmasked */
    0x1b80,		    /* overflow unmasked */
    0x1780,		    /* underflow unmasked */
    0x0f80,		    /* precision unmasked */
};

static const uint64_t depths[] = {8, 4, 2, 1, 0};

/* PCMPESTRx lengths: in range, zero, past 16, negative (absolute value). */
static const uint64_t strlens[] = {0, 1, 3, 5, 8, 15, 16, 17, (uint64_t)-1, (uint64_t)-5, (uint64_t)-17, 0x80000000};

/* The high half of a dividend (AH, DX, EDX, RDX): mostly small, so most
 * divisions complete; -1 and the limits for the signed cases and #DE. */
static const uint64_t divhighs[] = {
    0, 0, 0, 1, (uint64_t)-1, (uint64_t)-1, 0x7fffffffffffffffull, 0x8000000000000000ull};

static void put_f32(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	f32s[nf32++] = u;
}

static void put_u32(uint32_t u)
{
	f32s[nf32++] = u;
}

static void put_f64(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	f64s[nf64++] = u;
}

static void put_u64(uint64_t u)
{
	f64s[nf64++] = u;
}

static void put_f80(long double x)
{
	memcpy(f80s[nf80++], &x, 10);
}

static void put_raw80(uint64_t mant, uint16_t se)
{
	memcpy(f80s[nf80], &mant, 8);
	memcpy(f80s[nf80] + 8, &se, 2);
	nf80++;
}

static void floats_init(void)
{
	put_f32(0.0f);
	put_f32(-0.0f);
	put_f32(1.0f);
	put_f32(-1.0f);
	put_u32(0x7f800000); /* +inf */
	put_u32(0xff800000); /* -inf */
	put_u32(0x7fc00000); /* QNaN */
	put_u32(0xffc00000); /* the default NaN */
	put_u32(0x7fc12345); /* QNaN with payload */
	put_u32(0x7f800001); /* SNaN */
	put_u32(0xffa00001); /* negative SNaN with payload */
	put_u32(0x00000001); /* smallest denormal */
	put_u32(0x007fffff); /* largest denormal */
	put_u32(0x80000010); /* negative denormal */
	put_u32(0x00800000); /* smallest normal */
	put_u32(0x7f7fffff); /* largest normal */
	put_u32(0xff7fffff);
	put_f32(0.5f);
	put_f32(1.5f);
	put_f32(2.5f);
	put_f32(-2.5f);
	put_f32(-0.5f);
	put_f32(1.0f / 3.0f);
	put_f32(3.14159265f);
	put_f32(2147483648.0f);	 /* 2^31: one past INT32_MAX */
	put_f32(-2147483648.0f); /* INT32_MIN: exact */
	put_u32(0x4effffff);	 /* largest float below 2^31 */
	put_f32(9223372036854775808.0f);
	put_f32(-9223372036854775808.0f);
	put_u32(0x3f800001); /* 1 + ulp */
	put_u32(0x3f7fffff); /* 1 - ulp/2 */
	put_f32(3.0f);
	put_f32(10.0f);
	put_f32(1e10f);
	put_f32(-1e-10f);
	put_f32(65535.5f);

	put_f64(0.0);
	put_f64(-0.0);
	put_f64(1.0);
	put_f64(-1.0);
	put_u64(0x7ff0000000000000ull);
	put_u64(0xfff0000000000000ull);
	put_u64(0x7ff8000000000000ull);
	put_u64(0xfff8000000000000ull); /* the default NaN */
	put_u64(0x7ff8000000012345ull);
	put_u64(0x7ff0000000000001ull); /* SNaN */
	put_u64(0xfff4000000000001ull);
	put_u64(0x0000000000000001ull); /* smallest denormal */
	put_u64(0x000fffffffffffffull);
	put_u64(0x8000000000000100ull);
	put_u64(0x0010000000000000ull); /* smallest normal */
	put_u64(0x7fefffffffffffffull);
	put_u64(0xffefffffffffffffull);
	put_f64(0.5);
	put_f64(1.5);
	put_f64(2.5);
	put_f64(-2.5);
	put_f64(-0.5);
	put_f64(1.0 / 3.0);
	put_f64(3.141592653589793);
	put_f64(2147483648.0);
	put_f64(2147483647.5);
	put_f64(-2147483648.5);
	put_f64(-2147483649.0);
	put_f64(9223372036854775808.0);
	put_f64(-9223372036854775808.0);
	put_f64(18446744073709551616.0);
	put_u64(0x3ff0000000000001ull); /* 1 + ulp */
	put_u64(0x3ff0000010000000ull); /* 1 + 2^-24: a tie when rounded to single */
	put_u64(0x3ff0000018000000ull); /* 1 + 3 * 2^-25: above the tie */
	put_u64(0x47f0000000000000ull); /* 2^128: overflows single */
	put_u64(0x3800000000000000ull); /* 2^-127: a single denormal */
	put_u64(0x3690000000000000ull); /* 2^-150: underflows single */
	put_f64(1e300);
	put_f64(-1e-300);
	put_f64(3.0);
	put_f64(-1e10);

	put_f80(0.0L);
	put_f80(-0.0L);
	put_f80(1.0L);
	put_f80(-1.0L);
	put_raw80(0x8000000000000000ull, 0x7fff); /* +inf */
	put_raw80(0x8000000000000000ull, 0xffff); /* -inf */
	put_raw80(0xc000000000000000ull, 0x7fff); /* QNaN */
	put_raw80(0xc000000000000000ull, 0xffff); /* the indefinite */
	put_raw80(0xc000000000001234ull, 0x7fff); /* QNaN with payload */
	put_raw80(0x8000000000000001ull, 0x7fff); /* SNaN */
	put_raw80(0xa000000000000000ull, 0xffff);
	put_raw80(0x0000000000000001ull, 0x0000); /* smallest denormal */
	put_raw80(0x7fffffffffffffffull, 0x8000); /* negative largest denormal */
	put_raw80(0x8000000000000001ull, 0x0000); /* pseudo-denormal */
	put_raw80(0x4000000000000000ull, 0x3fff); /* unnormal */
	put_raw80(0x0000000000000000ull, 0x7fff); /* pseudo-infinity */
	put_raw80(0x4000000000000001ull, 0x7fff); /* pseudo-NaN */
	put_raw80(0x8000000000000000ull, 0x0001); /* smallest normal */
	put_raw80(0xffffffffffffffffull, 0x7ffe); /* largest normal */
	put_raw80(0xffffffffffffffffull, 0xfffe);
	put_f80(0.5L);
	put_f80(1.5L);
	put_f80(2.5L);
	put_f80(-2.5L);
	put_f80(-0.5L);
	put_f80(1.0L / 3.0L);
	put_f80(3.14159265358979323846L);
	put_f80(9223372036854775808.0L);
	put_f80(-9223372036854775808.0L);
	put_f80(-9223372036854775809.0L);
	put_f80(18446744073709551616.0L);
	put_f80(32767.5L);
	put_f80(-32768.5L);
	put_f80(2147483647.5L);
	put_f80(-2147483648.0L);
	put_f80(1e10L);
	put_f80(-1e-10L);
	put_f80(1e4000L);
	put_f80(-1e-4000L);
	put_f80(3.0L);
	put_f80(0.7L);
	put_raw80(0x8000000000000001ull, 0x3fff); /* 1 + ulp */
	put_raw80(0x8000008000000000ull, 0x3fff); /* 1 + 2^-24: a tie in single precision */
	put_raw80(0x8000000000000400ull, 0x3fff); /* 1 + 2^-53: a tie in double precision */
	put_raw80(0x8000000000000c00ull, 0xbfff); /* -(1 + 3 * 2^-53) */
	put_raw80(0xc90fdaa22168c235ull, 0x4001); /* pi * 2: FPREM and friends */
}

static unsigned width_index(unsigned bits)
{
	return bits <= 8 ? 0 : bits <= 16 ? 1 : bits <= 32 ? 2 : 3;
}

void values_init(void)
{
	static const unsigned widths[4] = {8, 16, 32, 64};
	static bool done;
	if (done)
		return;
	done = true;
	for (unsigned w = 0; w < 4; w++) {
		uint64_t mask = widths[w] == 64 ? ~0ull : (1ull << widths[w]) - 1;
		for (unsigned i = 0; i < COUNT(int_base); i++) {
			uint64_t v = int_base[i] & mask;
			bool dup = false;
			for (unsigned j = 0; j < nints[w]; j++)
				dup |= ints[w][j] == v;
			if (!dup)
				ints[w][nints[w]++] = v;
		}
	}
	floats_init();
}

unsigned int_vals(unsigned bits, const uint64_t **v)
{
	*v = ints[width_index(bits)];
	return nints[width_index(bits)];
}

unsigned shift_vals(const uint64_t **v)
{
	*v = shifts;
	return COUNT(shifts);
}

unsigned bitoff_vals(const uint64_t **v)
{
	*v = bitoffs;
	return COUNT(bitoffs);
}

unsigned imm_vals(unsigned bits, const uint64_t **v)
{
	switch (width_index(bits)) {
	case 0: *v = imm8s; return COUNT(imm8s);
	case 1: *v = imm16s; return COUNT(imm16s);
	case 2: *v = imm32s; return COUNT(imm32s);
	default: return int_vals(64, v); /* MOV r64, imm64 */
	}
}

unsigned f32_vals(const uint64_t **v)
{
	*v = f32s;
	return nf32;
}

unsigned f64_vals(const uint64_t **v)
{
	*v = f64s;
	return nf64;
}

unsigned f80_vals(const uint8_t (**v)[10])
{
	*v = (const uint8_t(*)[10])f80s;
	return nf80;
}

unsigned fcw_vals(const uint64_t **v)
{
	*v = fcws;
	return COUNT(fcws);
}

unsigned mxcsr_vals(const uint64_t **v)
{
	*v = mxcsrs;
	return COUNT(mxcsrs);
}

unsigned x87_depth_vals(const uint64_t **v)
{
	*v = depths;
	return COUNT(depths);
}

unsigned strlen_vals(const uint64_t **v)
{
	*v = strlens;
	return COUNT(strlens);
}

unsigned divhigh_vals(const uint64_t **v)
{
	*v = divhighs;
	return COUNT(divhighs);
}
