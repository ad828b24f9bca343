/*
 * The i8254 PIT at 0x40-0x43 and the port 0x61 bits wired to it (channel 2
 * gate, channel 2 OUT, speaker data). Counters are computed from
 * CLOCK_MONOTONIC at 1193182 Hz, so they run in real time; only channel 0
 * has an interrupt, ISA IRQ0.
 *
 * Channel 0's OUT drives its line as a level. In the periodic modes (2, 3)
 * each period's rising edge is sent as a low-high pulse, one clock callback
 * per period, and the period is clamped for the callbacks only.
 *
 * Lock order: the PIT lock is held while raising the line, so it comes
 * before the IOAPIC, PIC and LAPIC locks (and vcpu_wake).
 */
#include <errno.h>
#include <stdlib.h>

#include "vmm/internal.h"

#define PIT_BASE 0x40
#define PORT_B	 0x61
#define PIT_HZ	 1193182ull
/* ISA IRQ0 is GSI 2 (the MADT's interrupt source override), PIC line 0. */
#define PIT_GSI		      2
#define PIT_MIN_IRQ_PERIOD_NS 100000ull

enum { RW_LATCH, RW_LSB, RW_MSB, RW_WORD };
/* Progress of a two-byte read or write: the low byte comes first. */
enum { STEP_LSB = 1, STEP_MSB, STEP_WORD_LSB, STEP_WORD_MSB };

struct pit_channel {
	uint8_t mode;	   /* 0-5: 6 and 7 are 2 and 3 */
	uint8_t mode_bits; /* as programmed, for the read-back status */
	uint8_t rw;
	bool bcd;
	uint8_t read_step, write_step, write_lsb;
	uint8_t latch_step; /* a latched count being read, 0 if none */
	uint16_t latched;
	bool status_latched;
	uint8_t status;
	bool null_count; /* a count was written but is not counting yet */
	bool gate;
	uint32_t count; /* the initial count in clocks: 1-0x10000 (10000 in BCD) */
	bool loaded;	/* a whole count was written since the control word */
	bool counting;
	bool frozen;	   /* counting stopped by a low gate */
	uint64_t start_ns; /* counting began (moved forward across gate pauses) */
	uint64_t frozen_ticks;
	bool out_idle;	  /* OUT while not counting */
	uint64_t periods; /* channel 0: periods whose interrupt was sent */
};

struct pit {
	pthread_mutex_t lock;
	struct vm *vm;
	struct pit_channel ch[3];
	bool speaker_data;
	uint8_t refresh; /* port 0x61 bit 4 toggles on every read, as in QEMU */
	struct vm_timer timer;
	bool irq_level;
	uint64_t last_pulse_ns;
};

static uint64_t ns_to_ticks(uint64_t ns)
{
	return (unsigned __int128)ns * PIT_HZ / 1000000000u;
}

static uint64_t ticks_to_ns(uint64_t ticks)
{
	return ((unsigned __int128)ticks * 1000000000u + PIT_HZ - 1) / PIT_HZ;
}

static uint32_t from_bcd(uint32_t v)
{
	return (v >> 12 & 0xf) * 1000 + (v >> 8 & 0xf) * 100 + (v >> 4 & 0xf) * 10 + (v & 0xf);
}

