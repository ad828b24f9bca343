/*
 * The PCI host bridge and bus 0: configuration mechanism #1 (CONFIG_ADDRESS
 * at 0xcf8, CONFIG_DATA at 0xcfc-0xcff) and ECAM reach the same config
 * spaces; 00:00.0 is the bridge itself, an Intel MCH as on QEMU's q35.
 *
 * BARs decode inside two windows the bridge registers once, one on each bus,
 * and dispatches itself: the buses hold their lock across a device access,
 * so a config write that moved a BAR could not re-register it from there.
 * A BAR the guest places outside the windows decodes nowhere, as behind a
 * real root complex; the DSDT gives the windows to the guest.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define CONFIG_PORT	      0xcf8
#define CONFIG_ADDRESS_ENABLE 0x80000000u
#define CONFIG_ADDRESS_MASK   0x80fffffcu /* enable, bus, device, function, register */
#define PCI_SLOTS	      32

enum {
	PCI_VENDOR_ID = 0x00,
	PCI_DEVICE_ID = 0x02,
	PCI_COMMAND = 0x04,
	PCI_STATUS = 0x06,
	PCI_CLASS_PROG = 0x09,
	PCI_CACHE_LINE_SIZE = 0x0c,
	PCI_BAR0 = 0x10,
	PCI_CAPABILITY_LIST = 0x34,
	PCI_INTERRUPT_LINE = 0x3c,
	PCI_CAP_START = 0x40,
	PCI_LEGACY_CONFIG_SIZE = 0x100,
};

#define PCI_COMMAND_IO	     0x0001
#define PCI_COMMAND_MEMORY   0x0002
#define PCI_COMMAND_WRITABLE 0x0547 /* IO, MEMORY, MASTER, PARITY, SERR, INTX_DISABLE */
#define PCI_STATUS_CAP_LIST  0x0010
#define PCI_STATUS_W1C	     0xf900 /* parity, abort and SERR bits */
#define PCI_BAR_IO_SPACE     0x1
#define PCI_BAR_MEM_TYPE_64  0x4
#define PCI_BAR_MEM_PREFETCH 0x8

#define HOST_BRIDGE_VENDOR    0x8086
#define HOST_BRIDGE_DEVICE    0x29c0
#define PCI_CLASS_HOST_BRIDGE 0x060000

struct pci_bridge {
	struct vm *vm;
	/* Config accesses take it for writing (their hooks may change state);
	 * BAR dispatch takes it for reading. */
	pthread_rwlock_t lock;
	uint32_t config_address;
	struct pci_device *slots[PCI_SLOTS];
	uint64_t next_mmio, next_io; /* BAR assignment at registration */
	struct pci_device host;
};

static struct pci_bridge *the_bridge(struct vm *vm)
{
	return vm->devices[DEVICE_SLOT_PCI];
}

static uint32_t size_mask(unsigned size)
{
	return size >= 4 ? ~0u : (1u << (8 * size)) - 1;
}

uint32_t pci_config_get(const struct pci_device *dev, unsigned offset, unsigned size)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < size && i < 4 && offset + i < PCI_CONFIG_SIZE; i++)
		v |= (uint32_t)dev->config[offset + i] << (8 * i);
	return v;
}

void pci_config_set(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value)
{
	for (unsigned i = 0; i < size && i < 4 && offset + i < PCI_CONFIG_SIZE; i++)
		dev->config[offset + i] = value >> (8 * i);
}

static void mask_set(uint8_t *mask, unsigned offset, unsigned size, uint32_t value)
{
	for (unsigned i = 0; i < size; i++)
		mask[offset + i] = value >> (8 * i);
}

