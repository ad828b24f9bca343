/*
 * The ACPI tables, written once at start-up into the BIOS area, where guests
 * find the RSDP by scanning 0xe0000-0xfffff on 16-byte boundaries. They
 * describe what the other devices built: the LAPICs and the IOAPIC (MADT),
 * the PM and reset registers of power.c (FADT), the ECAM window of pci.c
 * (MCFG), the HPET of hpet.c (HPET), and in the DSDT the S5 sleep type,
 * COM1, the PCI root bridge with its windows and INTx routing (_PRT), the
 * ECAM reservation and one processor object per vCPU.
 *
 * The tables use the start of the area, 0xe0000-0xeffff, and leave the F
 * segment to other firmware structures (SMBIOS, MP table).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define ACPI_AREA_BASE 0xe0000u
#define ACPI_AREA_SIZE 0x10000u
#define LAPIC_ADDRESS  0xfee00000u
#define IOAPIC_ADDRESS 0xfec00000u
#define IOAPIC_ID      0
#define COM1_PORT      0x3f8
#define COM1_IRQ       4

#define OEM_ID	     "VIREO "
#define OEM_TABLE_ID "VIREOPC "
#define CREATOR_ID   "VIRE"

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum; /* of the first 20 bytes (ACPI 1.0) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t ext_checksum; /* of all of it */
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_gas {
	uint8_t space, bit_width, bit_offset, access_size;
	uint64_t address;
} __attribute__((packed));

struct acpi_fadt {
	struct acpi_header header;
	uint32_t firmware_ctrl, dsdt;
	uint8_t reserved0, preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk, pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl, x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk, x_pm2_cnt_blk, x_pm_tmr_blk,
	    x_gpe0_blk, x_gpe1_blk, sleep_control_reg, sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT layout");
_Static_assert(sizeof(struct acpi_fadt) == 276, "an ACPI 6.0 FADT is 276 bytes");

struct acpi_facs {
	char signature[4];
	uint32_t length, hardware_signature, waking_vector, global_lock, flags;
	uint64_t x_waking_vector;
	uint8_t version, reserved0[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS layout");

struct acpi_madt {
	struct acpi_header header;
	uint32_t lapic_address, flags;
} __attribute__((packed));

struct madt_lapic {
	uint8_t type, length, uid, apic_id;
	uint32_t flags;
} __attribute__((packed));

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address, gsi_base;
} __attribute__((packed));

struct madt_override {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));

struct madt_lapic_nmi {
	uint8_t type, length, uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

struct acpi_mcfg {
	struct acpi_header header;
	uint64_t reserved0;
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved1;
} __attribute__((packed));

struct acpi_hpet {
	struct acpi_header header;
	uint32_t timer_block_id; /* the low half of the capabilities register */
	struct acpi_gas base;
	uint8_t number;
	uint16_t min_tick; /* in counter ticks: the shortest period to program */
	uint8_t page_protection;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_hpet) == 56, "HPET table layout");

enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_OVERRIDE = 2, MADT_LAPIC_NMI = 4 };
#define MADT_PCAT_COMPAT   0x1
#define MADT_LAPIC_ENABLED 0x1
#define MADT_LEVEL_HIGH	   0x000d /* active high, level triggered */

#define GAS_SYSTEM_MEMORY 0
#define GAS_SYSTEM_IO	1
#define GAS_ACCESS_BYTE 1

#define FADT_WBINVD		 (1u << 0)
#define FADT_PROC_C1		 (1u << 2)
#define FADT_SLP_BUTTON		 (1u << 5) /* no fixed sleep button */
#define FADT_FIX_RTC		 (1u << 6) /* no RTC wake status */
#define FADT_TMR_VAL_EXT	 (1u << 8)
#define FADT_RESET_REG_SUP	 (1u << 10)
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_NO_VGA	 (1u << 2) /* and bit 1 clear: no 8042 */

/* ---- AML ---------------------------------------------------------------- */

