/*
 * Port I/O: IN and OUT through env->io as VCPU_EXIT_PIO records, with the
 * IOPL and TSS I/O-permission-bitmap checks of protected mode.
 */
#include "dbt/internal.h"

void io_check(struct dbt_cpu *cpu, uint16_t port, unsigned size)
{
	if (!mode_prot(cpu) || cpu->cpl <= ((cpu->rflags >> 12) & 3))
		return;
	const struct x86_segment *tr = &cpu->s.tr;
	if (tr->unusable || !tr->present || (tr->type & 0xd) != 9 || tr->limit < 0x67)
		raise_gp(cpu, 0);
	uint16_t map = (uint16_t)mem_read(cpu, (tr->base + 0x66) & cpu->lin_mask, 2, ACC_SYS);
	uint32_t off = (uint32_t)map + port / 8;
	if (off + 1 > tr->limit)
		raise_gp(cpu, 0);
	uint16_t bits = (uint16_t)mem_read(cpu, (tr->base + off) & cpu->lin_mask, 2, ACC_SYS);
	if ((bits >> (port & 7)) & ((1u << size) - 1))
		raise_gp(cpu, 0);
}

uint32_t io_in(struct dbt_cpu *cpu, uint16_t port, unsigned size)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_PIO};
	e.pio.port = port;
	e.pio.size = (uint8_t)size;
	e.pio.write = false;
	cpu->env.io(cpu->env.opaque, &e);
	return e.pio.data & (uint32_t)size_mask(size);
}

void io_out(struct dbt_cpu *cpu, uint16_t port, unsigned size, uint32_t v)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_PIO};
	e.pio.port = port;
	e.pio.size = (uint8_t)size;
	e.pio.write = true;
	e.pio.data = v & (uint32_t)size_mask(size);
	cpu->env.io(cpu->env.opaque, &e);
}

static uint16_t port_of(const struct dbt_cpu *cpu, const struct dinsn *d)
{
	return (d->flags & DI_IMM) ? (uint16_t)d->imm : (uint16_t)cpu->gpr[RDX];
}

HANDLER(h_in)
{
	uint16_t port = port_of(cpu, d);
	io_check(cpu, port, d->osz);
	reg_set_idx(cpu, RAX, d->osz, io_in(cpu, port, d->osz));
}

HANDLER(h_out)
{
	uint16_t port = port_of(cpu, d);
	io_check(cpu, port, d->osz);
	io_out(cpu, port, d->osz, (uint32_t)reg_get(cpu, RAX, d->osz));
}