static uint16_t to_bcd(uint32_t v)
{
	v %= 10000;
	return (v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10;
}

static uint64_t ch_ticks(const struct pit_channel *c, uint64_t now)
{
	return c->frozen ? c->frozen_ticks : ns_to_ticks(now - c->start_ns);
}

static bool ch_out(const struct pit_channel *c, uint64_t now)
{
	if (!c->counting)
		return c->out_idle;
	uint64_t d = ch_ticks(c, now), n = c->count;
	switch (c->mode) {
	case 0:
	case 1: return d >= n;
	case 2: return c->frozen || d % n != n - 1;
	case 3: return c->frozen || d % n < (n + 1) / 2;
	default: /* 4, 5: one clock low at the end of the count */ return d != n;
	}
}

/* The counting element as a read sees it (binary or BCD). In mode 3 it
 * counts down by two, twice a period. */
static uint16_t ch_count(const struct pit_channel *c, uint64_t now)
{
	uint32_t modulus = c->bcd ? 10000 : 0x10000, v;

	if (!c->counting) {
		v = c->count % modulus;
	} else {
		uint64_t d = ch_ticks(c, now);
		switch (c->mode) {
		case 2: v = c->count - d % c->count; break;
		case 3: v = c->count - (2 * d) % c->count; break;
		default: v = (c->count + modulus - d % modulus) % modulus; break;
		}
		v %= modulus;
	}
	return c->bcd ? to_bcd(v) : v;
}

static void ch_start(struct pit_channel *c, uint64_t now)
{
	c->counting = true;
	c->null_count = false;
	c->start_ns = now;
	c->frozen = !c->gate && c->mode != 1 && c->mode != 5;
	c->frozen_ticks = 0;
	c->periods = 0;
}

static void ch_load(struct pit_channel *c, uint32_t value, uint64_t now)
{
	if (c->bcd)
		value = from_bcd(value);
	if (!value)
		value = c->bcd ? 10000 : 0x10000;
	c->count = value;
	c->loaded = true;
	/* Modes 1 and 5 wait for a rising gate. */
	if (c->mode != 1 && c->mode != 5)
		ch_start(c, now);
}

static void ch_set_gate(struct pit_channel *c, bool gate, uint64_t now)
{
	if (gate == c->gate)
		return;
	c->gate = gate;
	if (!c->loaded)
		return;
	switch (c->mode) {
	case 0:
	case 4: /* the gate pauses the count */
		if (!c->counting)
			break;
		if (gate) {
			c->start_ns = now - ticks_to_ns(c->frozen_ticks);
			c->frozen = false;
		} else {
			c->frozen_ticks = ch_ticks(c, now);
			c->frozen = true;
		}
		break;
	case 2:
	case 3: /* a low gate stops the count with OUT high; a rising one reloads */
		if (gate)
			ch_start(c, now);
		else if (c->counting)
			c->frozen = true;
		break;
	default: /* 1, 5: a rising gate triggers the count */
		if (gate)
			ch_start(c, now);
		break;
	}
}

static void ch_control(struct pit_channel *c, uint8_t v)
{
	c->rw = (v >> 4) & 3;
	c->read_step = c->write_step = c->rw;
	c->mode_bits = (v >> 1) & 7;
	c->mode = c->mode_bits > 5 ? c->mode_bits - 4 : c->mode_bits;
	c->bcd = v & 1;
	c->latch_step = 0;
	c->status_latched = false;
	c->null_count = true;
	c->loaded = c->counting = c->frozen = false;
	c->out_idle = c->mode != 0; /* OUT goes low in mode 0, high in the others */
}

static void ch_latch(struct pit_channel *c, uint64_t now)
{
	if (c->latch_step)
		return;
	c->latched = ch_count(c, now);
	c->latch_step = c->rw == RW_WORD ? STEP_WORD_LSB : c->rw;
}

static void ch_latch_status(struct pit_channel *c, uint64_t now)
{
	if (c->status_latched)
		return;
	c->status = ch_out(c, now) << 7 | c->null_count << 6 | c->rw << 4 | c->mode_bits << 1 | c->bcd;
	c->status_latched = true;
}

/* A read gives a latched status first, then a latched count, then the
 * live count, a byte at a time as the access mode says. */
static uint8_t ch_read(struct pit_channel *c, uint64_t now)
{
	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	if (c->latch_step) {
		switch (c->latch_step) {
		case STEP_MSB: c->latch_step = 0; return c->latched >> 8;
		case STEP_WORD_LSB: c->latch_step = STEP_MSB; return c->latched & 0xff;
		default: c->latch_step = 0; return c->latched & 0xff;
		}
	}
	uint16_t count = ch_count(c, now);
	switch (c->read_step) {
	case STEP_MSB: return count >> 8;
	case STEP_WORD_LSB: c->read_step = STEP_WORD_MSB; return count & 0xff;
	case STEP_WORD_MSB: c->read_step = STEP_WORD_LSB; return count >> 8;
	default: return count & 0xff;
	}
}

static void ch_write(struct pit_channel *c, uint8_t v, uint64_t now)
{
	switch (c->write_step) {
	case STEP_MSB: ch_load(c, (uint32_t)v << 8, now); break;
	case STEP_WORD_LSB:
		c->write_lsb = v;
		c->write_step = STEP_WORD_MSB;
		/* In mode 0 the first byte stops the count, OUT low. */
		if (c->mode == 0) {
			c->counting = false;
			c->out_idle = false;
		}
		break;
	case STEP_WORD_MSB:
		ch_load(c, c->write_lsb | (uint32_t)v << 8, now);
		c->write_step = STEP_WORD_LSB;
		break;
	default: ch_load(c, v, now); break;
	}
}

/* ---- channel 0's interrupt ---------------------------------------------- */

static void pit_set_line(struct pit *p, bool level)
{
	if (level != p->irq_level) {
		p->irq_level = level;
		irq_set_level(p->vm, PIT_GSI, level);
	}
}

/* Brings IRQ0 up to date with channel 0 and arms the clock for its next
 * edge. Called with the lock held; stale timer calls are harmless. */
static void pit_irq_update_locked(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->ch[0];
	uint64_t next_tick = 0, d = 0;
	bool pulse = false;

	if (c->counting && !c->frozen) {
		d = ch_ticks(c, now);
		switch (c->mode) {
		case 0:
			if (d < c->count)
				next_tick = c->count;
			break;
		case 2:
		case 3:
			if (d / c->count > c->periods) {
				c->periods = d / c->count;
				pulse = true;
			}
			next_tick = (d / c->count + 1) * c->count;
			break;
		case 4:
			if (d >= c->count && !c->periods) {
				c->periods = 1;
				pulse = true;
			} else if (d < c->count) {
				next_tick = c->count;
			}
			break;
		default: break;
		}
	}
	/* Between edges OUT is high in every mode but 0. */
	pit_set_line(p, c->mode == 0 || !c->counting ? ch_out(c, now) : true);
	if (pulse) {
		pit_set_line(p, false);
		pit_set_line(p, true);
		p->last_pulse_ns = now;
	}
	if (!next_tick) {
		timer_cancel(p->vm, &p->timer);
		return;
	}
	uint64_t when = c->start_ns + ticks_to_ns(next_tick);
	if ((c->mode == 2 || c->mode == 3) && when < p->last_pulse_ns + PIT_MIN_IRQ_PERIOD_NS)
		when = p->last_pulse_ns + PIT_MIN_IRQ_PERIOD_NS;
	timer_arm(p->vm, &p->timer, when);
}

static void pit_timer_fire(void *opaque)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	pit_irq_update_locked(p, clock_now_ns());
	pthread_mutex_unlock(&p->lock);
}

