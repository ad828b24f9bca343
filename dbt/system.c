/*
 * System instructions: control and debug registers, CLTS/LMSW/SMSW,
 * INVLPG, MSRs, the time-stamp counter, CPUID, HLT, CLI/STI, XGETBV and
 * XSETBV, cache and ordering instructions.
 */
#include "dbt/internal.h"

static void need_cpl0(struct dbt_cpu *cpu)
{
	if (cpu->cpl != 0)
		raise_gp(cpu, 0);
}

/* ---- control registers ------------------------------------------------------------ */

void cr0_write(struct dbt_cpu *cpu, uint64_t v)
{
	struct x86_state *s = &cpu->s;
	uint64_t old = s->cr0;

	if (v >> 32)
		raise_gp(cpu, 0);
	v |= CR0_ET;
	if (((v & CR0_PG) && !(v & CR0_PE)) || ((v & CR0_NW) && !(v & CR0_CD)))
		raise_gp(cpu, 0);
	if ((v & CR0_PG) && !(old & CR0_PG) && (s->efer & EFER_LME)) {
		if (!(s->cr4 & CR4_PAE) || s->seg[SEG_CS].l)
			raise_gp(cpu, 0);
		s->efer |= EFER_LMA;
	}
	if (!(v & CR0_PG) && (old & CR0_PG) && (s->efer & EFER_LMA)) {
		if (cpu->mode == MODE_LONG64)
			raise_gp(cpu, 0);
		s->efer &= ~EFER_LMA;
	}
	s->cr0 = v & (CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_NW | CR0_CD | CR0_PG);
	if ((old ^ v) & (CR0_PG | CR0_WP | CR0_PE))
		tlb_flush_all(cpu, false);
	cpu_update_mode(cpu);
}

void cr4_write(struct dbt_cpu *cpu, uint64_t v)
{
	struct x86_state *s = &cpu->s;
	const uint64_t allowed = CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR |
				 CR4_OSXMMEXCPT | CR4_OSXSAVE;
	if ((v & ~allowed) || ((s->efer & EFER_LMA) && !(v & CR4_PAE)))
		raise_gp(cpu, 0);
	uint64_t old = s->cr4;
	s->cr4 = v;
	if ((old ^ v) & (CR4_PGE | CR4_PAE | CR4_PSE))
		tlb_flush_all(cpu, false);
}

void cr3_write(struct dbt_cpu *cpu, uint64_t v)
{
	if ((cpu->s.efer & EFER_LMA) && (v & ~DBT_PHYS_MASK))
		raise_gp(cpu, 0);
	cpu->s.cr3 = v;
	tlb_flush_all(cpu, true);
}

/* CR8 is the LAPIC's TPR[7:4]: the interrupt controller owns it (x2APIC
 * TPR MSR). Where the VMM refuses it, the value stays in the CPU. */
static uint64_t tpr_msr(struct dbt_cpu *cpu, bool write, uint64_t v, bool *ok)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_MSR};
	e.msr.index = 0x808;
	e.msr.write = write;
	e.msr.data = v;
	cpu->env.io(cpu->env.opaque, &e);
	*ok = !e.msr.fault;
	return e.msr.data;
}

HANDLER(h_mov_to_cr)
{
	need_cpl0(cpu);
	uint64_t v = cpu->gpr[d->r1];
	if (cpu->mode != MODE_LONG64)
		v &= 0xffffffff;
	switch (d->cc) {
	case 0: cr0_write(cpu, v); break;
	case 2: cpu->s.cr2 = v; break;
	case 3: cr3_write(cpu, v); break;
	case 4: cr4_write(cpu, v); break;
	case 8: {
		bool ok;
		if (v >> 4)
			raise_gp(cpu, 0);
		tpr_msr(cpu, true, v << 4, &ok);
		cpu->s.cr8 = v;
		if (cpu->env.interrupt_hint)
			atomic_store(cpu->env.interrupt_hint, true); /* a lower TPR may unblock one */
		break;
	}
	default: raise_ud(cpu);
	}
}

