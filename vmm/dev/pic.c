/*
 * Two cascaded 8259A PICs: the master at 0x20 (its INTR is the BSP's LINT0),
 * the slave at 0xa0 on master line 2, and the ELCR edge/level registers at
 * 0x4d0-0x4d1. The logic follows the datasheet as QEMU models it.
 *
 * Lock order: the PIC lock is a leaf; vCPU 0 is woken after it is dropped.
 */
#include <errno.h>
#include <stdlib.h>

#include "vmm/internal.h"

#define PIC_MASTER_BASE	 0x20
#define PIC_SLAVE_BASE	 0xa0
#define PIC_ELCR_BASE	 0x4d0
#define PIC_CASCADE_LINE 2

/* What the data port takes next: OCW1 (the mask), or the rest of an ICW
 * sequence that a write of ICW1 to the command port started. */
enum { EXPECT_OCW1, EXPECT_ICW2, EXPECT_ICW3, EXPECT_ICW4 };

/* OCW2 commands, bits 7-5 of a command port write. */
enum {
	OCW2_ROTATE_AEOI_CLEAR,
	OCW2_EOI,
	OCW2_NOP,
	OCW2_SPECIFIC_EOI,
	OCW2_ROTATE_AEOI_SET,
	OCW2_ROTATE_EOI,
	OCW2_SET_PRIORITY,
	OCW2_ROTATE_SPECIFIC_EOI,
};

struct pic_chip {
	uint8_t irr, imr, isr;
	uint8_t input; /* line levels, for edge detection */
	uint8_t elcr, elcr_mask;
	uint8_t base;	 /* vector of line 0 (ICW2) */
	uint8_t highest; /* the line with the highest priority (rotation) */
	uint8_t expect;	 /* what the data port takes next */
	bool icw4, single, ltim, auto_eoi, rotate_on_auto_eoi, special_mask, special_nested;
	bool poll, read_isr;
	bool master;
};

struct pic {
	pthread_mutex_t lock;
	struct vm *vm;
	struct pic_chip chip[2];
	bool output; /* the master's INTR */
};

static uint8_t level_lines(const struct pic_chip *c)
{
	return c->ltim ? 0xff : c->elcr;
}

/* Priority 0 (highest) to 7 of the first line set in mask, 8 if none. */
static int chip_priority(const struct pic_chip *c, uint8_t mask)
{
	if (!mask)
		return 8;
	int p = 0;
	while (!(mask & (1u << ((p + c->highest) & 7))))
		p++;
	return p;
}

/* The line the chip would signal now, or -1. */
static int chip_pending(const struct pic_chip *c)
{
	int p = chip_priority(c, c->irr & ~c->imr);
	if (p == 8)
		return -1;
	uint8_t in_service = c->isr;
	if (c->special_mask)
		in_service &= ~c->imr;
	/* Special fully nested mode lets the slave interrupt its own service. */
	if (c->special_nested && c->master)
		in_service &= ~(1u << PIC_CASCADE_LINE);
	return p < chip_priority(c, in_service) ? (p + c->highest) & 7 : -1;
}

static void chip_set_input(struct pic_chip *c, unsigned line, bool level)
{
	uint8_t bit = 1u << line;

	if (level_lines(c) & bit) {
		c->irr = level ? c->irr | bit : c->irr & ~bit;
	} else if (level && !(c->input & bit)) {
		c->irr |= bit;
	}
	c->input = level ? c->input | bit : c->input & ~bit;
}

static void chip_ack(struct pic_chip *c, int line)
{
	if (c->auto_eoi) {
		if (c->rotate_on_auto_eoi)
			c->highest = (line + 1) & 7;
	} else {
		c->isr |= 1u << line;
	}
	/* A level-triggered request stays until its source drops it. */
	if (!(level_lines(c) & (1u << line)))
		c->irr &= ~(1u << line);
}

static void chip_init_reset(struct pic_chip *c)
{
	c->input = 0;
	c->irr &= c->elcr;
	c->imr = c->isr = 0;
	c->highest = c->base = 0;
	c->expect = EXPECT_OCW1;
	c->icw4 = c->single = c->ltim = c->auto_eoi = c->rotate_on_auto_eoi = false;
	c->special_mask = c->special_nested = c->poll = c->read_isr = false;
}

