/*
 * Fast system calls: SYSCALL/SYSRET, SYSENTER/SYSEXIT and SWAPGS. The
 * segments they load are fixed flat descriptors; the GDT is not read.
 */
#include "dbt/internal.h"

static struct x86_segment flat(uint16_t sel, bool code, unsigned dpl, bool l64)
{
	return (struct x86_segment){
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = sel,
	    .type = code ? 0xb : 0x3,
	    .s = 1,
	    .dpl = dpl & 3,
	    .present = 1,
	    .l = code && l64,
	    .db = !(code && l64),
	    .g = 1,
	};
}

HANDLER(h_syscall)
{
	struct x86_state *s = &cpu->s;
	if (!(s->efer & EFER_SCE) || cpu->mode != MODE_LONG64)
		raise_ud(cpu);
	uint16_t sel = (uint16_t)(s->star >> 32) & 0xfffc;
	cpu->gpr[RCX] = next_rip(d);
	cpu->gpr[R11] = cpu->rflags & ~FL_RF;
	s->seg[SEG_CS] = flat(sel, true, 0, true);
	s->seg[SEG_SS] = flat((uint16_t)(sel + 8), false, 0, false);
	cpu->cpl = 0;
	cpu_set_rflags(cpu, cpu->rflags & ~(s->fmask & 0xffffffff) & ~FL_RF);
	cpu_update_mode(cpu);
	cpu->rip = s->lstar;
}

HANDLER(h_sysret)
{
	struct x86_state *s = &cpu->s;
	if (!(s->efer & EFER_SCE) || cpu->mode != MODE_LONG64)
		raise_ud(cpu);
	if (cpu->cpl != 0)
		raise_gp(cpu, 0);
	uint16_t base = (uint16_t)(s->star >> 48);
	uint64_t rip;
	if (d->flags & DI_REX_W) {
		rip = cpu->gpr[RCX];
		if ((uint64_t)((int64_t)(rip << 16) >> 16) != rip)
			raise_gp(cpu, 0);
		s->seg[SEG_CS] = flat((uint16_t)((base + 16) | 3), true, 3, true);
	} else {
		rip = (uint32_t)cpu->gpr[RCX];
		s->seg[SEG_CS] = flat((uint16_t)(base | 3), true, 3, false);
	}
	s->seg[SEG_SS] = flat((uint16_t)((base + 8) | 3), false, 3, false);
	cpu->cpl = 3;
	cpu_set_rflags(cpu, (cpu->gpr[R11] & ~(FL_RF | FL_VM)) | FL_FIXED);
	cpu_update_mode(cpu);
	cpu->rip = rip;
}

HANDLER_UNUSED(h_sysenter)
{
	struct x86_state *s = &cpu->s;
	uint16_t sel = (uint16_t)s->sysenter_cs & 0xfffc;
	if (!mode_prot(cpu) || !sel)
		raise_gp(cpu, 0);
	bool lma = mode_long(cpu);
	s->seg[SEG_CS] = flat(sel, true, 0, lma);
	s->seg[SEG_SS] = flat((uint16_t)(sel + 8), false, 0, false);
	cpu->cpl = 0;
	cpu_set_rflags(cpu, cpu->rflags & ~(FL_VM | FL_IF | FL_RF));
	cpu_update_mode(cpu);
	cpu->gpr[RSP] = lma ? s->sysenter_esp : (uint32_t)s->sysenter_esp;
	cpu->rip = lma ? s->sysenter_eip : (uint32_t)s->sysenter_eip;
}

HANDLER(h_sysexit)
{
	struct x86_state *s = &cpu->s;
	uint16_t sel = (uint16_t)s->sysenter_cs & 0xfffc;
	if (!mode_prot(cpu) || cpu->cpl != 0 || !sel)
		raise_gp(cpu, 0);
	uint64_t rip, rsp;
	if (d->flags & DI_REX_W) {
		rip = cpu->gpr[RDX];
		rsp = cpu->gpr[RCX];
		if ((uint64_t)((int64_t)(rip << 16) >> 16) != rip)
			raise_gp(cpu, 0);
		s->seg[SEG_CS] = flat((uint16_t)((sel + 32) | 3), true, 3, true);
		s->seg[SEG_SS] = flat((uint16_t)((sel + 40) | 3), false, 3, false);
	} else {
		rip = (uint32_t)cpu->gpr[RDX];
		rsp = (uint32_t)cpu->gpr[RCX];
		s->seg[SEG_CS] = flat((uint16_t)((sel + 16) | 3), true, 3, false);
		s->seg[SEG_SS] = flat((uint16_t)((sel + 24) | 3), false, 3, false);
	}
	cpu->cpl = 3;
	cpu_update_mode(cpu);
	cpu->gpr[RSP] = rsp;
	cpu->rip = rip;
}

HANDLER_UNUSED(h_swapgs)
{
	if (cpu->mode != MODE_LONG64)
		raise_ud(cpu);
	if (cpu->cpl != 0)
		raise_gp(cpu, 0);
	uint64_t t = cpu->s.seg[SEG_GS].base;
	cpu->s.seg[SEG_GS].base = cpu->s.kernel_gs_base;
	cpu->s.kernel_gs_base = t;
	cpu->segbase[SEG_GS] = cpu->s.seg[SEG_GS].base;
}
