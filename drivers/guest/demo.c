/*
 * The demo guest `make run` boots: says hello over the serial port, shows
 * what the machine looks like from inside, does some work, and powers off
 * through ACPI the way an operating system does (FADT PM1a control block,
 * SLP_TYP from the DSDT's \_S5 package).
 */
#include "guest.h"

/* SLP_TYPa from the \_S5 package: Name(_S5_, Package(){a, b, ...}). */
static int s5_sleep_type(const struct acpi_header *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt, *end = p + dsdt->length;
	for (; p + 8 < end; p++) {
		if (memcmp(p, "_S5_", 4) || p[4] != 0x12)
			continue;
		p += 5;
		p += ((*p >> 6) & 3) + 1; /* PkgLength */
		p++;                      /* NumElements */
		if (*p == 0x0a)           /* BytePrefix */
			return p[1];
		return *p == 0x01 ? 1 : 0; /* OneOp or ZeroOp */
	}
	return -1;
}

static void acpi_power_off(void)
{
	const struct acpi_header *fadt = acpi_find_table("FACP");
	if (!fadt)
		return;
	uint32_t pm1a_cnt = *(const uint32_t *)((const uint8_t *)fadt + 64);
	const struct acpi_header *dsdt = (const void *)(uint64_t) * (const uint32_t *)((const uint8_t *)fadt + 40);
	int slp_typ = s5_sleep_type(dsdt);
	if (!pm1a_cnt || slp_typ < 0)
		return;
	printf("powering off through ACPI (PM1a_CNT 0x%x, SLP_TYP %d)\n", pm1a_cnt, slp_typ);
	outw(pm1a_cnt, (slp_typ << 10) | (1 << 13));
	for (int i = 0; i < 100; i++) /* the machine takes a moment to stop */
		pit_wait_ticks(PIT_HZ / 1000);
}

void main(void)
{
	char vendor[13] = {0}, brand[49] = {0};
	struct cpuid_regs r = cpuid(0, 0);

	memcpy(vendor, &r.ebx, 4);
	memcpy(vendor + 4, &r.edx, 4);
	memcpy(vendor + 8, &r.ecx, 4);
	if (cpuid(0x80000000, 0).eax >= 0x80000004)
		for (uint32_t leaf = 0; leaf < 3; leaf++) {
			r = cpuid(0x80000002 + leaf, 0);
			memcpy(brand + 16 * leaf, &r, 16);
		}
	printf("\nHello from a bare-metal guest, running in 64-bit mode.\n");
	printf("CPU: %s %s\n", vendor, brand);
	if (multiboot_magic == MULTIBOOT_BOOT_MAGIC) {
		const struct multiboot_info *mbi = (const void *)(uint64_t)multiboot_info;
		printf("memory: %u KiB above 1 MiB\n", mbi->mem_upper);
	}

	uint64_t start = rdtsc();
	unsigned primes = 0;
	for (unsigned n = 2; n < 200000; n++) {
		bool prime = true;
		for (unsigned d = 2; d * d <= n; d++)
			if (n % d == 0) {
				prime = false;
				break;
			}
		primes += prime;
	}
	printf("%u primes below 200000 (%lu TSC cycles)\n", primes, rdtsc() - start);
	check_eq("primes below 200000", 17984, primes);

	acpi_power_off();
	printf("no ACPI power-off: leaving through the debug-exit port\n");
}
