/* The device tests' virtio driver (driver.h). */
#include <string.h>

#include "tests/virtio/driver.h"

struct vm *vm;

/* ---- configuration space and the BAR -------------------------------------------- */

uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	return test_pio_read(vm, 0xcfc + (reg & 3), size);
}

void cfg_write(unsigned slot, unsigned reg, unsigned size, uint32_t v)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	test_pio_write(vm, 0xcfc + (reg & 3), size, v);
}

uint64_t mmio_read(uint64_t addr, unsigned size)
{
	return bus_read(&vm->mmio, vm->cpus[0], addr, size);
}

void mmio_write(uint64_t addr, unsigned size, uint64_t v)
{
	bus_write(&vm->mmio, vm->cpus[0], addr, size, v);
}

void *hva(uint64_t gpa)
{
	return gpa_to_hva(vm, gpa, 1);
}

bool find_device(uint16_t device_id, unsigned nth, struct vdev *d)
{
	memset(d, 0, sizeof(*d));
	for (unsigned slot = 0; slot < 32; slot++) {
		if (cfg_read(slot, 0, 4) != ((uint32_t)device_id << 16 | 0x1af4) || nth--)
			continue;
		d->slot = slot;
		cfg_write(slot, 0x04, 2, 0x0006); /* memory, bus master */
		d->bar = cfg_read(slot, 0x10, 4) & ~0xfu;
		for (unsigned at = cfg_read(slot, 0x34, 1); at; at = cfg_read(slot, at + 1, 1)) {
			unsigned id = cfg_read(slot, at, 1), type = cfg_read(slot, at + 3, 1);
			uint64_t where = d->bar + cfg_read(slot, at + 8, 4);

			if (id == 0x11) {
				d->msix_cap = at;
				d->msix_size = (cfg_read(slot, at + 2, 2) & 0x7ff) + 1;
			}
			if (id != 0x09)
				continue;
			switch (type) {
			case 1: d->common = where; break;
			case 2:
				d->notify = where;
				d->notify_mult = cfg_read(slot, at + 16, 4);
				break;
			case 3: d->isr = where; break;
			case 4:
				d->device = where;
				d->device_len = cfg_read(slot, at + 12, 4);
				break;
			case 5: d->cfg_cap = at; break;
			}
		}
		return true;
	}
	return false;
}

uint64_t cc_read(struct vdev *d, unsigned reg, unsigned size)
{
	return mmio_read(d->common + reg, size);
}

void cc_write(struct vdev *d, unsigned reg, unsigned size, uint64_t v)
{
	mmio_write(d->common + reg, size, v);
}

uint8_t status(struct vdev *d)
{
	return cc_read(d, CC_STATUS, 1);
}

/* Negotiates features (VERSION_1 added), up to FEATURES_OK. */
bool negotiate(struct vdev *d, uint64_t features)
{
	features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	cc_write(d, CC_STATUS, 1, 0);
	cc_write(d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_write(d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_write(d, CC_GFSELECT, 4, 0);
	cc_write(d, CC_GF, 4, (uint32_t)features);
	cc_write(d, CC_GFSELECT, 4, 1);
	cc_write(d, CC_GF, 4, features >> 32);
	cc_write(d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return status(d) & VIRTIO_STATUS_FEATURES_OK;
}

/* ---- a queue as the driver keeps it --------------------------------------------- */

void ring_setup(struct ring *r, struct vdev *d, unsigned index, uint16_t size, uint16_t vector)
{
	uint64_t base = RING_BASE + 0x4000 * index + 0x10000 * d->slot;

	*r = (struct ring){
	    .d = d, .index = index, .size = size, .desc = base, .avail = base + 0x1000, .used = base + 0x2000};
	memset(hva(base), 0, 0x3000);
	cc_write(d, CC_Q_SELECT, 2, index);
	cc_write(d, CC_Q_SIZE, 2, size);
	cc_write(d, CC_Q_DESC, 8, r->desc);
	cc_write(d, CC_Q_AVAIL, 4, (uint32_t)r->avail);
	cc_write(d, CC_Q_AVAIL + 4, 4, r->avail >> 32);
	cc_write(d, CC_Q_USED, 8, r->used);
	cc_write(d, CC_Q_MSIX, 2, vector);
	cc_write(d, CC_Q_ENABLE, 2, 1);
	r->doorbell = d->notify + (uint64_t)d->notify_mult * cc_read(d, CC_Q_NOFF, 2);
}

void ring_desc(struct ring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc desc = {addr, len, flags, next};
	memcpy(hva(r->desc + 16 * i), &desc, 16);
}

uint16_t ring_used_idx(struct ring *r)
{
	uint16_t v;
	memcpy(&v, hva(r->used + 2), 2);
	return v;
}

/* Makes a chain available; with EVENT_IDX, asks for an interrupt when the
 * device uses it (used_event = what the driver has seen). */
void ring_post(struct ring *r, uint16_t head)
{
	uint16_t idx, seen = ring_used_idx(r);

	memcpy(hva(r->avail + 4 + 2 * r->size), &seen, 2);
	memcpy(hva(r->avail + 4 + 2 * (r->avail_idx % r->size)), &head, 2);
	idx = ++r->avail_idx;
	memcpy(hva(r->avail + 2), &idx, 2);
}

void ring_kick(struct ring *r)
{
	mmio_write(r->doorbell, 2, r->index);
}

uint32_t ring_used_len(struct ring *r, uint16_t n)
{
	uint32_t v;
	memcpy(&v, hva(r->used + 4 + 8 * (n % r->size) + 4), 4);
	return v;
}

void msix_entry(struct vdev *d, unsigned n, uint8_t vector, bool masked)
{
	uint64_t table = d->bar + (cfg_read(d->slot, d->msix_cap + 4, 4) & ~7u);

	mmio_write(table + 16 * n, 4, 0xfee00000);
	mmio_write(table + 16 * n + 4, 4, 0);
	mmio_write(table + 16 * n + 8, 4, vector);
	mmio_write(table + 16 * n + 12, 4, masked);
}

uint64_t msix_pba(struct vdev *d)
{
	return mmio_read(d->bar + (cfg_read(d->slot, d->msix_cap + 8, 4) & ~7u), 8);
}
