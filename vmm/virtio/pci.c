/*
 * The virtio PCI transport, modern interface only (virtio 1.2, 4.1): vendor
 * 0x1af4, device 0x1040 + type, revision 1, no I/O BAR. Everything lives in
 * one 32-bit memory BAR:
 *
 *   0x0000  common configuration     0x3000  notifications, 4 bytes a queue
 *   0x1000  ISR status               0x4000  MSI-X table
 *   0x2000  device configuration     0x5000  MSI-X pending bits
 *
 * described by vendor capabilities (common, notify, ISR, device, and the
 * PCI configuration access window the specification requires), and an MSI-X
 * capability unless the spec says vectors=0. Interrupts go out as MSI-X
 * messages when the driver enabled MSI-X, otherwise as INTx: the ISR
 * register holds the reasons and the line (pci_intx_gsi, which the DSDT's
 * _PRT describes) stays asserted until the driver reads it.
 *
 * Locks: lock guards the common configuration and is held across the
 * device's ops (status changes, reset, configuration); irq_lock guards the
 * MSI-X table, the vectors and the ISR, and is a leaf: interrupts are sent
 * from any thread (back ends completing requests) with it alone. Doorbells
 * take neither.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define VIRTIO_PCI_VENDOR      0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_SUBSYSTEM   0x1100 /* non-transitional: 0x40 or above */
#define VIRTIO_PCI_REVISION    1      /* modern only */
#define VIRTIO_NO_VECTOR       0xffff

/* The BAR. */
#define BAR_COMMON     0x0000
#define BAR_ISR	       0x1000
#define BAR_DEVICE     0x2000
#define BAR_NOTIFY     0x3000
#define BAR_MSIX_TABLE 0x4000
#define BAR_MSIX_PBA   0x5000
#define BAR_SIZE       0x8000
#define NOTIFY_MULT    4
#define MAX_QUEUES     ((BAR_MSIX_TABLE - BAR_NOTIFY) / NOTIFY_MULT)
#define MAX_VECTORS    64 /* the PBA is one quadword */
#define DEVICE_CFG_MAX (BAR_NOTIFY - BAR_DEVICE)

/* struct virtio_pci_common_cfg */
enum {
	CC_DFSELECT = 0x00,
	CC_DF = 0x04,
	CC_GFSELECT = 0x08,
	CC_GF = 0x0c,
	CC_MSIX = 0x10,
	CC_NUMQ = 0x12,
	CC_STATUS = 0x14,
	CC_CFGGENERATION = 0x15,
	CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18,
	CC_Q_MSIX = 0x1a,
	CC_Q_ENABLE = 0x1c,
	CC_Q_NOFF = 0x1e,
	CC_Q_DESCLO = 0x20,
	CC_Q_DESCHI = 0x24,
	CC_Q_AVAILLO = 0x28,
	CC_Q_AVAILHI = 0x2c,
	CC_Q_USEDLO = 0x30,
	CC_Q_USEDHI = 0x34,
	CC_Q_NOTIFY_DATA = 0x38,
	CC_Q_RESET = 0x3a,
	CC_SIZE = 0x3c,
};

/* Vendor capabilities (struct virtio_pci_cap). */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4, CAP_PCI_CFG = 5 };
enum { CAP_VNDR_LEN = 2, CAP_CFG_TYPE = 3, CAP_BAR = 4, CAP_ID = 5, CAP_OFFSET = 8, CAP_LENGTH = 12 };
#define CAP_SIZE	   16
#define CAP_NOTIFY_SIZE	   20 /* + notify_off_multiplier */
#define CAP_PCI_CFG_SIZE   20 /* + pci_cfg_data[4] */
#define CAP_PCI_CFG_DATA   16
#define PCI_CAP_ID_VENDOR  0x09
#define PCI_CAP_ID_MSIX	   0x11
#define MSIX_CAP_SIZE	   12
#define MSIX_CONTROL	   2
#define MSIX_ENABLE	   0x8000
#define MSIX_FUNCTION_MASK 0x4000
#define MSIX_ENTRY_MASKED  1

