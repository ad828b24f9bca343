/*
 * The vCPU: creation, power-on state, the engine-neutral state in and out,
 * and the run loop that finds blocks, executes them and takes interrupts at
 * block boundaries.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <x86intrin.h>

#include "dbt/internal.h"

/* Ordered like the guest's RDTSCP and LFENCE;RDTSC: without the fence the
 * host may read its TSC before the loads the handlers did for earlier guest
 * instructions (a spinlock, another vCPU's TSC reading) are complete, and
 * TSCs read under a lock seem to go backwards between vCPUs. */
uint64_t host_tsc(void)
{
	_mm_lfence();
	return __rdtsc();
}

uint64_t guest_tsc(struct dbt_cpu *cpu)
{
	return host_tsc() + (uint64_t)cpu->tsc_offset;
}

/*
 * A guest's vCPUs share one TSC, as a machine's CPUs do when they start
 * together. The VMM sets a vCPU's TSC at creation and through set_state
 * (boot, INIT/SIPI, restore) moments apart from the others; an offset
 * within TSC_MATCH_WINDOW cycles of the guest's is taken to mean that clock
 * and made identical to it, or Linux sees the TSCs warp and drops the TSC
 * clocksource (KVM matches TSC writes the same way). A guest's own WRMSR
 * sets its vCPU's TSC exactly.
 */
#define TSC_MATCH_WINDOW (1ll << 32) /* a second or two */

static pthread_mutex_t tsc_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t tsc_match(struct dbt_cpu *cpu, int64_t offset)
{
	struct dbt_shared *sh = cpu->shared;
	int64_t delta;

	pthread_mutex_lock(&tsc_lock);
	delta = (int64_t)((uint64_t)offset - (uint64_t)sh->tsc_offset);
	if (sh->tsc_known && delta > -TSC_MATCH_WINDOW && delta < TSC_MATCH_WINDOW) {
		offset = sh->tsc_offset;
	} else {
		sh->tsc_offset = offset;
		sh->tsc_known = true;
	}
	pthread_mutex_unlock(&tsc_lock);
	return offset;
}

struct dbt_cpu *dbt_cpu_create(const struct dbt_env *env)
{
	struct dbt_cpu *cpu;

	if (!env || env->ram_count > 2 || !env->io || !env->kick)
		return NULL;
	cpuid_host_init();
	cpu = aligned_alloc(64, (sizeof(*cpu) + 63) & ~(size_t)63);
	if (!cpu)
		return NULL;
	memset(cpu, 0, sizeof(*cpu));
	cpu->env = *env;
	cpu->shared = shared_get(env);
	if (!cpu->shared)
		goto fail;
	if (cache_init(cpu) < 0)
		goto fail;
	if (fpu_init(cpu) < 0)
		goto fail;
	decode_init(cpu);
	cpu->trace = getenv("VIREO_DBT_TRACE") != NULL;
	dbt_cpu_reset(cpu);
	return cpu;
fail:
	dbt_cpu_destroy(cpu);
	return NULL;
}

void dbt_cpu_destroy(struct dbt_cpu *cpu)
{
	if (!cpu)
		return;
	fpu_destroy(cpu);
	cache_destroy(cpu);
	if (cpu->shared)
		shared_put(cpu->shared);
	free(cpu);
}

static void seg_reset(struct x86_segment *s, uint16_t sel, uint64_t base, uint8_t type)
{
	*s = (struct x86_segment){
	    .base = base,
	    .limit = 0xffff,
	    .selector = sel,
	    .type = type,
	    .s = 1,
	    .present = 1,
	};
}

