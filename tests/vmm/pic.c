/* The 8259 pair: initialisation, IRR/ISR, priorities, EOIs, the cascade,
 * ELCR level mode, auto-EOI, poll mode, and delivery to vCPU 0 as ExtINT. */
#include "tests/vmm/harness.h"

static uint8_t read_irr(struct vm *vm, uint16_t base)
{
	test_outb(vm, base, 0x0a);
	return test_inb(vm, base);
}

static uint8_t read_isr(struct vm *vm, uint16_t base)
{
	test_outb(vm, base, 0x0b);
	return test_inb(vm, base);
}

static void eoi(struct vm *vm)
{
	test_outb(vm, 0xa0, 0x20);
	test_outb(vm, 0x20, 0x20);
}

static void test_init(struct vm *vm)
{
	test_check_eq("power-on IMR masks everything", 0xff, test_inb(vm, 0x21));
	test_pic_init(vm, 0x00, 0x00);
	test_check_eq("IMR after ICWs and OCW1", 0x00, test_inb(vm, 0x21));
	test_outb(vm, 0x21, 0xa5);
	test_check_eq("IMR read-back", 0xa5, test_inb(vm, 0x21));
	test_outb(vm, 0x21, 0x00);
	test_check_eq("IRR empty", 0, read_irr(vm, 0x20));
	test_check_eq("nothing pending", (uint64_t)-1, (uint64_t)(int64_t)pic_pending_vector(vm));
}

static void test_edge(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];
	unsigned kicks = test_kicks(bsp);

	atomic_store(&bsp->interrupt_hint, false);
	irq_set_level(vm, 1, true);
	test_check_eq("IRQ1 in IRR", 0x02, read_irr(vm, 0x20));
	test_check(test_kicks(bsp) > kicks, "INTR rising kicks vCPU 0", "no kick");
	test_check(atomic_load(&bsp->interrupt_hint), "INTR rising sets the hint", "hint clear");
	test_check_eq("vCPU 0 sees vector 0x21 through LINT0", 0x21, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x21);
	test_check_eq("INTA moves IRQ1 to ISR", 0x02, read_isr(vm, 0x20));
	test_check_eq("edge request leaves IRR", 0x00, read_irr(vm, 0x20));
	irq_set_level(vm, 1, true);
	test_check_eq("no second edge while high", 0x00, read_irr(vm, 0x20));
	irq_set_level(vm, 1, false);
	test_outb(vm, 0x20, 0x20);
	test_check_eq("non-specific EOI clears ISR", 0x00, read_isr(vm, 0x20));
}

static void test_priority(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	irq_set_level(vm, 3, true);
	irq_set_level(vm, 1, true);
	test_check_eq("IRQ1 before IRQ3", 0x21, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x21);
	test_check_eq("IRQ3 waits while IRQ1 is in service", (uint64_t)-1,
		      (uint64_t)(int64_t)vcpu_pending_interrupt(bsp));
	test_outb(vm, 0x20, 0x61); /* specific EOI for IRQ1 */
	test_check_eq("specific EOI lets IRQ3 through", 0x23, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x23);
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 1, false);
	irq_set_level(vm, 3, false);

	test_outb(vm, 0x21, 0x02);
	irq_set_level(vm, 1, true);
	test_check_eq("masked line stays in IRR", 0x02, read_irr(vm, 0x20));
	test_check_eq("masked line is not delivered", (uint64_t)-1, (uint64_t)(int64_t)pic_pending_vector(vm));
	test_outb(vm, 0x21, 0x00);
	test_check_eq("unmasking delivers it", 0x21, pic_pending_vector(vm));
	test_check_eq("INTA returns it", 0x21, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 1, false);
}

static void test_cascade(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	irq_set_level(vm, 12, true);
	test_check_eq("IRQ12 through the slave", 0x2c, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x2c);
	test_check_eq("slave ISR", 0x10, read_isr(vm, 0xa0));
	test_check_eq("master ISR has the cascade", 0x04, read_isr(vm, 0x20));
	eoi(vm);
	test_check_eq("EOIs clear both", 0, read_isr(vm, 0xa0) | read_isr(vm, 0x20));
	irq_set_level(vm, 12, false);
	irq_set_level(vm, 2, false); /* GSI 2 is ISA IRQ0, which the parked PIT holds high */
	irq_set_level(vm, 2, true);
	test_check_eq("GSI 2 reaches PIC line 0", 0x20, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 2, false);
}