/* The PCI header registers this file sets. */
enum {
	PCI_VENDOR_ID = 0x00,
	PCI_DEVICE_ID = 0x02,
	PCI_COMMAND = 0x04,
	PCI_STATUS = 0x06,
	PCI_REVISION = 0x08,
	PCI_CLASS_PROG = 0x09,
	PCI_SUBSYSTEM_VENDOR = 0x2c,
	PCI_SUBSYSTEM_ID = 0x2e,
	PCI_INTERRUPT_LINE = 0x3c,
	PCI_INTERRUPT_PIN = 0x3d,
};
#define PCI_COMMAND_MASTER	 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_INTERRUPT	 0x0008

#define ISR_QUEUE  1
#define ISR_CONFIG 2

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_pci {
	struct pci_device pci;
	struct virtio_device *dev;

	pthread_mutex_t lock; /* the common configuration */
	uint32_t dfselect, gfselect;
	uint16_t queue_select;

	pthread_mutex_t irq_lock;
	unsigned nvectors; /* 0: no MSI-X capability */
	uint16_t config_vector;
	uint16_t *queue_vector;
	struct msix_entry msix[MAX_VECTORS];
	uint64_t pending;
	bool msix_enabled, msix_masked; /* mirrors of the capability's control */
	bool bus_master, intx_disabled; /* mirrors of the command register */
	uint8_t isr;
	bool intx_level;
	atomic_bool intx_status;
	unsigned gsi;

	unsigned msix_cap, cfg_cap; /* offsets in configuration space */
};

static void vpci_warn(struct virtio_pci *vp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vpci_warn(struct virtio_pci *vp, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	virtio_device_warn(vp->dev, "%s", why);
}

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

/* ---- interrupts (irq_lock held) ---------------------------------------------- */

static void vpci_update_intx(struct virtio_pci *vp)
{
	bool level = vp->isr && !vp->msix_enabled && !vp->intx_disabled;

	atomic_store(&vp->intx_status, vp->isr && !vp->msix_enabled);
	if (level != vp->intx_level) {
		vp->intx_level = level;
		irq_set_level(vp->dev->vm, vp->gsi, level);
	}
}

/* An MSI-X message is a memory write: masked, it waits in the PBA; without
 * bus mastering, it is lost, as on hardware. */
static void vpci_send_vector(struct virtio_pci *vp, uint16_t vector)
{
	struct msix_entry *e;

	if (vector >= vp->nvectors)
		return;
	e = &vp->msix[vector];
	if (vp->msix_masked || (e->ctrl & MSIX_ENTRY_MASKED)) {
		vp->pending |= 1ull << vector;
		return;
	}
	if (vp->bus_master)
		msi_send(vp->dev->vm, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data);
}

static void vpci_send_pending(struct virtio_pci *vp)
{
	for (unsigned v = 0; v < vp->nvectors && vp->pending && vp->msix_enabled && !vp->msix_masked; v++) {
		if ((vp->pending & (1ull << v)) && !(vp->msix[v].ctrl & MSIX_ENTRY_MASKED)) {
			vp->pending &= ~(1ull << v);
			vpci_send_vector(vp, v);
		}
	}
}

static void vpci_interrupt(struct virtio_pci *vp, uint16_t vector, uint8_t isr)
{
	pthread_mutex_lock(&vp->irq_lock);
	if (vp->msix_enabled) {
		vpci_send_vector(vp, vector);
	} else {
		vp->isr |= isr;
		vpci_update_intx(vp);
	}
	pthread_mutex_unlock(&vp->irq_lock);
}

static void vpci_notify_queue(struct virtio_device *dev, unsigned queue)
{
	struct virtio_pci *vp = dev->transport_data;
	uint16_t vector;

	pthread_mutex_lock(&vp->irq_lock);
	vector = queue < dev->num_queues ? vp->queue_vector[queue] : VIRTIO_NO_VECTOR;
	pthread_mutex_unlock(&vp->irq_lock);
	vpci_interrupt(vp, vector, ISR_QUEUE);
}

static void vpci_notify_config(struct virtio_device *dev)
{
	struct virtio_pci *vp = dev->transport_data;
	uint16_t vector;

	pthread_mutex_lock(&vp->irq_lock);
	vector = vp->config_vector;
	pthread_mutex_unlock(&vp->irq_lock);
	vpci_interrupt(vp, vector, ISR_CONFIG);
}

/* A vector register write: one the table does not have reads back as
 * NO_VECTOR (4.1.4.3), so the driver sees the mapping failed. */
static void vpci_set_vector(struct virtio_pci *vp, uint16_t *reg, uint16_t vector)
{
	pthread_mutex_lock(&vp->irq_lock);
	*reg = vector < vp->nvectors ? vector : VIRTIO_NO_VECTOR;
	pthread_mutex_unlock(&vp->irq_lock);
}

static uint8_t vpci_isr_read(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->irq_lock);
	v = vp->isr;
	vp->isr = 0;
	vpci_update_intx(vp);
	pthread_mutex_unlock(&vp->irq_lock);
	return v;
}