/* ---- ports -------------------------------------------------------------- */

static void pit_command(struct pit *p, uint8_t v, uint64_t now)
{
	unsigned sel = v >> 6;

	if (sel == 3) { /* read-back: bit 5 clear latches counts, bit 4 clear statuses */
		for (unsigned i = 0; i < 3; i++) {
			if (!(v & (2u << i)))
				continue;
			if (!(v & 0x20))
				ch_latch(&p->ch[i], now);
			if (!(v & 0x10))
				ch_latch_status(&p->ch[i], now);
		}
		return;
	}
	if (((v >> 4) & 3) == RW_LATCH)
		ch_latch(&p->ch[sel], now);
	else
		ch_control(&p->ch[sel], v);
}

/* Ports are byte-wide; a wider access touches consecutive ports. */
static uint64_t pit_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	uint64_t value = 0, now = clock_now_ns();
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 4; i++) {
		/* The control register cannot be read. */
		if (offset + i < 3)
			value |= (uint64_t)ch_read(&p->ch[offset + i], now) << (8 * i);
	}
	pthread_mutex_unlock(&p->lock);
	return value;
}

static void pit_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct pit *p = opaque;
	uint64_t now = clock_now_ns();
	(void)vcpu;

	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && offset + i < 4; i++) {
		uint8_t v = value >> (8 * i);
		if (offset + i == 3)
			pit_command(p, v, now);
		else
			ch_write(&p->ch[offset + i], v, now);
	}
	pit_irq_update_locked(p, now);
	pthread_mutex_unlock(&p->lock);
}

static uint64_t port_b_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	(void)vcpu;
	(void)offset;
	(void)size;

	pthread_mutex_lock(&p->lock);
	p->refresh ^= 0x10;
	uint8_t v = p->ch[2].gate | p->speaker_data << 1 | p->refresh | ch_out(&p->ch[2], clock_now_ns()) << 5;
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void port_b_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct pit *p = opaque;
	(void)vcpu;
	(void)offset;
	(void)size;

	pthread_mutex_lock(&p->lock);
	p->speaker_data = value & 2;
	ch_set_gate(&p->ch[2], value & 1, clock_now_ns());
	pthread_mutex_unlock(&p->lock);
}

static const struct bus_ops pit_ops = {pit_read, pit_write};
static const struct bus_ops port_b_ops = {port_b_read, port_b_write};

static int pit_init(struct vm *vm)
{
	struct pit *p = calloc(1, sizeof(*p));
	uint64_t now = clock_now_ns();
	int ret;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->vm = vm;
	timer_init(&p->timer, pit_timer_fire, p);
	/* As firmware leaves it: every channel in mode 3 with a 65536 count,
	 * channel 0 ticking at 18.2 Hz, channel 2's gate low. */
	for (int i = 0; i < 3; i++) {
		struct pit_channel *c = &p->ch[i];
		ch_control(c, RW_WORD << 4 | 3 << 1);
		c->gate = i != 2;
		ch_load(c, 0, now);
	}
	vm->devices[DEVICE_SLOT_PIT] = p;
	ret = bus_register(vm, BUS_PIO, PIT_BASE, 4, &pit_ops, p, "pit");
	if (!ret)
		ret = bus_register(vm, BUS_PIO, PORT_B, 1, &port_b_ops, p, "pit-port-b");
	if (!ret) {
		pthread_mutex_lock(&p->lock);
		pit_irq_update_locked(p, now);
		pthread_mutex_unlock(&p->lock);
	}
	return ret;
}

/* Runs after the clock thread has stopped. */
static void pit_exit(struct vm *vm)
{
	struct pit *p = vm->devices[DEVICE_SLOT_PIT];

	if (!p)
		return;
	timer_cancel(vm, &p->timer);
	pthread_mutex_destroy(&p->lock);
	free(p);
	vm->devices[DEVICE_SLOT_PIT] = NULL;
}

DEVICE_INIT_IRQCHIP("pit", DEVICE_ORDER_PLATFORM, pit_init, pit_exit)
