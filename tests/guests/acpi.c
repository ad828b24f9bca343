/*
 * ACPI tables and the chipset they describe, found the way an OS finds
 * them: the RSDP by scanning the BIOS area, then the RSDT/XSDT and every
 * table's checksum; the MADT's processors, IOAPIC and ISA overrides; the
 * FADT's DSDT with its \_S5 object and COM1, the FACS and the PM timer;
 * the PCI host bridge through CF8/CFC and, where an MCFG exists, through
 * ECAM, which must reach the same config space.
 *
 * The guest passes on QEMU's pc machine (SeaBIOS's tables: ACPI 1.0 RSDP,
 * no MCFG) and on Vireo, so it checks what both machines share and prints
 * the rest as INFO lines.
 */
#include "guest.h"

#define BIOS_AREA_START 0xe0000
#define BIOS_AREA_END	0x100000
#define TABLE_MAX_LEN	(1u << 20) /* a sanity bound, far above any real table */
#define MAX_TABLES	32

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA	   0xcfc
#define PCI_ENABLE	   0x80000000u

#define PM_TIMER_HZ	   3579545u
#define TICKS_10MS	   11932 /* of the PIT */
#define FADT_TMR_VAL_EXT   BIT(8)
#define FADT_RESET_REG_SUP BIT(10)

/* Offsets in the FADT. */
enum {
	FADT_FIRMWARE_CTRL = 36,
	FADT_DSDT = 40,
	FADT_SCI_INT = 46,
	FADT_PM1A_CNT_BLK = 64,
	FADT_PM_TMR_BLK = 76,
	FADT_FLAGS = 112,
	FADT_RESET_REG = 116,
	FADT_RESET_VALUE = 128,
	FADT_X_FIRMWARE_CTRL = 132,
	FADT_X_DSDT = 140,
	FADT_X_PM_TMR_BLK = 208,
};

static uint16_t rd16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint32_t rd32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* A fixed-width field as a C string: the runtime's printf has no precision. */
struct text {
	char s[9];
};

static struct text text(const void *p, unsigned len)
{
	struct text t = {{0}};
	memcpy(t.s, p, len < 8 ? len : 8);
	return t;
}

/* The runtime maps the first 4 GiB one to one. */
static const void *phys(uint64_t addr)
{
	return (const void *)addr;
}

static const uint8_t *find_rsdp(void)
{
	for (uint64_t a = BIOS_AREA_START; a < BIOS_AREA_END; a += 16) {
		const uint8_t *p = phys(a);
		if (!memcmp(p, "RSD PTR ", 8) && acpi_checksum(p, 20) == 0)
			return p;
	}
	return NULL;
}

/* A table's header and checksum, checked; NULL if it is not a sound table. */
static const struct acpi_header *table_at(uint64_t addr, const char *why)
{
	const struct acpi_header *h;
	char name[48];

	snprintf(name, sizeof(name), "%s table sound", why);
	if (!addr || addr >= (4ull << 30)) {
		check(false, name, "address 0x%lx outside the identity map", addr);
		return NULL;
	}
	h = phys(addr);
	if (h->length < sizeof(*h) || h->length > TABLE_MAX_LEN) {
		check(false, name, "%s at 0x%lx has length %u", text(h->signature, 4).s, addr, h->length);
		return NULL;
	}
	snprintf(name, sizeof(name), "%s checksum", text(h->signature, 4).s);
	check(acpi_checksum(h, h->length) == 0, name, "bytes at 0x%lx sum to 0x%x", addr, acpi_checksum(h, h->length));
	printf("INFO %s at 0x%lx, %u bytes, revision %u, OEM '%s'\n", text(h->signature, 4).s, addr, h->length,
	       h->revision, text(h->oem_id, 6).s);
	return h;
}

/* ---- RSDP, RSDT and XSDT ------------------------------------------------ */

static const struct acpi_header *tables[MAX_TABLES];
static unsigned ntables;

static const struct acpi_header *find_table(const char *signature)
{
	for (unsigned i = 0; i < ntables; i++)
		if (!memcmp(tables[i]->signature, signature, 4))
			return tables[i];
	return NULL;
}

