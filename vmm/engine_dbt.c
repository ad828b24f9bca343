/* The dbt engine behind the engine ops table: one dbt_cpu per vCPU, with
 * guest RAM, the buses and the LAPIC reached through struct dbt_env. */
#include <stdlib.h>

#include "dbt/dbt.h"
#include "vmm/internal.h"

struct dbt_vcpu {
	struct dbt_cpu *cpu;
	atomic_bool kick;
};

/* The vCPUs' CPUs, for guest_memory_dirty from other threads: any one of
 * them reaches the translations they share. The lock keeps the one used
 * alive while vcpu_destroy runs on another thread. */
struct dbt_vm {
	pthread_mutex_t lock;
	struct dbt_cpu *cpus[MAX_CPUS];
};

static const char *dbt_unavailable(void)
{
	return NULL;
}

static int dbt_vm_init(struct vm *vm)
{
	struct dbt_vm *dv = calloc(1, sizeof(*dv));

	if (!dv)
		return -ENOMEM;
	pthread_mutex_init(&dv->lock, NULL);
	vm_set_engine_data(vm, dv);
	return 0;
}

static void dbt_vm_destroy(struct vm *vm)
{
	struct dbt_vm *dv = vm_engine_data(vm);

	if (!dv)
		return;
	pthread_mutex_destroy(&dv->lock);
	free(dv);
	vm_set_engine_data(vm, NULL);
}

static void dbt_vm_set_cpu(struct vm *vm, unsigned index, struct dbt_cpu *cpu)
{
	struct dbt_vm *dv = vm_engine_data(vm);

	if (!dv || index >= MAX_CPUS)
		return;
	pthread_mutex_lock(&dv->lock);
	dv->cpus[index] = cpu;
	pthread_mutex_unlock(&dv->lock);
}

static void dbt_memory_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	struct dbt_vm *dv = vm_engine_data(vm);

	if (!dv)
		return;
	pthread_mutex_lock(&dv->lock);
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (dv->cpus[i]) {
			dbt_invalidate_range(dv->cpus[i], gpa, len);
			break;
		}
	}
	pthread_mutex_unlock(&dv->lock);
}

static void dbt_io(void *opaque, struct vcpu_exit *exit)
{
	vcpu_exit_io(opaque, exit);
}

static int dbt_pending_interrupt(void *opaque)
{
	return vcpu_pending_interrupt(opaque);
}

static void dbt_accept_interrupt(void *opaque, int vector)
{
	vcpu_accept_interrupt(opaque, vector);
}

static bool dbt_take_nmi(void *opaque)
{
	return vcpu_take_nmi(opaque);
}

static int dbt_vcpu_init(struct vcpu *vcpu)
{
	struct vm *vm = vcpu_vm(vcpu);
	struct guest_memory *mem = vm_memory(vm);
	struct dbt_vcpu *d = calloc(1, sizeof(*d));
	struct dbt_env env = {
		.ram = {{0, mem->low_size, mem->host}, {RAM_HIGH_BASE, mem->high_size, mem->host + mem->low_size}},
		.ram_count = mem->high_size ? 2 : 1,
		.io = dbt_io,
		.pending_interrupt = dbt_pending_interrupt,
		.accept_interrupt = dbt_accept_interrupt,
		.take_nmi = dbt_take_nmi,
		.interrupt_hint = vcpu_interrupt_hint(vcpu),
		.opaque = vcpu,
		.cpu_index = vcpu_index(vcpu),
		.cpu_count = vm_cpu_count(vm),
	};

	if (!d)
		return -ENOMEM;
	env.kick = &d->kick;
	d->cpu = dbt_cpu_create(&env);
	if (!d->cpu) {
		free(d);
		return -ENOMEM;
	}
	vcpu_set_engine_data(vcpu, d);
	dbt_vm_set_cpu(vm, vcpu_index(vcpu), d->cpu);
	return 0;
}

static void dbt_vcpu_destroy(struct vcpu *vcpu)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	if (!d)
		return;
	dbt_vm_set_cpu(vcpu_vm(vcpu), vcpu_index(vcpu), NULL);
	dbt_cpu_destroy(d->cpu);
	free(d);
	vcpu_set_engine_data(vcpu, NULL);
}

static int dbt_vcpu_run(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	return dbt_cpu_run(d->cpu, exit);
}

static int dbt_get_state(struct vcpu *vcpu, struct x86_state *state)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	dbt_cpu_get_state(d->cpu, state);
	return 0;
}

static int dbt_set_state(struct vcpu *vcpu, const struct x86_state *state)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	dbt_cpu_set_state(d->cpu, state);
	return 0;
}

static void dbt_kick(struct vcpu *vcpu)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	if (d)
		atomic_store(&d->kick, true);
}

static uint64_t dbt_instructions_retired(struct vcpu *vcpu)
{
	struct dbt_vcpu *d = vcpu_engine_data(vcpu);
	return dbt_cpu_instructions(d->cpu);
}

static bool dbt_irqchip_in_engine(struct vm *vm)
{
	(void)vm;
	return false;
}

const struct engine_ops dbt_engine_ops = {
	.name = "dbt",
	.unavailable = dbt_unavailable,
	.vm_init = dbt_vm_init,
	.vm_destroy = dbt_vm_destroy,
	.vcpu_init = dbt_vcpu_init,
	.vcpu_destroy = dbt_vcpu_destroy,
	.vcpu_run = dbt_vcpu_run,
	.get_state = dbt_get_state,
	.set_state = dbt_set_state,
	.kick = dbt_kick,
	.irqchip_in_engine = dbt_irqchip_in_engine,
	.instructions_retired = dbt_instructions_retired,
	.memory_dirty = dbt_memory_dirty,
};