void dbt_cpu_reset(struct dbt_cpu *cpu)
{
	struct x86_state *s = &cpu->s;
	uint32_t sig[4];

	memset(s, 0, sizeof(*s));
	memset(cpu->gpr, 0, sizeof(cpu->gpr));
	cpuid_query(cpu, 1, 0, sig);
	cpu->gpr[RDX] = sig[0];
	cpu->rip = 0xfff0;
	cpu->rflags = FL_FIXED;
	seg_reset(&s->seg[SEG_CS], 0xf000, 0xffff0000, 0xb);
	for (int i = 0; i < SEG_COUNT; i++)
		if (i != SEG_CS)
			seg_reset(&s->seg[i], 0, 0, 0x3);
	s->ldtr = (struct x86_segment){.limit = 0xffff, .type = 2, .present = 1};
	s->tr = (struct x86_segment){.limit = 0xffff, .type = 0xb, .present = 1};
	s->gdtr.limit = 0xffff;
	s->idtr.limit = 0xffff;
	s->cr0 = CR0_CD | CR0_NW | CR0_ET;
	s->dr[6] = 0xffff0ff0;
	s->dr[7] = 0x400;
	s->xcr0 = 1;
	s->pat = 0x0007040600070406ull;
	s->misc_enable = 1 | (1u << 11) | (1u << 12);
	s->apic_base = 0xfee00000ull | (1u << 11) | (cpu->env.cpu_index == 0 ? 1u << 8 : 0);
	s->fpu.fcw = 0x40;
	s->fpu.mxcsr = 0x1f80;
	s->fpu.mxcsr_mask = 0xffff;
	memset(cpu->mtrr, 0, sizeof(cpu->mtrr));
	cpu->tsc_offset = tsc_match(cpu, -(int64_t)host_tsc());
	cpu->cpl = 0;
	cpu->irq_shadow = false;
	cpu->irq_check = cpu->nmi_check = true;
	cpu->nmi_blocked = false;
	cpu->delivering = -1;
	cpu_update_mode(cpu);
	tlb_flush_all(cpu, false);
	cache_flush_jumps(cpu);
}

void dbt_cpu_get_state(struct dbt_cpu *cpu, struct x86_state *state)
{
	*state = cpu->s;
	memcpy(state->gpr, cpu->gpr, sizeof(state->gpr));
	state->rip = cpu->in_block ? cpu->cur->rip : cpu->rip;
	state->rflags = cpu->rflags;
	state->tsc = guest_tsc(cpu);
}

void dbt_cpu_set_state(struct dbt_cpu *cpu, const struct x86_state *state)
{
	cpu->s = *state;
	memcpy(cpu->gpr, state->gpr, sizeof(state->gpr));
	cpu->gpr[REG_NONE] = 0;
	cpu->rip = state->rip;
	cpu->rflags = (state->rflags & 0x3f7fd5) | FL_FIXED;
	cpu->tsc_offset = tsc_match(cpu, (int64_t)(state->tsc - host_tsc()));
	fpu_sanitize(&cpu->s.fpu);
	cpu->s.xcr0 = (state->xcr0 & 3) | 1;
	cpu->cpl = (cpu->s.cr0 & CR0_PE) ? cpu->s.seg[SEG_SS].dpl : 0;
	cpu->irq_shadow = false;
	cpu->irq_check = cpu->nmi_check = true;
	cpu->nmi_blocked = false;
	cpu->delivering = -1;
	cpu_update_mode(cpu);
	tlb_flush_all(cpu, false);
	cache_flush_jumps(cpu);
}

uint64_t dbt_cpu_instructions(struct dbt_cpu *cpu)
{
	return cpu->icount;
}

int64_t dbt_cpu_tsc_offset(struct dbt_cpu *cpu)
{
	return cpu->tsc_offset;
}

/* ---- mode ------------------------------------------------------------------ */

static bool seg_flat_read(const struct x86_segment *s)
{
	if (s->unusable || !s->present)
		return false;
	if (s->s && (s->type & 8) && !(s->type & 2))
		return false; /* execute-only code */
	if (s->s && !(s->type & 8) && (s->type & 4))
		return false; /* expand-down */
	return s->limit == 0xffffffff;
}

static bool seg_flat_write(const struct x86_segment *s)
{
	if (!seg_flat_read(s))
		return false;
	return s->s && !(s->type & 8) && (s->type & 2);
}

