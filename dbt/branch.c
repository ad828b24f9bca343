/*
 * Control flow: near and far jumps, calls and returns, Jcc, LOOP, JrCXZ,
 * software interrupts, and the instructions that only raise exceptions.
 * Every one of them ends its block; the fall-through RIP is already in
 * cpu->rip, so a branch not taken does nothing.
 */
#include "dbt/internal.h"

/* A relative target decoded as valid in 64-bit mode needs no check there;
 * elsewhere the CS limit applies. */
static inline void jump_rel(struct dbt_cpu *cpu, uint64_t target)
{
	if (likely(cpu->mode == MODE_LONG64))
		cpu->rip = target;
	else
		branch_to(cpu, target);
}

#define JCC(CC)                                                                                                        \
	static HANDLER(jcc_##CC)                                                                                       \
	{                                                                                                              \
		if (cond_true(cpu->rflags, CC))                                                                        \
			jump_rel(cpu, d->imm);                                                                         \
	}

JCC(0)
JCC(1)
JCC(2)
JCC(3)
JCC(4)
JCC(5)
JCC(6)
JCC(7)
JCC(8)
JCC(9)
JCC(10)
JCC(11)
JCC(12)
JCC(13)
JCC(14)
JCC(15)

const dbt_handler h_jcc[16] = {
    jcc_0, jcc_1, jcc_2,  jcc_3,  jcc_4,  jcc_5,  jcc_6,  jcc_7,
    jcc_8, jcc_9, jcc_10, jcc_11, jcc_12, jcc_13, jcc_14, jcc_15,
};

HANDLER(h_jmp_rel)
{
	jump_rel(cpu, d->imm);
}

/* A Jcc or JMP whose target is not canonical: #GP when taken. */
HANDLER(h_jmp_rel_checked)
{
	if (d->mnem == ZYDIS_MNEMONIC_JMP || cond_true(cpu->rflags, d->cc))
		branch_to(cpu, d->imm);
}

HANDLER(h_jmp_ind)
{
	branch_to(cpu, rm_read(cpu, d, d->osz));
}

HANDLER(h_jrcxz)
{
	if (reg_get(cpu, RCX, d->asz) == 0)
		branch_to(cpu, d->imm);
}

/* LOOP/LOOPE/LOOPNE (cc 0-2): the count register is the address size's. */
HANDLER(h_loop)
{
	uint64_t count = (reg_get(cpu, RCX, d->asz) - 1) & amask(d->asz);
	bool taken = count != 0;
	if (d->cc == 1)
		taken = taken && (cpu->rflags & FL_ZF);
	else if (d->cc == 2)
		taken = taken && !(cpu->rflags & FL_ZF);
	if (taken)
		branch_to(cpu, d->imm);
	reg_set_idx(cpu, RCX, d->asz, count);
}

/* The target is checked before anything is pushed. */
static void call_near(struct dbt_cpu *cpu, const struct dinsn *d, uint64_t target)
{
	uint64_t fall = cpu->rip;
	branch_to(cpu, target);
	cpu->rip = fall;
	push(cpu, next_rip(d) & size_mask(d->osz), d->osz);
	cpu->rip = target;
}

HANDLER(h_call_rel)
{
	call_near(cpu, d, d->imm);
}

HANDLER(h_call_ind)
{
	call_near(cpu, d, rm_read(cpu, d, d->osz));
}

HANDLER(h_ret)
{
	uint64_t target = stack_peek(cpu, 0, d->osz);
	branch_to(cpu, target);
	set_sp(cpu, cpu->gpr[RSP] + d->osz + d->imm);
}

/* Far pointers: the immediate ptr16:16/32 form or m16:16/32/64. */
static void far_operand(struct dbt_cpu *cpu, const struct dinsn *d, uint16_t *sel, uint64_t *off)
{
	if (d->flags & DI_IMM) {
		*sel = (uint16_t)d->disp;
		*off = d->imm;
		return;
	}
	uint64_t ea = d_ea(cpu, d);
	*off = mem_read(cpu, seg_lin(cpu, d->seg, ea, d->osz, false), d->osz, seg_acc(d->seg));
	*sel =
	    (uint16_t)mem_read(cpu, seg_lin(cpu, d->seg, (ea + d->osz) & amask(d->asz), 2, false), 2, seg_acc(d->seg));
}

HANDLER(h_jmp_far)
{
	uint16_t sel;
	uint64_t off;
	far_operand(cpu, d, &sel, &off);
	far_jump(cpu, sel, off, next_rip(d));
}

HANDLER(h_call_far)
{
	uint16_t sel;
	uint64_t off;
	far_operand(cpu, d, &sel, &off);
	far_call(cpu, sel, off, d->osz, next_rip(d));
}

HANDLER(h_retf)
{
	far_ret(cpu, d->osz, (unsigned)d->imm);
}

HANDLER(h_int)
{
	dbt_deliver(cpu, (int)d->imm, NO_ERROR, next_rip(d), true, false);
	cpu->stop = true;
}

HANDLER(h_int3)
{
	dbt_deliver(cpu, EXC_BP, NO_ERROR, next_rip(d), true, false);
	cpu->stop = true;
}

HANDLER(h_into)
{
	if (cpu->rflags & FL_OF) {
		dbt_deliver(cpu, EXC_OF, NO_ERROR, next_rip(d), true, false);
		cpu->stop = true;
	}
}

/* ICEBP: a #DB trap that ignores the gate's DPL. */
HANDLER(h_int1)
{
	dbt_deliver(cpu, EXC_DB, NO_ERROR, next_rip(d), false, false);
	cpu->stop = true;
}

HANDLER_UNUSED(h_ud)
{
	raise_ud(cpu);
}

HANDLER_UNUSED(h_gp0)
{
	raise_gp(cpu, 0);
}

HANDLER(h_bound)
{
	unsigned sz = d->osz;
	uint64_t ea = d_ea(cpu, d);
	int64_t lo = (int64_t)sext(mem_read(cpu, seg_lin(cpu, d->seg, ea, sz, false), sz, 0), sz);
	int64_t hi =
	    (int64_t)sext(mem_read(cpu, seg_lin(cpu, d->seg, (ea + sz) & amask(d->asz), sz, false), sz, 0), sz);
	int64_t v = (int64_t)sext(reg_get(cpu, d->r0, sz), sz);
	if (v < lo || v > hi)
		dbt_raise(cpu, EXC_BR, NO_ERROR);
}
