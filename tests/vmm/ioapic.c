/* The IOAPIC: registers, redirection entries, edge and level delivery into
 * the LAPICs with remote IRR and EOI, masks, destinations. */
#include "tests/vmm/harness.h"

#define RTE_REMOTE_IRR (1u << 14)
#define RTE_LEVEL      (1u << 15)
#define RTE_MASKED     (1u << 16)
#define RTE_LOGICAL    (1u << 11)

static void test_registers(struct vm *vm)
{
	test_check_eq("version: 0x20, 24 pins", 0x00170020, test_ioapic_read(vm, 0x01));
	test_check_eq("ID at reset", 0, test_ioapic_read(vm, 0x00));
	test_ioapic_write(vm, 0x00, 0xff000000);
	test_check_eq("ID keeps 4 bits", 0x0f000000, test_ioapic_read(vm, 0x00));
	test_ioapic_write(vm, 0x00, 0);
	test_ioapic_write(vm, 0x01, 0x12345678);
	test_check_eq("version is read-only", 0x00170020, test_ioapic_read(vm, 0x01));
	for (unsigned pin = 0; pin < 24; pin++) {
		if (test_ioapic_read(vm, 0x10 + 2 * pin) != RTE_MASKED) {
			test_check(false, "entries masked at reset", "pin %u: 0x%x", pin,
				   test_ioapic_read(vm, 0x10 + 2 * pin));
			break;
		}
	}
	test_check_eq("no register 0x40", 0, test_ioapic_read(vm, 0x40));
	test_ioapic_write(vm, 0x1b, 0xa5000000);
	test_ioapic_write(vm, 0x1a, 0x0001f9ab | 1u << 12 | RTE_REMOTE_IRR);
	test_check_eq("entry read-back, read-only bits ignored", 0x0001a9ab, test_ioapic_read(vm, 0x1a));
	test_check_eq("entry high dword", 0xa5000000, test_ioapic_read(vm, 0x1b));
	test_mmio_write32(vm, vm->cpus[0], 0xfec00000, 0x1b);
	test_check_eq("IOREGSEL reads back", 0x1b, test_mmio_read32(vm, vm->cpus[0], 0xfec00000));
	test_ioapic_write(vm, 0x1a, RTE_MASKED);
	test_ioapic_write(vm, 0x1b, 0);
}

static void test_edge(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_ioapic_route(vm, 5, 0x40, 0, false);
	irq_set_level(vm, 5, true);
	test_check(test_lapic_irr(bsp, 0x40), "edge: IRR set", "IRR bit 0x40 clear");
	test_check_eq("edge: pending", 0x40, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x40);
	test_check(test_lapic_isr(bsp, 0x40) && !test_lapic_irr(bsp, 0x40), "accept: IRR to ISR", "ISR %d IRR %d",
		   test_lapic_isr(bsp, 0x40), test_lapic_irr(bsp, 0x40));
	test_check_eq("PPR follows ISR", 0x40, test_lapic_read(bsp, LAPIC_PPR));
	irq_set_level(vm, 5, true);
	test_check(!test_lapic_irr(bsp, 0x40), "edge: no edge while high", "delivered again");
	test_lapic_write(bsp, LAPIC_EOI, 0);
	test_check(!test_lapic_isr(bsp, 0x40), "EOI clears ISR", "ISR still set");
	test_check_eq("PPR after EOI", 0, test_lapic_read(bsp, LAPIC_PPR));
	irq_set_level(vm, 5, false);
	irq_set_level(vm, 5, true);
	test_check_eq("edge: next rising edge", 0x40, test_take_interrupt(bsp));
	irq_set_level(vm, 5, false);

	test_ioapic_write(vm, 0x10 + 2 * 5, 0x40 | RTE_MASKED);
	irq_set_level(vm, 5, true);
	irq_set_level(vm, 5, false);
	test_ioapic_write(vm, 0x10 + 2 * 5, 0x40);
	test_check_eq("edge on a masked pin is lost", (uint64_t)-1, (uint64_t)(int64_t)vcpu_pending_interrupt(bsp));
}