void cpu_update_mode(struct dbt_cpu *cpu)
{
	struct x86_state *s = &cpu->s;
	const struct x86_segment *cs = &s->seg[SEG_CS];
	uint64_t old_cs_base = cpu->segbase[SEG_CS];

	if (!(s->cr0 & CR0_PE))
		cpu->mode = MODE_REAL;
	else if (s->efer & EFER_LMA)
		cpu->mode = cs->l ? MODE_LONG64 : cs->db ? MODE_COMPAT32 : MODE_COMPAT16;
	else
		cpu->mode = cs->db ? MODE_PROT32 : MODE_PROT16;
	if (cpu->mode == MODE_REAL)
		cpu->cpl = 0;
	cpu->lin_mask = (s->efer & EFER_LMA) ? ~0ull : 0xffffffffull;
	if (cpu->mode == MODE_LONG64)
		cpu->sp_mask = ~0ull;
	else
		cpu->sp_mask = s->seg[SEG_SS].db ? 0xffffffffull : 0xffffull;
	cpu->seg_chk[0] = cpu->seg_chk[1] = 0;
	for (int i = 0; i < SEG_COUNT; i++) {
		const struct x86_segment *g = &s->seg[i];
		if (cpu->mode == MODE_LONG64) {
			cpu->segbase[i] = (i == SEG_FS || i == SEG_GS) ? g->base : 0;
			continue;
		}
		cpu->segbase[i] = g->base & 0xffffffff;
		if (cpu->mode == MODE_REAL) {
			if (g->limit != 0xffffffff)
				cpu->seg_chk[0] |= 1u << i, cpu->seg_chk[1] |= 1u << i;
			continue;
		}
		if (!seg_flat_read(g))
			cpu->seg_chk[0] |= 1u << i;
		if (!seg_flat_write(g))
			cpu->seg_chk[1] |= 1u << i;
	}
	cpu->segbase[SEG_NONE] = cpu->segbase[7] = 0;
	cpu->key = mode_key(cpu);
	tlb_select(cpu);
	if (old_cs_base != cpu->segbase[SEG_CS]) /* jump-cache entries are by RIP, not linear address */
		cache_flush_jumps(cpu);
}

void cpu_set_rflags(struct dbt_cpu *cpu, uint64_t f)
{
	uint64_t old = cpu->rflags;
	cpu->rflags = (f & 0x3f7fd5) | FL_FIXED;
	if ((old ^ cpu->rflags) & FL_AC)
		tlb_select(cpu);
}

void branch_to(struct dbt_cpu *cpu, uint64_t target)
{
	if (cpu->mode == MODE_LONG64) {
		if ((uint64_t)((int64_t)(target << 16) >> 16) != target)
			raise_gp(cpu, 0);
	} else if (target > cpu->s.seg[SEG_CS].limit) {
		raise_gp(cpu, 0);
	}
	cpu->rip = target;
}

/* ---- the run loop -------------------------------------------------------------- */

static void exec_block(struct dbt_cpu *cpu, struct block *b)
{
	const struct dinsn *d = b->insn, *end = d + b->count;
	bool single_step = cpu->rflags & FL_TF;

	if (single_step) {
		end = d + 1;
		cpu->rip = next_rip(d);
	} else {
		cpu->rip = b->end_rip;
	}
	cpu->stop = false;
	cpu->delivered = false;
	cpu->cur_block = b;
	cpu->in_block = true;
	do {
		cpu->cur = d;
		d->fn(cpu, d);
		d++;
	} while (d < end && !cpu->stop);
	cpu->in_block = false;
	cpu->icount += (uint64_t)(d - b->insn);
	/* The single-step trap follows an instruction that ran with TF set,
	 * unless it delivered an event itself (INT n, INT3, INTO clear TF). */
	if (single_step && cpu->exit_reason < 0 && !cpu->delivered) {
		cpu->s.dr[6] |= 1u << 14;
		dbt_deliver(cpu, EXC_DB, NO_ERROR, cpu->rip, false, false);
	}
}

/* Takes an NMI or a maskable interrupt if one can be delivered now. The
 * hint is consumed into irq_check/nmi_check, so the interrupt controller is
 * asked only when an answer could be acted on. */
