/*
 * The local APIC of each vCPU: xAPIC registers at 0xfee00000 (one MMIO
 * region for the VM, dispatched by the accessing vCPU) and x2APIC registers
 * as MSRs 0x800-0x8ff, plus IA32_APIC_BASE and IA32_TSC_DEADLINE.
 *
 * The timer counts a 1 GHz bus clock (QEMU's choice) through the divide
 * configuration register. TSC-deadline mode converts guest TSC ticks to
 * time at the host TSC's frequency, calibrated once: engines run the guest
 * TSC at the host's rate, from an offset of their own.
 *
 * Lock order: a LAPIC's lock is a leaf (only the clock lock is taken under
 * it): IPIs, IOAPIC EOI broadcasts and vcpu_wake run after it is dropped, so
 * no two LAPIC locks are ever held together.
 */
#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "vmm/internal.h"

#define LAPIC_MMIO_BASE 0xfee00000ull
#define LAPIC_MMIO_SIZE 0x1000

#define MSR_APIC_BASE	 0x1b
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_X2APIC_FIRST 0x800
#define MSR_X2APIC_LAST	 0x8ff
#define MSR_X2APIC_TPR	 0x808

#define APIC_BASE_BSP  (1ull << 8)
#define APIC_BASE_EXTD (1ull << 10)
#define APIC_BASE_EN   (1ull << 11)
#define APIC_BASE_ADDR 0x000ffffffffff000ull

/* Register numbers: the xAPIC offset divided by 16, or the MSR minus 0x800. */
enum {
	REG_ID = 0x02,
	REG_VERSION = 0x03,
	REG_TPR = 0x08,
	REG_APR = 0x09,
	REG_PPR = 0x0a,
	REG_EOI = 0x0b,
	REG_LDR = 0x0d,
	REG_DFR = 0x0e,
	REG_SVR = 0x0f,
	REG_ISR = 0x10, /* 8 registers each: ISR, TMR, IRR */
	REG_TMR = 0x18,
	REG_IRR = 0x20,
	REG_ESR = 0x28,
	REG_ICR = 0x30,
	REG_ICR2 = 0x31,
	REG_LVT = 0x32, /* timer, thermal, performance, LINT0, LINT1, error */
	REG_TIMER_INITIAL = 0x38,
	REG_TIMER_CURRENT = 0x39,
	REG_TIMER_DIVIDE = 0x3e,
	REG_SELF_IPI = 0x3f,
};

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_COUNT };

/* Version 0x14 with LVT entries 0-5, as QEMU's LAPIC reports. */
#define LAPIC_VERSION (0x14 | ((LVT_COUNT - 1) << 16))

#define SVR_ENABLE (1u << 8)
#define SVR_MASK   0x1ffu

#define LVT_MASKED	  (1u << 16)
#define LVT_LEVEL	  (1u << 15)
#define LVT_MODE(v)	  (((v) >> 8) & 7)
#define LVT_TIMER_MODE(v) (((v) >> 17) & 3)
/* Writable bits of each LVT entry: the vector and mask, the timer's mode,
 * the others' delivery mode, the LINTs' polarity and trigger mode. Delivery
 * status and remote IRR are read-only. */
static const uint32_t lvt_mask[LVT_COUNT] = {0x000700ff, 0x000107ff, 0x000107ff, 0x0001a7ff, 0x0001a7ff, 0x000100ff};

enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE };

/* Delivery modes of the ICR, LVTs, IOAPIC entries and MSIs. */
enum { DM_FIXED, DM_LOWEST, DM_SMI, DM_NMI = 4, DM_INIT, DM_SIPI, DM_EXTINT };

#define ICR_VECTOR(v)	 ((v)&0xff)
#define ICR_MODE(v)	 (((v) >> 8) & 7)
#define ICR_LOGICAL	 (1u << 11)
#define ICR_ASSERT	 (1u << 14)
#define ICR_LEVEL	 (1u << 15)
#define ICR_SHORTHAND(v) (((v) >> 18) & 3)
#define ICR_MASK	 0x000ccfffu /* vector, mode, dest mode, level, trigger, shorthand */
enum { DEST_FIELD, DEST_SELF, DEST_ALL, DEST_OTHERS };

#define ESR_SEND_ILLEGAL_VECTOR (1u << 5)
#define ESR_RECV_ILLEGAL_VECTOR (1u << 6)
#define ESR_ILLEGAL_REGISTER	(1u << 7)

/* A guest's periodic timer never fires more often than this: a divide-by-1
 * count of 1 would otherwise keep the clock thread busy. */
#define TIMER_MIN_PERIOD_NS 100000ull

/* An IPI waiting for the sender's lock to be dropped. */
struct ipi {
	bool pending;
	unsigned shorthand, mode;
	uint32_t dest;
	bool logical, level, x2apic;
	uint8_t vector;
};

