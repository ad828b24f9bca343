/*
 * A small virtio PCI driver for the test guests (virtio 1.2, 3.1 and 4.1),
 * written the way an OS driver is: find the function on bus 0 through
 * CF8/CFC, read its virtio capabilities, negotiate, set up split queues,
 * post buffers, ring doorbells, route MSI-X to this CPU's LAPIC.
 *
 * Works with modern devices (1af4:1040 + type, Vireo's) and transitional
 * ones (1af4:1000-103f with the type in the subsystem ID, QEMU's on the pc
 * machine), through the modern registers in either case. Included by one
 * guest file each: everything is static.
 */
#ifndef VIREO_TESTS_GUESTS_VIRTIO_GUEST_H
#define VIREO_TESTS_GUESTS_VIRTIO_GUEST_H

#include "guest.h"

#define VG_MS_TICKS  1193 /* PIT ticks in a millisecond */
#define VG_WAIT_MS   2000
#define VG_QUEUE_MAX 8

#define VG_CAP_VENDOR  0x09
#define VG_CAP_MSIX    0x11
#define VG_MSIX_ENABLE BIT(15)

enum { VG_CAP_COMMON = 1, VG_CAP_NOTIFY = 2, VG_CAP_ISR = 3, VG_CAP_DEVICE = 4 };
enum {
	VG_DFSELECT = 0x00,
	VG_DF = 0x04,
	VG_GFSELECT = 0x08,
	VG_GF = 0x0c,
	VG_MSIX = 0x10,
	VG_NUMQ = 0x12,
	VG_STATUS = 0x14,
	VG_Q_SELECT = 0x16,
	VG_Q_SIZE = 0x18,
	VG_Q_MSIX = 0x1a,
	VG_Q_ENABLE = 0x1c,
	VG_Q_NOFF = 0x1e,
	VG_Q_DESC = 0x20,
	VG_Q_AVAIL = 0x28,
	VG_Q_USED = 0x30
};
#define VG_S_ACKNOWLEDGE 1
#define VG_S_DRIVER	 2
#define VG_S_DRIVER_OK	 4
#define VG_S_FEATURES_OK 8
#define VG_DESC_F_NEXT	 1
#define VG_DESC_F_WRITE	 2
#define VG_NO_VECTOR	 0xffff
#define VG_F_VERSION_1	 32

/* ---- PCI configuration mechanism #1 --------------------------------------- */

static uint32_t vg_cfg_read32(unsigned slot, unsigned reg)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	return inl(0xcfc);
}

static uint8_t vg_cfg_read8(unsigned slot, unsigned reg)
{
	return vg_cfg_read32(slot, reg) >> (8 * (reg & 3));
}

static uint16_t vg_cfg_read16(unsigned slot, unsigned reg)
{
	return vg_cfg_read32(slot, reg) >> (8 * (reg & 2));
}

static void vg_cfg_write16(unsigned slot, unsigned reg, uint16_t v)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	outw(0xcfc + (reg & 2), v);
}

/* ---- registers ------------------------------------------------------------- */

static uint8_t vg_rd8(uint64_t a)
{
	return *(volatile uint8_t *)a;
}
static uint16_t vg_rd16(uint64_t a)
{
	return *(volatile uint16_t *)a;
}
static uint32_t vg_rd32(uint64_t a)
{
	return *(volatile uint32_t *)a;
}
static void vg_wr8(uint64_t a, uint8_t v)
{
	*(volatile uint8_t *)a = v;
}
static void vg_wr16(uint64_t a, uint16_t v)
{
	*(volatile uint16_t *)a = v;
}
static void vg_wr32(uint64_t a, uint32_t v)
{
	*(volatile uint32_t *)a = v;
}

/* ---- the function ---------------------------------------------------------- */

struct vg_dev {
	unsigned slot;
	uint64_t common, notify, isr, device;
	uint32_t notify_mult, device_len;
	unsigned msix_cap;
	uint64_t msix_table;
};

static uint64_t vg_bar(unsigned slot, unsigned bar)
{
	uint32_t lo = vg_cfg_read32(slot, 0x10 + 4 * bar);
	uint64_t addr = lo & ~0xfull;

	if ((lo & 6) == 4) /* 64-bit memory BAR */
		addr |= (uint64_t)vg_cfg_read32(slot, 0x10 + 4 * (bar + 1)) << 32;
	/* The runtime maps the first 4 GiB; map a BAR the firmware put higher. */
	if (addr >= (4ull << 30))
		paging_map(addr & ~0x1fffffull, addr & ~0x1fffffull, 2 << 20, PTE_P | PTE_W | PTE_PCD);
	return addr;
}