int pci_add_capability(struct pci_device *dev, uint8_t id, unsigned len)
{
	unsigned offset = dev->cap_next ? dev->cap_next : PCI_CAP_START;
	unsigned at = PCI_CAPABILITY_LIST;

	offset = (offset + 3) & ~3u;
	if (len < 2 || len > PCI_LEGACY_CONFIG_SIZE || offset + len > PCI_LEGACY_CONFIG_SIZE)
		return -ENOSPC;
	/* Append: follow the list from the header to its last entry. */
	for (unsigned n = 0; dev->config[at] && n < PCI_LEGACY_CONFIG_SIZE / 4; n++)
		at = dev->config[at] + 1;
	dev->config[at] = offset;
	dev->config[offset] = id;
	dev->config[offset + 1] = 0;
	pci_config_set(dev, PCI_STATUS, 2, pci_config_get(dev, PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
	dev->cap_next = offset + len;
	return offset;
}

/* Where BAR i points now, from the config registers. */
static uint64_t bar_address(const struct pci_device *dev, unsigned i)
{
	const struct pci_bar *bar = &dev->bar[i];
	uint32_t lo = pci_config_get(dev, PCI_BAR0 + 4 * i, 4);

	switch (bar->kind) {
	case PCI_BAR_IO: return lo & ~3u;
	case PCI_BAR_MEM32: return lo & ~0xfu;
	case PCI_BAR_MEM64: return (lo & ~0xfu) | (uint64_t)pci_config_get(dev, PCI_BAR0 + 4 * (i + 1), 4) << 32;
	default: return 0;
	}
}

/* Recomputes where dev's BARs decode; called with the lock held for writing
 * whenever the command register or a BAR changes. */
static void pci_update_bars(struct pci_device *dev)
{
	uint16_t command = pci_config_get(dev, PCI_COMMAND, 2);

	for (unsigned i = 0; i < PCI_BARS; i++) {
		struct pci_bar *bar = &dev->bar[i];
		uint64_t addr = bar_address(dev, i), base, len;
		bool on;

		if (bar->kind == PCI_BAR_NONE)
			continue;
		if (bar->kind == PCI_BAR_IO) {
			on = command & PCI_COMMAND_IO;
			base = PCI_IO_BASE;
			len = PCI_IO_SIZE;
		} else {
			on = command & PCI_COMMAND_MEMORY;
			base = PCI_MMIO_BASE;
			len = PCI_MMIO_SIZE;
		}
		bar->addr = on && addr >= base && addr - base < len && bar->size <= len - (addr - base) ? addr : 0;
	}
}

static bool ranges_overlap(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
	return a < b + blen && b < a + alen;
}

/* One guest config access; offset and size lie within one dword. */
static uint32_t pci_config_read(struct pci_device *dev, unsigned offset, unsigned size)
{
	uint32_t v = pci_config_get(dev, offset, size);

	if (dev->config_read)
		v = dev->config_read(dev, offset, size, v);
	return v & size_mask(size);
}

static void pci_config_write(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value)
{
	for (unsigned i = 0; i < size; i++) {
		unsigned o = offset + i;
		uint8_t v = value >> (8 * i);

		dev->config[o] = ((dev->config[o] & ~dev->wmask[o]) | (v & dev->wmask[o])) & ~(v & dev->w1cmask[o]);
	}
	if (ranges_overlap(offset, size, PCI_COMMAND, 2) || ranges_overlap(offset, size, PCI_BAR0, 4 * PCI_BARS))
		pci_update_bars(dev);
	if (dev->config_write)
		dev->config_write(dev, offset, size, value & size_mask(size));
}

static struct pci_device *pci_function(struct pci_bridge *b, unsigned bus, unsigned slot, unsigned function)
{
	return bus == 0 && function == 0 && slot < PCI_SLOTS ? b->slots[slot] : NULL;
}

/* A config access from the guest, with the lock held for writing: absent
 * functions read as all ones, and so do accesses no bus cycle can make. */
static uint32_t pci_access(struct pci_bridge *b, unsigned bus, unsigned slot, unsigned function, unsigned reg,
			   unsigned size, bool write, uint32_t value)
{
	struct pci_device *dev = pci_function(b, bus, slot, function);

	if (!dev || (size != 1 && size != 2 && size != 4) || (reg & 3) + size > 4 || reg >= PCI_CONFIG_SIZE)
		return size_mask(size);
	if (!write)
		return pci_config_read(dev, reg, size);
	pci_config_write(dev, reg, size, value);
	return 0;
}

/* ---- configuration mechanism #1 ---------------------------------------- */

static uint32_t pci_port_data(struct pci_bridge *b, uint64_t offset, unsigned size, bool write, uint32_t value)
{
	uint32_t address, v = size_mask(size);

	pthread_rwlock_wrlock(&b->lock);
	address = b->config_address;
	if (address & CONFIG_ADDRESS_ENABLE)
		v = pci_access(b, (address >> 16) & 0xff, (address >> 11) & 0x1f, (address >> 8) & 7,
			       (address & 0xfc) + (offset - 4), size, write, value);
	pthread_rwlock_unlock(&b->lock);
	return v;
}

/* Ports 0xcf8-0xcff. CONFIG_ADDRESS answers dword accesses only; a byte at
 * 0xcf9 is the reset control register. */
static uint64_t pci_port_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct pci_bridge *b = opaque;
	uint32_t v;
	(void)vcpu;

	if (offset == 0 && size == 4) {
		pthread_rwlock_rdlock(&b->lock);
		v = b->config_address;
		pthread_rwlock_unlock(&b->lock);
		return v;
	}
	if (offset == RESET_CONTROL_PORT - CONFIG_PORT && size == 1)
		return reset_control_read(b->vm);
	if (offset >= 4)
		return pci_port_data(b, offset, size, false, 0);
	return size_mask(size);
}

static void pci_port_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct pci_bridge *b = opaque;
	(void)vcpu;

	if (offset == 0 && size == 4) {
		pthread_rwlock_wrlock(&b->lock);
		b->config_address = value & CONFIG_ADDRESS_MASK;
		pthread_rwlock_unlock(&b->lock);
	} else if (offset == RESET_CONTROL_PORT - CONFIG_PORT && size == 1) {
		reset_control_write(b->vm, value);
	} else if (offset >= 4) {
		pci_port_data(b, offset, size, true, value);
	}
}

