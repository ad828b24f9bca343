/*
 * The HPET (IA-PC HPET specification 1.0a) at 0xfed00000: a 64-bit main
 * counter at 100 MHz and three timers, each one-shot or periodic, in 32-
 * or 64-bit mode, edge- or level-triggered, routed to IOAPIC input 10 or
 * 11. The ACPI HPET table (acpi.c) describes it.
 *
 * There is no legacy replacement route (LEG_RT_CAP is 0) and no FSB (MSI)
 * delivery: the PIT and the RTC keep IRQ0 and IRQ8. Linux then ticks with
 * the PIT and the LAPIC timer and uses the HPET as the clocksource that
 * watches the TSC, which, unlike the jiffies it would watch with otherwise,
 * does not fall behind when an interpreted guest takes its ticks late.
 *
 * The counter is computed from CLOCK_MONOTONIC when read; the VM's clock
 * thread brings each timer's comparator match. A one-shot timer fires once
 * per comparator or configuration write: in 32-bit mode real hardware
 * matches again each time the counter wraps (43 s), which is not modelled.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define HPET_TIMERS		3
#define HPET_PERIOD_FS		10000000ull /* 10 ns: 100 MHz */
#define HPET_NS_PER_TICK	(HPET_PERIOD_FS / 1000000)
#define HPET_MIN_INTERVAL_TICKS (100000 / HPET_NS_PER_TICK) /* 100 us */
#define HPET_VENDOR		0x8086u
#define HPET_REV		1u

enum {
	REG_CAP = 0x000,
	REG_CONFIG = 0x010,
	REG_STATUS = 0x020,
	REG_COUNTER = 0x0f0,
	REG_TIMER0 = 0x100, /* + 0x20 * n: configuration, comparator, FSB route */
	REG_TIMER_END = REG_TIMER0 + 0x20 * HPET_TIMERS,
	TIMER_CONFIG = 0x00,
	TIMER_COMPARATOR = 0x08,
};

#define CAP_COUNT_64  (1u << 13)
#define CONFIG_ENABLE (1ull << 0)

#define TN_LEVEL	 (1ull << 1)
#define TN_INT_ENABLE	 (1ull << 2)
#define TN_PERIODIC	 (1ull << 3)
#define TN_PERIODIC_CAP	 (1ull << 4)
#define TN_SIZE_64_CAP	 (1ull << 5)
#define TN_SET_VALUE	 (1ull << 6)
#define TN_32BIT	 (1ull << 8)
#define TN_ROUTE_SHIFT	 9
#define TN_ROUTE_MASK	 (0x1full << TN_ROUTE_SHIFT)
#define TN_WRITABLE	 (TN_LEVEL | TN_INT_ENABLE | TN_PERIODIC | TN_SET_VALUE | TN_32BIT | TN_ROUTE_MASK)
#define TN_ROUTE_CAP	 ((1u << 10) | (1u << 11)) /* the IOAPIC inputs timers may use */
#define TN_DEFAULT_ROUTE 10

struct hpet_timer {
	struct hpet *hpet;
	unsigned index;
	uint64_t config, comparator, period;
	bool line;	/* the level this timer drives on its route */
	bool scheduled; /* a match is expected at due_ns */
	uint64_t due_ns;
	struct vm_timer timer;
};

struct hpet {
	struct vm *vm;
	pthread_mutex_t lock;
	uint64_t config, status;
	uint64_t counter; /* while halted; while enabled, its value at start_ns */
	uint64_t start_ns;
	struct hpet_timer t[HPET_TIMERS];
};

uint32_t hpet_timer_block_id(void)
{
	return HPET_REV | (HPET_TIMERS - 1) << 8 | CAP_COUNT_64 | HPET_VENDOR << 16;
}

static bool hpet_enabled(const struct hpet *h)
{
	return h->config & CONFIG_ENABLE;
}

static uint64_t hpet_counter(const struct hpet *h, uint64_t now)
{
	return hpet_enabled(h) ? h->counter + (now - h->start_ns) / HPET_NS_PER_TICK : h->counter;
}

static uint64_t ticks_to_ns(uint64_t ticks)
{
	return ticks > UINT64_MAX / 2 / HPET_NS_PER_TICK ? UINT64_MAX / 2 : ticks * HPET_NS_PER_TICK;
}

static bool is_32bit(const struct hpet_timer *t)
{
	return t->config & TN_32BIT;
}

/* Counter ticks until the comparator matches. A comparator at most half
 * the range behind the counter counts as due now (as in QEMU), so that a
 * deadline the guest set a moment too late still fires. */
static uint64_t timer_ticks_left(const struct hpet_timer *t, uint64_t counter)
{
	if (is_32bit(t)) {
		int32_t d = (int32_t)((uint32_t)t->comparator - (uint32_t)counter);
		return d > 0 ? (uint64_t)d : 0;
	}
	int64_t d = (int64_t)(t->comparator - counter);
	return d > 0 ? (uint64_t)d : 0;
}

