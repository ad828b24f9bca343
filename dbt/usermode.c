/*
 * The interpreter in user mode: identity memory (linear = guest-physical =
 * host address: CR0.PG off in long mode makes the page walk the identity,
 * ram_ptr() returns the address itself) at CPL 3 in 64-bit mode, with
 * Linux's user segments in a GDT of its own so far transfers to them work.
 * The TLB never needs flushing: every entry maps a page to itself. Bad guest
 * addresses fault on the host, where the front end's handler turns them into
 * this instruction's page fault (dbt_user_host_fault). Nothing is cached:
 * each run decodes afresh, so the translator's invalidation covers it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "dbt/internal.h"

/* Linux's GDT for user space: 0x23 32-bit code, 0x2b data, 0x33 64-bit code. */
static const uint64_t user_gdt_init[8] = {
    0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cffb000000ffff, 0x00cff3000000ffff, 0x00affb000000ffff, 0,
};

struct user_cpu_extra {
	uint64_t gdt[8];
};

static void no_io(void *opaque, struct vcpu_exit *e)
{
	(void)opaque;
	if (e->reason == VCPU_EXIT_MSR)
		e->msr.fault = true;
}

static const struct x86_segment user_cs = {
    .limit = 0xffffffff, .selector = 0x33, .type = 0xb, .s = 1, .dpl = 3, .present = 1, .l = 1, .g = 1};
static const struct x86_segment user_ds = {
    .limit = 0xffffffff, .selector = 0x2b, .type = 0x3, .s = 1, .dpl = 3, .present = 1, .db = 1, .g = 1};

struct dbt_cpu *dbt_user_cpu_create(void)
{
	static atomic_bool kick;
	struct dbt_env env = {.io = no_io, .kick = &kick, .cpu_count = 1};
	struct user_cpu_extra *x = calloc(1, sizeof(*x));
	struct dbt_cpu *cpu = x ? dbt_cpu_create(&env) : NULL;
	if (!cpu) {
		free(x);
		return NULL;
	}
	memcpy(x->gdt, user_gdt_init, sizeof(x->gdt));
	cpu->identity = true;
	struct x86_state *s = &cpu->s;
	s->seg[SEG_CS] = user_cs;
	for (int i = 0; i < SEG_COUNT; i++)
		if (i != SEG_CS)
			s->seg[i] = user_ds;
	s->gdtr = (struct x86_dtable){.base = (uintptr_t)x->gdt, .limit = sizeof(x->gdt) - 1};
	s->idtr = (struct x86_dtable){.base = 0, .limit = 0};
	s->ldtr = (struct x86_segment){.unusable = 1};
	s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM; /* no PG: identity */
	s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s->efer = EFER_LME | EFER_LMA | EFER_NXE; /* no SCE: SYSCALL is the front end's */
	cpu->cpl = 3;
	cpu_update_mode(cpu);
	tlb_flush_all(cpu, false);
	return cpu;
}

void dbt_user_cpu_destroy(struct dbt_cpu *cpu)
{
	if (!cpu)
		return;
	free((void *)(uintptr_t)cpu->s.gdtr.base);
	dbt_cpu_destroy(cpu);
}

_Noreturn void dbt_user_host_fault(struct dbt_cpu *cpu, uint64_t addr)
{
	cpu->s.cr2 = addr;
	dbt_raise(cpu, EXC_PF, PFE_U);
}

int dbt_user_run(struct dbt_cpu *cpu, struct dbt_user_state *st, unsigned max, struct dbt_user_fault *fault)
{
	struct vcpu_exit exit;
	volatile int done = 0;

	memcpy(cpu->gpr, st->gpr, sizeof(st->gpr));
	cpu->gpr[REG_NONE] = 0;
	cpu->rip = st->rip;
	cpu->s.seg[SEG_CS] = user_cs;
	cpu->s.seg[SEG_SS] = user_ds;
	cpu->s.seg[SEG_FS].base = st->fs_base;
	cpu->s.seg[SEG_GS].base = st->gs_base;
	cpu->s.fpu = st->fpu;
	fpu_sanitize(&cpu->s.fpu);
	cpu->cpl = 3;
	cpu->rflags = (st->rflags & 0x3f7fd5) | FL_FIXED;
	cpu_update_mode(cpu);
	cpu->exit = &exit;
	cpu->exit_reason = -1;
	cpu->delivering = -1;
	cpu->in_block = false;
	if (setjmp(cpu->jb)) {
		cpu->in_block = false;
		if (cpu->exit_reason == VCPU_EXIT_ERROR) {
			fault->vector = -1;
			snprintf(fault->message, sizeof(fault->message), "%s", exit.error.message);
		} else {
			fault->vector = cpu->exc_vector;
			fault->error = cpu->exc_error;
			fault->addr = cpu->exc_vector == EXC_PF ? cpu->s.cr2 : 0;
		}
		cpu->rip = cpu->exc_rip;
		done = -1;
		goto out;
	}
	while (done < (int)max) {
		if (!fpu_has_room(cpu))
			fpu_reset_stubs(cpu);
		cpu->arena_used = 0;
		uint64_t gpa = mmu_translate_exec(cpu, cpu->rip);
		struct block *b = decode_block(cpu, gpa);
		cpu->stop = false;
		cpu->cur_block = b;
		cpu->in_block = true;
		for (unsigned i = 0; i < b->count && done < (int)max && !cpu->stop; i++) {
			const struct dinsn *d = &b->insn[i];
			cpu->cur = d;
			cpu->rip = next_rip(d);
			d->fn(cpu, d);
			done = done + 1;
		}
		cpu->in_block = false;
		/* A far transfer out of 64-bit mode: compatibility mode is not
		 * run in user mode (the kernel would, with 32-bit syscalls). */
		if (cpu->mode != MODE_LONG64) {
			fault->vector = -1;
			snprintf(fault->message, sizeof(fault->message), "a far transfer to selector %#x",
				 cpu->s.seg[SEG_CS].selector);
			done = -1;
			break;
		}
	}
out:
	memcpy(st->gpr, cpu->gpr, sizeof(st->gpr));
	st->rip = cpu->rip;
	st->rflags = cpu->rflags;
	st->fs_base = cpu->s.seg[SEG_FS].base;
	st->gs_base = cpu->s.seg[SEG_GS].base;
	st->fpu = cpu->s.fpu;
	return done;
}