struct lapic {
	pthread_mutex_t lock;
	struct vcpu *vcpu;
	struct vm *vm;

	uint64_t apic_base;
	uint32_t id; /* 8 bits in xAPIC mode, the x2APIC ID in x2APIC mode */
	uint8_t tpr;
	uint32_t ldr, dfr, svr;
	uint32_t isr[8], tmr[8], irr[8];
	/* Errors since the last ESR write, and those that write latched. Reads
	 * show both: the SDM's write-then-read sequence sees what it expects,
	 * and so does a guest that reads at once, as QEMU allows. */
	uint32_t esr, esr_latched;
	uint32_t icr_low, icr_high;
	uint32_t lvt[LVT_COUNT];

	uint32_t timer_initial, timer_divide;
	unsigned timer_shift;			/* the divider is 1 << timer_shift */
	uint64_t timer_start_ns;		/* when the count was (re)loaded */
	uint64_t timer_next_ns;			/* the expiry the clock thread will bring, 0 if none */
	uint64_t tsc_deadline, tsc_deadline_ns; /* in guest TSC, and when that is */
	struct vm_timer timer;

	bool nmi_pending;

	/* Work for lapic_unlock, gathered under the lock. */
	bool kick;
	int eoi_broadcast;
	struct ipi ipi;

	/* Owned by the vCPU thread: the answer of vcpu_pending_interrupt came
	 * from the 8259, so accepting it is an INTA cycle. */
	bool pending_from_pic;
};

/* ---- the host TSC ------------------------------------------------------- */

static uint64_t tsc_hz;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

/* What RDTSC on this vCPU reads now. Engines run the guest TSC at the
 * host's rate from an offset of their own; called on the vCPU's thread. */
static uint64_t guest_tsc(struct vcpu *vcpu)
{
	struct x86_state s;

	if (vcpu->vm->engine->get_state(vcpu, &s) < 0)
		return __rdtsc();
	return s.tsc;
}

static void tsc_calibrate(void)
{
	unsigned eax, ebx, ecx, edx;
	struct timespec pause = {0, 20000000};

	/* CPUID 0x15: TSC = crystal * EBX / EAX, when the crystal is named. */
	if (__get_cpuid_max(0, NULL) >= 0x15) {
		__cpuid_count(0x15, 0, eax, ebx, ecx, edx);
		if (eax && ebx && ecx) {
			tsc_hz = (uint64_t)ecx * ebx / eax;
			return;
		}
	}
	uint64_t t0 = clock_now_ns(), c0 = __rdtsc();
	nanosleep(&pause, NULL);
	uint64_t c1 = __rdtsc(), t1 = clock_now_ns();
	tsc_hz = t1 > t0 ? (uint64_t)((unsigned __int128)(c1 - c0) * 1000000000u / (t1 - t0)) : 0;
	if (!tsc_hz)
		tsc_hz = 1000000000;
}

/* Nanoseconds from now until the guest TSC reaches deadline. */
static uint64_t tsc_delay_ns(uint64_t deadline, uint64_t now)
{
	if (deadline <= now)
		return 0;
	unsigned __int128 ns = (unsigned __int128)(deadline - now) * 1000000000u / tsc_hz;
	return ns > (1ull << 62) ? 1ull << 62 : (uint64_t)ns;
}

/* ---- 256-bit registers -------------------------------------------------- */

static bool bit_test(const uint32_t *v, unsigned n)
{
	return v[n / 32] & (1u << (n % 32));
}

static void bit_set(uint32_t *v, unsigned n)
{
	v[n / 32] |= 1u << (n % 32);
}

static void bit_clear(uint32_t *v, unsigned n)
{
	v[n / 32] &= ~(1u << (n % 32));
}

static int bit_highest(const uint32_t *v)
{
	for (int i = 7; i >= 0; i--)
		if (v[i])
			return i * 32 + 31 - __builtin_clz(v[i]);
	return -1;
}

/* ---- state -------------------------------------------------------------- */

static bool hw_enabled(const struct lapic *l)
{
	return l->apic_base & APIC_BASE_EN;
}

static bool x2apic_mode(const struct lapic *l)
{
	return l->apic_base & APIC_BASE_EXTD;
}

static bool sw_enabled(const struct lapic *l)
{
	return l->svr & SVR_ENABLE;
}

static uint32_t x2apic_ldr(uint32_t id)
{
	return ((id >> 4) << 16) | (1u << (id & 0xf));
}

static uint8_t ppr(const struct lapic *l)
{
	int isrv = bit_highest(l->isr);
	uint8_t isr_class = isrv < 0 ? 0 : isrv & 0xf0;
	return (l->tpr & 0xf0) >= isr_class ? l->tpr : isr_class;
}

