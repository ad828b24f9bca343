/* Interrupt routing: the GSI rule (IOAPIC pin n, 8259 line n, ISA IRQ0 on
 * GSI 2) and MSI decoding into LAPIC messages. */
#include <stdlib.h>

#include "tests/vmm/harness.h"

static void test_gsi(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_pic_init(vm, 0x00, 0x00);
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x10700); /* the 8259 checked by INTA below */
	for (unsigned gsi = 0; gsi < 24; gsi++)
		test_ioapic_route(vm, gsi, 0x40 + gsi, 0, false);

	irq_set_level(vm, 2, false); /* the parked PIT holds GSI 2 high */
	irq_set_level(vm, 2, true);
	test_check(test_lapic_irr(bsp, 0x42), "GSI 2: IOAPIC pin 2", "not delivered");
	test_check_eq("GSI 2: 8259 line 0", 0x20, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);

	irq_set_level(vm, 0, true);
	test_check(test_lapic_irr(bsp, 0x40), "GSI 0: IOAPIC pin 0", "not delivered");
	test_check_eq("GSI 0: no 8259 line", (uint64_t)-1, (uint64_t)(int64_t)pic_pending_vector(vm));

	irq_set_level(vm, 9, true);
	test_check(test_lapic_irr(bsp, 0x49), "GSI 9: IOAPIC pin 9", "not delivered");
	test_check_eq("GSI 9: 8259 line 9", 0x29, pic_acknowledge(vm));
	test_outb(vm, 0xa0, 0x20);
	test_outb(vm, 0x20, 0x20);

	irq_set_level(vm, 20, true);
	test_check(test_lapic_irr(bsp, 0x54), "GSI 20: IOAPIC pin 20 only", "not delivered");
	test_check_eq("GSI 20: no 8259 line", (uint64_t)-1, (uint64_t)(int64_t)pic_pending_vector(vm));

	irq_pulse(vm, 11);
	test_check(test_lapic_irr(bsp, 0x4b), "pulse: one edge", "not delivered");
	test_check_eq("pulse on the 8259", 0x2b, pic_acknowledge(vm));
	test_outb(vm, 0xa0, 0x20);
	test_outb(vm, 0x20, 0x20);

	irq_set_level(vm, 100, true);
	irq_set_level(vm, ~0u, true);
	while (test_take_interrupt(bsp) >= 0)
		;
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		irq_set_level(vm, gsi, false);
		test_ioapic_write(vm, 0x10 + 2 * gsi, 1u << 16);
	}
	test_outb(vm, 0x21, 0xff);
	test_outb(vm, 0xa1, 0xff);
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x8700);
}

static void test_msi(struct vm *vm)
{
	struct vcpu *c0 = vm->cpus[0], *c1 = vm->cpus[1];

	test_lapic_write(c1, LAPIC_SVR, 0x1ff);
	msi_send(vm, 0xfee01000, 0x0041);
	test_check(test_lapic_irr(c1, 0x41) && !test_lapic_irr(c0, 0x41), "MSI to APIC ID 1", "IRRs %d %d",
		   test_lapic_irr(c0, 0x41), test_lapic_irr(c1, 0x41));
	test_take_interrupt(c1);

	test_lapic_write(c0, LAPIC_LDR, 0x01000000);
	test_lapic_write(c1, LAPIC_LDR, 0x02000000);
	msi_send(vm, 0xfee03004, 0x0042);
	test_check(test_lapic_irr(c0, 0x42) && test_lapic_irr(c1, 0x42), "logical MSI", "IRRs %d %d",
		   test_lapic_irr(c0, 0x42), test_lapic_irr(c1, 0x42));
	test_take_interrupt(c0);
	test_take_interrupt(c1);

	msi_send(vm, 0xfee01000, 0x8043);
	test_check(test_lapic_read(c1, LAPIC_TMR + 0x20) & (1u << 3), "level-triggered MSI sets TMR", "clear");
	test_take_interrupt(c1);

	msi_send(vm, 0xfee00000, 0x0400);
	test_check(vcpu_take_nmi(c0) && !vcpu_take_nmi(c1), "NMI MSI", "wrong NMIs");

	msi_send(vm, 0xfed01000, 0x0044);
	msi_send(vm, 0x1fee01000ull, 0x0044);
	test_check(!test_lapic_irr(c1, 0x44), "writes outside 0xfeexxxxx are no MSIs", "delivered");
	msi_send(vm, 0xfee01000, 0x0644); /* start-up: only from an ICR */
	bool init;
	int sipi;
	test_check(!vcpu_take_init_sipi(c1, &init, &sipi), "no SIPI by MSI", "SIPI taken");
	msi_send(vm, 0xfee01000, 0x0005);
	test_check(!test_lapic_irr(c1, 0x05), "illegal vector refused", "delivered");
	test_lapic_write(c1, LAPIC_ESR, 0);
	test_check((test_lapic_read(c1, LAPIC_ESR) & 0x40) != 0, "received illegal vector in ESR", "0x%x",
		   test_lapic_read(c1, LAPIC_ESR));
	for (int i = 0; i < 20000; i++)
		msi_send(vm, 0xfee00000 | (rand() & 0xfffff), rand());
	test_check(true, "hostile MSIs", "-");
}

int main(void)
{
	struct vm *vm = test_vm_create(2);

	test_pit_quiet(vm);
	test_gsi(vm);
	test_msi(vm);
	test_vm_destroy(vm);
	return test_finish();
}