static void test_level(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_ioapic_route(vm, 9, 0x50, 0, true);
	irq_set_level(vm, 9, true);
	test_check(test_ioapic_read(vm, 0x10 + 2 * 9) & RTE_REMOTE_IRR, "level: remote IRR set", "clear");
	test_check(test_lapic_read(bsp, LAPIC_TMR + 0x20) & (1u << 16), "level: TMR set", "TMR bit 0x50 clear");
	test_check_eq("level: delivered", 0x50, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x50);
	test_lapic_write(bsp, LAPIC_EOI, 0);
	test_check(test_lapic_irr(bsp, 0x50), "level: re-sent after EOI while asserted", "IRR clear");
	test_check_eq("level: taken again", 0x50, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x50);
	irq_set_level(vm, 9, false);
	test_lapic_write(bsp, LAPIC_EOI, 0);
	test_check(!(test_ioapic_read(vm, 0x10 + 2 * 9) & RTE_REMOTE_IRR), "level: EOI clears remote IRR", "set");
	test_check(!test_lapic_irr(bsp, 0x50), "level: deasserted line not re-sent", "IRR set");

	test_ioapic_write(vm, 0x10 + 2 * 9, 0x50 | RTE_LEVEL | RTE_MASKED);
	irq_set_level(vm, 9, true);
	test_check(!test_lapic_irr(bsp, 0x50), "level: masked pin waits", "delivered");
	test_ioapic_write(vm, 0x10 + 2 * 9, 0x50 | RTE_LEVEL);
	test_check(test_lapic_irr(bsp, 0x50), "level: unmasking delivers", "not delivered");
	vcpu_accept_interrupt(bsp, 0x50);
	irq_set_level(vm, 9, false);
	test_mmio_write32(vm, bsp, 0xfec00040, 0x50);
	test_check(!(test_ioapic_read(vm, 0x10 + 2 * 9) & RTE_REMOTE_IRR), "EOI register clears remote IRR", "set");
	test_lapic_write(bsp, LAPIC_EOI, 0);

	irq_set_level(vm, 9, true);
	test_ioapic_write(vm, 0x10 + 2 * 9, 0x50);
	test_check(!(test_ioapic_read(vm, 0x10 + 2 * 9) & RTE_REMOTE_IRR), "switch to edge clears remote IRR", "set");
	test_take_interrupt(bsp);
	irq_set_level(vm, 9, false);
	test_ioapic_write(vm, 0x10 + 2 * 9, RTE_MASKED);
}

