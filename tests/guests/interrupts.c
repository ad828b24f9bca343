/*
 * The local APIC, the I/O APIC and the interrupts they deliver: LAPIC
 * registers, the LAPIC timer in one-shot, periodic and TSC-deadline modes,
 * self-IPIs with their ISR/IRR/PPR state, task priority, RFLAGS.IF, and the
 * PIT and RTC routed through the I/O APIC. Every wait is bounded in PIT time,
 * so an interrupt that never comes is a FAIL line, not a hang.
 */
#include "guest.h"

#define LAPIC_PPR      0xa0
#define ICR_ASSERT     BIT(14)
#define ICR_SELF       BIT(18) /* destination shorthand 01: self */
#define ICR_PENDING    BIT(12)
#define DIVIDE_BY_1    0xb
#define DIVIDE_BY_16   0x3
#define MS_TICKS       1193 /* PIT ticks in a millisecond */
#define PIT_100HZ      11932
#define PIT_PIN	       2 /* ISA IRQ0, moved by the PC's MADT interrupt source override */
#define RTC_PIN	       8 /* ISA IRQ8 */
#define RTC_REG_A      0x0a
#define RTC_REG_B      0x0b
#define RTC_REG_C      0x0c
#define RTC_B_PIE      BIT(6)
#define RTC_C_IRQF_PF  (BIT(7) | BIT(6))
#define RTC_RATE_128HZ 0x9 /* 32768 >> (rate - 1) */

enum {
	V_TIMER = 0x40,
	V_TSC_DEADLINE = 0x48,
	V_IPI = 0x50,
	V_TPR = 0x65,
	V_CLI = 0x70,
	V_PIT = 0x80,
	V_RTC = 0x90,
	V_SPURIOUS = 0xff,
};

static volatile uint64_t irq_count[256];
static volatile uint32_t isr_in_handler, irr_in_handler, ppr_in_handler;
static volatile uint8_t rtc_reg_c;

static void count_irq(struct trap_frame *f)
{
	irq_count[f->vector]++;
	lapic_eoi();
}

/* SDM: a spurious interrupt can follow a TPR raise; it takes no EOI. */
static void spurious_irq(struct trap_frame *f)
{
	irq_count[f->vector]++;
}

static bool vector_bit(uint32_t reg, unsigned vector)
{
	return lapic_read(reg + 0x10 * (vector / 32)) & BIT(vector % 32);
}

static void ipi_irq(struct trap_frame *f)
{
	isr_in_handler = vector_bit(LAPIC_ISR, f->vector);
	irr_in_handler = vector_bit(LAPIC_IRR, f->vector);
	ppr_in_handler = lapic_read(LAPIC_PPR);
	irq_count[f->vector]++;
	lapic_eoi();
}

static void rtc_irq(struct trap_frame *f)
{
	/* Reading C acknowledges the RTC; without it no further interrupt comes. */
	rtc_reg_c = cmos_read(RTC_REG_C);
	irq_count[f->vector]++;
	lapic_eoi();
}

static void wait_ms(unsigned ms)
{
	while (ms--)
		pit_wait_ticks(MS_TICKS);
}

/* Waits up to ms milliseconds of PIT time for *count to reach target. */
static bool wait_irqs(volatile uint64_t *count, uint64_t target, unsigned ms)
{
	for (unsigned i = 0; i < ms && *count < target; i++)
		pit_wait_ticks(MS_TICKS);
	return *count >= target;
}

static void self_ipi(uint8_t vector)
{
	lapic_write(LAPIC_ICR_HI, 0);
	lapic_write(LAPIC_ICR_LO, ICR_SELF | ICR_ASSERT | vector); /* fixed, edge */
}

static void test_lapic_registers(void)
{
	uint64_t base = rdmsr(MSR_APIC_BASE);
	uint32_t version = lapic_read(LAPIC_VERSION);

	check_eq("apic base msr address", LAPIC_BASE, base & PTE_ADDR_MASK);
	check(base & BIT(11), "apic base msr enabled", "MSR_APIC_BASE 0x%lx", base);
	check(base & BIT(8), "apic base msr bsp", "MSR_APIC_BASE 0x%lx", base);
	check_eq("lapic svr enabled with spurious vector", BIT(8) | V_SPURIOUS, lapic_read(LAPIC_SVR) & 0x1ff);
	check_eq("lapic id matches cpuid 1 ebx[31:24]", cpuid(1, 0).ebx >> 24, lapic_id());
	/* SDM: 1XH is an integrated local APIC. */
	check((version & 0xf0) == 0x10, "lapic version integrated", "version register 0x%x", version);
	check(((version >> 16) & 0xff) >= 3, "lapic max lvt entry", "version register 0x%x", version);
	lapic_write(LAPIC_TPR, 0x35);
	check_eq("lapic tpr readback", 0x35, lapic_read(LAPIC_TPR) & 0xff);
	lapic_write(LAPIC_TPR, 0);
}

