/*
 * The ACPI fixed-feature hardware the FADT describes: the PM1a event block
 * (PM1_STS, PM1_EN), the PM1a control block (SCI_EN, SLP_TYP, SLP_EN), the
 * 32-bit PM timer, and the reset paths: the reset control register at 0xcf9
 * (the FADT's RESET_REG) and the keyboard controller's pulse of the reset
 * line (command 0xfe at port 0x64), which bootloaders still use.
 *
 * There is no SMI_CMD port: the machine starts in ACPI mode with SCI_EN set.
 * Sleep types other than S5 are not described by the DSDT and are ignored.
 */
#include <stdlib.h>

#include "vmm/internal.h"

#define PM_TIMER_HZ  3579545ull
#define PM_TIMER_MSB 31 /* TMR_STS follows bit 31 of the 32-bit timer (TMR_VAL_EXT) */
#define PM_REGS_LEN  12 /* 0x600-0x60b: event block, control block, a gap, timer */

#define PM1_STS_TMR	      0x0001
#define PM1_STS_PWRBTN	      0x0100
#define PM1_EN_TMR	      0x0001
#define PM1_EN_PWRBTN	      0x0100
#define PM1_EN_WRITABLE	      0x4721 /* TMR, GBL, PWRBTN, SLPBTN, RTC enables; PCIEXP_WAKE_DIS */
#define PM1_CNT_SCI_EN	      0x0001
#define PM1_CNT_STORED	      0x1c03 /* SCI_EN, BM_RLD, SLP_TYP: GBL_RLS and SLP_EN are write-only */
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_EN	      0x2000

#define RESET_CONTROL_STORED  0x0a /* SYS_RST, FULL_RST */
#define RESET_CONTROL_RST_CPU 0x04

#define KBC_COMMAND_PORT 0x64
#define KBC_PULSE_RESET	 0xfe

struct power {
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t sts, en, cnt;
	uint8_t reset_control;
	uint64_t start_ns;
	uint64_t tmr_period; /* timer value >> PM_TIMER_MSB when last looked at */
	bool warned_sleep;
	struct vm_timer tmr_timer; /* armed while TMR_EN is set, at the next MSB change */
};

static struct power *the_power(struct vm *vm)
{
	return vm->devices[DEVICE_SLOT_ACPI];
}

static uint32_t size_mask(unsigned size)
{
	return size >= 4 ? ~0u : (1u << (8 * size)) - 1;
}

/* Timer ticks since start-up, not wrapped. */
static uint64_t pm_ticks(struct power *p, uint64_t now_ns)
{
	return (unsigned __int128)(now_ns - p->start_ns) * PM_TIMER_HZ / 1000000000u;
}

/* Latches TMR_STS if the timer's MSB changed; called with the lock held. */
static void pm_timer_sync(struct power *p)
{
	uint64_t period = pm_ticks(p, clock_now_ns()) >> PM_TIMER_MSB;

	if (period != p->tmr_period) {
		p->tmr_period = period;
		p->sts |= PM1_STS_TMR;
	}
}

/* When the timer reaches ticks, in CLOCK_MONOTONIC nanoseconds. */
static uint64_t pm_ticks_time(struct power *p, uint64_t ticks)
{
	return p->start_ns + (uint64_t)(((unsigned __int128)ticks * 1000000000u + PM_TIMER_HZ - 1) / PM_TIMER_HZ);
}

static void pm_timer_arm(struct power *p)
{
	if (p->en & PM1_EN_TMR)
		timer_arm(p->vm, &p->tmr_timer, pm_ticks_time(p, (p->tmr_period + 1) << PM_TIMER_MSB));
	else
		timer_cancel(p->vm, &p->tmr_timer);
}

/* The SCI's level; the caller applies it after unlocking. */
static bool pm_sci_level(struct power *p)
{
	return (p->cnt & PM1_CNT_SCI_EN) && (p->sts & p->en & (PM1_EN_TMR | PM1_EN_PWRBTN));
}

static void pm_timer_fire(void *opaque)
{
	struct power *p = opaque;
	bool level;

	pthread_mutex_lock(&p->lock);
	pm_timer_sync(p);
	pm_timer_arm(p);
	level = pm_sci_level(p);
	pthread_mutex_unlock(&p->lock);
	irq_set_level(p->vm, ACPI_SCI_IRQ, level);
}

/* Accesses must stay inside one block: the event block's four bytes, the
 * control block's two or the timer's four. */
static bool pm_access_ok(uint64_t offset, unsigned size, uint64_t *block_offset)
{
	static const struct {
		uint64_t start, len;
	} blocks[] = {{0, 4}, {ACPI_PM1_CNT_PORT - ACPI_PM1_EVT_PORT, 2}, {ACPI_PM_TMR_PORT - ACPI_PM1_EVT_PORT, 4}};

	for (unsigned i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		if (offset >= blocks[i].start && offset - blocks[i].start + size <= blocks[i].len) {
			*block_offset = offset - blocks[i].start;
			return true;
		}
	}
	return false;
}