/* ---- the common configuration ----------------------------------------------- */

static struct virtq *vpci_selected(struct virtio_pci *vp)
{
	return vp->queue_select < vp->dev->num_queues ? &vp->dev->vqs[vp->queue_select] : NULL;
}

/* Builds the structure as the driver would see it now; lock held. */
static void vpci_common_image(struct virtio_pci *vp, uint8_t *img)
{
	struct virtio_device *dev = vp->dev;
	struct virtq *vq = vpci_selected(vp);
	uint32_t df = vp->dfselect < 2 ? dev->offered >> (32 * vp->dfselect) : 0;
	uint32_t gf = vp->gfselect < 2 ? dev->driver_features >> (32 * vp->gfselect) : 0;
	uint16_t numq = dev->num_queues, qsize = 0, qvector = VIRTIO_NO_VECTOR, qenable = 0, qnoff = 0, cvector;
	uint64_t desc = 0, avail = 0, used = 0;
	uint8_t status = virtio_get_status(dev), generation = atomic_load(&dev->config_generation);

	pthread_mutex_lock(&vp->irq_lock);
	cvector = vp->config_vector;
	if (vq)
		qvector = vp->queue_vector[vp->queue_select];
	pthread_mutex_unlock(&vp->irq_lock);
	if (vq) {
		qsize = vq->size;
		qenable = atomic_load(&vq->enabled);
		qnoff = vp->queue_select;
		desc = vq->desc_gpa;
		avail = vq->avail_gpa;
		used = vq->used_gpa;
	}
	memset(img, 0, CC_SIZE);
	memcpy(img + CC_DF, &df, 4);
	memcpy(img + CC_DFSELECT, &vp->dfselect, 4);
	memcpy(img + CC_GFSELECT, &vp->gfselect, 4);
	memcpy(img + CC_GF, &gf, 4);
	memcpy(img + CC_MSIX, &cvector, 2);
	memcpy(img + CC_NUMQ, &numq, 2);
	img[CC_STATUS] = status;
	img[CC_CFGGENERATION] = generation;
	memcpy(img + CC_Q_SELECT, &vp->queue_select, 2);
	memcpy(img + CC_Q_SIZE, &qsize, 2);
	memcpy(img + CC_Q_MSIX, &qvector, 2);
	memcpy(img + CC_Q_ENABLE, &qenable, 2);
	memcpy(img + CC_Q_NOFF, &qnoff, 2);
	memcpy(img + CC_Q_DESCLO, &desc, 8);
	memcpy(img + CC_Q_AVAILLO, &avail, 8);
	memcpy(img + CC_Q_USEDLO, &used, 8);
}

static uint64_t vpci_common_read(struct virtio_pci *vp, unsigned offset, unsigned size)
{
	uint8_t img[CC_SIZE];
	uint64_t v = 0;

	if (offset >= CC_SIZE || size > CC_SIZE - offset)
		return 0;
	pthread_mutex_lock(&vp->lock);
	vpci_common_image(vp, img);
	pthread_mutex_unlock(&vp->lock);
	memcpy(&v, img + offset, size);
	return v;
}

