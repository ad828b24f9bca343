/*
 * Data movement: MOV in every form, MOVZX/MOVSX, LEA, CMOVcc, SETcc,
 * BSWAP, CBW..CQO, LAHF/SAHF, the flag instructions, XLAT and NOP.
 */
#include "dbt/internal.h"

#define MOV_SIZE(SZ)                                                                                                   \
	static HANDLER(mov_rr_##SZ)                                                                                    \
	{                                                                                                              \
		reg_set(cpu, d->r0, SZ, reg_get(cpu, d->r1, SZ));                                                      \
	}                                                                                                              \
	static HANDLER(mov_ri_##SZ)                                                                                    \
	{                                                                                                              \
		reg_set(cpu, d->r0, SZ, d->imm);                                                                       \
	}                                                                                                              \
	static HANDLER(mov_rm_##SZ)                                                                                    \
	{                                                                                                              \
		reg_set(cpu, d->r0, SZ, d_read(cpu, d, SZ));                                                           \
	}                                                                                                              \
	static HANDLER(mov_mr_##SZ)                                                                                    \
	{                                                                                                              \
		d_write(cpu, d, SZ, reg_get(cpu, d->r1, SZ));                                                          \
	}                                                                                                              \
	static HANDLER(mov_mi_##SZ)                                                                                    \
	{                                                                                                              \
		d_write(cpu, d, SZ, d->imm);                                                                           \
	}

MOV_SIZE(1)
MOV_SIZE(2)
MOV_SIZE(4)
MOV_SIZE(8)

const dbt_handler h_mov[FORM_COUNT][4] = {
    {mov_rr_1, mov_rr_2, mov_rr_4, mov_rr_8}, {mov_ri_1, mov_ri_2, mov_ri_4, mov_ri_8},
    {mov_rm_1, mov_rm_2, mov_rm_4, mov_rm_8}, {mov_mr_1, mov_mr_2, mov_mr_4, mov_mr_8},
    {mov_mi_1, mov_mi_2, mov_mi_4, mov_mi_8},
};

static inline __attribute__((always_inline)) uint64_t src1(struct dbt_cpu *cpu, const struct dinsn *d, unsigned size)
{
	return (d->flags & DI_MEMSRC) ? d_read(cpu, d, size) : reg_get(cpu, d->r1, size);
}

HANDLER(h_movzx)
{
	reg_set(cpu, d->r0, d->osz, src1(cpu, d, d->ssz));
}

HANDLER(h_movsx)
{
	reg_set(cpu, d->r0, d->osz, sext(src1(cpu, d, d->ssz), d->ssz));
}

/* The common MOVZX/MOVSX forms, specialised: 32-bit destination from a byte
 * or word, in a register or memory. */
#define MOVX(NAME, SSZ, EXPR)                                                                                          \
	static HANDLER(NAME##_r)                                                                                       \
	{                                                                                                              \
		cpu->gpr[d->r0] = (uint32_t)EXPR(reg_get(cpu, d->r1, SSZ));                                            \
	}                                                                                                              \
	static HANDLER(NAME##_m)                                                                                       \
	{                                                                                                              \
		cpu->gpr[d->r0] = (uint32_t)EXPR(d_read(cpu, d, SSZ));                                                 \
	}
#define ZX(v)	(v)
#define SX8(v)	(int32_t)(int8_t)(v)
#define SX16(v) (int32_t)(int16_t)(v)
MOVX(movzx_b, 1, ZX)
MOVX(movzx_w, 2, ZX)
MOVX(movsx_b, 1, SX8)
MOVX(movsx_w, 2, SX16)

/* [sign][source 8/16][register/memory] */
const dbt_handler h_movx32[2][2][2] = {
    {{movzx_b_r, movzx_b_m}, {movzx_w_r, movzx_w_m}},
    {{movsx_b_r, movsx_b_m}, {movsx_w_r, movsx_w_m}},
};

HANDLER(h_lea)
{
	reg_set(cpu, d->r0, d->osz, d_ea(cpu, d));
}

/* The source is read (and may fault) whatever the condition; a 32-bit
 * destination is zero-extended even when nothing moves. */
#define CMOV(CC)                                                                                                       \
	static HANDLER(cmov_##CC)                                                                                      \
	{                                                                                                              \
		uint64_t v = src1(cpu, d, d->osz);                                                                     \
		if (cond_true(cpu->rflags, CC))                                                                        \
			reg_set(cpu, d->r0, d->osz, v);                                                                \
		else if (d->osz == 4)                                                                                  \
			reg_set(cpu, d->r0, 4, cpu->gpr[d->r0]);                                                       \
	}                                                                                                              \
	static HANDLER(setcc_##CC)                                                                                     \
	{                                                                                                              \
		rm_write(cpu, d, 1, cond_true(cpu->rflags, CC));                                                       \
	}

CMOV(0)
CMOV(1)
CMOV(2)
CMOV(3)
CMOV(4)
CMOV(5)
CMOV(6)
CMOV(7)
CMOV(8)
CMOV(9)
CMOV(10)
CMOV(11)
CMOV(12)
CMOV(13)
CMOV(14)
CMOV(15)

const dbt_handler h_cmov[16] = {
    cmov_0, cmov_1, cmov_2,  cmov_3,  cmov_4,  cmov_5,	cmov_6,	 cmov_7,
    cmov_8, cmov_9, cmov_10, cmov_11, cmov_12, cmov_13, cmov_14, cmov_15,
};

const dbt_handler h_setcc[16] = {
    setcc_0, setcc_1, setcc_2,	setcc_3,  setcc_4,  setcc_5,  setcc_6,	setcc_7,
    setcc_8, setcc_9, setcc_10, setcc_11, setcc_12, setcc_13, setcc_14, setcc_15,
};

HANDLER(h_bswap)
{
	uint64_t v = cpu->gpr[d->r0];
	switch (d->osz) {
	case 8: cpu->gpr[d->r0] = __builtin_bswap64(v); break;
	case 4: cpu->gpr[d->r0] = __builtin_bswap32((uint32_t)v); break;
	default: reg_set(cpu, d->r0, 2, 0); break; /* undefined; the hardware clears it */
	}
}

HANDLER(h_cbw)
{
	unsigned half = d->osz / 2;
	reg_set(cpu, RAX, d->osz, sext(reg_get(cpu, RAX, half), half));
}

HANDLER(h_cwd)
{
	uint64_t a = reg_get(cpu, RAX, d->osz);
	reg_set(cpu, RDX, d->osz, (a >> (d->osz * 8 - 1)) & 1 ? ~0ull : 0);
}

HANDLER_UNUSED(h_lahf)
{
	reg_set(cpu, 1, 1, (cpu->rflags & 0xd5) | FL_FIXED);
}

HANDLER_UNUSED(h_sahf)
{
	uint64_t ah = reg_get(cpu, 1, 1);
	cpu->rflags = (cpu->rflags & ~0xd5ull) | (ah & 0xd5);
}

HANDLER(h_flagop)
{
	switch (d->cc) {
	case 0: cpu->rflags &= ~FL_CF; break;
	case 1: cpu->rflags |= FL_CF; break;
	case 2: cpu->rflags ^= FL_CF; break;
	case 3: cpu->rflags &= ~FL_DF; break;
	default: cpu->rflags |= FL_DF; break;
	}
}

HANDLER(h_xlat)
{
	uint64_t ea = (cpu->gpr[RBX] + (cpu->gpr[RAX] & 0xff)) & amask(d->asz);
	uint64_t v = mem_read(cpu, seg_lin(cpu, d->seg, ea, 1, false), 1, seg_acc(d->seg));
	reg_set(cpu, 0, 1, v);
}

HANDLER_UNUSED(h_nop)
{
}