static int pending_locked(const struct lapic *l)
{
	if (!hw_enabled(l) || !sw_enabled(l))
		return -1;
	int v = bit_highest(l->irr);
	if (v < 0 || (v & 0xf0) <= (ppr(l) & 0xf0))
		return -1;
	return v;
}

/* The 8259 reaches the BSP through LINT0 in ExtINT mode, or directly when
 * the LAPIC is globally disabled. */
static bool accepts_pic_locked(const struct lapic *l)
{
	uint32_t lint0 = l->lvt[LVT_LINT0];
	if (l->vcpu->index != 0)
		return false;
	return !hw_enabled(l) || (!(lint0 & LVT_MASKED) && LVT_MODE(lint0) == DM_EXTINT);
}

static uint8_t timer_mode(const struct lapic *l)
{
	uint8_t mode = LVT_TIMER_MODE(l->lvt[LVT_TIMER]);
	return mode == TIMER_PERIODIC || mode == TIMER_TSC_DEADLINE ? mode : TIMER_ONESHOT;
}

static void error_locked(struct lapic *l, uint32_t error);

/* Latches a fixed interrupt in IRR; level says how TMR records it. */
static void accept_irq_locked(struct lapic *l, uint8_t vector, bool level)
{
	if (vector < 16) {
		error_locked(l, ESR_RECV_ILLEGAL_VECTOR);
		return;
	}
	bit_set(l->irr, vector);
	if (level)
		bit_set(l->tmr, vector);
	else
		bit_clear(l->tmr, vector);
	if (pending_locked(l) >= 0)
		l->kick = true;
}

static void error_locked(struct lapic *l, uint32_t error)
{
	uint32_t lvt = l->lvt[LVT_ERROR];

	l->esr |= error;
	/* An error whose own vector is illegal must not recurse. */
	if (!(lvt & LVT_MASKED) && ICR_VECTOR(lvt) >= 16)
		accept_irq_locked(l, ICR_VECTOR(lvt), false);
}

static void lapic_unlock(struct lapic *l);

static void lapic_notify(struct lapic *l)
{
	atomic_store(&l->vcpu->interrupt_hint, true);
	vcpu_wake(l->vcpu);
}

/* ---- timer -------------------------------------------------------------- */

static uint32_t timer_current(const struct lapic *l, uint64_t now)
{
	if (timer_mode(l) == TIMER_TSC_DEADLINE || !l->timer_initial)
		return 0;
	uint64_t ticks = (now - l->timer_start_ns) >> l->timer_shift;
	if (timer_mode(l) == TIMER_PERIODIC)
		return l->timer_initial - ticks % l->timer_initial;
	return ticks >= l->timer_initial ? 0 : l->timer_initial - (uint32_t)ticks;
}

static uint64_t timer_period_ns(const struct lapic *l)
{
	return (uint64_t)l->timer_initial << l->timer_shift;
}

/* The next expiry after now of a periodic count. */
static uint64_t timer_next_period(const struct lapic *l, uint64_t now)
{
	uint64_t period = timer_period_ns(l);
	uint64_t next = l->timer_start_ns + ((now - l->timer_start_ns) / period + 1) * period;
	return next < now + TIMER_MIN_PERIOD_NS && period < TIMER_MIN_PERIOD_NS ? now + TIMER_MIN_PERIOD_NS : next;
}

/* Arms the clock for the count as it stands. The count runs whether the
 * LVT entry is masked or not; a masked expiry just sends nothing. */
static void timer_update_locked(struct lapic *l, uint64_t now)
{
	uint64_t next = 0;

	switch (timer_mode(l)) {
	case TIMER_TSC_DEADLINE:
		if (l->tsc_deadline)
			next = l->tsc_deadline_ns;
		break;
	case TIMER_PERIODIC:
		if (l->timer_initial)
			next = timer_next_period(l, now);
		break;
	default:
		if (l->timer_initial && l->timer_next_ns)
			next = l->timer_start_ns + timer_period_ns(l);
		break;
	}
	l->timer_next_ns = next;
	if (next)
		timer_arm(l->vm, &l->timer, next);
	else
		timer_cancel(l->vm, &l->timer);
}

static void timer_start_locked(struct lapic *l, uint32_t initial, uint64_t now)
{
	l->timer_initial = initial;
	l->timer_start_ns = now;
	l->timer_next_ns = initial ? now + timer_period_ns(l) : 0; /* marks a one-shot as armed */
	timer_update_locked(l, now);
}