static void test_level(struct vm *vm)
{
	test_outb(vm, 0x4d1, 0xff);
	test_check_eq("ELCR keeps only settable lines", 0xde, test_inb(vm, 0x4d1));
	test_outb(vm, 0x4d0, 0xff);
	test_check_eq("IRQ0-2 cannot be level-triggered", 0xf8, test_inb(vm, 0x4d0));
	test_outb(vm, 0x4d0, 0x00);
	test_outb(vm, 0x4d1, 0x04); /* IRQ10 */
	irq_set_level(vm, 10, true);
	test_check_eq("level IRQ10", 0x2a, pic_acknowledge(vm));
	eoi(vm);
	test_check_eq("still asserted after EOI: again", 0x2a, pic_pending_vector(vm));
	irq_set_level(vm, 10, false);
	test_check_eq("dropped line withdraws the request", 0, read_irr(vm, 0xa0));
	/* The master already latched the cascade: the slave answers IRQ 15. */
	test_check_eq("withdrawn slave request is a spurious IRQ 15", 0x2f, pic_acknowledge(vm));
	test_check_eq("spurious IRQ 15 sets no slave ISR bit", 0, read_isr(vm, 0xa0));
	test_outb(vm, 0x20, 0x20);
	test_outb(vm, 0x4d1, 0x00);
}

static void test_modes(struct vm *vm)
{
	/* Auto-EOI: ICW4 = 0x03. */
	test_outb(vm, 0x20, 0x11);
	test_outb(vm, 0x21, 0x30);
	test_outb(vm, 0x21, 0x04);
	test_outb(vm, 0x21, 0x03);
	test_outb(vm, 0x21, 0x00);
	irq_set_level(vm, 5, true);
	test_check_eq("new base 0x30", 0x35, pic_acknowledge(vm));
	test_check_eq("auto-EOI leaves ISR empty", 0, read_isr(vm, 0x20));
	irq_set_level(vm, 5, false);

	test_pic_init(vm, 0, 0);
	irq_set_level(vm, 6, true);
	test_outb(vm, 0x20, 0x0c);
	test_check_eq("poll returns 0x80 | line", 0x86, test_inb(vm, 0x20));
	test_check_eq("poll acknowledged it", 0x40, read_isr(vm, 0x20));
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 6, false);
	test_check_eq("spurious INTA answers IRQ7", 0x27, pic_acknowledge(vm));
	test_check_eq("spurious INTA sets no ISR bit", 0, read_isr(vm, 0x20));

	/* Rotation: set priority so IRQ4 is the lowest, then IRQ5 beats IRQ1. */
	test_outb(vm, 0x20, 0xc4);
	irq_set_level(vm, 1, true);
	irq_set_level(vm, 5, true);
	test_check_eq("rotated priority", 0x25, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	test_check_eq("then IRQ1", 0x21, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 1, false);
	irq_set_level(vm, 5, false);
	test_outb(vm, 0x20, 0xc7);
}

static void test_lint0_masked(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x10700);
	irq_set_level(vm, 1, true);
	test_check_eq("LINT0 masked: no ExtINT", (uint64_t)-1, (uint64_t)(int64_t)vcpu_pending_interrupt(bsp));
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x00700);
	test_check_eq("LINT0 unmasked: ExtINT", 0x21, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x21);
	test_outb(vm, 0x20, 0x20);
	irq_set_level(vm, 1, false);
	test_check_eq("vCPU 1 never takes the 8259", (uint64_t)-1,
		      (uint64_t)(int64_t)vcpu_pending_interrupt(vm->cpus[1]));
}

int main(void)
{
	struct vm *vm = test_vm_create(2);

	test_pit_quiet(vm);
	test_init(vm);
	test_edge(vm);
	test_priority(vm);
	test_cascade(vm);
	test_level(vm);
	test_modes(vm);
	test_lint0_masked(vm);
	test_fuzz_pio(vm, 0x20, 2, 20000);
	test_fuzz_pio(vm, 0xa0, 2, 20000);
	test_fuzz_pio(vm, 0x4d0, 2, 2000);
	for (int i = 0; i < 64; i++)
		pic_acknowledge(vm);
	test_check(true, "hostile port accesses", "-");
	test_vm_destroy(vm);
	return test_finish();
}