/* Returns the timer ticks at divide 1 over 10 ms of PIT time. */
static uint32_t test_lapic_timer_countdown(void)
{
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | V_TIMER);
	lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_1);
	check_eq("lapic timer divide readback", DIVIDE_BY_1, lapic_read(LAPIC_TIMER_DIVIDE) & 0xb);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffff);
	check_eq("lapic timer initial count readback", 0xffffffff, lapic_read(LAPIC_TIMER_INIT));
	uint32_t c1 = lapic_read(LAPIC_TIMER_CURRENT);
	pit_wait_ticks(10 * MS_TICKS);
	uint32_t c2 = lapic_read(LAPIC_TIMER_CURRENT);
	check(c2 < c1 && c2 != 0, "lapic timer current count decreases", "read 0x%x then 0x%x 10 ms later", c1, c2);
	lapic_write(LAPIC_TIMER_INIT, 0);
	check_eq("lapic timer stopped by zero initial count", 0, lapic_read(LAPIC_TIMER_CURRENT));
	check_eq("lapic timer masked raises nothing", 0, irq_count[V_TIMER]);
	return c1 > c2 ? c1 - c2 : 0;
}

static void test_lapic_timer_oneshot(uint32_t per_10ms)
{
	uint32_t count = per_10ms / 16 / 10; /* about 1 ms at divide 16 */

	if (count < 16)
		count = 16;
	irq_count[V_TIMER] = 0;
	lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_16);
	lapic_write(LAPIC_LVT_TIMER, V_TIMER);
	lapic_write(LAPIC_TIMER_INIT, count);
	check(wait_irqs(&irq_count[V_TIMER], 1, 1000), "lapic one-shot interrupt",
	      "none within 1 s (count %u, divide 16)", count);
	wait_ms(20); /* many periods: a one-shot must stay quiet */
	check_eq("lapic one-shot fires once", 1, irq_count[V_TIMER]);
	check_eq("lapic one-shot current count 0 after expiry", 0, lapic_read(LAPIC_TIMER_CURRENT));
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | V_TIMER);
}

static void test_lapic_timer_periodic(uint32_t per_10ms)
{
	uint32_t count = per_10ms / 16 / 5; /* about 2 ms at divide 16 */

	if (count < 16)
		count = 16;
	irq_count[V_TIMER] = 0;
	lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_16);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_PERIODIC | V_TIMER);
	lapic_write(LAPIC_TIMER_INIT, count);
	check(wait_irqs(&irq_count[V_TIMER], 5, 2000), "lapic periodic interrupts",
	      "%lu of 5 within 2 s (count %u, divide 16)", irq_count[V_TIMER], count);
	uint32_t current = lapic_read(LAPIC_TIMER_CURRENT);
	check(current <= count, "lapic periodic current count within initial", "current 0x%x initial 0x%x", current,
	      count);

	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | LAPIC_TIMER_PERIODIC | V_TIMER);
	wait_ms(1); /* one accepted before the mask still lands */
	uint64_t before = irq_count[V_TIMER];
	wait_ms(40);
	check_eq("lapic periodic masked lvt stops interrupts", before, irq_count[V_TIMER]);
	lapic_write(LAPIC_TIMER_INIT, 0);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | V_TIMER);
}