static void lapic_timer_fire(void *opaque)
{
	struct lapic *l = opaque;
	uint32_t lvt;

	pthread_mutex_lock(&l->lock);
	uint64_t now = clock_now_ns();
	/* A re-armed or stopped count makes this call stale. */
	if (!l->timer_next_ns || now < l->timer_next_ns) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	lvt = l->lvt[LVT_TIMER];
	if (!(lvt & LVT_MASKED))
		accept_irq_locked(l, ICR_VECTOR(lvt), false);
	switch (timer_mode(l)) {
	case TIMER_PERIODIC: timer_update_locked(l, now); break;
	case TIMER_TSC_DEADLINE:
		l->tsc_deadline = 0;
		l->timer_next_ns = 0;
		break;
	default: l->timer_next_ns = 0; break;
	}
	lapic_unlock(l);
}

static void timer_set_divide_locked(struct lapic *l, uint32_t value, uint64_t now)
{
	uint32_t current = timer_current(l, now);
	unsigned v = (value & 3) | ((value >> 1) & 4);

	l->timer_divide = value & 0xb;
	l->timer_shift = (v + 1) & 7;
	/* Keep the current count: only its pace changes. */
	if (l->timer_initial && timer_mode(l) != TIMER_TSC_DEADLINE && (current || timer_mode(l) == TIMER_PERIODIC)) {
		l->timer_start_ns = now - ((uint64_t)(l->timer_initial - current) << l->timer_shift);
		timer_update_locked(l, now);
	}
}

static void lvt_timer_write_locked(struct lapic *l, uint32_t value, uint64_t now)
{
	uint8_t old_mode = timer_mode(l), mode;

	l->lvt[LVT_TIMER] = value;
	mode = timer_mode(l);
	if (mode == old_mode)
		return;
	if (old_mode == TIMER_TSC_DEADLINE || mode == TIMER_TSC_DEADLINE) {
		/* Entering or leaving TSC-deadline mode disarms the timer. */
		l->timer_initial = 0;
		l->tsc_deadline = 0;
		l->timer_next_ns = 0;
		timer_cancel(l->vm, &l->timer);
		return;
	}
	/* One-shot and periodic share the count, which goes on in the new mode. */
	uint64_t end = l->timer_start_ns + timer_period_ns(l);
	l->timer_next_ns = l->timer_initial && end > now ? end : 0;
	timer_update_locked(l, now);
}

/* ---- reset -------------------------------------------------------------- */

/* Power-up and INIT state; ID and IA32_APIC_BASE survive an INIT. */
static void reset_locked(struct lapic *l)
{
	l->tpr = 0;
	l->ldr = 0;
	l->dfr = 0xffffffff;
	l->svr = 0xff;
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	memset(l->irr, 0, sizeof(l->irr));
	l->esr = l->esr_latched = 0;
	l->icr_low = l->icr_high = 0;
	for (int i = 0; i < LVT_COUNT; i++)
		l->lvt[i] = LVT_MASKED;
	l->timer_initial = 0;
	l->timer_divide = 0;
	l->timer_shift = 1;
	l->tsc_deadline = 0;
	l->timer_next_ns = 0;
	timer_cancel(l->vm, &l->timer);
	l->nmi_pending = false;
}

static void sw_disable_locked(struct lapic *l)
{
	for (int i = 0; i < LVT_COUNT; i++)
		l->lvt[i] |= LVT_MASKED;
}

/* ---- registers ---------------------------------------------------------- */

/* Reads register reg; false if it does not exist in this mode (x2APIC: #GP). */
static bool reg_read_locked(struct lapic *l, unsigned reg, uint64_t *value)
{
	bool x2 = x2apic_mode(l);

	switch (reg) {
	case REG_ID: *value = x2 ? l->id : l->id << 24; return true;
	case REG_VERSION: *value = LAPIC_VERSION; return true;
	case REG_TPR: *value = l->tpr; return true;
	case REG_APR: *value = 0; return !x2;
	case REG_PPR: *value = ppr(l); return true;
	case REG_EOI: *value = 0; return !x2;
	case REG_LDR: *value = x2 ? x2apic_ldr(l->id) : l->ldr; return true;
	case REG_DFR: *value = l->dfr | 0x0fffffff; return !x2;
	case REG_SVR: *value = l->svr; return true;
	case REG_ISR ... REG_ISR + 7: *value = l->isr[reg - REG_ISR]; return true;
	case REG_TMR ... REG_TMR + 7: *value = l->tmr[reg - REG_TMR]; return true;
	case REG_IRR ... REG_IRR + 7: *value = l->irr[reg - REG_IRR]; return true;
	case REG_ESR: *value = l->esr_latched | l->esr; return true;
	case REG_ICR: *value = x2 ? (uint64_t)l->icr_high << 32 | l->icr_low : l->icr_low; return true;
	case REG_ICR2: *value = l->icr_high & 0xff000000; return !x2;
	case REG_LVT ... REG_LVT + LVT_COUNT - 1: *value = l->lvt[reg - REG_LVT]; return true;
	case REG_TIMER_INITIAL: *value = l->timer_initial; return true;
	case REG_TIMER_CURRENT: *value = timer_current(l, clock_now_ns()); return true;
	case REG_TIMER_DIVIDE: *value = l->timer_divide; return true;
	default: *value = 0; return false;
	}
}

