/* LAPIC, IOAPIC, 8259 PIC, CMOS RTC and i8254 PIT helpers. */
#include "guest.h"

uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_enable(uint8_t spurious_vector)
{
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | BIT(11));
	lapic_write(LAPIC_SVR, BIT(8) | spurious_vector);
	lapic_write(LAPIC_TPR, 0);
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(IOAPIC_BASE, reg);
	return mmio_read32(IOAPIC_BASE + 0x10);
}

void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}

void ioapic_route(unsigned pin, uint8_t vector, uint8_t apic_id)
{
	ioapic_write(0x11 + 2 * pin, (uint32_t)apic_id << 24);
	ioapic_write(0x10 + 2 * pin, vector);
}

void ioapic_mask(unsigned pin)
{
	ioapic_write(0x10 + 2 * pin, LAPIC_LVT_MASKED);
}

void pic_disable(void)
{
	outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 follows */
	outb(0xa0, 0x11);
	outb(0x21, 0x20); /* ICW2: vector bases */
	outb(0xa1, 0x28);
	outb(0x21, 0x04); /* ICW3: slave on IRQ2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01); /* ICW4: 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, 0xff); /* mask all */
	outb(0xa1, 0xff);
}

uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg & 0x7f);
	return inb(0x71);
}

void cmos_write(uint8_t reg, uint8_t v)
{
	outb(0x70, reg & 0x7f);
	outb(0x71, v);
}

void pit_wait_ticks(uint16_t count)
{
	/* Gate channel 2 on, speaker off; mode 0 ends with OUT high. */
	outb(0x61, (inb(0x61) & ~0x02) | 0x01);
	outb(0x43, 0xb0); /* channel 2, lobyte/hibyte, mode 0, binary */
	outb(0x42, count & 0xff);
	outb(0x42, count >> 8);
	for (uint64_t i = 0; i < 1000000000ull && !(inb(0x61) & 0x20); i++)
		cpu_pause();
}

bool wait_count(volatile uint64_t *counter, uint64_t target, uint64_t max_spins)
{
	for (uint64_t i = 0; i < max_spins; i++) {
		if (*counter >= target)
			return true;
		cpu_pause();
	}
	return *counter >= target;
}

bool cpu_has_nx(void)
{
	return cpuid(0x80000000, 0).eax >= 0x80000001 && (cpuid(0x80000001, 0).edx & BIT(20));
}

bool cpu_has_1g_pages(void)
{
	return cpuid(0x80000000, 0).eax >= 0x80000001 && (cpuid(0x80000001, 0).edx & BIT(26));
}

bool cpu_has_x2apic(void)
{
	return cpuid(1, 0).ecx & BIT(21);
}

bool cpu_has_tsc_deadline(void)
{
	return cpuid(1, 0).ecx & BIT(24);
}

bool cpu_has_xsave(void)
{
	return cpuid(1, 0).ecx & BIT(26);
}
