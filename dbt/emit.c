/*
 * The few host instructions the translator writes itself (everything else is
 * guest bytes copied or re-encoded by Zydis). None of them changes RFLAGS:
 * translated code keeps the guest's flags in the host's.
 */
#include <string.h>

#include "dbt/translator.h"

void emit_bytes(struct emit *e, const void *bytes, size_t n)
{
	if ((size_t)(e->end - e->p) < n) {
		e->full = true;
		return;
	}
	if (n <= 16) { /* most calls: inline, not a libc call each */
		const uint8_t *b = bytes;
		for (size_t i = 0; i < n; i++)
			e->p[i] = b[i];
	} else {
		memcpy(e->p, bytes, n);
	}
	e->p += n;
}

void emit_u8(struct emit *e, uint8_t v)
{
	emit_bytes(e, &v, 1);
}

void emit_u32(struct emit *e, uint32_t v)
{
	emit_bytes(e, &v, 4);
}

void emit_u64(struct emit *e, uint64_t v)
{
	emit_bytes(e, &v, 8);
}

/* op with ModRM reg field reg and r/m = gs:[disp32] (SIB, no base, no index). */
static void emit_gs_abs(struct emit *e, uint8_t rex, uint8_t op, int reg, unsigned off)
{
	rex |= reg & 8 ? 4 : 0;
	emit_u8(e, 0x65);
	if (rex != 0x40)
		emit_u8(e, rex);
	emit_u8(e, op);
	emit_u8(e, (uint8_t)(((reg & 7) << 3) | 4));
	emit_u8(e, 0x25);
	emit_u32(e, off);
}

void emit_store_ctx(struct emit *e, unsigned off, int reg)
{
	emit_gs_abs(e, 0x48, 0x89, reg, off);
}

void emit_load_ctx(struct emit *e, int reg, unsigned off)
{
	emit_gs_abs(e, 0x48, 0x8b, reg, off);
}

void emit_jmp_ctx(struct emit *e, unsigned off)
{
	emit_gs_abs(e, 0x40, 0xff, 4, off);
}

void emit_mov_imm(struct emit *e, int reg, uint64_t imm)
{
	if (imm <= 0xffffffffu) { /* mov r32, imm32 zero-extends */
		if (reg & 8)
			emit_u8(e, 0x41);
		emit_u8(e, (uint8_t)(0xb8 + (reg & 7)));
		emit_u32(e, (uint32_t)imm);
		return;
	}
	emit_u8(e, (uint8_t)(0x48 | (reg & 8 ? 1 : 0)));
	emit_u8(e, (uint8_t)(0xb8 + (reg & 7)));
	emit_u64(e, imm);
}

/* A REX.W instruction op reg, [base + index * scale + disp]. */
static void emit_modrm_mem(struct emit *e, uint8_t op, int reg, int base, int index, unsigned scale, int32_t disp)
{
	uint8_t rex = 0x48 | (reg & 8 ? 4 : 0) | (index >= 0 && (index & 8) ? 2 : 0) | (base >= 0 && (base & 8) ? 1 : 0);
	unsigned ss = scale == 8 ? 3 : scale == 4 ? 2 : scale == 2 ? 1 : 0;
	uint8_t mod;

	if (base < 0)
		mod = 0; /* SIB with no base: disp32 */
	else if (disp == 0 && (base & 7) != 5)
		mod = 0;
	else if (disp >= -128 && disp <= 127)
		mod = 1;
	else
		mod = 2;
	emit_u8(e, rex);
	emit_u8(e, op);
	if (index < 0 && base >= 0 && (base & 7) != 4) {
		emit_u8(e, (uint8_t)((mod << 6) | ((reg & 7) << 3) | (base & 7)));
	} else {
		emit_u8(e, (uint8_t)((mod << 6) | ((reg & 7) << 3) | 4));
		emit_u8(e, (uint8_t)((ss << 6) | ((index < 0 ? 4 : index & 7) << 3) | (base < 0 ? 5 : base & 7)));
	}
	if (base < 0 || mod == 2)
		emit_u32(e, (uint32_t)disp);
	else if (mod == 1)
		emit_u8(e, (uint8_t)disp);
}

void emit_lea(struct emit *e, int dst, int base, int index, unsigned scale, int32_t disp)
{
	emit_modrm_mem(e, 0x8d, dst, base, index, scale, disp);
}

void emit_load(struct emit *e, int dst, int base, int32_t disp)
{
	emit_modrm_mem(e, 0x8b, dst, base, -1, 1, disp);
}

void emit_store(struct emit *e, int base, int32_t disp, int src)
{
	emit_modrm_mem(e, 0x89, src, base, -1, 1, disp);
}

/* Pads so that the rel32 that follows an opcode of oplen bytes starts on a
 * 4-byte boundary: a patch is then one atomic store. */
static void align_rel32(struct emit *e, unsigned oplen)
{
	size_t mis = ((uintptr_t)e->p + oplen) & 3;
	if (mis)
		emit_nops(e, 4 - mis);
}

int32_t *emit_jmp32(struct emit *e)
{
	align_rel32(e, 1);
	emit_u8(e, 0xe9);
	int32_t *rel = (int32_t *)e->p;
	emit_u32(e, 0);
	return e->full ? NULL : rel;
}

int32_t *emit_jcc32(struct emit *e, unsigned cc)
{
	align_rel32(e, 2);
	emit_u8(e, 0x0f);
	emit_u8(e, (uint8_t)(0x80 | cc));
	int32_t *rel = (int32_t *)e->p;
	emit_u32(e, 0);
	return e->full ? NULL : rel;
}

void emit_nops(struct emit *e, size_t n)
{
	static const uint8_t nop[4][4] = {{0}, {0x90}, {0x66, 0x90}, {0x0f, 0x1f, 0x00}};
	while (n) {
		size_t k = n > 3 ? 3 : n;
		emit_bytes(e, nop[k], k);
		n -= k;
	}
}

bool rel32_set(int32_t *rel, const void *target)
{
	int64_t d = (intptr_t)target - (intptr_t)(rel + 1);
	if (d != (int32_t)d)
		return false;
	__atomic_store_n(rel, (int32_t)d, __ATOMIC_RELEASE);
	return true;
}