/* Propagates the slave's output to master line 2 and recomputes INTR.
 * Returns true when INTR rose: vCPU 0 must look. */
static bool pic_update_locked(struct pic *p)
{
	bool was = p->output;

	chip_set_input(&p->chip[0], PIC_CASCADE_LINE, chip_pending(&p->chip[1]) >= 0);
	p->output = chip_pending(&p->chip[0]) >= 0;
	return p->output && !was;
}

static void pic_unlock(struct pic *p, bool rose)
{
	pthread_mutex_unlock(&p->lock);
	if (rose && p->vm->ncpus) {
		struct vcpu *bsp = p->vm->cpus[0];
		atomic_store(&bsp->interrupt_hint, true);
		vcpu_wake(bsp);
	}
}

void pic_set_irq(struct vm *vm, unsigned line, bool level)
{
	struct pic *p = vm->pic;

	/* Line 2 of the master is the cascade, wired inside. */
	if (!p || line >= 16 || line == PIC_CASCADE_LINE)
		return;
	pthread_mutex_lock(&p->lock);
	chip_set_input(&p->chip[line / 8], line % 8, level);
	pic_unlock(p, pic_update_locked(p));
}

static int pending_vector_locked(struct pic *p)
{
	int line = chip_pending(&p->chip[0]);

	if (line < 0)
		return -1;
	if (line == PIC_CASCADE_LINE) {
		int line2 = chip_pending(&p->chip[1]);
		return p->chip[1].base + (line2 >= 0 ? line2 : 7);
	}
	return p->chip[0].base + line;
}

int pic_pending_vector(struct vm *vm)
{
	struct pic *p = vm->pic;

	if (!p)
		return -1;
	pthread_mutex_lock(&p->lock);
	int v = pending_vector_locked(p);
	pthread_mutex_unlock(&p->lock);
	return v;
}

/* The INTA cycle; with nothing to deliver, the chip answers IRQ 7 (spurious). */
int pic_acknowledge(struct vm *vm)
{
	struct pic *p = vm->pic;
	int vector;

	if (!p)
		return -1;
	pthread_mutex_lock(&p->lock);
	int line = chip_pending(&p->chip[0]);
	if (line < 0) {
		vector = p->chip[0].base + 7;
	} else {
		if (line == PIC_CASCADE_LINE) {
			int line2 = chip_pending(&p->chip[1]);
			if (line2 >= 0)
				chip_ack(&p->chip[1], line2);
			vector = p->chip[1].base + (line2 >= 0 ? line2 : 7);
			pic_update_locked(p);
		} else {
			vector = p->chip[0].base + line;
		}
		chip_ack(&p->chip[0], line);
	}
	pic_unlock(p, pic_update_locked(p));
	return vector;
}

static void chip_command(struct pic_chip *c, uint8_t v)
{
	int p, line;

	if (v & 0x10) { /* ICW1 */
		chip_init_reset(c);
		c->expect = EXPECT_ICW2;
		c->icw4 = v & 1;
		c->single = v & 2;
		c->ltim = v & 8;
		return;
	}
	if (v & 0x08) { /* OCW3 */
		if (v & 0x04)
			c->poll = true;
		if (v & 0x02)
			c->read_isr = v & 1;
		if (v & 0x40)
			c->special_mask = v & 0x20;
		return;
	}
	switch (v >> 5) {
	case OCW2_ROTATE_AEOI_CLEAR:
	case OCW2_ROTATE_AEOI_SET: c->rotate_on_auto_eoi = v & 0x80; break;
	case OCW2_EOI:
	case OCW2_ROTATE_EOI:
		p = chip_priority(c, c->isr);
		if (p != 8) {
			line = (p + c->highest) & 7;
			c->isr &= ~(1u << line);
			if (v & 0x80)
				c->highest = (line + 1) & 7;
		}
		break;
	case OCW2_SPECIFIC_EOI: c->isr &= ~(1u << (v & 7)); break;
	case OCW2_SET_PRIORITY: c->highest = (v + 1) & 7; break;
	case OCW2_ROTATE_SPECIFIC_EOI:
		c->isr &= ~(1u << (v & 7));
		c->highest = ((v & 7) + 1) & 7;
		break;
	default: break;
	}
}