static const struct bus_ops pci_port_ops = {pci_port_read, pci_port_write};

/* ---- ECAM: bus 0, device in bits 19:15, function 14:12, register 11:0 --- */

static uint64_t pci_ecam_access(struct pci_bridge *b, uint64_t offset, unsigned size, bool write, uint64_t value)
{
	uint32_t v;

	if (size > 4) /* a config request carries at most a dword */
		return ~0ull;
	pthread_rwlock_wrlock(&b->lock);
	v = pci_access(b, 0, (offset >> 15) & 0x1f, (offset >> 12) & 7, offset & 0xfff, size, write, value);
	pthread_rwlock_unlock(&b->lock);
	return v;
}

static uint64_t pci_ecam_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	(void)vcpu;
	return pci_ecam_access(opaque, offset, size, false, 0);
}

static void pci_ecam_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	(void)vcpu;
	pci_ecam_access(opaque, offset, size, true, value);
}

static const struct bus_ops pci_ecam_ops = {pci_ecam_read, pci_ecam_write};

/* ---- the windows: BAR dispatch ----------------------------------------- */

/* Finds the BAR that decodes [addr, addr + size) in the I/O or memory space
 * and the offset into it; false if none does. */
static bool pci_bar_lookup(struct pci_bridge *b, bool io, uint64_t addr, unsigned size, const struct bus_ops **ops,
			   void **opaque, uint64_t *offset)
{
	bool found = false;

	pthread_rwlock_rdlock(&b->lock);
	for (unsigned s = 0; s < PCI_SLOTS && !found; s++) {
		struct pci_device *dev = b->slots[s];
		for (unsigned i = 0; dev && i < PCI_BARS && !found; i++) {
			struct pci_bar *bar = &dev->bar[i];
			if (!bar->addr || (bar->kind == PCI_BAR_IO) != io || addr < bar->addr ||
			    addr - bar->addr >= bar->size || size > bar->size - (addr - bar->addr))
				continue;
			*ops = bar->ops;
			*opaque = bar->opaque;
			*offset = addr - bar->addr;
			found = true;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return found;
}

/* Devices outlive the running VM, so their handler runs after the lock is
 * dropped: a slow BAR access (a doorbell that does work) never holds up a
 * config write of another vCPU. */
static uint64_t pci_window_read(struct pci_bridge *b, bool io, uint64_t addr, struct vcpu *vcpu, unsigned size)
{
	const struct bus_ops *ops;
	void *opaque;
	uint64_t offset;

	if (pci_bar_lookup(b, io, addr, size, &ops, &opaque, &offset) && ops->read)
		return ops->read(opaque, vcpu, offset, size);
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

static void pci_window_write(struct pci_bridge *b, bool io, uint64_t addr, struct vcpu *vcpu, unsigned size,
			     uint64_t value)
{
	const struct bus_ops *ops;
	void *opaque;
	uint64_t offset;

	if (pci_bar_lookup(b, io, addr, size, &ops, &opaque, &offset) && ops->write)
		ops->write(opaque, vcpu, offset, size, value);
}

static uint64_t pci_mmio_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	return pci_window_read(opaque, false, PCI_MMIO_BASE + offset, vcpu, size);
}

static void pci_mmio_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	pci_window_write(opaque, false, PCI_MMIO_BASE + offset, vcpu, size, value);
}

static uint64_t pci_io_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	return pci_window_read(opaque, true, PCI_IO_BASE + offset, vcpu, size);
}

