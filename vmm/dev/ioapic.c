/*
 * The 82093AA I/O APIC at 0xfec00000: 24 input pins, each with a
 * redirection entry that turns it into an interrupt message for the LAPICs.
 * Version 0x20, as QEMU's, so it also has the EOI register at 0x40.
 *
 * Lock order: the IOAPIC lock is a leaf. Messages are gathered under it and
 * sent to the LAPICs (and an ExtINT vector fetched from the 8259) after it
 * is dropped.
 */
#include <errno.h>
#include <stdlib.h>

#include "vmm/internal.h"

#define IOAPIC_MMIO_BASE 0xfec00000ull
#define IOAPIC_MMIO_SIZE 0x1000
#define IOAPIC_PINS	 24
#define IOAPIC_VERSION	 (0x20 | (IOAPIC_PINS - 1) << 16)

enum { IOREGSEL = 0x00, IOWIN = 0x10, IOEOI = 0x40 };
enum { REG_ID = 0x00, REG_VERSION = 0x01, REG_ARB = 0x02, REG_REDTBL = 0x10 };

#define RTE_VECTOR(e)	    ((uint8_t)(e))
#define RTE_MODE(e)	    (((e) >> 8) & 7)
#define RTE_LOGICAL	    (1ull << 11)
#define RTE_DELIVERY_STATUS (1ull << 12)
#define RTE_REMOTE_IRR	    (1ull << 14)
#define RTE_LEVEL	    (1ull << 15)
#define RTE_MASKED	    (1ull << 16)
#define RTE_DEST(e)	    ((uint8_t)((e) >> 56))
#define RTE_READ_ONLY	    (RTE_DELIVERY_STATUS | RTE_REMOTE_IRR)

enum { DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI = 4, DM_INIT, DM_EXTINT = 7 };

struct ioapic {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t id, regsel;
	uint32_t irr;	/* requests waiting to be sent */
	uint32_t level; /* the input pins as their sources drive them */
	uint64_t rte[IOAPIC_PINS];
};

struct ioapic_msg {
	uint32_t dest;
	bool logical, level;
	unsigned mode;
	uint8_t vector;
};

struct ioapic_batch {
	struct ioapic_msg msg[IOAPIC_PINS];
	unsigned count;
};

/* Turns every pending, unmasked request into a message. A level-triggered
 * pin then waits in remote IRR for the EOI of its vector. */
static void service_locked(struct ioapic *io, struct ioapic_batch *b)
{
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t e = io->rte[pin];
		unsigned mode = RTE_MODE(e);
		bool level = (e & RTE_LEVEL) && (mode == DM_FIXED || mode == DM_LOWEST);

		if (!(io->irr & (1u << pin)) || (e & RTE_MASKED))
			continue;
		if (level) {
			if (e & RTE_REMOTE_IRR)
				continue;
			io->rte[pin] |= RTE_REMOTE_IRR;
		} else {
			/* NMI, INIT and ExtINT are edge-triggered whatever the entry says. */
			io->irr &= ~(1u << pin);
		}
		if (mode == DM_SMI || mode == 3 || mode == 6)
			continue;
		b->msg[b->count++] = (struct ioapic_msg){
		    .dest = RTE_DEST(e),
		    .logical = e & RTE_LOGICAL,
		    .level = level,
		    .mode = mode,
		    .vector = RTE_VECTOR(e),
		};
	}
}

static void ioapic_unlock_send(struct ioapic *io, struct ioapic_batch *b)
{
	pthread_mutex_unlock(&io->lock);
	for (unsigned i = 0; i < b->count; i++) {
		struct ioapic_msg *m = &b->msg[i];
		if (m->mode == DM_EXTINT)
			m->vector = pic_acknowledge(io->vm);
		lapic_deliver(io->vm, m->dest, m->logical, m->mode, m->vector, m->level);
	}
}

void ioapic_set_irq(struct vm *vm, unsigned pin, bool level)
{
	struct ioapic *io = vm->ioapic;
	struct ioapic_batch b = {.count = 0};

	if (!io || pin >= IOAPIC_PINS)
		return;
	uint32_t bit = 1u << pin;
	pthread_mutex_lock(&io->lock);
	bool rising = level && !(io->level & bit);
	io->level = level ? io->level | bit : io->level & ~bit;
	if (io->rte[pin] & RTE_LEVEL) {
		if (level)
			io->irr |= bit;
		else
			io->irr &= ~bit;
	} else if (rising && !(io->rte[pin] & RTE_MASKED)) {
		/* The 82093AA ignores edges on a masked pin. */
		io->irr |= bit;
	}
	service_locked(io, &b);
	ioapic_unlock_send(io, &b);
}