enum {
	AML_ZERO = 0x00,
	AML_ONE = 0x01,
	AML_NAME = 0x08,
	AML_BYTE = 0x0a,
	AML_WORD = 0x0b,
	AML_DWORD = 0x0c,
	AML_STRING = 0x0d,
	AML_QWORD = 0x0e,
	AML_SCOPE = 0x10,
	AML_BUFFER = 0x11,
	AML_PACKAGE = 0x12,
	AML_EXT = 0x5b,
	AML_EXT_DEVICE = 0x82,
	AML_ROOT = 0x5c,
};

#define AML_MAX_DEPTH 8

/* A growing byte string; terms with a PkgLength are opened and closed like
 * brackets, and their length is filled in, minimally encoded, on closing. */
struct aml {
	uint8_t *buf;
	size_t len, cap;
	size_t open[AML_MAX_DEPTH];
	unsigned depth;
	bool error;
};

static void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->error)
		return;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 1024;
		while (cap < a->len + n)
			cap *= 2;
		uint8_t *buf = realloc(a->buf, cap);
		if (!buf) {
			a->error = true;
			return;
		}
		a->buf = buf;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		aml_byte(a, v >> (8 * i));
}

static void aml_open(struct aml *a, uint8_t op)
{
	if (op == AML_EXT_DEVICE)
		aml_byte(a, AML_EXT);
	aml_byte(a, op);
	if (a->depth == AML_MAX_DEPTH) {
		a->error = true;
		return;
	}
	a->open[a->depth++] = a->len;
	aml_le(a, 0, 4); /* room for the longest PkgLength */
}

static void aml_close(struct aml *a)
{
	size_t at, body, total;
	unsigned n;

	if (a->error || !a->depth) {
		a->error = true;
		return;
	}
	at = a->open[--a->depth];
	body = a->len - at - 4;
	/* The length counts its own bytes: one holds 6 bits, more hold 4 + 8 each. */
	n = body + 1 < 1u << 6 ? 1 : body + 2 < 1u << 12 ? 2 : body + 3 < 1u << 20 ? 3 : 4;
	total = body + n;
	if (total >= 1u << 28) {
		a->error = true;
		return;
	}
	memmove(a->buf + at + n, a->buf + at + 4, body);
	a->len -= 4 - n;
	if (n == 1) {
		a->buf[at] = total;
		return;
	}
	a->buf[at] = (n - 1) << 6 | (total & 0xf);
	for (unsigned i = 1; i < n; i++)
		a->buf[at + i] = total >> (4 + 8 * (i - 1));
}

/* A NameString of one segment, "\" for the root allowed before it; short
 * names are padded with '_' as ASL does. */
static void aml_name_string(struct aml *a, const char *name)
{
	char seg[4] = {'_', '_', '_', '_'};

	if (*name == '\\') {
		aml_byte(a, AML_ROOT);
		name++;
	}
	memcpy(seg, name, strnlen(name, 4));
	aml_bytes(a, seg, 4);
}

static void aml_integer(struct aml *a, uint64_t v)
{
	if (v <= 1) {
		aml_byte(a, v ? AML_ONE : AML_ZERO);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD);
		aml_le(a, v, 8);
	}
}

static void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING);
	aml_bytes(a, s, strlen(s) + 1);
}

/* A compressed EISA ID such as "PNP0A08", as ASL's EisaId() makes it. */
static void aml_eisa_id(struct aml *a, const char *id)
{
	uint32_t v = (uint32_t)(id[0] - '@') << 26 | (uint32_t)(id[1] - '@') << 21 | (uint32_t)(id[2] - '@') << 16 |
		     (uint32_t)strtoul(id + 3, NULL, 16);

	aml_byte(a, AML_DWORD);
	aml_le(a, __builtin_bswap32(v), 4);
}

static void aml_name(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, name);
}

static void aml_name_integer(struct aml *a, const char *name, uint64_t v)
{
	aml_name(a, name);
	aml_integer(a, v);
}

static void aml_name_eisa_id(struct aml *a, const char *name, const char *id)
{
	aml_name(a, name);
	aml_eisa_id(a, id);
}

static void aml_device(struct aml *a, const char *name)
{
	aml_open(a, AML_EXT_DEVICE);
	aml_name_string(a, name);
}