static void chip_data(struct pic_chip *c, uint8_t v)
{
	switch (c->expect) {
	case EXPECT_OCW1: c->imr = v; break;
	case EXPECT_ICW2:
		c->base = v & 0xf8;
		c->expect = c->single ? (c->icw4 ? EXPECT_ICW4 : EXPECT_OCW1) : EXPECT_ICW3;
		break;
	case EXPECT_ICW3:
		/* The wiring is fixed: the slave is on line 2. */
		c->expect = c->icw4 ? EXPECT_ICW4 : EXPECT_OCW1;
		break;
	default:
		c->special_nested = v & 0x10;
		c->auto_eoi = v & 0x02;
		c->expect = EXPECT_OCW1;
		break;
	}
}

static uint8_t chip_read(struct pic_chip *c, unsigned port)
{
	if (c->poll) {
		/* A poll is an INTA cycle by I/O read: bit 7 says one was pending. */
		int line = chip_pending(c);
		c->poll = false;
		if (line < 0)
			return 0;
		chip_ack(c, line);
		return 0x80 | line;
	}
	if (port == 0)
		return c->read_isr ? c->isr : c->irr;
	return c->imr;
}

/* Ports are byte-wide; a wider access touches consecutive ports. */
static uint64_t pic_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, struct pic_chip *c)
{
	struct pic *p = opaque;
	uint64_t value = 0;
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++)
		value |= (uint64_t)chip_read(c, offset + i) << (8 * i);
	pic_unlock(p, pic_update_locked(p));
	return value;
}

static void pic_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value,
		      struct pic_chip *c)
{
	struct pic *p = opaque;
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t v = value >> (8 * i);
		if (offset + i == 0)
			chip_command(c, v);
		else
			chip_data(c, v);
	}
	pic_unlock(p, pic_update_locked(p));
}

static uint64_t master_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	return pic_read(opaque, vcpu, offset, size, &((struct pic *)opaque)->chip[0]);
}

static void master_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	pic_write(opaque, vcpu, offset, size, value, &((struct pic *)opaque)->chip[0]);
}

static uint64_t slave_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	return pic_read(opaque, vcpu, offset, size, &((struct pic *)opaque)->chip[1]);
}

static void slave_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	pic_write(opaque, vcpu, offset, size, value, &((struct pic *)opaque)->chip[1]);
}

static uint64_t elcr_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct pic *p = opaque;
	uint64_t value = 0;
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++)
		value |= (uint64_t)p->chip[offset + i].elcr << (8 * i);
	pthread_mutex_unlock(&p->lock);
	return value;
}

static void elcr_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct pic *p = opaque;
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		struct pic_chip *c = &p->chip[offset + i];
		c->elcr = (value >> (8 * i)) & c->elcr_mask;
	}
	pthread_mutex_unlock(&p->lock);
}

static const struct bus_ops master_ops = {master_read, master_write};
static const struct bus_ops slave_ops = {slave_read, slave_write};
static const struct bus_ops elcr_ops = {elcr_read, elcr_write};

static int pic_init(struct vm *vm)
{
	struct pic *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->vm = vm;
	for (int i = 0; i < 2; i++) {
		chip_init_reset(&p->chip[i]);
		p->chip[i].imr = 0xff; /* nothing gets through until the guest programs it */
	}
	p->chip[0].master = true;
	p->chip[0].elcr_mask = 0xf8; /* IRQ 0-2 are always edge-triggered */
	p->chip[1].elcr_mask = 0xde; /* ... and IRQ 8 and 13 */
	vm->pic = p;
	ret = bus_register(vm, BUS_PIO, PIC_MASTER_BASE, 2, &master_ops, p, "pic-master");
	if (!ret)
		ret = bus_register(vm, BUS_PIO, PIC_SLAVE_BASE, 2, &slave_ops, p, "pic-slave");
	if (!ret)
		ret = bus_register(vm, BUS_PIO, PIC_ELCR_BASE, 2, &elcr_ops, p, "pic-elcr");
	return ret;
}

static void pic_exit(struct vm *vm)
{
	struct pic *p = vm->pic;

	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
	vm->pic = NULL;
}

DEVICE_INIT_IRQCHIP("pic", DEVICE_ORDER_IRQCHIP, pic_init, pic_exit)
