/*
 * The MC146818 CMOS RTC at 0x70-0x71 on ISA IRQ 8, with 128 bytes of CMOS.
 * The clock starts at the host's time (UTC) and runs on CLOCK_MONOTONIC;
 * the time registers are computed when read, in the format register B asks
 * for. Update-ended and alarm flags come from a 1 Hz clock callback at each
 * guest second; periodic interrupts run only while PIE is set, as in QEMU.
 *
 * Lock order: the RTC lock is held while raising IRQ 8, so it comes before
 * the IOAPIC, PIC and LAPIC locks (and vcpu_wake).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "vmm/internal.h"

#define RTC_BASE  0x70
#define RTC_GSI	  8
#define CMOS_SIZE 128
#define NS	  1000000000ll
/* UIP is set for the last 244 us of each second (8 cycles of 32768 Hz). */
#define UIP_NS (8 * NS / 32768)

enum {
	SECONDS = 0x00,
	SECONDS_ALARM = 0x01,
	MINUTES = 0x02,
	MINUTES_ALARM = 0x03,
	HOURS = 0x04,
	HOURS_ALARM = 0x05,
	WEEKDAY = 0x06,
	DAY = 0x07,
	MONTH = 0x08,
	YEAR = 0x09,
	REG_A = 0x0a,
	REG_B = 0x0b,
	REG_C = 0x0c,
	REG_D = 0x0d,
	CENTURY = 0x32,
};

#define REG_A_UIP   0x80
#define REG_B_SET   0x80
#define REG_B_PIE   0x40
#define REG_B_AIE   0x20
#define REG_B_UIE   0x10
#define REG_B_DM    0x04 /* binary, not BCD */
#define REG_B_24H   0x02
#define REG_C_IRQF  0x80
#define REG_C_PF    0x40
#define REG_C_AF    0x20
#define REG_C_UF    0x10
#define REG_C_FLAGS (REG_C_PF | REG_C_AF | REG_C_UF)
#define REG_D_VRT   0x80

struct rtc {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t index;
	uint8_t cmos[CMOS_SIZE];
	/* The guest's clock read base_sec seconds (since the epoch) at monotonic
	 * time base_ns and runs on from there; any year the guest sets fits. */
	int64_t base_sec, base_ns;
	struct vm_timer update_timer, periodic_timer;
	uint64_t next_update_ns, next_periodic_ns;
	bool irq_level;
};

static int64_t guest_sec(const struct rtc *r, uint64_t now)
{
	int64_t e = (int64_t)now - r->base_ns;
	return r->base_sec + e / NS - (e % NS < 0);
}

/* How far into its current second the guest's clock is. */
static int64_t phase_locked(const struct rtc *r, uint64_t now)
{
	int64_t p = ((int64_t)now - r->base_ns) % NS;
	return p < 0 ? p + NS : p;
}

/* The clock runs unless SET stops updates or the divider is in reset
 * (register A bits 6-4 above 010, as QEMU reads it). */
static bool running(const struct rtc *r)
{
	return !(r->cmos[REG_B] & REG_B_SET) && (r->cmos[REG_A] & 0x70) <= 0x20;
}

static uint8_t to_reg(const struct rtc *r, int v)
{
	return r->cmos[REG_B] & REG_B_DM ? v : (v / 10) << 4 | v % 10;
}

static int from_reg(const struct rtc *r, uint8_t v)
{
	return r->cmos[REG_B] & REG_B_DM ? v : (v >> 4) * 10 + (v & 0xf);
}