static void test_root_tables(void)
{
	const uint8_t *rsdp = find_rsdp();
	const struct acpi_header *rsdt = NULL, *xsdt = NULL, *root;
	unsigned width, n;

	check(rsdp != NULL, "rsdp found in 0xe0000-0xfffff", "no 'RSD PTR ' with a valid checksum");
	if (!rsdp)
		return;
	printf("INFO RSDP at 0x%lx, revision %u, OEM '%s'\n", (uint64_t)rsdp, rsdp[15], text(rsdp + 9, 6).s);
	if (rsdp[15] >= 2) {
		uint32_t len = rd32(rsdp + 20);
		check(len >= 36 && len <= 4096 && acpi_checksum(rsdp, len) == 0, "rsdp extended checksum",
		      "length %u, sum 0x%x", len, len >= 36 && len <= 4096 ? acpi_checksum(rsdp, len) : 0);
		if (rd64(rsdp + 24))
			xsdt = table_at(rd64(rsdp + 24), "xsdt");
	}
	if (rd32(rsdp + 16))
		rsdt = table_at(rd32(rsdp + 16), "rsdt");
	check(rsdt || xsdt, "rsdt or xsdt present", "RSDP names neither");
	if (rsdt)
		check(!memcmp(rsdt->signature, "RSDT", 4), "rsdt signature", "'%s'", text(rsdt->signature, 4).s);
	if (xsdt)
		check(!memcmp(xsdt->signature, "XSDT", 4), "xsdt signature", "'%s'", text(xsdt->signature, 4).s);
	if (rsdt && xsdt) {
		bool same = (rsdt->length - sizeof(*rsdt)) / 4 == (xsdt->length - sizeof(*xsdt)) / 8;
		for (unsigned i = 0; same && i < (rsdt->length - sizeof(*rsdt)) / 4; i++)
			same = rd32((const uint8_t *)(rsdt + 1) + 4 * i) == rd64((const uint8_t *)(xsdt + 1) + 8 * i);
		check(same, "rsdt and xsdt list the same tables", "they differ");
	}

	root = xsdt ? xsdt : rsdt;
	if (!root)
		return;
	width = xsdt ? 8 : 4;
	n = (root->length - sizeof(*root)) / width;
	for (unsigned i = 0; i < n && ntables < MAX_TABLES; i++) {
		const uint8_t *entry = (const uint8_t *)(root + 1) + width * i;
		const struct acpi_header *t = table_at(width == 8 ? rd64(entry) : rd32(entry), "listed");
		if (t)
			tables[ntables++] = t;
	}
	check(ntables == n && n > 0, "every listed table sound", "%u of %u", ntables, n);
}

/* ---- MADT --------------------------------------------------------------- */

static void test_madt(void)
{
	const struct acpi_header *madt = find_table("APIC");
	const uint8_t *p, *end;
	unsigned cpus = 0, ioapics = 0, bad = 0;
	bool irq0_to_gsi2 = false, sci_level_high = false, nmi_lint1 = false;
	uint32_t bsp_apic_id = cpuid(1, 0).ebx >> 24;
	bool bsp_listed = false;

	check(madt != NULL, "madt present", "no APIC table");
	if (!madt)
		return;
	p = (const uint8_t *)madt;
	check_eq("madt local apic address", LAPIC_BASE, rd32(p + 36));
	check(rd32(p + 40) & 1, "madt pcat_compat (8259s present)", "flags 0x%x", rd32(p + 40));
	end = p + madt->length;
	for (p += 44; p + 2 <= end; p += p[1]) {
		if (p[1] < 2 || p + p[1] > end) {
			bad++;
			break;
		}
		switch (p[0]) {
		case 0: /* processor local APIC */
			if (p[1] >= 8 && (rd32(p + 4) & 1)) {
				cpus++;
				bsp_listed |= p[3] == bsp_apic_id;
			}
			break;
		case 1: /* IOAPIC */
			if (p[1] >= 12) {
				ioapics++;
				check_eq("madt ioapic address", IOAPIC_BASE, rd32(p + 4));
				check_eq("madt ioapic gsi base", 0, rd32(p + 8));
			}
			break;
		case 2: /* interrupt source override */
			if (p[1] >= 10 && p[2] == 0 && p[3] == 0)
				irq0_to_gsi2 = rd32(p + 4) == 2;
			if (p[1] >= 10 && p[2] == 0 && p[3] == 9)
				sci_level_high = rd32(p + 4) == 9 && (rd16(p + 8) & 0xf) == 0xd;
			break;
		case 4: /* local APIC NMI */
			if (p[1] >= 6 && p[5] == 1)
				nmi_lint1 = true;
			break;
		case 9: /* processor local x2APIC */
			if (p[1] >= 16 && (rd32(p + 8) & 1))
				cpus++;
			break;
		}
	}
	check(bad == 0 && p == end, "madt entries fill the table exactly", "an entry overruns at offset %lu",
	      (uint64_t)(p - (const uint8_t *)madt));
	check_eq("madt one enabled processor (1-CPU run)", 1, cpus);
	check(bsp_listed, "madt lists the boot processor's apic id", "APIC ID %u not found", bsp_apic_id);
	check_eq("madt one ioapic", 1, ioapics);
	check(irq0_to_gsi2, "madt override irq0 -> gsi2", "no such override");
	check(sci_level_high, "madt override irq9 -> gsi9 level, active high", "missing or other flags");
	check(nmi_lint1, "madt nmi on lint1", "no local APIC NMI entry for LINT1");
}