static void test_destinations(struct vm *vm)
{
	struct vcpu *c0 = vm->cpus[0], *c1 = vm->cpus[1], *c2 = vm->cpus[2];

	test_lapic_write(c1, LAPIC_SVR, 0x1ff);
	test_lapic_write(c2, LAPIC_SVR, 0x1ff);
	test_ioapic_route(vm, 6, 0x60, 2, false);
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(test_lapic_irr(c2, 0x60) && !test_lapic_irr(c0, 0x60) && !test_lapic_irr(c1, 0x60),
		   "physical destination 2", "IRRs %d %d %d", test_lapic_irr(c0, 0x60), test_lapic_irr(c1, 0x60),
		   test_lapic_irr(c2, 0x60));
	test_take_interrupt(c2);

	test_lapic_write(c0, LAPIC_LDR, 0x01000000);
	test_lapic_write(c1, LAPIC_LDR, 0x02000000);
	test_lapic_write(c2, LAPIC_LDR, 0x04000000);
	test_ioapic_write(vm, 0x11 + 2 * 6, 0x06000000);
	test_ioapic_write(vm, 0x10 + 2 * 6, 0x61 | RTE_LOGICAL);
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(!test_lapic_irr(c0, 0x61) && test_lapic_irr(c1, 0x61) && test_lapic_irr(c2, 0x61),
		   "flat logical destination 0x06", "IRRs %d %d %d", test_lapic_irr(c0, 0x61), test_lapic_irr(c1, 0x61),
		   test_lapic_irr(c2, 0x61));
	test_take_interrupt(c1);
	test_take_interrupt(c2);

	test_ioapic_write(vm, 0x10 + 2 * 6, 0x62 | RTE_LOGICAL | 1u << 8); /* lowest priority */
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(test_lapic_irr(c1, 0x62) && !test_lapic_irr(c2, 0x62), "lowest priority picks one", "IRRs %d %d",
		   test_lapic_irr(c1, 0x62), test_lapic_irr(c2, 0x62));
	test_take_interrupt(c1);

	/* Cluster model: cluster 1, members 1 and 2. */
	for (int i = 0; i < 3; i++)
		test_lapic_write(vm->cpus[i], LAPIC_DFR, 0x0fffffff);
	test_lapic_write(c1, LAPIC_LDR, 0x11000000);
	test_lapic_write(c2, LAPIC_LDR, 0x22000000);
	test_ioapic_write(vm, 0x11 + 2 * 6, 0x13000000);
	test_ioapic_write(vm, 0x10 + 2 * 6, 0x63 | RTE_LOGICAL);
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(test_lapic_irr(c1, 0x63) && !test_lapic_irr(c2, 0x63), "cluster logical destination", "IRRs %d %d",
		   test_lapic_irr(c1, 0x63), test_lapic_irr(c2, 0x63));
	test_take_interrupt(c1);

	test_ioapic_route(vm, 6, 0x64, 0xff, false);
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(test_lapic_irr(c0, 0x64) && test_lapic_irr(c1, 0x64) && test_lapic_irr(c2, 0x64),
		   "destination 0xff is a broadcast", "IRRs %d %d %d", test_lapic_irr(c0, 0x64),
		   test_lapic_irr(c1, 0x64), test_lapic_irr(c2, 0x64));
	for (int i = 0; i < 3; i++)
		test_take_interrupt(vm->cpus[i]);

	test_ioapic_write(vm, 0x10 + 2 * 6, 0x400); /* NMI */
	irq_set_level(vm, 6, true);
	irq_set_level(vm, 6, false);
	test_check(vcpu_take_nmi(c0) && !vcpu_take_nmi(c0), "NMI delivery mode, once", "no NMI or two");
	test_ioapic_write(vm, 0x10 + 2 * 6, RTE_MASKED);
}

static void test_pic_extint(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_pic_init(vm, 0xff & ~0x08, 0xff);
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x10700);
	test_ioapic_write(vm, 0x10 + 2 * 7, 0x700); /* ExtINT */
	irq_set_level(vm, 3, true);
	irq_set_level(vm, 7, true);
	irq_set_level(vm, 7, false);
	test_check(test_lapic_irr(bsp, 0x23), "ExtINT entry fetches the 8259's vector", "IRR bit 0x23 clear");
	test_take_interrupt(bsp);
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 3, false);
	test_ioapic_write(vm, 0x10 + 2 * 7, RTE_MASKED);
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x8700);
}

int main(void)
{
	struct vm *vm = test_vm_create(3);

	test_pit_quiet(vm);
	test_registers(vm);
	test_edge(vm);
	test_level(vm);
	test_destinations(vm);
	test_pic_extint(vm);
	test_fuzz_mmio(vm, vm->cpus[1], 0xfec00000, 0x1000, 50000);
	for (unsigned pin = 0; pin < 64; pin++)
		irq_set_level(vm, pin, pin & 1);
	ioapic_set_irq(vm, 1000, true);
	for (unsigned v = 0; v < 256; v++)
		ioapic_eoi(vm, v);
	test_check(true, "hostile register accesses", "-");
	test_vm_destroy(vm);
	return test_finish();
}