/* Resource descriptors go into their own string, which becomes a Buffer
 * with the end tag added: ASL's ResourceTemplate. */
static void aml_name_resources(struct aml *a, const char *name, struct aml *res)
{
	aml_le(res, 0x0079, 2); /* end tag, checksum 0: none */
	aml_name(a, name);
	aml_open(a, AML_BUFFER);
	aml_integer(a, res->len);
	aml_bytes(a, res->buf, res->len);
	aml_close(a);
	if (res->error)
		a->error = true;
	free(res->buf);
	*res = (struct aml){0};
}

static void res_io(struct aml *r, uint16_t port, uint8_t len)
{
	aml_byte(r, 0x47); /* I/O port, 16-bit decode, fixed */
	aml_byte(r, 0x01);
	aml_le(r, port, 2);
	aml_le(r, port, 2);
	aml_byte(r, 1); /* alignment */
	aml_byte(r, len);
}

static void res_irq(struct aml *r, unsigned irq)
{
	aml_byte(r, 0x22); /* IRQNoFlags: ISA edge, active high */
	aml_le(r, 1u << irq, 2);
}

static void res_memory32_fixed(struct aml *r, uint32_t base, uint32_t len)
{
	aml_byte(r, 0x86);
	aml_le(r, 9, 2);
	aml_byte(r, 1); /* read-write */
	aml_le(r, base, 4);
	aml_le(r, len, 4);
}

/* Windows a bridge passes on: producer, positive decode, fixed bounds. */
#define RES_SPACE_MEMORY       0
#define RES_SPACE_IO	       1
#define RES_SPACE_BUS	       2
#define RES_PRODUCER_FIXED     0x0c
#define RES_IO_ENTIRE_RANGE    0x03
#define RES_MEMORY_RW_UNCACHED 0x01

static void res_word_window(struct aml *r, uint8_t space, uint8_t type_flags, uint16_t min, uint16_t max)
{
	aml_byte(r, 0x88);
	aml_le(r, 13, 2);
	aml_byte(r, space);
	aml_byte(r, RES_PRODUCER_FIXED);
	aml_byte(r, type_flags);
	aml_le(r, 0, 2); /* granularity */
	aml_le(r, min, 2);
	aml_le(r, max, 2);
	aml_le(r, 0, 2); /* translation */
	aml_le(r, max - min + 1, 2);
}

static void res_dword_memory_window(struct aml *r, uint32_t min, uint32_t max)
{
	aml_byte(r, 0x87);
	aml_le(r, 23, 2);
	aml_byte(r, RES_SPACE_MEMORY);
	aml_byte(r, RES_PRODUCER_FIXED);
	aml_byte(r, RES_MEMORY_RW_UNCACHED);
	aml_le(r, 0, 4);
	aml_le(r, min, 4);
	aml_le(r, max, 4);
	aml_le(r, 0, 4);
	aml_le(r, max - min + 1, 4);
}

/* ---- virtio: PCI INTx routing ---- */
/* _PRT: INTA-INTD of every slot on bus 0 to the GSIs pci_intx_gsi names. A
 * Source of 0 makes the last field a GSI, level-triggered and active low. */
static void acpi_pci_prt(struct aml *a)
{
	aml_name(a, "_PRT");
	aml_open(a, AML_PACKAGE);
	aml_byte(a, 32 * 4);
	for (unsigned slot = 0; slot < 32; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			aml_open(a, AML_PACKAGE);
			aml_byte(a, 4);
			aml_integer(a, (uint64_t)slot << 16 | 0xffff); /* any function of the slot */
			aml_integer(a, pin);
			aml_integer(a, 0);
			aml_integer(a, pci_intx_gsi(slot, pin));
			aml_close(a);
		}
	}
	aml_close(a);
}
/* ---- end virtio ---- */

