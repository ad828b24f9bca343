/* Every vCPU thread at once hammering the interrupt controllers and timers
 * while the clock thread fires them: no deadlock, no crash, and afterwards
 * the controllers still deliver. */
#include <stdlib.h>

#include "tests/vmm/harness.h"

#define THREADS 4

static atomic_bool stop;

static void lapic_w(struct vcpu *vcpu, unsigned reg, uint32_t v)
{
	bus_write(&vcpu->vm->mmio, vcpu, 0xfee00000 + reg, 4, v);
}

static void *hammer(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	unsigned seed = vcpu->index * 7919 + 1;
	bool init, fault;
	int sipi;

	lapic_w(vcpu, LAPIC_SVR, 0x1ff);
	while (!atomic_load(&stop)) {
		unsigned r = rand_r(&seed);
		switch (r % 12) {
		case 0:
			lapic_w(vcpu, LAPIC_ICR_HI, (r >> 8) % THREADS << 24);
			lapic_w(vcpu, LAPIC_ICR_LO, (0x30 + (r >> 4) % 0xc0) | ((r >> 12) & 3) << 18);
			break;
		case 1:
		case 2: {
			int v = vcpu_pending_interrupt(vcpu);
			if (v >= 0) {
				vcpu_accept_interrupt(vcpu, v);
				lapic_w(vcpu, LAPIC_EOI, 0);
				bus_write(&vm->pio, vcpu, 0x20, 1, 0x20);
			}
			vcpu_take_nmi(vcpu);
			vcpu_take_init_sipi(vcpu, &init, &sipi);
			if (init)
				lapic_w(vcpu, LAPIC_SVR, 0x1ff);
			break;
		}
		case 3: irq_set_level(vm, 1 + (r >> 4) % 23, (r >> 9) & 1); break;
		case 4:
			msi_send(vm, 0xfee00000 | ((r >> 4) % THREADS) << 12, (0x30 + (r >> 8) % 0xc0) | (r & 0x8000));
			break;
		case 5:
			lapic_w(vcpu, LAPIC_LVT_TIMER, 0x20000 | (0x30 + (r >> 4) % 0xc0));
			lapic_w(vcpu, LAPIC_TIMER_DIVIDE, 0xb);
			lapic_w(vcpu, LAPIC_TIMER_INIT, (r >> 8) % 5000);
			break;
		case 6: {
			unsigned pin = 1 + (r >> 4) % 23;
			bus_write(&vm->mmio, vcpu, 0xfec00000, 4, 0x11 + 2 * pin);
			bus_write(&vm->mmio, vcpu, 0xfec00010, 4, ((r >> 10) % THREADS) << 24);
			bus_write(&vm->mmio, vcpu, 0xfec00000, 4, 0x10 + 2 * pin);
			bus_write(&vm->mmio, vcpu, 0xfec00010, 4,
				  (0x30 + (r >> 8) % 0xc0) | (r & 0x8000) | (r & 0x100));
			break;
		}
		case 7: bus_write(&vm->pio, vcpu, 0x21 + ((r >> 4) & 1) * 0x80, 1, r >> 8); break;
		case 8:
			bus_read(&vm->pio, vcpu, 0x40 + (r >> 4) % 3, 1);
			bus_read(&vm->pio, vcpu, 0x61, 1);
			bus_write(&vm->pio, vcpu, 0x70, 1, (r >> 8) % 14);
			bus_read(&vm->pio, vcpu, 0x71, 1);
			break;
		case 9:
			if ((r >> 4) % 64 == 0) {
				lapic_w(vcpu, LAPIC_ICR_HI, (r >> 8) % THREADS << 24);
				lapic_w(vcpu, LAPIC_ICR_LO, (r & 0x100 ? 0x500 : 0x608) | 1u << 14);
			}
			break;
		case 10:
			lapic_msr_write(vcpu, 0x6e0, 0, &fault);
			lapic_w(vcpu, LAPIC_TPR, (r >> 4) & 0xf0);
			break;
		default: bus_write(&vm->pio, vcpu, 0x71, 1, 0x40 | ((r >> 4) & 0xf)); break;
		}
	}
	return NULL;
}

static bool msi_arrived(void *arg)
{
	return test_lapic_irr(arg, 0xe1);
}

int main(void)
{
	struct vm *vm = test_vm_create(THREADS);
	pthread_t t[THREADS];

	test_pic_init(vm, 0x00, 0x00);
	test_outb(vm, 0x70, 0x0b);
	test_outb(vm, 0x71, 0x52); /* RTC periodic and update interrupts */
	test_outb(vm, 0x43, 0x34);
	test_outb(vm, 0x40, 0x10);
	test_outb(vm, 0x40, 0x00); /* PIT at its fastest */
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, hammer, vm->cpus[i]);
	test_sleep_us(1000000);
	atomic_store(&stop, true);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	test_check(true, "four vCPUs and the clock thread at once", "-");

	struct vcpu *c3 = vm->cpus[3];
	bool init;
	int sipi;
	vcpu_take_init_sipi(c3, &init, &sipi);
	test_lapic_write(c3, LAPIC_SVR, 0x1ff);
	test_lapic_write(c3, LAPIC_TPR, 0);
	test_lapic_write(c3, LAPIC_LVT_TIMER, 0x10000);
	while (test_lapic_read(c3, LAPIC_ISR + 0x70))
		test_lapic_write(c3, LAPIC_EOI, 0);
	for (int i = 0; i < 8; i++)
		while (test_lapic_read(c3, LAPIC_ISR + 0x10 * i))
			test_lapic_write(c3, LAPIC_EOI, 0);
	msi_send(vm, 0xfee03000, 0xe1);
	test_check(test_wait(msi_arrived, c3, 1000000000ull), "still delivering afterwards", "MSI lost");
	test_vm_destroy(vm);
	return test_finish();
}