/* Finds the device of that type, enables memory decoding and bus mastering
 * and reads its capabilities. */
static bool vg_find(struct vg_dev *d, unsigned type)
{
	unsigned slot, n = 0;

	for (slot = 0; slot < 32; slot++) {
		uint32_t id = vg_cfg_read32(slot, 0x00);
		uint16_t device = id >> 16;

		if ((id & 0xffff) != 0x1af4)
			continue;
		if (device == 0x1040 + type || (device < 0x1040 && vg_cfg_read16(slot, 0x2e) == type))
			break;
	}
	if (slot == 32)
		return false;
	printf("INFO virtio type %u at 00:%02x.0, id 1af4:%04x, revision %u\n", type, slot, vg_cfg_read16(slot, 0x02),
	       vg_cfg_read8(slot, 0x08));
	d->slot = slot;
	vg_cfg_write16(slot, 0x04, vg_cfg_read16(slot, 0x04) | BIT(1) | BIT(2));
	for (unsigned at = vg_cfg_read8(slot, 0x34) & ~3u; at && n < 48; at = vg_cfg_read8(slot, at + 1) & ~3u, n++) {
		uint8_t id = vg_cfg_read8(slot, at);

		if (id == VG_CAP_MSIX) {
			uint32_t table = vg_cfg_read32(slot, at + 4);
			d->msix_cap = at;
			d->msix_table = vg_bar(slot, table & 7) + (table & ~7u);
			continue;
		}
		if (id != VG_CAP_VENDOR)
			continue;
		uint8_t cfg_type = vg_cfg_read8(slot, at + 3);
		uint64_t where = vg_bar(slot, vg_cfg_read8(slot, at + 4)) + vg_cfg_read32(slot, at + 8);
		/* Several of a type may exist: the first is the preferred one. */
		if (cfg_type == VG_CAP_COMMON && !d->common) {
			d->common = where;
		} else if (cfg_type == VG_CAP_NOTIFY && !d->notify) {
			d->notify = where;
			d->notify_mult = vg_cfg_read32(slot, at + 16);
		} else if (cfg_type == VG_CAP_ISR && !d->isr) {
			d->isr = where;
		} else if (cfg_type == VG_CAP_DEVICE && !d->device) {
			d->device = where;
			d->device_len = vg_cfg_read32(slot, at + 12);
		}
	}
	return true;
}

/* 3.1.1 up to FEATURES_OK: reset, ACKNOWLEDGE, DRIVER, then the features
 * of want the device offers, with VERSION_1. Returns the device's offer. */
static uint64_t vg_negotiate(struct vg_dev *d, uint64_t want)
{
	uint64_t cc = d->common, offered;

	vg_wr8(cc + VG_STATUS, 0);
	check_eq("reset: status reads 0", 0, vg_rd8(cc + VG_STATUS));
	vg_wr8(cc + VG_STATUS, VG_S_ACKNOWLEDGE);
	vg_wr8(cc + VG_STATUS, VG_S_ACKNOWLEDGE | VG_S_DRIVER);
	vg_wr32(cc + VG_DFSELECT, 0);
	offered = vg_rd32(cc + VG_DF);
	vg_wr32(cc + VG_DFSELECT, 1);
	offered |= (uint64_t)vg_rd32(cc + VG_DF) << 32;
	check_eq("VIRTIO_F_VERSION_1 offered", 1, offered >> VG_F_VERSION_1 & 1);
	want = (want & offered) | BIT64(VG_F_VERSION_1);
	vg_wr32(cc + VG_GFSELECT, 0);
	vg_wr32(cc + VG_GF, want);
	vg_wr32(cc + VG_GFSELECT, 1);
	vg_wr32(cc + VG_GF, want >> 32);
	vg_wr8(cc + VG_STATUS, VG_S_ACKNOWLEDGE | VG_S_DRIVER | VG_S_FEATURES_OK);
	check_eq("FEATURES_OK accepted", VG_S_FEATURES_OK, vg_rd8(cc + VG_STATUS) & VG_S_FEATURES_OK);
	return offered;
}

static void vg_driver_ok(struct vg_dev *d)
{
	vg_wr8(d->common + VG_STATUS, vg_rd8(d->common + VG_STATUS) | VG_S_DRIVER_OK);
	check_eq("DRIVER_OK", VG_S_DRIVER_OK, vg_rd8(d->common + VG_STATUS) & VG_S_DRIVER_OK);
}