/* Sets the level the timer drives on its route (level mode holds it until
 * the status bit is cleared). Lock held: the HPET raises lines as the PIT
 * and RTC do. */
static void timer_drive(struct hpet_timer *t, bool level)
{
	if (t->line == level)
		return;
	t->line = level;
	irq_set_level(t->hpet->vm, (t->config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT, level);
}

static void timer_interrupt(struct hpet_timer *t)
{
	struct hpet *h = t->hpet;

	if (!(t->config & TN_INT_ENABLE))
		return;
	if (t->config & TN_LEVEL) {
		h->status |= 1ull << t->index;
		timer_drive(t, true);
	} else {
		timer_drive(t, true);
		timer_drive(t, false);
	}
}

/* Brings the next match to the clock thread after `ticks` counter ticks. */
static void timer_schedule_in(struct hpet_timer *t, uint64_t now, uint64_t ticks)
{
	t->scheduled = true;
	t->due_ns = now + ticks_to_ns(ticks);
	timer_arm(t->hpet->vm, &t->timer, t->due_ns);
}

/* After a write: the next match from the comparator as it now stands. */
static void timer_reschedule(struct hpet_timer *t, uint64_t now)
{
	struct hpet *h = t->hpet;

	if (!hpet_enabled(h)) {
		t->scheduled = false;
		timer_cancel(h->vm, &t->timer);
		return;
	}
	timer_schedule_in(t, now, timer_ticks_left(t, hpet_counter(h, now)));
}

static void timer_fire(void *opaque)
{
	struct hpet_timer *t = opaque;
	struct hpet *h = t->hpet;

	pthread_mutex_lock(&h->lock);
	uint64_t now = clock_now_ns(); /* not before a start_ns set under the lock */
	/* A write may have moved the match since the clock thread took it. */
	if (!t->scheduled || now < t->due_ns || !hpet_enabled(h)) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	t->scheduled = false;
	timer_interrupt(t);
	if ((t->config & TN_PERIODIC) && t->period) {
		/* The next period after the counter, missed ones skipped. */
		uint64_t counter = hpet_counter(h, now), behind = counter - t->comparator;
		if (is_32bit(t))
			behind = (uint32_t)behind;
		t->comparator += (behind / t->period + 1) * t->period;
		if (is_32bit(t))
			t->comparator = (uint32_t)t->comparator;
		/* However short the period, interrupts come at most every
		 * 100 us, as the PIT's and the LAPIC's do. */
		uint64_t left = timer_ticks_left(t, counter);
		timer_schedule_in(t, now, left < HPET_MIN_INTERVAL_TICKS ? HPET_MIN_INTERVAL_TICKS : left);
	}
	pthread_mutex_unlock(&h->lock);
}

static uint64_t timer_read(const struct hpet_timer *t, unsigned reg)
{
	switch (reg) {
	case TIMER_CONFIG: return t->config | TN_PERIODIC_CAP | TN_SIZE_64_CAP | (uint64_t)TN_ROUTE_CAP << 32;
	case TIMER_COMPARATOR: return is_32bit(t) ? (uint32_t)t->comparator : t->comparator;
	default: return 0; /* FSB route: no FSB delivery */
	}
}

static void timer_write_config(struct hpet_timer *t, uint64_t value, uint64_t now)
{
	struct hpet *h = t->hpet;
	uint64_t config = (t->config & ~TN_WRITABLE) | (value & TN_WRITABLE), bit = 1ull << t->index;
	unsigned route = (config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT;

	if (!((TN_ROUTE_CAP >> route) & 1)) /* a route the timer cannot take: keep the old one */
		config = (config & ~TN_ROUTE_MASK) | (t->config & TN_ROUTE_MASK);
	if (config & TN_32BIT) {
		t->comparator = (uint32_t)t->comparator;
		t->period = (uint32_t)t->period;
	}
	if (!(config & TN_LEVEL))
		h->status &= ~bit;
	/* The line follows the route, the trigger mode and the enable. */
	if ((config ^ t->config) & TN_ROUTE_MASK)
		timer_drive(t, false);
	uint64_t changed = config ^ t->config;
	t->config = config;
	timer_drive(t, (config & TN_LEVEL) && (config & TN_INT_ENABLE) && (h->status & bit));
	if (changed & (TN_32BIT | TN_PERIODIC))
		timer_reschedule(t, now);
}

static void timer_write_comparator(struct hpet_timer *t, uint64_t value, uint64_t mask, uint64_t now)
{
	if (is_32bit(t))
		mask &= 0xffffffffull;
	if ((t->config & TN_PERIODIC)) {
		/* In periodic mode a write sets the period, and the comparator
		 * too while SET_VALUE is on; SET_VALUE clears itself. */
		if (t->config & TN_SET_VALUE)
			t->comparator = (t->comparator & ~mask) | (value & mask);
		t->period = (t->period & ~mask) | (value & mask);
	} else {
		t->comparator = (t->comparator & ~mask) | (value & mask);
	}
	t->config &= ~TN_SET_VALUE;
	timer_reschedule(t, now);
}

static void hpet_write_config(struct hpet *h, uint64_t value, uint64_t now)
{
	bool was = hpet_enabled(h);

	h->counter = hpet_counter(h, now);
	h->start_ns = now;
	h->config = value & CONFIG_ENABLE;
	if (was != hpet_enabled(h))
		for (unsigned i = 0; i < HPET_TIMERS; i++)
			timer_reschedule(&h->t[i], now);
}

static uint64_t hpet_reg_read(struct hpet *h, unsigned reg, uint64_t now)
{
	switch (reg) {
	case REG_CAP: return hpet_timer_block_id() | HPET_PERIOD_FS << 32;
	case REG_CONFIG: return h->config;
	case REG_STATUS: return h->status;
	case REG_COUNTER: return hpet_counter(h, now);
	}
	if (reg >= REG_TIMER0 && reg < REG_TIMER_END)
		return timer_read(&h->t[(reg - REG_TIMER0) / 0x20], (reg - REG_TIMER0) % 0x20);
	return 0;
}

static void hpet_reg_write(struct hpet *h, unsigned reg, uint64_t value, uint64_t mask, uint64_t now)
{
	switch (reg) {
	case REG_CONFIG: hpet_write_config(h, (h->config & ~mask) | (value & mask), now); return;
	case REG_STATUS: /* write 1 to clear: a level-triggered timer drops its line */
		for (unsigned i = 0; i < HPET_TIMERS; i++) {
			if (value & mask & h->status & (1ull << i)) {
				h->status &= ~(1ull << i);
				timer_drive(&h->t[i], false);
			}
		}
		return;
	case REG_COUNTER: /* writable while halted only */
		if (!hpet_enabled(h))
			h->counter = (h->counter & ~mask) | (value & mask);
		return;
	}
	if (reg < REG_TIMER0 || reg >= REG_TIMER_END)
		return;
	struct hpet_timer *t = &h->t[(reg - REG_TIMER0) / 0x20];
	switch ((reg - REG_TIMER0) % 0x20) {
	case TIMER_CONFIG: timer_write_config(t, (t->config & ~mask) | (value & mask), now); break;
	case TIMER_COMPARATOR: timer_write_comparator(t, value, mask, now); break;
	}
}

/* Registers are 64 bits wide; guests use 4- and 8-byte accesses to them. */
static uint64_t hpet_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct hpet *h = opaque;
	unsigned shift = (offset & 7) * 8;
	(void)vcpu;

	if ((offset & 7) + size > 8)
		return ~0ull;
	pthread_mutex_lock(&h->lock);
	uint64_t v = hpet_reg_read(h, offset & ~7ull, clock_now_ns());
	pthread_mutex_unlock(&h->lock);
	v >>= shift;
	return size == 8 ? v : v & ((1ull << (8 * size)) - 1);
}

static void hpet_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct hpet *h = opaque;
	unsigned shift = (offset & 7) * 8;
	uint64_t mask = size == 8 ? ~0ull : ((1ull << (8 * size)) - 1) << shift;
	(void)vcpu;

	if ((offset & 7) + size > 8)
		return;
	pthread_mutex_lock(&h->lock);
	hpet_reg_write(h, offset & ~7ull, value << shift, mask, clock_now_ns());
	pthread_mutex_unlock(&h->lock);
}