/* Writes the time registers from the running clock. */
static void refresh_locked(struct rtc *r, uint64_t now)
{
	time_t sec = guest_sec(r, now);
	struct tm tm;

	if (!gmtime_r(&sec, &tm))
		return;
	r->cmos[SECONDS] = to_reg(r, tm.tm_sec);
	r->cmos[MINUTES] = to_reg(r, tm.tm_min);
	if (r->cmos[REG_B] & REG_B_24H) {
		r->cmos[HOURS] = to_reg(r, tm.tm_hour);
	} else {
		int h = tm.tm_hour % 12 ? tm.tm_hour % 12 : 12;
		r->cmos[HOURS] = to_reg(r, h) | (tm.tm_hour >= 12 ? 0x80 : 0);
	}
	r->cmos[WEEKDAY] = to_reg(r, tm.tm_wday + 1);
	r->cmos[DAY] = to_reg(r, tm.tm_mday);
	r->cmos[MONTH] = to_reg(r, tm.tm_mon + 1);
	int year = tm.tm_year + 1900;
	r->cmos[YEAR] = to_reg(r, year % 100);
	r->cmos[CENTURY] = to_reg(r, year / 100 % 100);
}

/* Restarts the clock from the time registers, phase_ns into the second. */
static void commit_locked(struct rtc *r, uint64_t now, int64_t phase_ns)
{
	uint8_t hours = r->cmos[HOURS];
	struct tm tm = {
	    .tm_sec = from_reg(r, r->cmos[SECONDS]),
	    .tm_min = from_reg(r, r->cmos[MINUTES]),
	    .tm_hour = from_reg(r, hours & 0x7f),
	    .tm_mday = from_reg(r, r->cmos[DAY]),
	    .tm_mon = from_reg(r, r->cmos[MONTH]) - 1,
	    .tm_year = from_reg(r, r->cmos[CENTURY]) * 100 + from_reg(r, r->cmos[YEAR]) - 1900,
	};

	if (!(r->cmos[REG_B] & REG_B_24H))
		tm.tm_hour = tm.tm_hour % 12 + (hours & 0x80 ? 12 : 0);
	/* Whatever the guest wrote, timegm normalises it. */
	r->base_sec = timegm(&tm);
	r->base_ns = (int64_t)now - phase_ns;
}

static void set_irq_locked(struct rtc *r)
{
	bool level = r->cmos[REG_C] & REG_C_IRQF;
	if (level != r->irq_level) {
		r->irq_level = level;
		irq_set_level(r->vm, RTC_GSI, level);
	}
}

/* Sets interrupt flags; IRQF and the line follow when one is enabled. */
static void raise_flags_locked(struct rtc *r, uint8_t flags)
{
	r->cmos[REG_C] |= flags;
	if (r->cmos[REG_C] & r->cmos[REG_B] & REG_C_FLAGS)
		r->cmos[REG_C] |= REG_C_IRQF;
	set_irq_locked(r);
}

/* ---- timers ------------------------------------------------------------- */

static void update_timer_arm_locked(struct rtc *r, uint64_t now)
{
	if (!running(r)) {
		r->next_update_ns = 0;
		timer_cancel(r->vm, &r->update_timer);
		return;
	}
	r->next_update_ns = now + (NS - phase_locked(r, now));
	timer_arm(r->vm, &r->update_timer, r->next_update_ns);
}

static bool alarm_match(uint8_t alarm, uint8_t value)
{
	return (alarm & 0xc0) == 0xc0 || alarm == value; /* 11xxxxxx: don't care */
}

static void rtc_update_fire(void *opaque)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	uint64_t now = clock_now_ns();
	if (!r->next_update_ns || now < r->next_update_ns) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	uint8_t flags = REG_C_UF;
	refresh_locked(r, now);
	if (alarm_match(r->cmos[SECONDS_ALARM], r->cmos[SECONDS]) &&
	    alarm_match(r->cmos[MINUTES_ALARM], r->cmos[MINUTES]) && alarm_match(r->cmos[HOURS_ALARM], r->cmos[HOURS]))
		flags |= REG_C_AF;
	raise_flags_locked(r, flags);
	update_timer_arm_locked(r, now);
	pthread_mutex_unlock(&r->lock);
}

static uint64_t periodic_ns(const struct rtc *r)
{
	unsigned rate = r->cmos[REG_A] & 0xf;

	if (!rate || !(r->cmos[REG_B] & REG_B_PIE) || (r->cmos[REG_A] & 0x60) == 0x60)
		return 0;
	if (rate <= 2)
		rate += 7; /* 256 and 128 Hz, as with the 32768 Hz time base */
	return ((uint64_t)NS << (rate - 1)) / 32768;
}