/* Sets half (or all) of a 64-bit queue address while the queue is off. */
static void vpci_set_address(struct virtio_pci *vp, uint64_t *field, unsigned half, unsigned size, uint64_t value)
{
	if (size == 8)
		*field = value;
	else if (half)
		*field = (*field & 0xffffffffull) | value << 32;
	else
		*field = (*field & ~0xffffffffull) | (uint32_t)value;
	(void)vp;
}

/* The width each register must be written with (4.1.3.1: natural width;
 * the 64-bit ones also as two halves). */
static unsigned common_width(unsigned offset)
{
	switch (offset) {
	case CC_DFSELECT:
	case CC_DF:
	case CC_GFSELECT:
	case CC_GF: return 4;
	case CC_STATUS:
	case CC_CFGGENERATION: return 1;
	case CC_Q_DESCLO:
	case CC_Q_DESCHI:
	case CC_Q_AVAILLO:
	case CC_Q_AVAILHI:
	case CC_Q_USEDLO:
	case CC_Q_USEDHI: return 4;
	default: return offset < CC_SIZE && !(offset & 1) ? 2 : 0;
	}
}

static void vpci_common_write(struct virtio_pci *vp, unsigned offset, unsigned size, uint64_t value)
{
	struct virtio_device *dev = vp->dev;
	struct virtq *vq;
	bool address = offset >= CC_Q_DESCLO && offset < CC_Q_NOTIFY_DATA;

	if (!(size == common_width(offset) || (address && size == 8 && !(offset & 7)))) {
		vpci_warn(vp, "common configuration write of %u bytes at 0x%x", size, offset);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	vq = vpci_selected(vp);
	switch (offset) {
	case CC_DFSELECT: vp->dfselect = value; break;
	case CC_GFSELECT: vp->gfselect = value; break;
	case CC_GF:
		if (dev->status & VIRTIO_STATUS_FEATURES_OK)
			vpci_warn(vp, "driver features written after FEATURES_OK");
		else if (vp->gfselect < 2)
			dev->driver_features = (dev->driver_features & ~(0xffffffffull << (32 * vp->gfselect))) |
					       (uint64_t)(uint32_t)value << (32 * vp->gfselect);
		else if (value)
			vpci_warn(vp, "the driver accepted feature bits in word %u, which were not offered",
				  vp->gfselect);
		break;
	case CC_MSIX: vpci_set_vector(vp, &vp->config_vector, value); break;
	case CC_STATUS: virtio_set_status(dev, value); break;
	case CC_Q_SELECT: vp->queue_select = value; break;
	case CC_Q_MSIX:
		if (vq)
			vpci_set_vector(vp, &vp->queue_vector[vp->queue_select], value);
		break;
	case CC_Q_ENABLE:
		if (!vq || atomic_load(&vq->enabled))
			break;
		if (value == 1)
			virtio_queue_enable(dev, vp->queue_select);
		else
			vpci_warn(vp, "queue_enable written with %u", (unsigned)value);
		break;
	case CC_Q_SIZE:
	case CC_Q_DESCLO:
	case CC_Q_DESCHI:
	case CC_Q_AVAILLO:
	case CC_Q_AVAILHI:
	case CC_Q_USEDLO:
	case CC_Q_USEDHI:
		if (!vq || atomic_load(&vq->enabled)) {
			vpci_warn(vp, "queue %u's registers written while %s", vp->queue_select,
				  vq ? "it is enabled" : "it does not exist");
			break;
		}
		if (offset == CC_Q_SIZE)
			vq->size = value;
		else if (offset < CC_Q_AVAILLO)
			vpci_set_address(vp, &vq->desc_gpa, offset == CC_Q_DESCHI, size, value);
		else if (offset < CC_Q_USEDLO)
			vpci_set_address(vp, &vq->avail_gpa, offset == CC_Q_AVAILHI, size, value);
		else
			vpci_set_address(vp, &vq->used_gpa, offset == CC_Q_USEDHI, size, value);
		break;
	case CC_Q_RESET: /* VIRTIO_F_RING_RESET is not offered */
	default: vpci_warn(vp, "write to read-only common configuration register 0x%x", offset); break;
	}
	pthread_mutex_unlock(&vp->lock);
}

/* ---- device configuration ---------------------------------------------------- */

static uint64_t vpci_device_read(struct virtio_pci *vp, unsigned offset, unsigned size)
{
	const struct virtio_device_ops *ops = vp->dev->ops;
	uint64_t v = 0;

	if (offset >= ops->config_size || size > ops->config_size - offset)
		return 0;
	pthread_mutex_lock(&vp->lock);
	if (size == 8)
		v = ops->config_read(vp->dev, offset, 4) | (uint64_t)ops->config_read(vp->dev, offset + 4, 4) << 32;
	else
		v = ops->config_read(vp->dev, offset, size);
	pthread_mutex_unlock(&vp->lock);
	return v & size_mask(size);
}

static void vpci_device_write(struct virtio_pci *vp, unsigned offset, unsigned size, uint64_t value)
{
	const struct virtio_device_ops *ops = vp->dev->ops;

	if (!ops->config_write) {
		vpci_warn(vp, "write to its read-only device configuration at 0x%x", offset);
		return;
	}
	if (offset >= ops->config_size || size > ops->config_size - offset || size == 8) {
		vpci_warn(vp, "device configuration write of %u bytes at 0x%x", size, offset);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	ops->config_write(vp->dev, offset, size, value);
	pthread_mutex_unlock(&vp->lock);
}

/* ---- MSI-X table and PBA ------------------------------------------------------ */

static uint64_t vpci_msix_read(struct virtio_pci *vp, unsigned offset, unsigned size)
{
	uint64_t v = 0;

	pthread_mutex_lock(&vp->irq_lock);
	if (offset >= BAR_MSIX_PBA) {
		if (offset - BAR_MSIX_PBA < 8)
			v = vp->pending >> (8 * (offset - BAR_MSIX_PBA));
	} else if (offset - BAR_MSIX_TABLE < vp->nvectors * sizeof(struct msix_entry)) {
		uint8_t entry[sizeof(struct msix_entry) + 8] = {0};
		unsigned at = (offset - BAR_MSIX_TABLE) % sizeof(struct msix_entry);

		memcpy(entry, &vp->msix[(offset - BAR_MSIX_TABLE) / sizeof(struct msix_entry)],
		       sizeof(struct msix_entry));
		memcpy(&v, entry + at, size);
	}
	pthread_mutex_unlock(&vp->irq_lock);
	return v & size_mask(size);
}

static void vpci_msix_write(struct virtio_pci *vp, unsigned offset, unsigned size, uint64_t value)
{
	unsigned at = offset - BAR_MSIX_TABLE;
	struct msix_entry *e;

	/* The table takes aligned dword and qword writes (PCI 6.8.2). */
	if (offset >= BAR_MSIX_PBA || at >= vp->nvectors * sizeof(*e) || (size != 4 && size != 8) || at % size) {
		vpci_warn(vp, "MSI-X write of %u bytes at BAR offset 0x%x", size, offset);
		return;
	}
	pthread_mutex_lock(&vp->irq_lock);
	e = &vp->msix[at / sizeof(*e)];
	for (unsigned done = 0; done < size; done += 4) {
		uint32_t v = value >> (8 * done);
		switch ((at + done) % sizeof(*e)) {
		case 0: e->addr_lo = v; break;
		case 4: e->addr_hi = v; break;
		case 8: e->data = v; break;
		default: e->ctrl = v & MSIX_ENTRY_MASKED; break;
		}
	}
	vpci_send_pending(vp);
	pthread_mutex_unlock(&vp->irq_lock);
}

/* ---- the BAR ------------------------------------------------------------------- */

static uint64_t vpci_bar_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct virtio_pci *vp = opaque;
	(void)vcpu;

	if (offset < BAR_ISR)
		return vpci_common_read(vp, offset, size);
	if (offset < BAR_DEVICE)
		return offset == BAR_ISR ? vpci_isr_read(vp) : 0;
	if (offset < BAR_NOTIFY)
		return vpci_device_read(vp, offset - BAR_DEVICE, size);
	if (offset < BAR_MSIX_TABLE)
		return 0;
	return vpci_msix_read(vp, offset, size);
}

static void vpci_bar_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct virtio_pci *vp = opaque;
	(void)vcpu;

	/* The doorbell first: it is the hot path. The address names the queue
	 * (queue_notify_off * multiplier); the value is the driver's copy. */
	if (offset - BAR_NOTIFY < (uint64_t)NOTIFY_MULT * vp->dev->num_queues) {
		if (offset % NOTIFY_MULT == 0 && (size == 2 || size == 4))
			virtio_queue_notify(vp->dev, (offset - BAR_NOTIFY) / NOTIFY_MULT);
		else
			vpci_warn(vp, "doorbell write of %u bytes at BAR offset 0x%x", size, (unsigned)offset);
	} else if (offset < BAR_ISR) {
		vpci_common_write(vp, offset, size, value);
	} else if (offset < BAR_DEVICE) {
		vpci_warn(vp, "write to its read-only ISR status");
	} else if (offset < BAR_NOTIFY) {
		vpci_device_write(vp, offset - BAR_DEVICE, size, value);
	} else if (offset >= BAR_MSIX_TABLE) {
		vpci_msix_write(vp, offset, size, value);
	}
}