/* ---- FADT, FACS and DSDT ------------------------------------------------ */

/* The value of an AML integer (ZeroOp, OneOp, BytePrefix...), or -1. */
static int aml_small_integer(const uint8_t *p)
{
	switch (p[0]) {
	case 0x00: return 0;
	case 0x01: return 1;
	case 0x0a: return p[1];
	default: return -1;
	}
}

static void test_dsdt(const struct acpi_header *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt, *end = p + dsdt->length;
	static const uint8_t com1_hid[] = {0x0c, 0x41, 0xd0, 0x05, 0x01}; /* EisaId ("PNP0501") */
	bool s5 = false, com1 = false;

	check(!memcmp(dsdt->signature, "DSDT", 4), "dsdt signature", "'%s'", text(dsdt->signature, 4).s);
	for (p += sizeof(*dsdt); p + 8 <= end; p++) {
		/* Name (_S5, Package (n) {SLP_TYPa, ...}) */
		if (!s5 && !memcmp(p, "_S5_", 4) && p[4] == 0x12) {
			const uint8_t *pkg = p + 5 + 1 + (p[5] >> 6); /* past PkgLength */
			s5 = true;
			if (pkg + 2 < end)
				printf("INFO \\_S5 package of %u elements, SLP_TYPa %d\n", pkg[0],
				       aml_small_integer(pkg + 1));
		}
		if (!memcmp(p, com1_hid, sizeof(com1_hid)))
			com1 = true;
	}
	check(s5, "dsdt has a \\_S5 package", "no '_S5_' name followed by a package");
	check(com1, "dsdt has a PNP0501 serial port", "no EisaId (\"PNP0501\")");
}

static uint16_t pm_timer_port;
static uint32_t pm_timer_mask;

static void test_fadt(void)
{
	const struct acpi_header *fadt = find_table("FACP");
	const uint8_t *f = (const uint8_t *)fadt;
	uint64_t dsdt, facs;

	check(fadt != NULL, "fadt present", "no FACP table");
	if (!fadt)
		return;
	check(fadt->length >= 116, "fadt long enough for its flags", "length %u", fadt->length);
	if (fadt->length < 116)
		return;
	check_eq("fadt sci interrupt", 9, rd16(f + FADT_SCI_INT));
	check(rd32(f + FADT_PM1A_CNT_BLK) != 0, "fadt pm1a control block", "zero");
	printf("INFO FADT PM1a_EVT 0x%x PM1a_CNT 0x%x PM_TMR 0x%x flags 0x%x\n", rd32(f + 56),
	       rd32(f + FADT_PM1A_CNT_BLK), rd32(f + FADT_PM_TMR_BLK), rd32(f + FADT_FLAGS));

	if (fadt->length >= FADT_RESET_VALUE + 1 && (rd32(f + FADT_FLAGS) & FADT_RESET_REG_SUP)) {
		printf("INFO reset register space %u address 0x%lx value 0x%x\n", f[FADT_RESET_REG],
		       rd64(f + FADT_RESET_REG + 4), f[FADT_RESET_VALUE]);
		check(f[FADT_RESET_REG] == 1 && rd64(f + FADT_RESET_REG + 4) == 0xcf9,
		      "fadt reset register is port 0xcf9", "space %u address 0x%lx", f[FADT_RESET_REG],
		      rd64(f + FADT_RESET_REG + 4));
	} else {
		printf("INFO no reset register in the FADT\n");
	}

	facs = rd32(f + FADT_FIRMWARE_CTRL);
	if (fadt->length >= FADT_X_FIRMWARE_CTRL + 8 && rd64(f + FADT_X_FIRMWARE_CTRL))
		facs = rd64(f + FADT_X_FIRMWARE_CTRL);
	if (facs) {
		const uint8_t *s = phys(facs);
		check(!memcmp(s, "FACS", 4) && rd32(s + 4) >= 64 && facs % 64 == 0, "facs sound and 64-byte aligned",
		      "at 0x%lx: '%s', length %u", facs, text(s, 4).s, rd32(s + 4));
	} else {
		printf("INFO no FACS\n");
	}

	dsdt = rd32(f + FADT_DSDT);
	if (fadt->length >= FADT_X_DSDT + 8 && rd64(f + FADT_X_DSDT))
		dsdt = rd64(f + FADT_X_DSDT);
	const struct acpi_header *d = table_at(dsdt, "dsdt");
	if (d)
		test_dsdt(d);

	pm_timer_port = rd32(f + FADT_PM_TMR_BLK);
	if (fadt->length >= FADT_X_PM_TMR_BLK + 12 && rd64(f + FADT_X_PM_TMR_BLK + 4) && f[FADT_X_PM_TMR_BLK] == 1)
		pm_timer_port = rd64(f + FADT_X_PM_TMR_BLK + 4);
	pm_timer_mask = rd32(f + FADT_FLAGS) & FADT_TMR_VAL_EXT ? 0xffffffff : 0xffffff;
}

