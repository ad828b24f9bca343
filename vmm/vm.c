/* The VM: memory, buses, devices, engine, vCPUs; run and stop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/internal.h"

void vmm_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vireo: %s\n", line);
}

unsigned vm_cpu_count(struct vm *vm)
{
	return vm->ncpus;
}

struct vcpu *vm_cpu(struct vm *vm, unsigned index)
{
	return index < vm->ncpus ? vm->cpus[index] : NULL;
}

void *vm_engine_data(struct vm *vm)
{
	return vm->engine_data;
}

void vm_set_engine_data(struct vm *vm, void *data)
{
	vm->engine_data = data;
}

struct guest_memory *vm_memory(struct vm *vm)
{
	return &vm->mem;
}

void vm_request_exit(struct vm *vm, int status, const char *why)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->exit_requested) {
		vm->exit_requested = true;
		vm->exit_status = status;
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s", why ? why : "");
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_wake(vm->cpus[i]);
}

void vm_request_reset(struct vm *vm)
{
	if (vm->cfg.no_reboot) {
		vm_request_exit(vm, VM_EXIT_POWEROFF, "guest reset the machine (-no-reboot)");
		return;
	}
	pthread_mutex_lock(&vm->lock);
	if (!vm->exit_requested)
		vm->reset_requested = true;
	pthread_mutex_unlock(&vm->lock);
	vm_request_exit(vm, VM_EXIT_POWEROFF, "guest reset the machine");
}

static const struct engine_ops *engine_pick(const char *name, char *err, size_t errlen)
{
	const char *why;

	if (!name || !strcmp(name, "auto"))
		return kvm_engine_ops.unavailable() ? &dbt_engine_ops : &kvm_engine_ops;
	if (!strcmp(name, "dbt"))
		return &dbt_engine_ops;
	if (!strcmp(name, "kvm")) {
		why = kvm_engine_ops.unavailable();
		if (why) {
			snprintf(err, errlen, "engine kvm is not available: %s", why);
			return NULL;
		}
		return &kvm_engine_ops;
	}
	snprintf(err, errlen, "unknown engine '%s' (dbt, kvm or auto)", name);
	return NULL;
}

/* Engine, devices, vCPUs and the loaded image: what a reset rebuilds. RAM
 * and the console stay, as on a PC. */
