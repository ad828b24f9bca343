/* One host thread per vCPU: run the engine, handle what comes out. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

struct vm *vcpu_vm(struct vcpu *vcpu)
{
	return vcpu->vm;
}

unsigned vcpu_index(struct vcpu *vcpu)
{
	return vcpu->index;
}

void *vcpu_engine_data(struct vcpu *vcpu)
{
	return vcpu->engine_data;
}

void vcpu_set_engine_data(struct vcpu *vcpu, void *data)
{
	vcpu->engine_data = data;
}

void vcpu_wake(struct vcpu *vcpu)
{
	atomic_fetch_add(&vcpu->wake_seq, 1);
	pthread_mutex_lock(&vcpu->lock);
	pthread_cond_broadcast(&vcpu->cond);
	pthread_mutex_unlock(&vcpu->lock);
	vcpu->vm->engine->kick(vcpu);
}

/* Sleeps until vcpu_wake is called after seq was read, or the VM stops. */
static void vcpu_wait(struct vcpu *vcpu, unsigned seq)
{
	pthread_mutex_lock(&vcpu->lock);
	while (atomic_load(&vcpu->wake_seq) == seq && !vcpu->vm->exit_requested)
		pthread_cond_wait(&vcpu->cond, &vcpu->lock);
	pthread_mutex_unlock(&vcpu->lock);
}

static void segment_real(struct x86_segment *s, uint16_t selector, uint8_t type)
{
	*s = (struct x86_segment){.base = (uint64_t)selector << 4, .limit = 0xffff, .selector = selector,
				  .type = type, .s = 1, .present = 1};
}

/* The state after INIT, then a start-up IPI with this vector (SDM 9.1.1). */
void x86_state_sipi(struct x86_state *s, unsigned index, int vector)
{
	memset(s, 0, sizeof(*s));
	s->rflags = 2;
	s->cr0 = 0x60000010;
	s->gpr[RDX] = 0x600; /* family 6 */
	for (int i = 0; i < SEG_COUNT; i++)
		segment_real(&s->seg[i], 0, 3);
	segment_real(&s->seg[SEG_CS], vector << 8, 11);
	s->ldtr = (struct x86_segment){.limit = 0xffff, .type = 2, .present = 1};
	s->tr = (struct x86_segment){.limit = 0xffff, .type = 11, .present = 1};
	s->gdtr.limit = s->idtr.limit = 0xffff;
	s->pat = 0x0007040600070406ull;
	s->apic_base = 0xfee00000 | (1 << 11) | (index == 0 ? 1 << 8 : 0);
	s->fpu.fcw = 0x37f;
	s->fpu.mxcsr = 0x1f80;
}

/* INIT parks the vCPU until a SIPI; a SIPI to a parked vCPU starts it. */
static void vcpu_handle_init_sipi(struct vcpu *vcpu)
{
	bool init = false;
	int sipi = -1;
	struct x86_state s;

	if (vcpu->vm->irqchip_in_engine || !vcpu_take_init_sipi(vcpu, &init, &sipi))
		return;
	if (init)
		vcpu->wait_for_sipi = true;
	if (sipi >= 0 && vcpu->wait_for_sipi) {
		/* INIT leaves the TSC and MISC_ENABLE as they were (SDM vol. 3,
		 * "Processor State Following Power-up, Reset, or INIT"). */
		struct x86_state old;
		vcpu->vm->engine->get_state(vcpu, &old);
		x86_state_sipi(&s, vcpu->index, sipi);
		s.tsc = old.tsc;
		s.misc_enable = old.misc_enable;
		vcpu->vm->engine->set_state(vcpu, &s);
		vcpu->wait_for_sipi = false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	struct vcpu_exit exit;
	struct x86_state s;
	char why[200];

	while (!vm->exit_requested) {
		unsigned seq = atomic_load(&vcpu->wake_seq);

		vcpu_handle_init_sipi(vcpu);
		if (vcpu->wait_for_sipi) {
			vcpu_wait(vcpu, seq);
			continue;
		}
		memset(&exit, 0, sizeof(exit));
		int ret = vm->engine->vcpu_run(vcpu, &exit);
		if (ret < 0) {
			snprintf(why, sizeof(why), "vCPU %u: %s engine failed: %s", vcpu->index, vm->engine->name,
				 strerror(-ret));
			vm_request_exit(vm, VM_EXIT_ENGINE_ERROR, why);
			break;
		}
		vcpu->exits[exit.reason]++;
		switch (exit.reason) {
		case VCPU_EXIT_HLT:
			vcpu_wait(vcpu, seq);
			break;
		case VCPU_EXIT_SHUTDOWN:
			vm->engine->get_state(vcpu, &s);
			snprintf(why, sizeof(why), "vCPU %u: triple fault at RIP 0x%" PRIx64, vcpu->index, s.rip);
			vm_request_exit(vm, VM_EXIT_TRIPLE_FAULT, why);
			break;
		case VCPU_EXIT_ERROR:
			snprintf(why, sizeof(why), "vCPU %u: %s at RIP 0x%" PRIx64, vcpu->index, exit.error.message,
				 exit.error.rip);
			vm_request_exit(vm, VM_EXIT_ENGINE_ERROR, why);
			break;
		default:
			break;
		}
	}
	return NULL;
}

int vcpu_create(struct vm *vm, unsigned index)
{
	struct vcpu *vcpu = calloc(1, sizeof(*vcpu));
	int ret;

	if (!vcpu)
		return -ENOMEM;
	vcpu->vm = vm;
	vcpu->index = index;
	/* An engine with its own irqchip (KVM) parks APs until SIPI itself. */
	vcpu->wait_for_sipi = index != 0 && !vm->irqchip_in_engine;
	vcpu->sipi_vector = -1;
	pthread_mutex_init(&vcpu->lock, NULL);
	pthread_cond_init(&vcpu->cond, NULL);
	vm->cpus[index] = vcpu;
	if (!vm->irqchip_in_engine) {
		ret = lapic_create(vcpu);
		if (ret < 0)
			return ret;
	}
	return vm->engine->vcpu_init(vcpu);
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (!vcpu)
		return;
	vcpu->vm->engine->vcpu_destroy(vcpu);
	if (vcpu->lapic)
		lapic_destroy(vcpu);
	pthread_mutex_destroy(&vcpu->lock);
	pthread_cond_destroy(&vcpu->cond);
	free(vcpu);
}

int vcpu_start(struct vcpu *vcpu)
{
	return -pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
}

void vcpu_join(struct vcpu *vcpu)
{
	vcpu_wake(vcpu);
	pthread_join(vcpu->thread, NULL);
}