static const struct bus_ops vpci_bar_ops = {vpci_bar_read, vpci_bar_write};

/* ---- configuration space ------------------------------------------------------- */

static bool overlaps(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
	return a < b + blen && b < a + alen;
}

/* VIRTIO_PCI_CAP_PCI_CFG: a window into the BAR through configuration
 * space (4.1.4.9). Its bar, offset and length are the driver's; only
 * aligned 1, 2 and 4 byte accesses inside BAR 0 reach the BAR. */
static bool vpci_cfg_window(struct virtio_pci *vp, unsigned *offset, unsigned *length)
{
	const struct pci_device *pci = &vp->pci;
	unsigned cap = vp->cfg_cap;

	*offset = pci_config_get(pci, cap + CAP_OFFSET, 4);
	*length = pci_config_get(pci, cap + CAP_LENGTH, 4);
	return pci->config[cap + CAP_BAR] == 0 && (*length == 1 || *length == 2 || *length == 4) &&
	       *offset % *length == 0 && *offset < BAR_SIZE;
}

static uint32_t vpci_config_read(struct pci_device *pci, unsigned offset, unsigned size, uint32_t value)
{
	struct virtio_pci *vp = pci->opaque;
	unsigned bar_offset, length;

	if (overlaps(offset, size, PCI_STATUS, 2) && atomic_load(&vp->intx_status) && offset <= PCI_STATUS)
		value |= PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - offset));
	if (offset == vp->cfg_cap + CAP_PCI_CFG_DATA && vpci_cfg_window(vp, &bar_offset, &length))
		value = vpci_bar_read(vp, NULL, bar_offset, length);
	return value;
}

