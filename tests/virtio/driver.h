/*
 * A virtio driver for the device tests, as a guest would be one: finds a
 * virtio function on bus 0 through configuration space (CF8/CFC), reads its
 * capabilities, negotiates features and keeps split rings in guest RAM.
 * The test sets vm; rings live at RING_BASE, buffers from BUF_BASE up.
 */
#ifndef VIREO_TESTS_VIRTIO_DRIVER_H
#define VIREO_TESTS_VIRTIO_DRIVER_H

#include "tests/vmm/harness.h"
#include "vmm/virtio/virtio.h"

/* Where the test driver puts its rings and buffers. */
#define RING_BASE 0x100000ull
#define BUF_BASE  0x200000ull

enum {
	CC_DFSELECT = 0x00,
	CC_DF = 0x04,
	CC_GFSELECT = 0x08,
	CC_GF = 0x0c,
	CC_MSIX = 0x10,
	CC_NUMQ = 0x12,
	CC_STATUS = 0x14,
	CC_CFGGEN = 0x15,
	CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18,
	CC_Q_MSIX = 0x1a,
	CC_Q_ENABLE = 0x1c,
	CC_Q_NOFF = 0x1e,
	CC_Q_DESC = 0x20,
	CC_Q_AVAIL = 0x28,
	CC_Q_USED = 0x30
};

extern struct vm *vm;

/* A virtio function as the driver finds it. */
struct vdev {
	unsigned slot;
	uint64_t bar, common, notify, isr, device;
	uint32_t notify_mult, device_len;
	unsigned msix_cap, cfg_cap, msix_size;
};

/* A queue as the driver keeps it. */
struct ring {
	struct vdev *d;
	unsigned index;
	uint16_t size, avail_idx, used_seen;
	uint64_t desc, avail, used, doorbell;
};

uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size);
void cfg_write(unsigned slot, unsigned reg, unsigned size, uint32_t v);
uint64_t mmio_read(uint64_t addr, unsigned size);
void mmio_write(uint64_t addr, unsigned size, uint64_t v);
void *hva(uint64_t gpa);
bool find_device(uint16_t device_id, unsigned nth, struct vdev *d);
uint64_t cc_read(struct vdev *d, unsigned reg, unsigned size);
void cc_write(struct vdev *d, unsigned reg, unsigned size, uint64_t v);
uint8_t status(struct vdev *d);
bool negotiate(struct vdev *d, uint64_t features);
void ring_setup(struct ring *r, struct vdev *d, unsigned index, uint16_t size, uint16_t vector);
void ring_desc(struct ring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
uint16_t ring_used_idx(struct ring *r);
void ring_post(struct ring *r, uint16_t head);
void ring_kick(struct ring *r);
uint32_t ring_used_len(struct ring *r, uint16_t n);
void msix_entry(struct vdev *d, unsigned n, uint8_t vector, bool masked);
uint64_t msix_pba(struct vdev *d);

#endif
