/*
 * Interrupt lines and MSIs from devices to the interrupt controllers, or to
 * the engine when its own irqchip models them (KVM's in-kernel irqchip).
 *
 * The GSI rule: callers name GSIs, and GSI n is IOAPIC pin n. The ISA IRQs
 * are GSIs of the same number except IRQ0, the PIT, which is GSI 2 (the
 * MADT carries that interrupt source override, as on QEMU's PCs). GSIs 1
 * and 3-15 also reach 8259 line n, and GSI 2 reaches line 0; line 2 is the
 * cascade and GSI 0 is not wired.
 */
#include "vmm/internal.h"

#define MSI_ADDR_BASE	   0xfee00000u
#define MSI_ADDR_MASK	   0xfff00000u
#define MSI_ADDR_DEST(a)   (((a) >> 12) & 0xff)
#define MSI_ADDR_LOGICAL   (1u << 2)
#define MSI_DATA_VECTOR(d) ((d)&0xff)
#define MSI_DATA_MODE(d)   (((d) >> 8) & 7)
#define MSI_DATA_LEVEL	   (1u << 15)

static bool irqchip_in_engine(struct vm *vm)
{
	return vm->engine && vm->engine->irqchip_in_engine && vm->engine->irqchip_in_engine(vm);
}

static int gsi_to_pic_line(unsigned gsi)
{
	if (gsi == 2)
		return 0;
	if (gsi == 0 || gsi >= 16)
		return -1;
	return gsi;
}

void irq_set_level(struct vm *vm, unsigned gsi, bool level)
{
	if (irqchip_in_engine(vm)) {
		vm->engine->set_irq_line(vm, gsi, level);
		return;
	}
	ioapic_set_irq(vm, gsi, level);
	int line = gsi_to_pic_line(gsi);
	if (line >= 0)
		pic_set_irq(vm, line, level);
}

void irq_pulse(struct vm *vm, unsigned gsi)
{
	irq_set_level(vm, gsi, true);
	irq_set_level(vm, gsi, false);
}

/* Address 0xfeeDD00x: destination DD, bit 2 logical; data: vector, delivery
 * mode and trigger mode. Writes elsewhere are not interrupts and vanish. */
void msi_send(struct vm *vm, uint64_t addr, uint32_t data)
{
	if (irqchip_in_engine(vm)) {
		vm->engine->send_msi(vm, addr, data);
		return;
	}
	if (addr >> 32 || (addr & MSI_ADDR_MASK) != MSI_ADDR_BASE)
		return;
	lapic_deliver(vm, MSI_ADDR_DEST(addr), addr & MSI_ADDR_LOGICAL, MSI_DATA_MODE(data), MSI_DATA_VECTOR(data),
		      data & MSI_DATA_LEVEL);
}
