/* Application processors: INIT-SIPI-SIPI, check-in, and their C entry. */
#include "guest.h"

#define ICR_INIT	 (5u << 8)
#define ICR_STARTUP	 (6u << 8)
#define ICR_PENDING	 BIT(12)
#define ICR_ASSERT	 BIT(14)
#define ICR_ALL_BUT_SELF (3u << 18)
#define US_TICKS(us)	 ((us) * (PIT_HZ / 1000) / 1000)
#define MS_TICKS	 (PIT_HZ / 1000)
#define WAIT_MS		 1000 /* at most, for every AP to check in */
#define QUIET_MS	 200  /* ... ending early when none has for this long */

_Static_assert(SMP_TRAMPOLINE % 4096 == 0 && SMP_TRAMPOLINE < 0x100000, "a SIPI vector names a page below 1 MiB");

extern char smp_trampoline[], smp_trampoline_end[];

/* Read or written by smp_trampoline.S. */
uint32_t smp_ap_efer;
uint32_t smp_next_cpu;
uint8_t smp_ap_stacks[SMP_MAX_CPUS - 1][SMP_STACK_SIZE] __attribute__((aligned(16)));

static void (*volatile ap_entry)(unsigned cpu);
static volatile uint32_t checked_in;
static uint8_t ap_spurious_vector;
static struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) ap_idtr;

/* Waits, up to about 10 ms of PIT time, for the ICR to finish sending. */
static void icr_wait_idle(void)
{
	for (int i = 0; i < 100 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
		pit_wait_ticks(US_TICKS(100));
}

static void ipi_all_but_self(uint32_t icr)
{
	icr_wait_idle();
	lapic_write(LAPIC_ICR_HI, 0);
	lapic_write(LAPIC_ICR_LO, ICR_ALL_BUT_SELF | icr);
	icr_wait_idle();
}

__attribute__((noreturn)) void smp_ap_start(unsigned cpu);

void smp_ap_start(unsigned cpu)
{
	__asm__ volatile("lidt %0" ::"m"(ap_idtr));
	lapic_enable(ap_spurious_vector);
	__atomic_fetch_add(&checked_in, 1, __ATOMIC_SEQ_CST);
	ap_entry(cpu);
	for (;;)
		__asm__ volatile("sti; hlt" ::: "memory");
}

unsigned smp_start(void (*ap_main)(unsigned cpu))
{
	memcpy((void *)SMP_TRAMPOLINE, smp_trampoline, smp_trampoline_end - smp_trampoline);
	ap_entry = ap_main;
	smp_next_cpu = 1;
	checked_in = 0;
	smp_ap_efer = rdmsr(MSR_EFER) & (EFER_SCE | EFER_LME | EFER_NXE);
	__asm__ volatile("sidt %0" : "=m"(ap_idtr));
	if (!(lapic_read(LAPIC_SVR) & BIT(8)))
		lapic_enable(0xff);
	ap_spurious_vector = lapic_read(LAPIC_SVR) & 0xff;
	/* Everything above is in memory before the first IPI goes out. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	/* MP spec B.4 / SDM 8.4.4.1: INIT, 10 ms, SIPI, 200 us, SIPI. */
	ipi_all_but_self(ICR_INIT | ICR_ASSERT);
	pit_wait_ticks(10 * MS_TICKS);
	for (int i = 0; i < 2; i++) {
		ipi_all_but_self(ICR_STARTUP | ICR_ASSERT | (SMP_TRAMPOLINE >> 12));
		pit_wait_ticks(US_TICKS(200));
	}

	uint32_t seen = 0;
	for (unsigned ms = 0, quiet = 0; ms < WAIT_MS; ms++) {
		pit_wait_ticks(MS_TICKS);
		uint32_t now = checked_in;
		if (now != seen) {
			seen = now;
			quiet = 0;
		} else if (now && ++quiet >= QUIET_MS) {
			break;
		}
	}
	return checked_in;
}