void ioapic_eoi(struct vm *vm, uint8_t vector)
{
	struct ioapic *io = vm->ioapic;
	struct ioapic_batch b = {.count = 0};

	if (!io)
		return;
	pthread_mutex_lock(&io->lock);
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t e = io->rte[pin];
		if (RTE_VECTOR(e) == vector && (e & RTE_LEVEL))
			io->rte[pin] &= ~RTE_REMOTE_IRR;
	}
	/* A level-triggered line still asserted is sent again. */
	service_locked(io, &b);
	ioapic_unlock_send(io, &b);
}

static uint32_t reg_read_locked(struct ioapic *io)
{
	unsigned reg = io->regsel;

	switch (reg) {
	case REG_ID:
	case REG_ARB: return (uint32_t)io->id << 24;
	case REG_VERSION: return IOAPIC_VERSION;
	default:
		if (reg >= REG_REDTBL && reg < REG_REDTBL + 2 * IOAPIC_PINS) {
			uint64_t e = io->rte[(reg - REG_REDTBL) / 2];
			return reg & 1 ? e >> 32 : (uint32_t)e;
		}
		return 0;
	}
}

static void reg_write_locked(struct ioapic *io, uint32_t value, struct ioapic_batch *b)
{
	unsigned reg = io->regsel;

	if (reg == REG_ID) {
		io->id = (value >> 24) & 0xf;
		return;
	}
	if (reg < REG_REDTBL || reg >= REG_REDTBL + 2 * IOAPIC_PINS)
		return; /* version, arbitration and unknown registers are read-only */
	unsigned pin = (reg - REG_REDTBL) / 2;
	uint64_t e = io->rte[pin];
	uint64_t ro = e & RTE_READ_ONLY;

	if (reg & 1)
		e = (e & 0xffffffffull) | (uint64_t)value << 32;
	else
		e = (e & ~0xffffffffull) | value;
	e = (e & ~RTE_READ_ONLY) | ro;
	/* Remote IRR means nothing for an edge-triggered pin: Linux relies on a
	 * switch to edge clearing it. */
	if (!(e & RTE_LEVEL))
		e &= ~RTE_REMOTE_IRR;
	else
		io->irr = (io->irr & ~(1u << pin)) | (io->level & (1u << pin));
	io->rte[pin] = e;
	service_locked(io, b);
}

/* The registers repeat every 256 bytes of the page, as in QEMU. */
static uint64_t ioapic_mmio_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct ioapic *io = opaque;
	uint64_t value = 0;
	(void)vcpu;

	pthread_mutex_lock(&io->lock);
	switch (offset & 0xff) {
	case IOREGSEL: value = io->regsel; break;
	case IOWIN:
		if (size == 4)
			value = reg_read_locked(io);
		break;
	default: break;
	}
	pthread_mutex_unlock(&io->lock);
	return value;
}

static void ioapic_mmio_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct ioapic *io = opaque;
	struct ioapic_batch b = {.count = 0};
	(void)vcpu;

	switch (offset & 0xff) {
	case IOREGSEL:
		pthread_mutex_lock(&io->lock);
		io->regsel = value & 0xff;
		pthread_mutex_unlock(&io->lock);
		break;
	case IOWIN:
		if (size != 4)
			break;
		pthread_mutex_lock(&io->lock);
		reg_write_locked(io, value, &b);
		ioapic_unlock_send(io, &b);
		break;
	case IOEOI:
		if (size == 4)
			ioapic_eoi(io->vm, value & 0xff);
		break;
	default: break;
	}
}

static const struct bus_ops ioapic_mmio_ops = {ioapic_mmio_read, ioapic_mmio_write};

static int ioapic_init(struct vm *vm)
{
	struct ioapic *io = calloc(1, sizeof(*io));

	if (!io)
		return -ENOMEM;
	pthread_mutex_init(&io->lock, NULL);
	io->vm = vm;
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		io->rte[i] = RTE_MASKED;
	vm->ioapic = io;
	return bus_register(vm, BUS_MMIO, IOAPIC_MMIO_BASE, IOAPIC_MMIO_SIZE, &ioapic_mmio_ops, io, "ioapic");
}

static void ioapic_exit(struct vm *vm)
{
	struct ioapic *io = vm->ioapic;

	if (!io)
		return;
	pthread_mutex_destroy(&io->lock);
	free(io);
	vm->ioapic = NULL;
}

DEVICE_INIT_IRQCHIP("ioapic", DEVICE_ORDER_IRQCHIP, ioapic_init, ioapic_exit)