static void test_tsc_deadline(void)
{
	if (!cpu_has_tsc_deadline()) {
		printf("INFO lapic tsc-deadline mode not checked: CPUID.1:ECX[24] is clear\n");
		return;
	}
	uint64_t t0 = rdtsc();
	pit_wait_ticks(10 * MS_TICKS);
	uint64_t tsc_ms = (rdtsc() - t0) / 10;

	irq_count[V_TSC_DEADLINE] = 0;
	lapic_write(LAPIC_LVT_TIMER, LAPIC_TIMER_TSC_DEADLINE | V_TSC_DEADLINE);
	/* SDM: the xAPIC write must be ordered before the WRMSR that arms. */
	__asm__ volatile("mfence" ::: "memory");
	wrmsr(MSR_TSC_DEADLINE, rdtsc() + tsc_ms);
	check(wait_irqs(&irq_count[V_TSC_DEADLINE], 1, 1000), "tsc-deadline interrupt",
	      "none within 1 s of a deadline 1 ms ahead");
	wait_ms(20);
	check_eq("tsc-deadline fires once", 1, irq_count[V_TSC_DEADLINE]);
	check_eq("tsc-deadline msr cleared after firing", 0, rdmsr(MSR_TSC_DEADLINE));
	check_eq("tsc-deadline current count reads 0", 0, lapic_read(LAPIC_TIMER_CURRENT));

	uint64_t deadline = rdtsc() + 30 * tsc_ms;
	wrmsr(MSR_TSC_DEADLINE, deadline);
	check_eq("tsc-deadline msr readback", deadline, rdmsr(MSR_TSC_DEADLINE));
	wrmsr(MSR_TSC_DEADLINE, 0);
	wait_ms(100);
	check_eq("tsc-deadline zero disarms", 1, irq_count[V_TSC_DEADLINE]);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | V_TIMER);
}

static void test_self_ipi(void)
{
	self_ipi(V_IPI);
	check(wait_irqs(&irq_count[V_IPI], 1, 100), "self-ipi delivered", "no interrupt within 100 ms");
	check(isr_in_handler, "self-ipi isr bit set in handler", "ISR bit for 0x%x clear", V_IPI);
	check(!irr_in_handler, "self-ipi irr bit clear in handler", "IRR bit for 0x%x set", V_IPI);
	/* SDM: PPR is the in-service class when it is above TPR's. */
	check_eq("self-ipi ppr in handler", V_IPI & 0xf0, ppr_in_handler);
	check(!vector_bit(LAPIC_ISR, V_IPI), "self-ipi isr bit clear after eoi", "ISR bit for 0x%x set", V_IPI);
	check_eq("self-ipi delivered once", 1, irq_count[V_IPI]);
	check(!(lapic_read(LAPIC_ICR_LO) & ICR_PENDING), "icr delivery status idle", "ICR low 0x%x",
	      lapic_read(LAPIC_ICR_LO));
	lapic_write(LAPIC_ESR, 0); /* SDM: write before reading to update it */
	check_eq("lapic esr clear", 0, lapic_read(LAPIC_ESR));
}

static void test_task_priority(void)
{
	/* A vector is delivered only if its class is above the PPR's class. */
	lapic_write(LAPIC_TPR, V_TPR & 0xf0);
	check_eq("ppr follows tpr", V_TPR & 0xf0, lapic_read(LAPIC_PPR));
	self_ipi(V_TPR);
	wait_ms(5);
	check_eq("tpr of equal class holds interrupt", 0, irq_count[V_TPR]);
	check(vector_bit(LAPIC_IRR, V_TPR), "tpr-held interrupt pending in irr", "IRR bit for 0x%x clear", V_TPR);
	lapic_write(LAPIC_TPR, (V_TPR & 0xf0) - 0x10);
	check(wait_irqs(&irq_count[V_TPR], 1, 100), "lower tpr delivers pending interrupt",
	      "no interrupt within 100 ms");
	check(!vector_bit(LAPIC_IRR, V_TPR), "irr clear after delivery", "IRR bit for 0x%x set", V_TPR);
	lapic_write(LAPIC_TPR, 0);
}

static void test_interrupt_flag(void)
{
	irq_disable();
	self_ipi(V_CLI);
	wait_ms(5);
	uint64_t held = irq_count[V_CLI];
	bool pending = vector_bit(LAPIC_IRR, V_CLI);
	irq_enable();
	check_eq("if=0 holds interrupt", 0, held);
	check(pending, "if=0 interrupt pending in irr", "IRR bit for 0x%x clear", V_CLI);
	check(wait_irqs(&irq_count[V_CLI], 1, 100), "sti delivers held interrupt", "no interrupt within 100 ms");
}