/* The DSDT's definition block. */
static void acpi_dsdt_aml(struct aml *a, unsigned cpus)
{
	struct aml res = {0};

	/* \_S5: SLP_TYPa, SLP_TYPb and two reserved values. */
	aml_name(a, "\\_S5");
	aml_open(a, AML_PACKAGE);
	aml_byte(a, 4);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, ACPI_SLP_TYP_S5);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_close(a);

	aml_open(a, AML_SCOPE);
	aml_name_string(a, "\\_SB");

	aml_device(a, "PCI0");
	aml_name_eisa_id(a, "_HID", "PNP0A08");
	aml_name_eisa_id(a, "_CID", "PNP0A03");
	aml_name_integer(a, "_UID", 0);
	aml_name_integer(a, "_SEG", 0);
	aml_name_integer(a, "_BBN", 0);
	res_word_window(&res, RES_SPACE_BUS, 0, 0, 0);
	res_io(&res, 0xcf8, 8);
	res_word_window(&res, RES_SPACE_IO, RES_IO_ENTIRE_RANGE, PCI_IO_BASE, PCI_IO_BASE + PCI_IO_SIZE - 1);
	res_dword_memory_window(&res, PCI_MMIO_BASE, PCI_MMIO_BASE + PCI_MMIO_SIZE - 1);
	aml_name_resources(a, "_CRS", &res);
	acpi_pci_prt(a); /* virtio */
	aml_close(a);

	/* Linux uses the MCFG's window only if a motherboard device claims it. */
	aml_device(a, "ECAM");
	aml_name_eisa_id(a, "_HID", "PNP0C02");
	aml_name_integer(a, "_UID", 0);
	res_memory32_fixed(&res, PCI_ECAM_BASE, PCI_ECAM_SIZE);
	aml_name_resources(a, "_CRS", &res);
	aml_close(a);

	aml_device(a, "COM1");
	aml_name_eisa_id(a, "_HID", "PNP0501");
	aml_name_integer(a, "_UID", 1);
	res_io(&res, COM1_PORT, 8);
	res_irq(&res, COM1_IRQ);
	aml_name_resources(a, "_CRS", &res);
	aml_close(a);

	/* Processor objects; _UID matches the MADT's processor UID. */
	for (unsigned i = 0; i < cpus; i++) {
		char name[8];
		snprintf(name, sizeof(name), "C%03X", i & 0xfff);
		aml_device(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name_integer(a, "_UID", i);
		aml_close(a);
	}

	aml_close(a);
}

/* ---- tables ------------------------------------------------------------- */

/* The area as it will appear in guest memory. */
struct acpi_area {
	uint8_t buf[ACPI_AREA_SIZE];
	uint32_t used;
};

/* Room for len bytes at the given alignment, or NULL if the area is full. */
static void *area_alloc(struct acpi_area *area, uint32_t len, uint32_t align, uint32_t *gpa)
{
	uint32_t at = (area->used + align - 1) & ~(align - 1);

	if (at > ACPI_AREA_SIZE || len > ACPI_AREA_SIZE - at)
		return NULL;
	area->used = at + len;
	*gpa = ACPI_AREA_BASE + at;
	return area->buf + at;
}

static uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return -sum;
}

/* Fills a table header; acpi_seal computes its checksum once the table is
 * complete. */
static void acpi_header(struct acpi_header *h, const char *signature, uint32_t length, uint8_t revision)
{
	memcpy(h->signature, signature, 4);
	h->length = length;
	h->revision = revision;
	memcpy(h->oem_id, OEM_ID, 6);
	memcpy(h->oem_table_id, OEM_TABLE_ID, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, CREATOR_ID, 4);
	h->creator_revision = 1;
}

static void acpi_seal(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = acpi_checksum(h, h->length);
}

static struct acpi_gas gas_io(uint16_t port, uint8_t bits, uint8_t access_size)
{
	return (struct acpi_gas){
	    .space = GAS_SYSTEM_IO, .bit_width = bits, .access_size = access_size, .address = port};
}