static void periodic_arm_locked(struct rtc *r, uint64_t now)
{
	uint64_t period = periodic_ns(r);

	if (!period) {
		r->next_periodic_ns = 0;
		timer_cancel(r->vm, &r->periodic_timer);
		return;
	}
	r->next_periodic_ns = now + period;
	timer_arm(r->vm, &r->periodic_timer, r->next_periodic_ns);
}

static void rtc_periodic_fire(void *opaque)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	uint64_t now = clock_now_ns(), period = periodic_ns(r);
	if (!r->next_periodic_ns || now < r->next_periodic_ns || !period) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	raise_flags_locked(r, REG_C_PF);
	/* Keep the phase; ticks the clock thread missed are dropped. */
	r->next_periodic_ns += period;
	if (r->next_periodic_ns <= now)
		r->next_periodic_ns = now + period;
	timer_arm(r->vm, &r->periodic_timer, r->next_periodic_ns);
	pthread_mutex_unlock(&r->lock);
}

/* ---- registers ---------------------------------------------------------- */

static uint8_t cmos_read_locked(struct rtc *r, uint64_t now)
{
	uint8_t v;

	switch (r->index) {
	case SECONDS:
	case MINUTES:
	case HOURS:
	case WEEKDAY:
	case DAY:
	case MONTH:
	case YEAR:
	case CENTURY:
		if (running(r))
			refresh_locked(r, now);
		return r->cmos[r->index];
	case REG_A:
		v = r->cmos[REG_A];
		if (running(r) && phase_locked(r, now) >= NS - UIP_NS)
			v |= REG_A_UIP;
		return v;
	case REG_C:
		v = r->cmos[REG_C];
		r->cmos[REG_C] = 0;
		set_irq_locked(r);
		return v;
	case REG_D: return REG_D_VRT;
	default: return r->cmos[r->index];
	}
}

static void reg_a_write_locked(struct rtc *r, uint8_t v, uint64_t now)
{
	bool was_reset = (r->cmos[REG_A] & 0x60) == 0x60;
	bool reset = (v & 0x60) == 0x60;
	uint64_t old_period = periodic_ns(r);

	if (reset && running(r))
		refresh_locked(r, now); /* the registers keep the time the divider stopped at */
	else if (was_reset && (v & 0x70) <= 0x20 && !(r->cmos[REG_B] & REG_B_SET))
		commit_locked(r, now, NS / 2); /* the first update comes half a second later */
	r->cmos[REG_A] = v & ~REG_A_UIP;
	update_timer_arm_locked(r, now);
	if (periodic_ns(r) != old_period)
		periodic_arm_locked(r, now);
}

static void reg_b_write_locked(struct rtc *r, uint8_t v, uint64_t now)
{
	uint8_t old = r->cmos[REG_B];

	if (v & REG_B_SET) {
		if (running(r))
			refresh_locked(r, now);
		v &= ~REG_B_UIE; /* SET clears UIE */
	}
	r->cmos[REG_B] = v;
	if ((old & REG_B_SET) && !(v & REG_B_SET) && running(r)) {
		r->cmos[REG_B] = old; /* the registers are in the format they were written in */
		int64_t phase = phase_locked(r, now);
		commit_locked(r, now, phase);
		r->cmos[REG_B] = v;
	}
	/* A flag already set raises the line as soon as it is enabled. */
	if (r->cmos[REG_C] & v & REG_C_FLAGS)
		r->cmos[REG_C] |= REG_C_IRQF;
	else
		r->cmos[REG_C] &= ~REG_C_IRQF;
	set_irq_locked(r);
	update_timer_arm_locked(r, now);
	if ((old ^ v) & REG_B_PIE)
		periodic_arm_locked(r, now);
}