static void send_ipi_locked(struct lapic *l)
{
	uint32_t icr = l->icr_low;
	unsigned mode = ICR_MODE(icr);

	if ((mode == DM_FIXED || mode == DM_LOWEST) && ICR_VECTOR(icr) < 16) {
		error_locked(l, ESR_SEND_ILLEGAL_VECTOR);
		return;
	}
	/* INIT level de-assert only resynchronises arbitration IDs. */
	if (mode == DM_INIT && !(icr & ICR_ASSERT) && (icr & ICR_LEVEL))
		return;
	l->ipi = (struct ipi){
	    .pending = true,
	    .shorthand = ICR_SHORTHAND(icr),
	    .mode = mode,
	    .dest = x2apic_mode(l) ? l->icr_high : l->icr_high >> 24,
	    .logical = icr & ICR_LOGICAL,
	    .level = icr & ICR_LEVEL,
	    .x2apic = x2apic_mode(l),
	    .vector = ICR_VECTOR(icr),
	};
}

static void eoi_locked(struct lapic *l)
{
	int v = bit_highest(l->isr);
	if (v < 0)
		return;
	bit_clear(l->isr, v);
	if (bit_test(l->tmr, v))
		l->eoi_broadcast = v;
	if (pending_locked(l) >= 0)
		l->kick = true;
}

/* Writes register reg; false if the write is refused (x2APIC: #GP). The
 * xAPIC interface ignores writes to read-only registers. */
static bool reg_write_locked(struct lapic *l, unsigned reg, uint64_t value)
{
	bool x2 = x2apic_mode(l);
	uint64_t now;

	if (x2 && reg != REG_ICR && value >> 32)
		return false;
	switch (reg) {
	case REG_ID:
		if (x2)
			return false;
		l->id = (value >> 24) & 0xff;
		return true;
	case REG_TPR:
		l->tpr = value & 0xff;
		if (pending_locked(l) >= 0)
			l->kick = true;
		return true;
	case REG_EOI:
		if (x2 && value)
			return false;
		eoi_locked(l);
		return true;
	case REG_LDR:
		if (x2)
			return false;
		l->ldr = value & 0xff000000;
		return true;
	case REG_DFR:
		if (x2)
			return false;
		l->dfr = (value & 0xf0000000) | 0x0fffffff;
		return true;
	case REG_SVR:
		l->svr = value & SVR_MASK;
		if (!sw_enabled(l))
			sw_disable_locked(l);
		else if (pending_locked(l) >= 0)
			l->kick = true;
		return true;
	case REG_ESR:
		if (x2 && value)
			return false;
		l->esr_latched = l->esr;
		l->esr = 0;
		return true;
	case REG_ICR:
		l->icr_low = value & ICR_MASK;
		if (x2)
			l->icr_high = value >> 32;
		send_ipi_locked(l);
		return true;
	case REG_ICR2:
		if (x2)
			return false;
		l->icr_high = value & 0xff000000;
		return true;
	case REG_LVT ... REG_LVT + LVT_COUNT - 1: {
		unsigned n = reg - REG_LVT;
		uint32_t v = value & lvt_mask[n];
		if (!sw_enabled(l))
			v |= LVT_MASKED;
		if (n == LVT_TIMER)
			lvt_timer_write_locked(l, v, clock_now_ns());
		else
			l->lvt[n] = v;
		if (n == LVT_LINT0 && accepts_pic_locked(l))
			l->kick = true; /* the 8259 may have been waiting */
		return true;
	}
	case REG_TIMER_INITIAL:
		if (timer_mode(l) != TIMER_TSC_DEADLINE)
			timer_start_locked(l, value, clock_now_ns());
		return true;
	case REG_TIMER_DIVIDE:
		now = clock_now_ns();
		timer_set_divide_locked(l, value, now);
		return true;
	case REG_SELF_IPI:
		if (!x2)
			return false;
		accept_irq_locked(l, value & 0xff, false);
		return true;
	case REG_VERSION:
	case REG_APR:
	case REG_PPR:
	case REG_ISR ... REG_IRR + 7:
	case REG_TIMER_CURRENT: return !x2;
	default: return false;
	}
}

/* ---- interrupt messages ------------------------------------------------- */

/* Does this LAPIC answer to dest? x2_format: a 32-bit destination from an
 * x2APIC ICR; otherwise the 8-bit field of an xAPIC ICR, IOAPIC or MSI. */