static void pci_io_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	pci_window_write(opaque, true, PCI_IO_BASE + offset, vcpu, size, value);
}

static const struct bus_ops pci_mmio_ops = {pci_mmio_read, pci_mmio_write};
static const struct bus_ops pci_io_ops = {pci_io_read, pci_io_write};

/* ---- registration ------------------------------------------------------- */

static bool bar_valid(const struct pci_device *dev, unsigned i)
{
	const struct pci_bar *bar = &dev->bar[i];
	uint64_t size = bar->size;

	if (bar->kind == PCI_BAR_NONE)
		return true;
	if (!bar->ops || !size || (size & (size - 1)))
		return false;
	switch (bar->kind) {
	case PCI_BAR_IO: return size >= 4 && size <= 256;
	case PCI_BAR_MEM32: return size >= 16 && size <= PCI_MMIO_SIZE;
	case PCI_BAR_MEM64:
		return size >= 16 && size <= PCI_MMIO_SIZE && i + 1 < PCI_BARS && dev->bar[i + 1].kind == PCI_BAR_NONE;
	default: return false;
	}
}

/* Gives each BAR a naturally aligned address in its window; fails without
 * changing anything if a window is full. */
static int pci_assign_bars(struct pci_bridge *b, struct pci_device *dev)
{
	uint64_t mmio = b->next_mmio, io = b->next_io, addr[PCI_BARS] = {0};

	for (unsigned i = 0; i < PCI_BARS; i++) {
		struct pci_bar *bar = &dev->bar[i];
		uint64_t *next = bar->kind == PCI_BAR_IO ? &io : &mmio;
		uint64_t end = bar->kind == PCI_BAR_IO ? PCI_IO_BASE + PCI_IO_SIZE : PCI_MMIO_BASE + PCI_MMIO_SIZE;

		if (bar->kind == PCI_BAR_NONE)
			continue;
		addr[i] = (*next + bar->size - 1) & ~(bar->size - 1);
		if (addr[i] > end || bar->size > end - addr[i])
			return -ENOSPC;
		*next = addr[i] + bar->size;
	}
	b->next_mmio = mmio;
	b->next_io = io;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		struct pci_bar *bar = &dev->bar[i];
		uint64_t wmask = ~(bar->size - 1);

		bar->addr = 0;
		switch (bar->kind) {
		case PCI_BAR_IO:
			pci_config_set(dev, PCI_BAR0 + 4 * i, 4, addr[i] | PCI_BAR_IO_SPACE);
			mask_set(dev->wmask, PCI_BAR0 + 4 * i, 4, wmask & ~3u);
			break;
		case PCI_BAR_MEM32:
		case PCI_BAR_MEM64: {
			uint32_t flags = (bar->kind == PCI_BAR_MEM64 ? PCI_BAR_MEM_TYPE_64 : 0) |
					 (bar->prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
			pci_config_set(dev, PCI_BAR0 + 4 * i, 4, (uint32_t)addr[i] | flags);
			mask_set(dev->wmask, PCI_BAR0 + 4 * i, 4, wmask & ~0xfu);
			if (bar->kind == PCI_BAR_MEM64) {
				pci_config_set(dev, PCI_BAR0 + 4 * (i + 1), 4, addr[i] >> 32);
				mask_set(dev->wmask, PCI_BAR0 + 4 * (i + 1), 4, wmask >> 32);
			}
			break;
		}
		default: break;
		}
	}
	return 0;
}