/* MSI-X table entry n: fixed interrupt of vector to this CPU. */
static void vg_msix_route(struct vg_dev *d, unsigned n, uint8_t vector)
{
	uint64_t e = d->msix_table + 16 * n;

	vg_wr32(e + 0, 0xfee00000u | lapic_id() << 12);
	vg_wr32(e + 4, 0);
	vg_wr32(e + 8, vector);
	vg_wr32(e + 12, 0); /* unmasked */
}

static void vg_msix_enable(struct vg_dev *d)
{
	vg_cfg_write16(d->slot, d->msix_cap + 2, vg_cfg_read16(d->slot, d->msix_cap + 2) | VG_MSIX_ENABLE);
}

/* ---- split queues -------------------------------------------------------------- */

struct vg_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vg_queue {
	struct vg_desc desc[VG_QUEUE_MAX] __attribute__((aligned(4096)));
	struct {
		uint16_t flags, idx, ring[VG_QUEUE_MAX], used_event;
	} avail __attribute__((aligned(4096)));
	struct {
		uint16_t flags;
		volatile uint16_t idx;
		struct {
			uint32_t id, len;
		} ring[VG_QUEUE_MAX];
		uint16_t avail_event;
	} used __attribute__((aligned(4096)));
	uint16_t index, size;
	uint64_t doorbell;
};

/* Sets queue q->index up (at most VG_QUEUE_MAX entries) with an MSI-X
 * vector (or VG_NO_VECTOR) and enables it. */
static bool vg_queue_setup(struct vg_dev *d, struct vg_queue *q, unsigned index, uint16_t vector)
{
	uint64_t cc = d->common;
	char name[48];

	q->index = index;
	vg_wr16(cc + VG_Q_SELECT, index);
	q->size = vg_rd16(cc + VG_Q_SIZE);
	snprintf(name, sizeof(name), "queue %u exists", index);
	check(q->size >= 2, name, "size %u", q->size);
	if (q->size < 2)
		return false;
	if (q->size > VG_QUEUE_MAX)
		q->size = VG_QUEUE_MAX;
	vg_wr16(cc + VG_Q_SIZE, q->size);
	vg_wr32(cc + VG_Q_DESC, (uint64_t)q->desc);
	vg_wr32(cc + VG_Q_DESC + 4, (uint64_t)q->desc >> 32);
	vg_wr32(cc + VG_Q_AVAIL, (uint64_t)&q->avail);
	vg_wr32(cc + VG_Q_AVAIL + 4, (uint64_t)&q->avail >> 32);
	vg_wr32(cc + VG_Q_USED, (uint64_t)&q->used);
	vg_wr32(cc + VG_Q_USED + 4, (uint64_t)&q->used >> 32);
	vg_wr16(cc + VG_Q_MSIX, vector);
	snprintf(name, sizeof(name), "queue %u takes its MSI-X vector", index);
	check_eq(name, vector, vg_rd16(cc + VG_Q_MSIX));
	q->doorbell = d->notify + (uint64_t)vg_rd16(cc + VG_Q_NOFF) * d->notify_mult;
	vg_wr16(cc + VG_Q_ENABLE, 1);
	snprintf(name, sizeof(name), "queue %u enabled", index);
	check_eq(name, 1, vg_rd16(cc + VG_Q_ENABLE));
	return true;
}

/* Makes the chain at head available and rings the doorbell. */
static void vg_queue_post(struct vg_queue *q, uint16_t head)
{
	q->avail.ring[q->avail.idx % q->size] = head;
	__asm__ volatile("" ::: "memory");
	q->avail.idx++;
	__asm__ volatile("mfence" ::: "memory");
	vg_wr16(q->doorbell, q->index);
}

/* Waits, in PIT time, until the used index reaches n. */
static bool vg_queue_wait(struct vg_queue *q, uint16_t n)
{
	for (unsigned ms = 0; ms < VG_WAIT_MS && q->used.idx != n; ms++)
		pit_wait_ticks(VG_MS_TICKS);
	return q->used.idx == n;
}

static bool vg_wait_count(volatile uint64_t *count, uint64_t n)
{
	for (unsigned ms = 0; ms < VG_WAIT_MS && *count < n; ms++)
		pit_wait_ticks(VG_MS_TICKS);
	return *count >= n;
}

#endif