static bool match_dest_locked(const struct lapic *l, uint32_t dest, bool logical, bool x2_format)
{
	uint32_t broadcast = x2_format ? 0xffffffff : 0xff;

	if (!hw_enabled(l))
		return false;
	if (dest == broadcast)
		return true;
	if (x2apic_mode(l)) {
		if (!logical)
			return dest == l->id;
		uint32_t ldr = x2apic_ldr(l->id);
		return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffff);
	}
	if (dest > 0xff)
		return false;
	if (!logical)
		return dest == (l->id & 0xff);
	uint8_t ldr = l->ldr >> 24;
	if ((l->dfr >> 28) == 0xf)
		return dest & ldr;				 /* flat */
	return (dest >> 4) == (ldr >> 4u) && (dest & ldr & 0xf); /* cluster */
}

static uint64_t dest_cpus(struct vm *vm, const struct lapic *self, unsigned shorthand, uint32_t dest, bool logical,
			  bool x2_format)
{
	uint64_t mask = 0;

	for (unsigned i = 0; i < vm->ncpus && i < MAX_CPUS; i++) {
		struct lapic *l = vm->cpus[i] ? vm->cpus[i]->lapic : NULL;
		bool hit;

		if (!l)
			continue;
		switch (shorthand) {
		case DEST_SELF: hit = l == self; break;
		case DEST_ALL: hit = true; break;
		case DEST_OTHERS: hit = l != self; break;
		default:
			pthread_mutex_lock(&l->lock);
			hit = match_dest_locked(l, dest, logical, x2_format);
			pthread_mutex_unlock(&l->lock);
			break;
		}
		if (hit)
			mask |= 1ull << i;
	}
	return mask;
}

/* Hands a message to each vCPU in mask. Called with no LAPIC lock held. */
static void deliver_to(struct vm *vm, uint64_t mask, unsigned mode, uint8_t vector, bool level)
{
	if (mode == DM_LOWEST)
		mask &= -mask; /* the lowest-numbered vCPU wins the arbitration */
	for (unsigned i = 0; mask; i++, mask >>= 1) {
		if (!(mask & 1))
			continue;
		struct vcpu *vcpu = vm->cpus[i];
		struct lapic *l = vcpu->lapic;

		switch (mode) {
		case DM_FIXED:
		case DM_LOWEST:
		case DM_EXTINT: /* the IOAPIC already fetched the vector from the 8259 */
			pthread_mutex_lock(&l->lock);
			accept_irq_locked(l, vector, level);
			lapic_unlock(l);
			break;
		case DM_NMI:
			pthread_mutex_lock(&l->lock);
			l->nmi_pending = true;
			l->kick = true;
			lapic_unlock(l);
			break;
		case DM_INIT:
			pthread_mutex_lock(&vcpu->lock);
			vcpu->init_pending = true;
			vcpu->sipi_vector = -1; /* INIT cancels a start-up not yet taken */
			pthread_mutex_unlock(&vcpu->lock);
			vcpu_wake(vcpu);
			break;
		case DM_SIPI:
			pthread_mutex_lock(&vcpu->lock);
			vcpu->sipi_vector = vector;
			pthread_mutex_unlock(&vcpu->lock);
			vcpu_wake(vcpu);
			break;
		default: /* SMI and the reserved modes */ break;
		}
	}
}

void lapic_deliver(struct vm *vm, uint32_t dest, bool logical, unsigned mode, uint8_t vector, bool level)
{
	/* Start-up IPIs exist only as ICR writes. */
	if (mode == DM_SIPI)
		return;
	deliver_to(vm, dest_cpus(vm, NULL, DEST_FIELD, dest, logical, false), mode, vector, level);
}

/* Drops the lock, then does what must not run under it: broadcast an EOI
 * to the IOAPIC, send an IPI, wake the vCPU. */
static void lapic_unlock(struct lapic *l)
{
	bool kick = l->kick;
	int eoi = l->eoi_broadcast;
	struct ipi ipi = l->ipi;

	l->kick = false;
	l->eoi_broadcast = -1;
	l->ipi.pending = false;
	pthread_mutex_unlock(&l->lock);

	if (eoi >= 0)
		ioapic_eoi(l->vm, eoi);
	if (ipi.pending)
		deliver_to(l->vm, dest_cpus(l->vm, l, ipi.shorthand, ipi.dest, ipi.logical, ipi.x2apic), ipi.mode,
			   ipi.vector, ipi.level);
	if (kick)
		lapic_notify(l);
}

/* ---- the vCPU side ------------------------------------------------------ */

int lapic_pending_vector(struct lapic *lapic)
{
	pthread_mutex_lock(&lapic->lock);
	int v = pending_locked(lapic);
	pthread_mutex_unlock(&lapic->lock);
	return v;
}