HANDLER(h_mov_from_cr)
{
	need_cpl0(cpu);
	uint64_t v;
	switch (d->cc) {
	case 0: v = cpu->s.cr0; break;
	case 2: v = cpu->s.cr2; break;
	case 3: v = cpu->s.cr3; break;
	case 4: v = cpu->s.cr4; break;
	case 8: {
		bool ok;
		uint64_t tpr = tpr_msr(cpu, false, 0, &ok);
		v = ok ? (tpr >> 4) & 0xf : cpu->s.cr8;
		break;
	}
	default: raise_ud(cpu);
	}
	reg_set(cpu, d->r0, cpu->mode == MODE_LONG64 ? 8 : 4, v);
}

static unsigned dr_index(struct dbt_cpu *cpu, unsigned n)
{
	if (n == 4 || n == 5) {
		if (cpu->s.cr4 & CR4_DE)
			raise_ud(cpu);
		return n + 2;
	}
	if (n > 7)
		raise_ud(cpu);
	return n;
}

/* Debug registers hold their values; breakpoints are not implemented. */
HANDLER(h_mov_to_dr)
{
	need_cpl0(cpu);
	unsigned n = dr_index(cpu, d->cc);
	uint64_t v = cpu->gpr[d->r1];
	if (cpu->mode != MODE_LONG64)
		v &= 0xffffffff;
	if ((n == 6 || n == 7) && (v >> 32))
		raise_gp(cpu, 0);
	if (n == 6)
		v = (v | 0xffff0ff0) & 0xffffefff;
	else if (n == 7)
		v = (v | 0x400) & ~0xd800ull;
	cpu->s.dr[n] = v;
}

HANDLER(h_mov_from_dr)
{
	need_cpl0(cpu);
	unsigned n = dr_index(cpu, d->cc);
	reg_set(cpu, d->r0, cpu->mode == MODE_LONG64 ? 8 : 4, cpu->s.dr[n]);
}

HANDLER_UNUSED(h_clts)
{
	need_cpl0(cpu);
	cpu->s.cr0 &= ~CR0_TS;
}

HANDLER(h_lmsw)
{
	need_cpl0(cpu);
	uint64_t v = rm_read(cpu, d, 2);
	uint64_t cr0 = cpu->s.cr0;
	cr0_write(cpu, (cr0 & ~0xeull) | (v & 0xf) | (cr0 & CR0_PE));
}

HANDLER(h_smsw)
{
	if (d->flags & DI_MEM)
		d_write(cpu, d, 2, cpu->s.cr0);
	else
		reg_set(cpu, d->r0, d->osz, cpu->s.cr0);
}

HANDLER(h_invlpg)
{
	need_cpl0(cpu);
	tlb_flush_page(cpu, (d_ea(cpu, d) + cpu->segbase[d->seg]) & cpu->lin_mask);
}

HANDLER_UNUSED(h_wbinvd)
{
	need_cpl0(cpu);
}

/* ---- MSRs, TSC, CPUID ------------------------------------------------------------------- */

static bool msr_exit(struct dbt_cpu *cpu, uint32_t index, bool write, uint64_t *v)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_MSR};
	e.msr.index = index;
	e.msr.write = write;
	e.msr.data = write ? *v : 0;
	cpu->env.io(cpu->env.opaque, &e);
	if (!write)
		*v = e.msr.data;
	return !e.msr.fault;
}

HANDLER_UNUSED(h_rdmsr)
{
	need_cpl0(cpu);
	uint32_t index = (uint32_t)cpu->gpr[RCX];
	uint64_t v;
	bool ok = msr_is_foreign(index) ? msr_exit(cpu, index, false, &v) : msr_read(cpu, index, &v);
	if (!ok)
		raise_gp(cpu, 0);
	cpu->gpr[RAX] = (uint32_t)v;
	cpu->gpr[RDX] = v >> 32;
}

HANDLER_UNUSED(h_wrmsr)
{
	need_cpl0(cpu);
	uint32_t index = (uint32_t)cpu->gpr[RCX];
	uint64_t v = (cpu->gpr[RDX] << 32) | (uint32_t)cpu->gpr[RAX];
	bool ok = msr_is_foreign(index) ? msr_exit(cpu, index, true, &v) : msr_write(cpu, index, v);
	if (!ok)
		raise_gp(cpu, 0);
	if (index == 0x1b && cpu->env.interrupt_hint)
		atomic_store(cpu->env.interrupt_hint, true);
}