static void acpi_fadt(struct acpi_fadt *f, uint32_t dsdt, uint32_t facs)
{
	acpi_header(&f->header, "FACP", sizeof(*f), 6);
	f->firmware_ctrl = facs;
	f->x_firmware_ctrl = facs;
	f->dsdt = dsdt;
	f->x_dsdt = dsdt;
	f->sci_int = ACPI_SCI_IRQ;
	f->pm1a_evt_blk = ACPI_PM1_EVT_PORT;
	f->pm1_evt_len = 4;
	f->x_pm1a_evt_blk = gas_io(ACPI_PM1_EVT_PORT, 32, 0);
	f->pm1a_cnt_blk = ACPI_PM1_CNT_PORT;
	f->pm1_cnt_len = 2;
	f->x_pm1a_cnt_blk = gas_io(ACPI_PM1_CNT_PORT, 16, 0);
	f->pm_tmr_blk = ACPI_PM_TMR_PORT;
	f->pm_tmr_len = 4;
	f->x_pm_tmr_blk = gas_io(ACPI_PM_TMR_PORT, 32, 0);
	f->p_lvl2_lat = 101;  /* over 100: no C2 */
	f->p_lvl3_lat = 1001; /* over 1000: no C3 */
	f->iapc_boot_arch = BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_NO_VGA;
	f->flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_TMR_VAL_EXT | FADT_RESET_REG_SUP;
	f->reset_reg = gas_io(RESET_CONTROL_PORT, 8, GAS_ACCESS_BYTE);
	f->reset_value = RESET_CONTROL_VALUE;
	acpi_seal(&f->header);
}

static uint32_t madt_size(unsigned cpus)
{
	return sizeof(struct acpi_madt) + cpus * sizeof(struct madt_lapic) + sizeof(struct madt_ioapic) +
	       2 * sizeof(struct madt_override) + sizeof(struct madt_lapic_nmi);
}

static void acpi_madt(struct acpi_madt *m, unsigned cpus)
{
	uint8_t *p = (uint8_t *)(m + 1);

	acpi_header(&m->header, "APIC", madt_size(cpus), 4);
	m->lapic_address = LAPIC_ADDRESS;
	m->flags = MADT_PCAT_COMPAT;
	for (unsigned i = 0; i < cpus; i++, p += sizeof(struct madt_lapic))
		*(struct madt_lapic *)p =
		    (struct madt_lapic){MADT_LAPIC, sizeof(struct madt_lapic), i, i, MADT_LAPIC_ENABLED};
	*(struct madt_ioapic *)p =
	    (struct madt_ioapic){MADT_IOAPIC, sizeof(struct madt_ioapic), IOAPIC_ID, 0, IOAPIC_ADDRESS, 0};
	p += sizeof(struct madt_ioapic);
	/* The PIT's IRQ 0 is IOAPIC pin 2; the SCI is level-triggered. */
	*(struct madt_override *)p = (struct madt_override){MADT_OVERRIDE, sizeof(struct madt_override), 0, 0, 2, 0};
	p += sizeof(struct madt_override);
	*(struct madt_override *)p = (struct madt_override){
	    MADT_OVERRIDE, sizeof(struct madt_override), 0, ACPI_SCI_IRQ, ACPI_SCI_IRQ, MADT_LEVEL_HIGH};
	p += sizeof(struct madt_override);
	/* NMI on LINT1 of every processor (UID 0xff). */
	*(struct madt_lapic_nmi *)p =
	    (struct madt_lapic_nmi){MADT_LAPIC_NMI, sizeof(struct madt_lapic_nmi), 0xff, 0, 1};
	acpi_seal(&m->header);
}

static void acpi_mcfg(struct acpi_mcfg *m)
{
	acpi_header(&m->header, "MCFG", sizeof(*m), 1);
	m->base = PCI_ECAM_BASE;
	m->end_bus = (PCI_ECAM_SIZE >> 20) - 1;
	acpi_seal(&m->header);
}

static void acpi_hpet(struct acpi_hpet *t)
{
	acpi_header(&t->header, "HPET", sizeof(*t), 1);
	t->timer_block_id = hpet_timer_block_id();
	t->base = (struct acpi_gas){.space = GAS_SYSTEM_MEMORY, .bit_width = 64, .address = HPET_BASE};
	t->min_tick = 100; /* 1 us */
	acpi_seal(&t->header);
}