static void vpci_config_write(struct pci_device *pci, unsigned offset, unsigned size, uint32_t value)
{
	struct virtio_pci *vp = pci->opaque;
	unsigned bar_offset, length;

	if (overlaps(offset, size, PCI_COMMAND, 2) || (vp->msix_cap && overlaps(offset, size, vp->msix_cap, 4))) {
		uint16_t command = pci_config_get(pci, PCI_COMMAND, 2);
		uint16_t control = vp->msix_cap ? pci_config_get(pci, vp->msix_cap + MSIX_CONTROL, 2) : 0;

		pthread_mutex_lock(&vp->irq_lock);
		vp->bus_master = command & PCI_COMMAND_MASTER;
		vp->intx_disabled = command & PCI_COMMAND_INTX_DISABLE;
		vp->msix_enabled = control & MSIX_ENABLE;
		vp->msix_masked = control & MSIX_FUNCTION_MASK;
		vpci_update_intx(vp);
		vpci_send_pending(vp);
		pthread_mutex_unlock(&vp->irq_lock);
	}
	if (offset == vp->cfg_cap + CAP_PCI_CFG_DATA && vpci_cfg_window(vp, &bar_offset, &length))
		vpci_bar_write(vp, NULL, bar_offset, length, value & size_mask(size < length ? size : length));
}

/* ---- plugging --------------------------------------------------------------------- */