static const struct bus_ops hpet_ops = {hpet_read, hpet_write};

static int hpet_init(struct vm *vm)
{
	struct hpet *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->vm = vm;
	pthread_mutex_init(&h->lock, NULL);
	for (unsigned i = 0; i < HPET_TIMERS; i++) {
		struct hpet_timer *t = &h->t[i];
		t->hpet = h;
		t->index = i;
		t->config = (uint64_t)TN_DEFAULT_ROUTE << TN_ROUTE_SHIFT;
		t->comparator = t->period = ~0ull;
		timer_init(&t->timer, timer_fire, t);
	}
	vm->devices[DEVICE_SLOT_HPET] = h;
	return bus_register(vm, BUS_MMIO, HPET_BASE, HPET_SIZE, &hpet_ops, h, "hpet");
}

static void hpet_exit(struct vm *vm)
{
	struct hpet *h = vm->devices[DEVICE_SLOT_HPET];

	if (!h)
		return;
	for (unsigned i = 0; i < HPET_TIMERS; i++)
		timer_cancel(vm, &h->t[i].timer);
	pthread_mutex_destroy(&h->lock);
	free(h);
	vm->devices[DEVICE_SLOT_HPET] = NULL;
}

DEVICE_INIT("hpet", DEVICE_ORDER_PLATFORM, hpet_init, hpet_exit)