static void test_pm_timer(void)
{
	uint32_t t0, t1, a, b, delta, want = (uint64_t)PM_TIMER_HZ * TICKS_10MS / PIT_HZ;
	uint64_t spins = 0;

	check(pm_timer_port != 0, "pm timer port in the fadt", "none");
	if (!pm_timer_port)
		return;
	t0 = inl(pm_timer_port);
	check((t0 & ~pm_timer_mask) == 0, "pm timer width as the fadt says", "read 0x%x, mask 0x%x", t0, pm_timer_mask);
	do
		t1 = inl(pm_timer_port);
	while (t1 == t0 && ++spins < 100000000);
	check(t1 != t0, "pm timer advances", "stuck at 0x%x", t0);

	/* Against the PIT: ten milliseconds of it are 35795 timer ticks. A
	 * slow engine may oversleep, never undersleep. */
	a = inl(pm_timer_port);
	pit_wait_ticks(TICKS_10MS);
	b = inl(pm_timer_port);
	delta = (b - a) & pm_timer_mask;
	printf("INFO pm timer advanced %u ticks over 10 ms of the PIT (%u expected)\n", delta, want);
	check(delta >= want * 9 / 10 && delta <= want * 100, "pm timer runs at 3.58 MHz against the pit",
	      "%u ticks, want about %u", delta, want);
}

/* ---- PCI ---------------------------------------------------------------- */