static int vpci_add_cap(struct pci_device *pci, uint8_t type, unsigned len, uint32_t offset, uint32_t length)
{
	int at = pci_add_capability(pci, PCI_CAP_ID_VENDOR, len);

	if (at < 0)
		return at;
	pci->config[at + CAP_VNDR_LEN] = len;
	pci->config[at + CAP_CFG_TYPE] = type;
	pci->config[at + CAP_BAR] = 0;
	pci->config[at + CAP_ID] = 0;
	pci_config_set(pci, at + CAP_OFFSET, 4, offset);
	pci_config_set(pci, at + CAP_LENGTH, 4, length);
	return at;
}

static int vpci_build_config(struct virtio_pci *vp)
{
	struct pci_device *pci = &vp->pci;
	const struct virtio_device_ops *ops = vp->dev->ops;
	int at;

	pci_config_set(pci, PCI_VENDOR_ID, 2, VIRTIO_PCI_VENDOR);
	pci_config_set(pci, PCI_DEVICE_ID, 2, VIRTIO_PCI_DEVICE_BASE + ops->device_id);
	pci_config_set(pci, PCI_REVISION, 1, VIRTIO_PCI_REVISION);
	pci_config_set(pci, PCI_CLASS_PROG, 3, ops->pci_class);
	pci_config_set(pci, PCI_SUBSYSTEM_VENDOR, 2, VIRTIO_PCI_VENDOR);
	pci_config_set(pci, PCI_SUBSYSTEM_ID, 2, VIRTIO_PCI_SUBSYSTEM);
	pci_config_set(pci, PCI_INTERRUPT_PIN, 1, 1); /* INTA */

	if (vp->nvectors) {
		at = pci_add_capability(pci, PCI_CAP_ID_MSIX, MSIX_CAP_SIZE);
		if (at < 0)
			return at;
		vp->msix_cap = at;
		pci_config_set(pci, at + MSIX_CONTROL, 2, vp->nvectors - 1);
		pci_config_set(pci, at + 4, 4, BAR_MSIX_TABLE); /* BIR 0 */
		pci_config_set(pci, at + 8, 4, BAR_MSIX_PBA);
		pci->wmask[at + MSIX_CONTROL + 1] = (MSIX_ENABLE | MSIX_FUNCTION_MASK) >> 8;
	}
	if ((at = vpci_add_cap(pci, CAP_COMMON, CAP_SIZE, BAR_COMMON, CC_SIZE)) < 0)
		return at;
	if ((at = vpci_add_cap(pci, CAP_NOTIFY, CAP_NOTIFY_SIZE, BAR_NOTIFY, NOTIFY_MULT * vp->dev->num_queues)) < 0)
		return at;
	pci_config_set(pci, at + CAP_SIZE, 4, NOTIFY_MULT);
	if ((at = vpci_add_cap(pci, CAP_ISR, CAP_SIZE, BAR_ISR, 1)) < 0)
		return at;
	if (ops->config_size && (at = vpci_add_cap(pci, CAP_DEVICE, CAP_SIZE, BAR_DEVICE, ops->config_size)) < 0)
		return at;
	if ((at = vpci_add_cap(pci, CAP_PCI_CFG, CAP_PCI_CFG_SIZE, 0, 0)) < 0)
		return at;
	vp->cfg_cap = at;
	pci->wmask[at + CAP_BAR] = 0xff;
	memset(pci->wmask + at + CAP_OFFSET, 0xff, 4 + 4 + 4); /* offset, length, data */

	pci->bar[0] = (struct pci_bar){.kind = PCI_BAR_MEM32, .size = BAR_SIZE, .ops = &vpci_bar_ops, .opaque = vp};
	pci->config_read = vpci_config_read;
	pci->config_write = vpci_config_write;
	pci->opaque = vp;
	return 0;
}

static void vpci_reset(struct virtio_device *dev)
{
	struct virtio_pci *vp = dev->transport_data;

	vp->dfselect = vp->gfselect = 0;
	vp->queue_select = 0;
	pthread_mutex_lock(&vp->irq_lock);
	vp->config_vector = VIRTIO_NO_VECTOR;
	for (unsigned i = 0; i < dev->num_queues; i++)
		vp->queue_vector[i] = VIRTIO_NO_VECTOR;
	vp->isr = 0;
	vpci_update_intx(vp);
	pthread_mutex_unlock(&vp->irq_lock);
}

