/*
 * The stack: PUSH/POP in all forms, PUSHA/POPA, PUSHF/POPF with their
 * privilege rules, ENTER and LEAVE.
 */
#include "dbt/internal.h"

/* 64-bit PUSH/POP of a register: the common case, without size switches. */
HANDLER(h_push_r64)
{
	/* Only in 64-bit mode: SS has no base and no limit. */
	uint64_t sp = cpu->gpr[RSP] - 8;
	mem_write(cpu, sp, 8, cpu->gpr[d->r0], ACC_STACK);
	cpu->gpr[RSP] = sp;
}

HANDLER(h_pop_r64)
{
	uint64_t sp = cpu->gpr[RSP];
	uint64_t v = mem_read(cpu, sp, 8, ACC_STACK);
	cpu->gpr[RSP] = sp + 8;
	cpu->gpr[d->r0] = v;
}

HANDLER(h_push_r)
{
	push(cpu, reg_get(cpu, d->r0, d->osz), d->osz);
}

HANDLER(h_pop_r)
{
	uint64_t v = pop(cpu, d->osz);
	reg_set(cpu, d->r0, d->osz, v);
}

HANDLER(h_push_m)
{
	push(cpu, d_read(cpu, d, d->osz), d->osz);
}

HANDLER(h_push_i)
{
	push(cpu, d->imm, d->osz);
}

/* POP to memory: the address is computed with RSP already incremented. */
HANDLER(h_pop_m)
{
	uint64_t v = stack_peek(cpu, 0, d->osz), old = cpu->gpr[RSP];
	uint64_t new_sp = (old & ~cpu->sp_mask) | ((old + d->osz) & cpu->sp_mask);
	cpu->gpr[RSP] = new_sp;
	uint64_t ea = d_ea(cpu, d);
	cpu->gpr[RSP] = old;
	mem_write(cpu, seg_lin(cpu, d->seg, ea, d->osz, true), d->osz, v, seg_acc(d->seg));
	cpu->gpr[RSP] = new_sp;
}

HANDLER(h_push_seg)
{
	push(cpu, cpu->s.seg[d->cc].selector, d->osz);
}

HANDLER(h_pop_seg)
{
	uint16_t sel = (uint16_t)stack_peek(cpu, 0, d->osz);
	if (mode_prot(cpu))
		seg_load(cpu, d->cc, sel);
	else
		seg_load_real(cpu, d->cc, sel);
	set_sp(cpu, cpu->gpr[RSP] + d->osz);
	if (d->cc == SEG_SS)
		cpu->irq_shadow = true;
}

HANDLER(h_pusha)
{
	unsigned sz = d->osz;
	uint64_t sp = cpu->gpr[RSP];
	mem_probe_write(cpu, stack_lin(cpu, sp - 8 * sz, 8 * sz, true), 8 * sz, ACC_STACK);
	for (int r = RAX; r <= RDI; r++) {
		uint64_t v = r == RSP ? sp : cpu->gpr[r];
		push(cpu, v & size_mask(sz), sz);
	}
}

HANDLER(h_popa)
{
	unsigned sz = d->osz;
	uint64_t v[8];
	for (int i = 0; i < 8; i++)
		v[i] = stack_peek(cpu, i * sz, sz);
	for (int r = RDI, i = 0; r >= RAX; r--, i++)
		if (r != RSP)
			reg_set(cpu, r, sz, v[i]);
	set_sp(cpu, cpu->gpr[RSP] + 8 * sz);
}

HANDLER(h_pushf)
{
	push(cpu, cpu->rflags & ~(FL_RF | FL_VM), d->osz);
}

/* The flags POPF/IRET may change at this privilege. */
uint64_t popf_mask(struct dbt_cpu *cpu, unsigned size)
{
	uint64_t m = FL_ARITH | FL_TF | FL_DF | FL_NT | FL_AC | FL_ID;
	unsigned iopl = (cpu->rflags >> 12) & 3;
	if (cpu->cpl == 0)
		m |= FL_IOPL | FL_IF;
	else if (cpu->cpl <= iopl)
		m |= FL_IF;
	if (size == 2)
		m &= 0xffff;
	return m;
}

HANDLER(h_popf)
{
	uint64_t v = stack_peek(cpu, 0, d->osz);
	uint64_t m = popf_mask(cpu, d->osz);
	set_sp(cpu, cpu->gpr[RSP] + d->osz);
	cpu_set_rflags(cpu, (cpu->rflags & ~m & ~FL_RF) | (v & m));
}

/* ENTER imm16, imm8: the frame is read and the whole stack range checked
 * before anything is written. */
HANDLER(h_enter)
{
	unsigned sz = d->osz, level = d->ssz;
	uint64_t bp = cpu->gpr[RBP], sp = cpu->gpr[RSP];
	uint64_t saved[32];
	uint64_t smask = cpu->sp_mask;

	for (unsigned i = 1; i < level; i++)
		saved[i] = mem_read(cpu, stack_lin(cpu, bp - i * sz, sz, false), sz, ACC_STACK);
	uint64_t frame_bytes = sz * (1 + (level ? level : 0));
	mem_probe_write(cpu, stack_lin(cpu, sp - frame_bytes, (unsigned)frame_bytes, true), (unsigned)frame_bytes,
			ACC_STACK);
	push(cpu, bp & size_mask(sz), sz);
	uint64_t frame_temp = cpu->gpr[RSP] & smask;
	for (unsigned i = 1; i < level; i++)
		push(cpu, saved[i], sz);
	if (level)
		push(cpu, frame_temp, sz);
	reg_set_idx(cpu, RBP, sz, frame_temp);
	set_sp(cpu, cpu->gpr[RSP] - d->imm);
}

HANDLER(h_leave)
{
	uint64_t bp = cpu->gpr[RBP] & cpu->sp_mask;
	uint64_t v = mem_read(cpu, stack_lin(cpu, bp, d->osz, false), d->osz, ACC_STACK);
	set_sp(cpu, bp + d->osz);
	reg_set_idx(cpu, RBP, d->osz, v);
}