void lapic_accept_vector(struct lapic *lapic, int vector)
{
	if (vector < 0 || vector > 255)
		return;
	pthread_mutex_lock(&lapic->lock);
	if (bit_test(lapic->irr, vector)) {
		bit_clear(lapic->irr, vector);
		bit_set(lapic->isr, vector);
	}
	pthread_mutex_unlock(&lapic->lock);
}

/* ExtINT ignores priorities, so the 8259 goes first (as in QEMU). */
int vcpu_pending_interrupt(struct vcpu *vcpu)
{
	struct lapic *l = vcpu->lapic;
	bool pic;
	int v;

	pthread_mutex_lock(&l->lock);
	pic = accepts_pic_locked(l);
	v = pending_locked(l);
	pthread_mutex_unlock(&l->lock);
	l->pending_from_pic = false;
	if (pic) {
		int pv = pic_pending_vector(vcpu->vm);
		if (pv >= 0) {
			l->pending_from_pic = true;
			return pv;
		}
	}
	return v;
}

void vcpu_accept_interrupt(struct vcpu *vcpu, int vector)
{
	struct lapic *l = vcpu->lapic;

	if (l->pending_from_pic) {
		l->pending_from_pic = false;
		pic_acknowledge(vcpu->vm);
	} else {
		lapic_accept_vector(l, vector);
	}
	/* Another source may still be waiting: let the engine ask again. */
	if (vcpu_pending_interrupt(vcpu) >= 0)
		atomic_store(&vcpu->interrupt_hint, true);
	l->pending_from_pic = false;
}

atomic_bool *vcpu_interrupt_hint(struct vcpu *vcpu)
{
	return &vcpu->interrupt_hint;
}

bool vcpu_take_nmi(struct vcpu *vcpu)
{
	struct lapic *l = vcpu->lapic;

	pthread_mutex_lock(&l->lock);
	bool nmi = l->nmi_pending;
	l->nmi_pending = false;
	pthread_mutex_unlock(&l->lock);
	return nmi;
}

/* The vCPU loop owns wait_for_sipi: it parks the vCPU on an INIT and starts
 * it on a SIPI that finds it parked; other SIPIs are dropped there. */
bool vcpu_take_init_sipi(struct vcpu *vcpu, bool *init, int *sipi_vector)
{
	pthread_mutex_lock(&vcpu->lock);
	*init = vcpu->init_pending;
	*sipi_vector = vcpu->sipi_vector;
	vcpu->init_pending = false;
	vcpu->sipi_vector = -1;
	pthread_mutex_unlock(&vcpu->lock);
	if (*init && vcpu->lapic) {
		pthread_mutex_lock(&vcpu->lapic->lock);
		reset_locked(vcpu->lapic);
		pthread_mutex_unlock(&vcpu->lapic->lock);
	}
	return *init || *sipi_vector >= 0;
}

/* ---- MSRs --------------------------------------------------------------- */

/* The x2APIC registers exist in x2APIC mode. The TPR is also there in xAPIC
 * mode: the dbt engine reaches it that way for MOV to and from CR8. */
static bool x2apic_msr_ok(const struct lapic *l, uint32_t index)
{
	if (index < MSR_X2APIC_FIRST || index > MSR_X2APIC_LAST)
		return false;
	return x2apic_mode(l) || (index == MSR_X2APIC_TPR && hw_enabled(l));
}

/* IA32_APIC_BASE: the SDM's legal transitions only; the rest raise #GP. */
static bool apic_base_write_locked(struct lapic *l, uint64_t value)
{
	uint64_t old = l->apic_base;
	bool en = value & APIC_BASE_EN, x2 = value & APIC_BASE_EXTD;
	bool old_en = old & APIC_BASE_EN, old_x2 = old & APIC_BASE_EXTD;

	if (value & ~(APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_EN | APIC_BASE_ADDR))
		return false;
	if ((x2 && !en) || (old_x2 && en && !x2) || (!old_en && x2))
		return false;
	/* The region stays at 0xfee00000 whatever base the guest names. */
	l->apic_base = (value & ~APIC_BASE_BSP) | (old & APIC_BASE_BSP);
	if (old_en && !en) {
		reset_locked(l);
		l->id = l->vcpu->index;
	}
	if (!old_x2 && x2)
		l->id = l->vcpu->index;
	if (en != old_en)
		l->kick = true; /* the 8259 reaches the vCPU differently now */
	return true;
}