static void vpci_destroy(struct virtio_device *dev)
{
	struct virtio_pci *vp = dev->transport_data;

	if (!vp)
		return;
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->irq_lock);
	free(vp->queue_vector);
	free(vp);
	dev->transport_data = NULL;
}

static const struct virtio_transport_ops vpci_transport = {
    .notify_queue = vpci_notify_queue,
    .notify_config = vpci_notify_config,
    .reset = vpci_reset,
    .destroy = vpci_destroy,
};

const char *const virtio_pci_props[] = {"id", "vectors", "disable-legacy", "disable-modern", NULL};

/* vectors=N: MSI-X table entries, 0 for none (INTx only), as QEMU's. */
static int vpci_vectors(const struct virtio_spec *spec, unsigned *n, char *err, size_t errlen)
{
	char value[16], *end;
	unsigned long v;

	if (!virtio_spec_prop(spec, "vectors", value, sizeof(value)))
		return 1;
	v = strtoul(value, &end, 0);
	if (!*value || *end || v > MAX_VECTORS) {
		snprintf(err, errlen, "%s: vectors='%s' is not a number from 0 to %d", spec->driver, value,
			 MAX_VECTORS);
		return -EINVAL;
	}
	*n = v;
	return 0;
}

int virtio_pci_check(const struct virtio_spec *spec, char *err, size_t errlen)
{
	char value[16];
	unsigned n;
	int ret = vpci_vectors(spec, &n, err, errlen);

	if (ret < 0)
		return ret;
	if (virtio_spec_prop(spec, "disable-legacy", value, sizeof(value)) && strcmp(value, "on") &&
	    strcmp(value, "true")) {
		snprintf(err, errlen, "%s: Vireo's virtio devices are modern only (disable-legacy=on), not '%s'",
			 spec->driver, value);
		return -EINVAL;
	}
	if (virtio_spec_prop(spec, "disable-modern", value, sizeof(value)) && strcmp(value, "off") &&
	    strcmp(value, "false")) {
		snprintf(err, errlen, "%s: Vireo's virtio devices are modern only (disable-modern=off), not '%s'",
			 spec->driver, value);
		return -EINVAL;
	}
	return 0;
}

int virtio_pci_plug(struct virtio_device *dev, const struct virtio_spec *spec)
{
	struct virtio_pci *vp;
	char err[160];
	unsigned nvectors = dev->num_queues + 1;
	int ret;

	if (dev->num_queues > MAX_QUEUES || dev->ops->config_size > DEVICE_CFG_MAX)
		return -EINVAL;
	if (vpci_vectors(spec, &nvectors, err, sizeof(err)) < 0) {
		vmm_log("%s", err);
		return -EINVAL;
	}
	if (nvectors > MAX_VECTORS)
		nvectors = MAX_VECTORS;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->queue_vector = calloc(dev->num_queues, sizeof(*vp->queue_vector));
	if (!vp->queue_vector) {
		free(vp);
		return -ENOMEM;
	}
	vp->dev = dev;
	vp->nvectors = nvectors;
	for (unsigned i = 0; i < nvectors; i++)
		vp->msix[i].ctrl = MSIX_ENTRY_MASKED; /* as after a PCI reset */
	vp->pci.name = dev->ops->name;
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->irq_lock, NULL);
	dev->transport = &vpci_transport;
	dev->transport_data = vp;
	vpci_reset(dev);

	ret = vpci_build_config(vp);
	if (ret >= 0)
		ret = pci_register(dev->vm, &vp->pci);
	if (ret < 0) {
		vpci_destroy(dev);
		dev->transport = NULL;
		return ret;
	}
	vp->gsi = pci_intx_gsi(vp->pci.slot, 0);
	pci_config_set(&vp->pci, PCI_INTERRUPT_LINE, 1, vp->gsi);
	snprintf(dev->location, sizeof(dev->location), "00:%02x.0", vp->pci.slot);
	return 0;
}
