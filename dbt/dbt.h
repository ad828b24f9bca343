/*
 * The dbt engine: Vireo's x86-64 CPU in software. Tier 1 is an interpreter
 * over struct x86_state with Zydis as decoder; it is the reference for the
 * translator. The CPU knows guest RAM as host memory and reaches everything
 * else (ports, MMIO, the MSRs it does not own, the interrupt controller)
 * through struct dbt_env, so it knows nothing of devices.
 */
#ifndef VIREO_DBT_H
#define VIREO_DBT_H

#include "vmm/vmm.h"

struct dbt_cpu;

/* One range of guest-physical RAM backed by host memory. */
struct dbt_ram_range {
	uint64_t gpa, size;
	uint8_t *host;
};

/* What the CPU needs from its surroundings. */
struct dbt_env {
	struct dbt_ram_range ram[2];
	unsigned ram_count;
	/* PIO, MMIO and foreign MSR accesses: completes exit (reads fill data,
	 * a refused MSR sets msr.fault). Called synchronously mid-instruction. */
	void (*io)(void *opaque, struct vcpu_exit *exit);
	/* The vector the interrupt controller would deliver now, or -1, and the
	 * CPU taking it. Asked only when *interrupt_hint is set and IF allows. */
	int (*pending_interrupt)(void *opaque);
	void (*accept_interrupt)(void *opaque, int vector);
	/* True once per NMI waiting for this CPU (NULL: no NMIs). Asked when
	 * *interrupt_hint is set, whatever RFLAGS.IF says, except while an NMI
	 * handler runs (until IRET). */
	bool (*take_nmi)(void *opaque);
	/* Polled at block boundaries; the CPU clears it when it reads it and
	 * remembers to ask the two functions above once it can act on them. */
	atomic_bool *interrupt_hint;
	/* Set by another thread to make dbt_cpu_run return with VCPU_EXIT_KICK. */
	atomic_bool *kick;
	void *opaque;
	unsigned cpu_index; /* APIC ID and CPUID leaf 1 EBX[31:24] */
	unsigned cpu_count;
};

struct dbt_cpu *dbt_cpu_create(const struct dbt_env *env);
void dbt_cpu_destroy(struct dbt_cpu *cpu);
/* Puts the CPU in its power-on state (SDM vol. 3, 9.1.1). */
void dbt_cpu_reset(struct dbt_cpu *cpu);
void dbt_cpu_get_state(struct dbt_cpu *cpu, struct x86_state *state);
void dbt_cpu_set_state(struct dbt_cpu *cpu, const struct x86_state *state);
/* Runs until HLT, a triple fault, a kick or an error; fills exit. PIO,
 * MMIO and MSR exits never come out of here: they go through env->io. */
int dbt_cpu_run(struct dbt_cpu *cpu, struct vcpu_exit *exit);
/* Guest instructions retired so far (for benchmarks and counters). */
uint64_t dbt_cpu_instructions(struct dbt_cpu *cpu);
/* The guest's TSC is the host's plus this (the LAPIC's TSC-deadline timer
 * needs it to turn a deadline into host time). */
int64_t dbt_cpu_tsc_offset(struct dbt_cpu *cpu);
/* Something other than a vCPU (DMA, a loader) wrote guest-physical
 * [gpa, gpa + len): translations made from it are dropped. Any vCPU of the
 * guest will do; every vCPU whose env names the same RAM shares them. */
void dbt_invalidate_range(struct dbt_cpu *cpu, uint64_t gpa, uint64_t len);

/* ---- user mode (vireo user, dbt/usermode.c) ------------------------------
 * The interpreter as the translator's fallback: CPL 3 in 64-bit mode with
 * identity memory (a linear address is the host address), so it runs the
 * instructions the translator cannot over the same memory. Host faults on
 * guest accesses are the front end's: its SIGSEGV/SIGBUS handler calls
 * dbt_user_host_fault, which makes them the instruction's page fault. */
struct dbt_user_state {
	uint64_t gpr[16];
	uint64_t rip, rflags, fs_base, gs_base;
	struct x86_fxsave fpu;
};

/* An exception an instruction raised: the state is at that instruction. */
struct dbt_user_fault {
	int vector;	 /* EXC_* (14: a host fault, see dbt_user_host_fault) */
	uint32_t error;	 /* the error code, or (uint32_t)-1 */
	uint64_t addr;	 /* CR2 for a page fault */
	char message[160]; /* for vector -1: the engine cannot run it */
};

struct dbt_cpu *dbt_user_cpu_create(void);
void dbt_user_cpu_destroy(struct dbt_cpu *cpu);
/* Runs at most max instructions from st->rip, updating st. Returns how
 * many completed; stops early at a fault (-1, *fault filled, st at the
 * faulting instruction). */
int dbt_user_run(struct dbt_cpu *cpu, struct dbt_user_state *st, unsigned max, struct dbt_user_fault *fault);
/* From a host signal handler, for a fault inside dbt_user_run on this
 * thread's cpu: raises the page fault at addr (does not return; the
 * signal mask is the caller's to restore). */
_Noreturn void dbt_user_host_fault(struct dbt_cpu *cpu, uint64_t addr);

#endif