uint64_t lapic_msr_read(struct vcpu *vcpu, uint32_t index, bool *fault)
{
	struct lapic *l = vcpu->lapic;
	uint64_t value = 0;

	if (!l) {
		*fault = true;
		return 0;
	}
	pthread_mutex_lock(&l->lock);
	if (index == MSR_APIC_BASE)
		value = l->apic_base;
	else if (index == MSR_TSC_DEADLINE)
		value = timer_mode(l) == TIMER_TSC_DEADLINE ? l->tsc_deadline : 0;
	else if (x2apic_msr_ok(l, index))
		*fault = !reg_read_locked(l, index - MSR_X2APIC_FIRST, &value);
	else
		*fault = true;
	pthread_mutex_unlock(&l->lock);
	return *fault ? 0 : value;
}

void lapic_msr_write(struct vcpu *vcpu, uint32_t index, uint64_t value, bool *fault)
{
	struct lapic *l = vcpu->lapic;
	uint64_t deadline_ns = 0;

	if (!l) {
		*fault = true;
		return;
	}
	if (index == MSR_TSC_DEADLINE && value)
		deadline_ns = clock_now_ns() + tsc_delay_ns(value, guest_tsc(vcpu));
	pthread_mutex_lock(&l->lock);
	if (index == MSR_APIC_BASE) {
		*fault = !apic_base_write_locked(l, value);
	} else if (index == MSR_TSC_DEADLINE) {
		if (timer_mode(l) == TIMER_TSC_DEADLINE) {
			l->tsc_deadline = value;
			l->tsc_deadline_ns = deadline_ns;
			timer_update_locked(l, clock_now_ns());
		}
	} else if (x2apic_msr_ok(l, index)) {
		*fault = !reg_write_locked(l, index - MSR_X2APIC_FIRST, value);
	} else {
		*fault = true;
	}
	lapic_unlock(l);
}

/* ---- xAPIC MMIO --------------------------------------------------------- */

/* Registers are 32 bits wide at 16-byte aligned offsets; other accesses,
 * and any access while the LAPIC is disabled or in x2APIC mode, read as 0
 * and do nothing. Unknown registers also latch an error, as hardware does. */
static uint64_t lapic_mmio_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct lapic *l = vcpu ? vcpu->lapic : NULL;
	uint64_t value = 0;
	(void)opaque;

	if (!l || size != 4 || (offset & 0xf))
		return 0;
	pthread_mutex_lock(&l->lock);
	if (hw_enabled(l) && !x2apic_mode(l) && !reg_read_locked(l, offset >> 4, &value))
		error_locked(l, ESR_ILLEGAL_REGISTER);
	lapic_unlock(l);
	return value;
}

static void lapic_mmio_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct lapic *l = vcpu ? vcpu->lapic : NULL;
	(void)opaque;

	if (!l || size != 4 || (offset & 0xf))
		return;
	pthread_mutex_lock(&l->lock);
	if (hw_enabled(l) && !x2apic_mode(l) && !reg_write_locked(l, offset >> 4, value & 0xffffffff))
		error_locked(l, ESR_ILLEGAL_REGISTER);
	lapic_unlock(l);
}

static const struct bus_ops lapic_mmio_ops = {lapic_mmio_read, lapic_mmio_write};

static int lapic_mmio_init(struct vm *vm)
{
	return bus_register(vm, BUS_MMIO, LAPIC_MMIO_BASE, LAPIC_MMIO_SIZE, &lapic_mmio_ops, vm, "lapic");
}

/* ---- life cycle --------------------------------------------------------- */

int lapic_create(struct vcpu *vcpu)
{
	struct lapic *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_once(&tsc_once, tsc_calibrate);
	pthread_mutex_init(&l->lock, NULL);
	l->vcpu = vcpu;
	l->vm = vcpu->vm;
	l->eoi_broadcast = -1;
	timer_init(&l->timer, lapic_timer_fire, l);
	l->apic_base = LAPIC_MMIO_BASE | APIC_BASE_EN | (vcpu->index == 0 ? APIC_BASE_BSP : 0);
	l->id = vcpu->index;
	reset_locked(l);
	if (vcpu->index == 0) {
		/* What SeaBIOS leaves for a kernel QEMU boots: software-enabled,
		 * the 8259 in virtual-wire mode on LINT0, NMIs on LINT1. */
		l->svr = 0x1ff;
		l->lvt[LVT_LINT0] = LVT_LEVEL | DM_EXTINT << 8;
		l->lvt[LVT_LINT1] = LVT_LEVEL | DM_NMI << 8;
	}
	vcpu->lapic = l;
	return 0;
}

/* Runs after the clock thread has stopped. */
void lapic_destroy(struct vcpu *vcpu)
{
	struct lapic *l = vcpu->lapic;

	if (!l)
		return;
	timer_cancel(l->vm, &l->timer);
	pthread_mutex_destroy(&l->lock);
	free(l);
	vcpu->lapic = NULL;
}

DEVICE_INIT_IRQCHIP("lapic", DEVICE_ORDER_IRQCHIP, lapic_mmio_init, NULL)