static void tsc_check(struct dbt_cpu *cpu)
{
	if ((cpu->s.cr4 & CR4_TSD) && cpu->cpl != 0 && mode_prot(cpu))
		raise_gp(cpu, 0);
}

HANDLER_UNUSED(h_rdtsc)
{
	tsc_check(cpu);
	uint64_t t = guest_tsc(cpu);
	cpu->gpr[RAX] = (uint32_t)t;
	cpu->gpr[RDX] = t >> 32;
}

HANDLER_UNUSED(h_rdtscp)
{
	tsc_check(cpu);
	uint64_t t = guest_tsc(cpu);
	cpu->gpr[RAX] = (uint32_t)t;
	cpu->gpr[RDX] = t >> 32;
	cpu->gpr[RCX] = (uint32_t)cpu->s.tsc_aux;
}

HANDLER_UNUSED(h_rdpmc)
{
	raise_gp(cpu, 0); /* no performance counters */
}

HANDLER_UNUSED(h_cpuid)
{
	uint32_t r[4];
	cpuid_query(cpu, (uint32_t)cpu->gpr[RAX], (uint32_t)cpu->gpr[RCX], r);
	cpu->gpr[RAX] = r[0];
	cpu->gpr[RBX] = r[1];
	cpu->gpr[RCX] = r[2];
	cpu->gpr[RDX] = r[3];
}

/* ---- interrupts and halting ---------------------------------------------------------------- */

/* The run loop's halted state takes it from here: an interrupt already
 * pending wakes the CPU at once (one that came in STI's shadow, or whose
 * hint was taken while IF was clear), as on hardware; only a CPU with
 * nothing to take returns VCPU_EXIT_HLT, so the VMM may sleep until the
 * next interrupt wakes it. */
HANDLER(h_hlt)
{
	need_cpl0(cpu);
	cpu->s.halted = true;
	end_block(cpu, next_rip(d));
}

static void iopl_check(struct dbt_cpu *cpu)
{
	if (mode_prot(cpu) && cpu->cpl > ((cpu->rflags >> 12) & 3))
		raise_gp(cpu, 0);
}

HANDLER_UNUSED(h_cli)
{
	iopl_check(cpu);
	cpu->rflags &= ~FL_IF;
}

HANDLER_UNUSED(h_sti)
{
	iopl_check(cpu);
	if (!(cpu->rflags & FL_IF))
		cpu->irq_shadow = true;
	cpu->rflags |= FL_IF;
}

/* ---- XCR0 ----------------------------------------------------------------------------------- */

HANDLER_UNUSED(h_xgetbv)
{
	if (!(cpu->s.cr4 & CR4_OSXSAVE))
		raise_ud(cpu);
	if ((uint32_t)cpu->gpr[RCX] != 0)
		raise_gp(cpu, 0);
	cpu->gpr[RAX] = (uint32_t)cpu->s.xcr0;
	cpu->gpr[RDX] = cpu->s.xcr0 >> 32;
}

HANDLER_UNUSED(h_xsetbv)
{
	if (!(cpu->s.cr4 & CR4_OSXSAVE))
		raise_ud(cpu);
	need_cpl0(cpu);
	uint64_t v = (cpu->gpr[RDX] << 32) | (uint32_t)cpu->gpr[RAX];
	if ((uint32_t)cpu->gpr[RCX] != 0 || !(v & 1) || (v & ~3ull))
		raise_gp(cpu, 0);
	cpu->s.xcr0 = v;
}

/* ---- caches and ordering ---------------------------------------------------------------------- */

/* CLFLUSH checks the address like a read but touches nothing. */
HANDLER(h_clflush)
{
	mem_translate(cpu, d_lin(cpu, d, 1, false), 1, ACC_R | seg_acc(d->seg));
}

HANDLER_UNUSED(h_mfence)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

HANDLER_UNUSED(h_pause)
{
	__builtin_ia32_pause();
}