int pci_register(struct vm *vm, struct pci_device *dev)
{
	struct pci_bridge *b = the_bridge(vm);
	int slot = -ENOSPC, ret;

	if (!b)
		return -ENODEV;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		if (!bar_valid(dev, i)) {
			vmm_log("pci: %s: BAR %u is not a valid BAR", dev->name, i);
			return -EINVAL;
		}
	}
	/* The bridge owns these registers whatever the device put there; BARs
	 * get their values and masks in pci_assign_bars. */
	memset(dev->config + PCI_BAR0, 0, 4 * PCI_BARS);
	memset(dev->wmask + PCI_BAR0, 0, 4 * PCI_BARS);
	mask_set(dev->wmask, PCI_COMMAND, 2, PCI_COMMAND_WRITABLE);
	mask_set(dev->w1cmask, PCI_STATUS, 2, PCI_STATUS_W1C);
	mask_set(dev->wmask, PCI_STATUS, 2, 0);
	dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	pci_config_set(dev, PCI_COMMAND, 2, 0);

	pthread_rwlock_wrlock(&b->lock);
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		if (!b->slots[s]) {
			slot = s;
			break;
		}
	}
	if (slot >= 0) {
		ret = pci_assign_bars(b, dev);
		if (ret < 0) {
			slot = ret;
		} else {
			dev->vm = vm;
			dev->slot = slot;
			b->slots[slot] = dev;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	if (slot < 0)
		vmm_log("pci: no room for %s on bus 0: %s", dev->name, strerror(-slot));
	return slot;
}

/* ---- the host bridge ---------------------------------------------------- */

static int pci_init(struct vm *vm)
{
	struct pci_bridge *b = calloc(1, sizeof(*b));
	struct pci_device *host;
	int ret;

	if (!b)
		return -ENOMEM;
	b->vm = vm;
	b->next_mmio = PCI_MMIO_BASE;
	b->next_io = PCI_IO_BASE;
	pthread_rwlock_init(&b->lock, NULL);
	vm->devices[DEVICE_SLOT_PCI] = b;

	host = &b->host;
	host->name = "host bridge";
	pci_config_set(host, PCI_VENDOR_ID, 2, HOST_BRIDGE_VENDOR);
	pci_config_set(host, PCI_DEVICE_ID, 2, HOST_BRIDGE_DEVICE);
	pci_config_set(host, PCI_CLASS_PROG, 3, PCI_CLASS_HOST_BRIDGE);
	ret = pci_register(vm, host);
	if (ret < 0)
		return ret;

	ret = bus_register(vm, BUS_PIO, CONFIG_PORT, 8, &pci_port_ops, b, "pci-config");
	if (!ret)
		ret = bus_register(vm, BUS_MMIO, PCI_ECAM_BASE, PCI_ECAM_SIZE, &pci_ecam_ops, b, "pci-ecam");
	if (!ret)
		ret = bus_register(vm, BUS_MMIO, PCI_MMIO_BASE, PCI_MMIO_SIZE, &pci_mmio_ops, b, "pci-mmio-window");
	if (!ret)
		ret = bus_register(vm, BUS_PIO, PCI_IO_BASE, PCI_IO_SIZE, &pci_io_ops, b, "pci-io-window");
	return ret;
}

static void pci_exit(struct vm *vm)
{
	struct pci_bridge *b = the_bridge(vm);

	if (!b)
		return;
	pthread_rwlock_destroy(&b->lock);
	free(b);
	vm->devices[DEVICE_SLOT_PCI] = NULL;
}

DEVICE_INIT("pci", DEVICE_ORDER_PCI, pci_init, pci_exit)