static int vm_assemble(struct vm *vm, char *err, size_t errlen)
{
	const struct vm_config *cfg = &vm->cfg;
	int ret = vm->engine->vm_init(vm);

	if (ret < 0) {
		snprintf(err, errlen, "engine %s: cannot create the VM: %s", vm->engine->name, strerror(-ret));
		return ret;
	}
	vm->engine_ready = true;
	vm->irqchip_in_engine = vm->engine->irqchip_in_engine(vm);
	if (devices_init(vm, err, errlen) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < cfg->cpus; i++) {
		vm->ncpus = i + 1;
		ret = vcpu_create(vm, i);
		if (ret < 0) {
			snprintf(err, errlen, "cannot create vCPU %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	ret = loader_load(vm, cfg->kernel, cfg->initrd, cfg->cmdline, &vm->boot, err, errlen);
	if (ret < 0)
		return ret;
	ret = vm->engine->set_state(vm->cpus[0], &vm->boot.bsp);
	if (ret < 0)
		snprintf(err, errlen, "cannot set the boot vCPU's state: %s", strerror(-ret));
	return ret;
}

static void vm_disassemble(struct vm *vm)
{
	clock_clear(vm); /* before the devices that own the timers go */
	devices_stop(vm); /* back-end threads, before the LAPICs they interrupt */
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_destroy(vm->cpus[i]);
	vm->ncpus = 0;
	devices_exit(vm);
	if (vm->engine_ready)
		vm->engine->vm_destroy(vm);
	vm->engine_ready = false;
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	bus_init(&vm->pio, "port");
	bus_init(&vm->mmio, "MMIO");
}

struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vm->cfg = *cfg;
	vm->console_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	clock_init(vm);
	bus_init(&vm->pio, "port");
	bus_init(&vm->mmio, "MMIO");

	if (cfg->cpus < 1 || cfg->cpus > MAX_CPUS) {
		snprintf(err, errlen, "%u vCPUs requested: Vireo runs 1 to %d", cfg->cpus, MAX_CPUS);
		goto fail;
	}
	if (netdevs_check(cfg, err, errlen) < 0 || virtio_devices_check(cfg, err, errlen) < 0)
		goto fail;
	vm->engine = engine_pick(cfg->engine, err, errlen);
	if (!vm->engine)
		goto fail;
	if (memory_init(vm, cfg->memory, err, errlen) < 0)
		goto fail;
	if (console_open(vm, err, errlen) < 0)
		goto fail;
	if (netdevs_open(vm, err, errlen) < 0)
		goto fail;
	if (vm_assemble(vm, err, errlen) < 0)
		goto fail;
	return vm;
fail:
	vm_destroy(vm);
	return NULL;
}

static int vm_run_once(struct vm *vm, char *err, size_t errlen)
{
	int ret = clock_start(vm);
	unsigned started = 0;

	if (ret < 0) {
		snprintf(err, errlen, "cannot start the clock thread: %s", strerror(-ret));
		return VM_EXIT_SETUP_ERROR;
	}
	for (; started < vm->ncpus; started++) {
		ret = vcpu_start(vm->cpus[started]);
		if (ret < 0) {
			snprintf(err, errlen, "cannot start vCPU %u: %s", started, strerror(-ret));
			vm_request_exit(vm, VM_EXIT_SETUP_ERROR, err);
			break;
		}
	}
	pthread_mutex_lock(&vm->lock);
	while (!vm->exit_requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < started; i++)
		vcpu_join(vm->cpus[i]);
	clock_stop(vm);
	snprintf(err, errlen, "%s", vm->exit_reason);
	return vm->exit_status;
}

int vm_run(struct vm *vm, char *err, size_t errlen)
{
	for (;;) {
		int status = vm_run_once(vm, err, errlen);
		if (!vm->reset_requested)
			return status;
		/* A reset reboots the machine: RAM keeps its contents, the rest
		 * starts over and the image is loaded again. */
		vm_disassemble(vm);
		vm->exit_requested = vm->reset_requested = false;
		vm->exit_status = 0;
		if (vm_assemble(vm, err, errlen) < 0)
			return VM_EXIT_SETUP_ERROR;
	}
}

void vm_print_stats(struct vm *vm, double seconds)
{
	static const char *const exit_names[] = {
		[VCPU_EXIT_PIO] = "pio", [VCPU_EXIT_MMIO] = "mmio", [VCPU_EXIT_MSR] = "msr",
		[VCPU_EXIT_HLT] = "hlt", [VCPU_EXIT_KICK] = "kick", [VCPU_EXIT_SHUTDOWN] = "shutdown",
		[VCPU_EXIT_ERROR] = "error",
	};
	uint64_t total = 0;

	fprintf(stderr, "vireo: engine %s, %u vCPU(s), %.3f s\n", vm->engine->name, vm->ncpus, seconds);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *vcpu = vm->cpus[i];
		fprintf(stderr, "vireo: vCPU %u:", i);
		if (vm->engine->instructions_retired) {
			uint64_t n = vm->engine->instructions_retired(vcpu);
			total += n;
			fprintf(stderr, " %llu instructions", (unsigned long long)n);
		}
		for (unsigned r = 0; r <= VCPU_EXIT_ERROR; r++)
			if (vcpu->exits[r])
				fprintf(stderr, ", %s %llu", exit_names[r], (unsigned long long)vcpu->exits[r]);
		fputc('\n', stderr);
	}
	if (vm->engine->instructions_retired && seconds > 0)
		fprintf(stderr, "vireo: %llu instructions, %.1f million per second\n", (unsigned long long)total,
			total / seconds / 1e6);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	clock_stop(vm);
	vm_disassemble(vm);
	memory_destroy(vm);
	netdevs_close(vm);
	console_close(vm);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	clock_destroy(vm);
	free(vm);
}

/* ---- device registry ---------------------------------------------------- */

static struct device_init *device_list;

void device_register(struct device_init *d)
{
	struct device_init **p = &device_list;
	while (*p && (*p)->order <= d->order)
		p = &(*p)->next;
	d->next = *p;
	*p = d;
}

int devices_init(struct vm *vm, char *err, size_t errlen)
{
	for (struct device_init *d = device_list; d; d = d->next) {
		if (d->irqchip && vm->irqchip_in_engine)
			continue;
		int ret = d->init(vm);
		if (ret < 0) {
			snprintf(err, errlen, "device %s failed to start: %s", d->name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void devices_stop(struct vm *vm)
{
	for (struct device_init *d = device_list; d; d = d->next)
		if (d->stop && !(d->irqchip && vm->irqchip_in_engine))
			d->stop(vm);
}

void devices_exit(struct vm *vm)
{
	for (struct device_init *d = device_list; d; d = d->next)
		if (d->exit && !(d->irqchip && vm->irqchip_in_engine))
			d->exit(vm);
}