static bool take_interrupt(struct dbt_cpu *cpu)
{
	const struct dbt_env *env = &cpu->env;

	if (env->interrupt_hint && atomic_load_explicit(env->interrupt_hint, memory_order_relaxed) &&
	    atomic_exchange(env->interrupt_hint, false))
		cpu->irq_check = cpu->nmi_check = true;
	if (cpu->irq_shadow && !cpu->s.halted)
		return false;
	if (cpu->nmi_check && !cpu->nmi_blocked) {
		cpu->nmi_check = false;
		if (env->take_nmi && env->take_nmi(env->opaque)) {
			cpu->nmi_blocked = true;
			cpu->s.halted = false;
			dbt_deliver(cpu, EXC_NMI, NO_ERROR, cpu->rip, false, true);
			return true;
		}
	}
	if (!(cpu->rflags & FL_IF) || !env->pending_interrupt || (!cpu->irq_check && !cpu->s.halted))
		return false;
	cpu->irq_check = false;
	int v = env->pending_interrupt(env->opaque);
	if (v < 0)
		return false;
	env->accept_interrupt(env->opaque, v);
	cpu->s.halted = false;
	dbt_deliver(cpu, v & 0xff, NO_ERROR, cpu->rip, false, true);
	return true;
}

static int run_exit(struct dbt_cpu *cpu, struct vcpu_exit *exit, int reason)
{
	if (reason != VCPU_EXIT_ERROR && reason != VCPU_EXIT_SHUTDOWN)
		memset(exit, 0, sizeof(*exit));
	exit->reason = reason;
	cpu->exit_reason = -1;
	cpu->exit = NULL;
	return 0;
}

int dbt_cpu_run(struct dbt_cpu *cpu, struct vcpu_exit *exit)
{
	cpu->exit = exit;
	cpu->exit_reason = -1;
	if (setjmp(cpu->jb)) {
		cpu->in_block = false;
		if (cpu->exit_reason < 0 && !dbt_handle_exception(cpu))
			cpu->exit_reason = VCPU_EXIT_SHUTDOWN;
	}
	for (;;) {
		if (unlikely(cpu->exit_reason >= 0))
			return run_exit(cpu, exit, cpu->exit_reason);
		if (atomic_load_explicit(cpu->env.kick, memory_order_relaxed) && atomic_exchange(cpu->env.kick, false))
			return run_exit(cpu, exit, VCPU_EXIT_KICK);
		if (unlikely(cpu->s.halted)) {
			if (!take_interrupt(cpu))
				return run_exit(cpu, exit, VCPU_EXIT_HLT);
		} else if ((cpu->irq_check && (cpu->rflags & FL_IF)) || (cpu->nmi_check && !cpu->nmi_blocked) ||
			   (cpu->env.interrupt_hint &&
			    atomic_load_explicit(cpu->env.interrupt_hint, memory_order_relaxed))) {
			take_interrupt(cpu);
		}
		cpu->irq_shadow = false;
		if (unlikely(atomic_load_explicit(&cpu->shared->epoch, memory_order_acquire) != cpu->seen_epoch)) {
			cpu->seen_epoch = atomic_load(&cpu->shared->epoch);
			tlb_flush_writes(cpu);
		}
		if (unlikely(atomic_load_explicit(&cpu->shared->inval, memory_order_acquire) != cpu->seen_inval)) {
			cpu->seen_inval = atomic_load(&cpu->shared->inval);
			cache_flush_jumps(cpu);
		}
		struct block *b = cache_lookup(cpu);
		if (unlikely(cpu->trace))
			fprintf(stderr, "dbt%u: %04x:%016llx mode %u cpl %u rax %llx rsp %llx\n", cpu->env.cpu_index,
				cpu->s.seg[SEG_CS].selector, (unsigned long long)cpu->rip, cpu->mode, cpu->cpl,
				(unsigned long long)cpu->gpr[RAX], (unsigned long long)cpu->gpr[RSP]);
		exec_block(cpu, b);
	}
}
