/*
 * Hostile guest: writes pseudo-random values to every I/O port, to PCI
 * configuration space, and across the MMIO part of the 32-bit address space,
 * then checks that it is still running and that its own memory is intact.
 * The machine may ignore the writes or act on them; it must not crash, hang
 * or touch guest RAM. Skipped: the ports that end or reset the machine on
 * purpose (debug exit 0xf4, ACPI PM1 0x600-0x60f, reset 0xcf9 and 0x64, A20
 * and fast reset 0x92), the console UART, and LAPIC ICR writes (an INIT to
 * itself is a legitimate reset).
 */
#include "guest.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* RAM the storm must not reach: code, constants and this pattern. */
static uint64_t canary[8192];

static uint64_t image_checksum(void)
{
	uint64_t sum = 0;
	extern char __rodata_end[];
	for (const uint64_t *p = (const uint64_t *)__image_start; p < (const uint64_t *)__rodata_end; p++)
		sum = sum * 31 + *p;
	for (unsigned i = 0; i < sizeof(canary) / 8; i++)
		sum = sum * 31 + canary[i];
	return sum;
}

static bool port_skipped(unsigned port)
{
	return (port >= 0xf4 && port <= 0xf7) || (port >= 0x600 && port <= 0x60f) || (port >= 0xcf8 && port <= 0xcff) ||
	       port == 0x64 || port == 0x92 || (port >= 0x3f8 && port <= 0x3ff);
}

static void storm_ports(void)
{
	for (unsigned port = 0; port < 0x10000; port++) {
		if (port_skipped(port))
			continue;
		outb(port, next());
		(void)inb(port);
		if (port % 2 == 0 && !port_skipped(port + 1)) {
			outw(port, next());
			(void)inw(port);
		}
		if (port % 4 == 0 && !port_skipped(port + 3)) {
			outl(port, next());
			(void)inl(port);
		}
	}
	check_pass("ports");
}

static void storm_pci_config(void)
{
	for (int i = 0; i < 4096; i++) {
		uint32_t addr = 0x80000000u | (next() & 0x00fffffc);
		outl(0xcf8, addr);
		unsigned off = next() & 3;
		if (i & 1)
			outb(0xcfc + off, next());
		else
			outl(0xcfc, next());
		(void)inl(0xcfc);
		(void)inb(0xcfc + off);
	}
	outl(0xcf8, next()); /* enable bit clear */
	(void)inl(0xcfc);
	check_pass("pci-config");
}

static void storm_mmio(void)
{
	/* One page in 16 from 3 GiB to 4 GiB, beside the interrupt controllers. */
	for (uint64_t page = 0xc0000000ull; page < 0x100000000ull; page += 0x10000) {
		if (page == (LAPIC_BASE & ~0xffffull) || page == (IOAPIC_BASE & ~0xffffull))
			continue;
		uint64_t a = page + (next() & 0xff8);
		mmio_write32(a, next());
		(void)mmio_read32(a);
		mmio_write64(a, next());
		(void)mmio_read64(a);
		*(volatile uint8_t *)(a + 3) = next();
	}
	check_pass("mmio");
}

static void storm_lapic(void)
{
	for (uint32_t reg = 0; reg < 0x1000; reg += 0x10) {
		if (reg == LAPIC_ICR_LO || reg == LAPIC_ICR_HI)
			continue;
		lapic_write(reg, next());
		(void)lapic_read(reg);
	}
	(void)mmio_read32(LAPIC_BASE + 0x404); /* unaligned inside a register */
	for (uint32_t reg = LAPIC_LVT_TIMER; reg <= LAPIC_LVT_ERROR; reg += 0x10)
		lapic_write(reg, LAPIC_LVT_MASKED);
	check_pass("lapic");
}

static void storm_ioapic(void)
{
	for (int i = 0; i < 1024; i++) {
		mmio_write32(IOAPIC_BASE, next());
		(void)mmio_read32(IOAPIC_BASE + 0x10);
		mmio_write32(IOAPIC_BASE + (next() & 0xffc), next() & ~0xffull);
	}
	check_pass("ioapic");
}

void serial_init(void);

/* Garbage in the LAPIC's LVTs can legitimately raise NMIs. */
static volatile uint64_t nmis;

static void count_nmi(struct trap_frame *f)
{
	(void)f;
	nmis++;
}

void main(void)
{
	trap_set_handler(VEC_NMI, count_nmi);
	for (unsigned i = 0; i < sizeof(canary) / 8; i++)
		canary[i] = next();
	uint64_t before = image_checksum();

	storm_ports();
	storm_pci_config();
	storm_lapic();
	storm_ioapic();
	storm_mmio();
	serial_init(); /* the storm may have left the UART alone, but be sure */
	check_eq("image intact", before, image_checksum());
	uint64_t sum = 0;
	for (uint64_t i = 1; i <= 1000; i++)
		sum += i * i;
	check_eq("still computing", 333833500, sum);
	printf("INFO %lu NMIs during the storm\n", (uint64_t)nmis);
}