static void cmos_write_locked(struct rtc *r, uint8_t v, uint64_t now)
{
	switch (r->index) {
	case SECONDS:
	case MINUTES:
	case HOURS:
	case WEEKDAY:
	case DAY:
	case MONTH:
	case YEAR:
	case CENTURY:
		if (running(r)) {
			/* Setting one field of a running clock keeps the others. */
			int64_t phase = phase_locked(r, now);
			refresh_locked(r, now);
			r->cmos[r->index] = v;
			commit_locked(r, now, phase);
			update_timer_arm_locked(r, now);
		} else {
			r->cmos[r->index] = v;
		}
		break;
	case REG_A: reg_a_write_locked(r, v, now); break;
	case REG_B: reg_b_write_locked(r, v, now); break;
	case REG_C:
	case REG_D: break; /* read-only */
	default: r->cmos[r->index] = v; break;
	}
}

/* Port 0x70 selects a register (bit 7, the NMI mask, is ignored) and reads
 * as 0xff, as in QEMU; port 0x71 is the data. */
static uint64_t rtc_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct rtc *r = opaque;
	uint64_t value = 0, now = clock_now_ns();
	(void)vcpu;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t v = offset + i == 0 ? 0xff : cmos_read_locked(r, now);
		value |= (uint64_t)v << (8 * i);
	}
	pthread_mutex_unlock(&r->lock);
	return value;
}

static void rtc_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct rtc *r = opaque;
	uint64_t now = clock_now_ns();
	(void)vcpu;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t v = value >> (8 * i);
		if (offset + i == 0)
			r->index = v & 0x7f;
		else
			cmos_write_locked(r, v, now);
	}
	pthread_mutex_unlock(&r->lock);
}

static const struct bus_ops rtc_ops = {rtc_read, rtc_write};

static void cmos_set16(struct rtc *r, unsigned index, uint64_t v)
{
	if (v > 0xffff)
		v = 0xffff;
	r->cmos[index] = v;
	r->cmos[index + 1] = v >> 8;
}

/* The memory sizes firmware and old kernels read, as QEMU stores them. */
static void cmos_memory_sizes(struct rtc *r)
{
	uint64_t low = r->vm->mem.low_size, high = r->vm->mem.high_size;
	uint64_t above_16m = low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0;

	cmos_set16(r, 0x15, low < (640 << 10) ? low >> 10 : 640);
	cmos_set16(r, 0x17, low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0);
	cmos_set16(r, 0x30, low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0);
	cmos_set16(r, 0x34, above_16m);
	r->cmos[0x5b] = high >> 16;
	r->cmos[0x5c] = high >> 24;
	r->cmos[0x5d] = high >> 32;
	r->cmos[0x5f] = r->vm->cfg.cpus ? r->vm->cfg.cpus - 1 : 0;
}

static int rtc_init(struct vm *vm)
{
	struct rtc *r = calloc(1, sizeof(*r));
	struct timespec ts;
	uint64_t now;

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->vm = vm;
	timer_init(&r->update_timer, rtc_update_fire, r);
	timer_init(&r->periodic_timer, rtc_periodic_fire, r);
	r->cmos[REG_A] = 0x26; /* 32768 Hz time base, 1024 Hz periodic rate */
	r->cmos[REG_B] = REG_B_24H;
	r->cmos[REG_D] = REG_D_VRT;
	cmos_memory_sizes(r);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = clock_now_ns();
	r->base_sec = ts.tv_sec;
	r->base_ns = (int64_t)now - ts.tv_nsec;
	refresh_locked(r, now);
	update_timer_arm_locked(r, now);
	vm->devices[DEVICE_SLOT_RTC] = r;
	return bus_register(vm, BUS_PIO, RTC_BASE, 2, &rtc_ops, r, "rtc");
}

/* Runs after the clock thread has stopped. */
static void rtc_exit(struct vm *vm)
{
	struct rtc *r = vm->devices[DEVICE_SLOT_RTC];

	if (!r)
		return;
	timer_cancel(vm, &r->update_timer);
	timer_cancel(vm, &r->periodic_timer);
	pthread_mutex_destroy(&r->lock);
	free(r);
	vm->devices[DEVICE_SLOT_RTC] = NULL;
}

DEVICE_INIT("rtc", DEVICE_ORDER_PLATFORM, rtc_init, rtc_exit)