static void test_ioapic_registers(void)
{
	uint32_t version = ioapic_read(0x01);
	unsigned max_entry = (version >> 16) & 0xff;

	check(version != 0xffffffff && max_entry >= 23, "ioapic redirection entries >= 24", "version register 0x%x",
	      version);

	/* Masked, so the odd settings never deliver. Bits 12 and 14 are read-only. */
	unsigned pin = 23;
	uint32_t lo = 0x79 | BIT(8) | BIT(11) | BIT(13) | BIT(15) | BIT(16), hi = 0x0f000000;
	uint32_t old_lo = ioapic_read(0x10 + 2 * pin), old_hi = ioapic_read(0x11 + 2 * pin);
	ioapic_write(0x10 + 2 * pin, lo);
	ioapic_write(0x11 + 2 * pin, hi);
	check_eq("ioapic redirection entry low readback", lo, ioapic_read(0x10 + 2 * pin) & ~(BIT(12) | BIT(14)));
	check_eq("ioapic redirection entry destination readback", hi, ioapic_read(0x11 + 2 * pin) & 0xff000000);
	ioapic_write(0x10 + 2 * pin, old_lo | BIT(16));
	ioapic_write(0x11 + 2 * pin, old_hi);
}

static void test_ioapic_pit(void)
{
	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 (rate generator), binary */
	outb(0x40, PIT_100HZ & 0xff);
	outb(0x40, PIT_100HZ >> 8);
	ioapic_route(PIT_PIN, V_PIT, lapic_id());
	check(wait_irqs(&irq_count[V_PIT], 5, 2000), "pit irq0 through ioapic pin 2",
	      "%lu of 5 interrupts within 2 s at 100 Hz", irq_count[V_PIT]);

	/* The PIT still runs: only the mask holds its edges back. */
	ioapic_mask(PIT_PIN);
	wait_ms(2);
	uint64_t before = irq_count[V_PIT];
	wait_ms(50);
	check_eq("ioapic mask holds pit interrupts", before, irq_count[V_PIT]);
	outb(0x43, 0x30); /* mode 0 with no count written: counting stops */
}

static void test_ioapic_rtc(void)
{
	irq_disable(); /* the handler also uses the CMOS index port */
	uint8_t a = cmos_read(RTC_REG_A), b = cmos_read(RTC_REG_B);
	cmos_write(RTC_REG_A, (a & 0x70) | RTC_RATE_128HZ); /* keep the divider bits */
	/* Drop stale flags so the line starts low. */
	cmos_read(RTC_REG_C);
	ioapic_route(RTC_PIN, V_RTC, lapic_id());
	cmos_write(RTC_REG_B, b | RTC_B_PIE);
	irq_enable();
	check(wait_irqs(&irq_count[V_RTC], 5, 2000), "rtc periodic irq8 through ioapic pin 8",
	      "%lu of 5 interrupts within 2 s at 128 Hz", irq_count[V_RTC]);
	check((rtc_reg_c & RTC_C_IRQF_PF) == RTC_C_IRQF_PF, "rtc register c irqf and pf in handler", "register C 0x%x",
	      rtc_reg_c);

	irq_disable();
	cmos_write(RTC_REG_B, b & ~RTC_B_PIE);
	cmos_write(RTC_REG_A, a & 0x7f); /* bit 7 (UIP) is read-only */
	cmos_read(RTC_REG_C);
	irq_enable();
	wait_ms(2);
	uint64_t before = irq_count[V_RTC];
	wait_ms(50);
	check_eq("rtc pie clear stops interrupts", before, irq_count[V_RTC]);
	ioapic_mask(RTC_PIN);
}

void main(void)
{
	static const uint8_t counted[] = {V_TIMER, V_TSC_DEADLINE, V_TPR, V_CLI, V_PIT};

	for (unsigned i = 0; i < sizeof(counted); i++)
		trap_set_handler(counted[i], count_irq);
	trap_set_handler(V_SPURIOUS, spurious_irq);
	trap_set_handler(V_IPI, ipi_irq);
	trap_set_handler(V_RTC, rtc_irq);
	lapic_enable(V_SPURIOUS);
	irq_enable();

	test_lapic_registers();
	uint32_t per_10ms = test_lapic_timer_countdown();
	test_lapic_timer_oneshot(per_10ms);
	test_lapic_timer_periodic(per_10ms);
	test_tsc_deadline();
	test_self_ipi();
	test_task_priority();
	test_interrupt_flag();
	test_ioapic_registers();
	test_ioapic_pit();
	test_ioapic_rtc();
	irq_disable();
}