static uint64_t pm_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct power *p = opaque;
	uint64_t at, now = clock_now_ns();
	uint32_t v;
	(void)vcpu;

	if (!pm_access_ok(offset, size, &at))
		return size_mask(size);
	pthread_mutex_lock(&p->lock);
	pm_timer_sync(p);
	if (offset < ACPI_PM1_CNT_PORT - ACPI_PM1_EVT_PORT)
		v = p->sts | (uint32_t)p->en << 16;
	else if (offset < ACPI_PM_TMR_PORT - ACPI_PM1_EVT_PORT)
		v = p->cnt;
	else
		v = (uint32_t)pm_ticks(p, now);
	pthread_mutex_unlock(&p->lock);
	return (v >> (8 * at)) & size_mask(size);
}

static void pm_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct power *p = opaque;
	uint32_t bytes, v;
	uint64_t at;
	bool level, sleep = false;
	unsigned slp_typ = 0;
	(void)vcpu;

	if (!pm_access_ok(offset, size, &at) || offset >= ACPI_PM_TMR_PORT - ACPI_PM1_EVT_PORT)
		return;
	bytes = size_mask(size) << (8 * at);
	v = ((uint32_t)value << (8 * at)) & bytes;

	pthread_mutex_lock(&p->lock);
	pm_timer_sync(p);
	if (offset < ACPI_PM1_CNT_PORT - ACPI_PM1_EVT_PORT) {
		p->sts &= ~v; /* write 1 to clear */
		p->en = (p->en & ~(bytes >> 16)) | ((v >> 16) & PM1_EN_WRITABLE);
		pm_timer_arm(p);
	} else {
		uint16_t cnt = (p->cnt & ~bytes) | v;
		p->cnt = cnt & PM1_CNT_STORED;
		sleep = v & PM1_CNT_SLP_EN;
		slp_typ = (cnt >> PM1_CNT_SLP_TYP_SHIFT) & 7;
		if (sleep && slp_typ != ACPI_SLP_TYP_S5 && !p->warned_sleep) {
			p->warned_sleep = true;
			vmm_log("guest asked for sleep type %u, which this machine does not have", slp_typ);
		}
	}
	level = pm_sci_level(p);
	pthread_mutex_unlock(&p->lock);
	irq_set_level(p->vm, ACPI_SCI_IRQ, level);
	if (sleep && slp_typ == ACPI_SLP_TYP_S5)
		vm_request_exit(p->vm, VM_EXIT_POWEROFF, "guest powered off");
}

static const struct bus_ops pm_ops = {pm_read, pm_write};

uint8_t reset_control_read(struct vm *vm)
{
	struct power *p = the_power(vm);
	uint8_t v;

	if (!p)
		return 0xff;
	pthread_mutex_lock(&p->lock);
	v = p->reset_control;
	pthread_mutex_unlock(&p->lock);
	return v;
}

void reset_control_write(struct vm *vm, uint8_t value)
{
	struct power *p = the_power(vm);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->reset_control = value & RESET_CONTROL_STORED;
	pthread_mutex_unlock(&p->lock);
	if (value & RESET_CONTROL_RST_CPU)
		vm_request_reset(vm);
}

/* An 8042 with nothing behind it: the status port says both buffers are
 * empty, and only the reset pulse does anything. */
static uint64_t kbc_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)vcpu;
	(void)offset;
	(void)size;
	return 0;
}

static void kbc_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	(void)vcpu;
	(void)offset;
	(void)size;
	if ((uint8_t)value == KBC_PULSE_RESET)
		vm_request_reset(opaque);
}

static const struct bus_ops kbc_ops = {kbc_read, kbc_write};

static int power_init(struct vm *vm)
{
	struct power *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	pthread_mutex_init(&p->lock, NULL);
	p->cnt = PM1_CNT_SCI_EN;
	p->start_ns = clock_now_ns();
	timer_init(&p->tmr_timer, pm_timer_fire, p);
	vm->devices[DEVICE_SLOT_ACPI] = p;
	ret = bus_register(vm, BUS_PIO, ACPI_PM1_EVT_PORT, PM_REGS_LEN, &pm_ops, p, "acpi-pm");
	if (!ret)
		ret = bus_register(vm, BUS_PIO, KBC_COMMAND_PORT, 1, &kbc_ops, vm, "i8042-reset");
	return ret;
}

static void power_exit(struct vm *vm)
{
	struct power *p = the_power(vm);

	if (!p)
		return;
	timer_cancel(vm, &p->tmr_timer);
	pthread_mutex_destroy(&p->lock);
	free(p);
	vm->devices[DEVICE_SLOT_ACPI] = NULL;
}

DEVICE_INIT("acpi-power", DEVICE_ORDER_PLATFORM, power_init, power_exit)