/* Lays every table out in the area; false if they do not fit. */
static bool acpi_build(struct acpi_area *area, const struct aml *dsdt_aml, unsigned cpus)
{
	enum { FADT, MADT, MCFG, HPET, TABLES };
	uint32_t rsdp_at = 0, dsdt_at = 0, facs_at = 0, at[TABLES] = {0}, xsdt_at = 0, rsdt_at = 0;
	struct acpi_rsdp *rsdp = area_alloc(area, sizeof(*rsdp), 16, &rsdp_at);
	struct acpi_header *dsdt = area_alloc(area, sizeof(*dsdt) + dsdt_aml->len, 16, &dsdt_at);
	struct acpi_facs *facs = area_alloc(area, sizeof(*facs), 64, &facs_at);
	struct acpi_fadt *fadt = area_alloc(area, sizeof(*fadt), 16, &at[FADT]);
	struct acpi_madt *madt = area_alloc(area, madt_size(cpus), 16, &at[MADT]);
	struct acpi_mcfg *mcfg = area_alloc(area, sizeof(*mcfg), 16, &at[MCFG]);
	struct acpi_hpet *hpet = area_alloc(area, sizeof(*hpet), 16, &at[HPET]);
	struct acpi_header *xsdt = area_alloc(area, sizeof(*xsdt) + TABLES * 8, 16, &xsdt_at);
	struct acpi_header *rsdt = area_alloc(area, sizeof(*rsdt) + TABLES * 4, 16, &rsdt_at);

	if (!rsdp || !dsdt || !facs || !fadt || !madt || !mcfg || !hpet || !xsdt || !rsdt)
		return false;

	acpi_header(dsdt, "DSDT", sizeof(*dsdt) + dsdt_aml->len, 2);
	memcpy(dsdt + 1, dsdt_aml->buf, dsdt_aml->len);
	acpi_seal(dsdt);

	memcpy(facs->signature, "FACS", 4);
	facs->length = sizeof(*facs);
	facs->version = 2;

	acpi_fadt(fadt, dsdt_at, facs_at);
	acpi_madt(madt, cpus);
	acpi_mcfg(mcfg);
	acpi_hpet(hpet);

	acpi_header(xsdt, "XSDT", sizeof(*xsdt) + TABLES * 8, 1);
	acpi_header(rsdt, "RSDT", sizeof(*rsdt) + TABLES * 4, 1);
	for (unsigned i = 0; i < TABLES; i++) {
		uint64_t a64 = at[i];
		memcpy((uint8_t *)(xsdt + 1) + 8 * i, &a64, 8);
		memcpy((uint8_t *)(rsdt + 1) + 4 * i, &at[i], 4);
	}
	acpi_seal(xsdt);
	acpi_seal(rsdt);

	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, OEM_ID, 6);
	rsdp->revision = 2;
	rsdp->rsdt = rsdt_at;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt = xsdt_at;
	rsdp->checksum = acpi_checksum(rsdp, offsetof(struct acpi_rsdp, length));
	rsdp->ext_checksum = acpi_checksum(rsdp, sizeof(*rsdp));
	return true;
}

static int acpi_init(struct vm *vm)
{
	struct acpi_area *area = calloc(1, sizeof(*area));
	struct aml dsdt = {0};
	int ret = 0;

	if (!area)
		return -ENOMEM;
	acpi_dsdt_aml(&dsdt, vm->cfg.cpus);
	if (dsdt.error || dsdt.depth) {
		vmm_log("acpi: cannot build the DSDT");
		ret = -ENOMEM;
	} else if (!acpi_build(area, &dsdt, vm->cfg.cpus)) {
		vmm_log("acpi: the tables for %u vCPUs do not fit in 0x%x-0x%x", vm->cfg.cpus, ACPI_AREA_BASE,
			ACPI_AREA_BASE + ACPI_AREA_SIZE - 1);
		ret = -ENOSPC;
	} else {
		ret = guest_write(vm, ACPI_AREA_BASE, area->buf, area->used);
	}
	free(dsdt.buf);
	free(area);
	return ret;
}

DEVICE_INIT("acpi", DEVICE_ORDER_FIRMWARE, acpi_init, NULL)