static uint32_t cf8_address(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return PCI_ENABLE | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cf8_read32(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	outl(PCI_CONFIG_ADDRESS, cf8_address(bus, dev, fn, reg));
	return inl(PCI_CONFIG_DATA);
}

static void cf8_write32(unsigned bus, unsigned dev, unsigned fn, unsigned reg, uint32_t v)
{
	outl(PCI_CONFIG_ADDRESS, cf8_address(bus, dev, fn, reg));
	outl(PCI_CONFIG_DATA, v);
}

static uint32_t host_id, host_class;

static void test_pci_cf8(void)
{
	uint32_t hdr;

	outl(PCI_CONFIG_ADDRESS, cf8_address(0, 0, 0, 0));
	check_eq("cf8 reads back", cf8_address(0, 0, 0, 0), inl(PCI_CONFIG_ADDRESS));
	host_id = cf8_read32(0, 0, 0, 0x00);
	host_class = cf8_read32(0, 0, 0, 0x08) >> 8;
	printf("INFO 00:00.0 is %04x:%04x class %06x\n", host_id & 0xffff, host_id >> 16, host_class);
	check((host_id & 0xffff) != 0xffff && (host_id & 0xffff) != 0, "00:00.0 present", "vendor 0x%x",
	      host_id & 0xffff);
	check_eq("00:00.0 is a host bridge (class 06 00)", 0x0600, host_class >> 8);

	/* Byte and word accesses land at their offset inside the dword. */
	outl(PCI_CONFIG_ADDRESS, cf8_address(0, 0, 0, 0x00));
	check_eq("cfc word: vendor", host_id & 0xffff, inw(PCI_CONFIG_DATA));
	check_eq("cfe word: device", host_id >> 16, inw(PCI_CONFIG_DATA + 2));
	check_eq("cfd byte: vendor high", (host_id >> 8) & 0xff, inb(PCI_CONFIG_DATA + 1));
	outl(PCI_CONFIG_ADDRESS, cf8_address(0, 0, 0, 0x08));
	check_eq("cff byte: base class", 0x06, inb(PCI_CONFIG_DATA + 3));
	outl(PCI_CONFIG_ADDRESS, cf8_address(0, 0, 0, 0x0c));
	hdr = inb(PCI_CONFIG_DATA + 2);
	check_eq("00:00.0 header type 0", 0, hdr & 0x7f);

	check_eq("absent 00:1f.7 reads all ones", 0xffffffff, cf8_read32(0, 0x1f, 7, 0));
	outl(PCI_CONFIG_ADDRESS, cf8_address(0, 0, 0, 0) & ~PCI_ENABLE);
	check_eq("cfc with the enable bit clear reads all ones", 0xffffffff, inl(PCI_CONFIG_DATA));
	outl(PCI_CONFIG_ADDRESS, 0);
}

/* BAR sizing on whatever devices bus 0 has, as an OS does it: decoding off,
 * all ones written, the size mask read back, the BAR restored. */
static void test_pci_bars(void)
{
	unsigned sized = 0, bad = 0;

	for (unsigned dev = 0; dev < 32; dev++) {
		uint32_t id = cf8_read32(0, dev, 0, 0);
		uint32_t command;

		if ((id & 0xffff) == 0xffff || (cf8_read32(0, dev, 0, 0x0c) >> 16 & 0x7f) != 0)
			continue;
		command = cf8_read32(0, dev, 0, 0x04) & 0xffff;
		cf8_write32(0, dev, 0, 0x04, command & ~3u);
		for (unsigned i = 0; i < 6; i++) {
			unsigned reg = 0x10 + 4 * i;
			uint32_t old = cf8_read32(0, dev, 0, reg), mask, size;

			cf8_write32(0, dev, 0, reg, 0xffffffff);
			mask = cf8_read32(0, dev, 0, reg);
			cf8_write32(0, dev, 0, reg, old);
			if (!mask)
				continue;
			mask &= old & 1 ? ~3u : ~0xfu;
			if (old & 1)
				mask |= 0xffff0000; /* I/O BARs may decode 16 bits only */
			size = ~mask + 1;
			printf("INFO 00:%02x.0 BAR%u %s 0x%x bytes at 0x%x\n", dev, i, old & 1 ? "io" : "mem", size,
			       old & (old & 1 ? ~3u : ~0xfu));
			sized++;
			if (!size || (size & (size - 1)) || cf8_read32(0, dev, 0, reg) != old ||
			    (old & 1 ? 0 : old & ~0xfu & ~mask))
				bad++;
			if (!(old & 1) && (old & 6) == 4)
				i++; /* the upper half of a 64-bit BAR */
		}
		cf8_write32(0, dev, 0, 0x04, command);
	}
	if (sized)
		check(bad == 0, "bar sizing: power-of-two sizes, aligned bases, restored", "%u of %u BARs wrong", bad,
		      sized);
	else
		printf("INFO no device on bus 0 has a BAR: sizing not checked\n");
}

static void test_pci_ecam(void)
{
	const struct acpi_header *mcfg = find_table("MCFG");
	const uint8_t *m = (const uint8_t *)mcfg;
	uint64_t base;
	uint32_t line;

	if (!mcfg) {
		printf("INFO no MCFG: ECAM checks skipped\n");
		return;
	}
	check(mcfg->length >= 60, "mcfg has an allocation", "length %u", mcfg->length);
	if (mcfg->length < 60)
		return;
	base = rd64(m + 44);
	printf("INFO MCFG segment %u buses %u-%u at 0x%lx\n", rd16(m + 52), m[54], m[55], base);
	check(rd16(m + 52) == 0 && m[54] == 0, "mcfg allocation for segment 0 starts at bus 0", "segment %u bus %u",
	      rd16(m + 52), m[54]);
	if (base >= (4ull << 30) - (1u << 20)) {
		printf("INFO ECAM above 4 GiB: not reachable through the identity map, skipped\n");
		return;
	}
	check_eq("ecam 00:00.0 id equals cf8's", host_id, mmio_read32(base));
	check_eq("ecam 00:00.0 class equals cf8's", host_class, mmio_read32(base + 0x08) >> 8);
	check_eq("ecam absent 00:1f.7 reads all ones", 0xffffffff, mmio_read32(base + (0x1f << 15) + (7 << 12)));

	/* One config space: a write through ECAM is seen through CF8. The
	 * dword also holds the read-only interrupt pin, MIN_GNT and MAX_LAT. */
	line = cf8_read32(0, 0, 0, 0x3c);
	mmio_write32(base + 0x3c, (line & ~0xffu) | 0x5a);
	check_eq("interrupt line written through ecam, read through cf8", (line & ~0xffu) | 0x5a,
		 cf8_read32(0, 0, 0, 0x3c));
	cf8_write32(0, 0, 0, 0x3c, line);
	check_eq("interrupt line restored through cf8, read through ecam", line, mmio_read32(base + 0x3c));
}

void main(void)
{
	test_root_tables();
	test_madt();
	test_fadt();
	test_pm_timer();
	test_pci_cf8();
	test_pci_bars();
	test_pci_ecam();
}
