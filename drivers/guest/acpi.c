/* Finding the machine's ACPI tables (ACPI 6.5, 5.2.5 and 5.2.7-8). */
#include "guest.h"

struct rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length; /* revision >= 2 from here on */
	uint64_t xsdt;
	uint8_t extended_checksum, reserved[3];
} __attribute__((packed));

/* A table is believed only below 4 GiB (what the runtime maps) and only up
 * to this length. */
#define ACPI_TABLE_MAX (1u << 20)

uint8_t acpi_checksum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	while (n--)
		sum += *b++;
	return sum;
}

static const struct rsdp *rsdp_scan(uint64_t start, uint64_t end)
{
	for (uint64_t a = start; a + 20 <= end; a += 16) {
		const struct rsdp *r = (const struct rsdp *)a;
		if (!memcmp(r->signature, "RSD PTR ", 8) && acpi_checksum(r, 20) == 0)
			return r;
	}
	return NULL;
}

/* The first KiB of the EBDA, then 0xe0000-0xfffff. */
static const struct rsdp *rsdp_find(void)
{
	uint16_t ebda_segment;
	const struct rsdp *r = NULL;

	/* BIOS data area word 0x40e; asm, as GCC rejects loads from a constant address in low memory. */
	__asm__ volatile("movw 0x40e, %0" : "=r"(ebda_segment));
	uint64_t ebda = (uint64_t)ebda_segment << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		r = rsdp_scan(ebda, ebda + 1024);
	return r ? r : rsdp_scan(0xe0000, 0x100000);
}

static const struct acpi_header *table_at(uint64_t addr)
{
	const struct acpi_header *t = (const struct acpi_header *)addr;
	if (!addr || addr >= (1ull << 32) - ACPI_TABLE_MAX || t->length < sizeof(*t) || t->length > ACPI_TABLE_MAX ||
	    acpi_checksum(t, t->length))
		return NULL;
	return t;
}

const struct acpi_header *acpi_find_table(const char *signature)
{
	const struct rsdp *rsdp = rsdp_find();
	if (!rsdp)
		return NULL;
	bool x = rsdp->revision >= 2 && rsdp->xsdt && acpi_checksum(rsdp, rsdp->length) == 0;
	const struct acpi_header *root = table_at(x ? rsdp->xsdt : rsdp->rsdt);
	unsigned entry_size = x ? 8 : 4;
	if (!root)
		return NULL;
	for (uint32_t off = sizeof(*root); off + entry_size <= root->length; off += entry_size) {
		uint64_t addr = 0;
		memcpy(&addr, (const uint8_t *)root + off, entry_size);
		const struct acpi_header *t = table_at(addr);
		if (t && !memcmp(t->signature, signature, 4))
			return t;
	}
	return NULL;
}
