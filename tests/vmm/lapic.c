/* The LAPIC: registers, priorities, IPIs (fixed, NMI, INIT, SIPI and the
 * shorthands), the timer in its three modes, x2APIC and IA32_APIC_BASE. */
#include <stdlib.h>
#include <x86intrin.h>

#include "tests/vmm/harness.h"

#define ICR_SELF      (1u << 18)
#define ICR_ALL	      (2u << 18)
#define ICR_OTHERS    (3u << 18)
#define ICR_LOGICAL   (1u << 11)
#define ICR_ASSERT    (1u << 14)
#define MSR_APIC_BASE 0x1b

static uint64_t rdmsr(struct vcpu *vcpu, uint32_t index, bool *fault)
{
	*fault = false;
	return lapic_msr_read(vcpu, index, fault);
}

static bool wrmsr(struct vcpu *vcpu, uint32_t index, uint64_t value)
{
	bool fault = false;
	lapic_msr_write(vcpu, index, value, &fault);
	return !fault;
}

static void test_reset_state(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0], *ap = vm->cpus[1];
	bool fault;

	test_check_eq("BSP ID", 0, test_lapic_read(bsp, LAPIC_ID));
	test_check_eq("AP ID", 1u << 24, test_lapic_read(ap, LAPIC_ID));
	test_check_eq("version", 0x00050014, test_lapic_read(bsp, LAPIC_VERSION));
	test_check_eq("BSP SVR as firmware leaves it", 0x1ff, test_lapic_read(bsp, LAPIC_SVR));
	test_check_eq("BSP LINT0 virtual wire", 0x8700, test_lapic_read(bsp, LAPIC_LVT_LINT0));
	test_check_eq("AP SVR at reset", 0xff, test_lapic_read(ap, LAPIC_SVR));
	test_check_eq("AP LVT timer masked", 0x10000, test_lapic_read(ap, LAPIC_LVT_TIMER));
	test_check_eq("DFR flat", 0xffffffff, test_lapic_read(ap, LAPIC_DFR));
	test_check_eq("APIC base of the BSP", 0xfee00900, rdmsr(bsp, MSR_APIC_BASE, &fault));
	test_check_eq("APIC base of an AP", 0xfee00800, rdmsr(ap, MSR_APIC_BASE, &fault));
	test_lapic_write(ap, LAPIC_SVR, 0x1ff);
}

static void test_priorities(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];

	test_lapic_write(bsp, LAPIC_TPR, 0x50);
	test_lapic_write(bsp, LAPIC_ICR_LO, 0x45 | ICR_SELF);
	test_check(test_lapic_irr(bsp, 0x45), "self IPI in IRR", "IRR bit clear");
	test_check_eq("TPR blocks a lower class", (uint64_t)-1, (uint64_t)(int64_t)vcpu_pending_interrupt(bsp));
	test_check_eq("PPR from TPR", 0x50, test_lapic_read(bsp, LAPIC_PPR));
	atomic_store(&bsp->interrupt_hint, false);
	test_lapic_write(bsp, LAPIC_TPR, 0x30);
	test_check(atomic_load(&bsp->interrupt_hint), "lowering TPR sets the hint", "hint clear");
	test_check_eq("lower TPR lets it through", 0x45, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x45);
	test_check_eq("PPR from ISR", 0x40, test_lapic_read(bsp, LAPIC_PPR));
	test_lapic_write(bsp, LAPIC_ICR_LO, 0x44 | ICR_SELF);
	test_check_eq("same class waits for EOI", (uint64_t)-1, (uint64_t)(int64_t)vcpu_pending_interrupt(bsp));
	test_lapic_write(bsp, LAPIC_ICR_LO, 0x90 | ICR_SELF);
	test_check_eq("higher class preempts", 0x90, vcpu_pending_interrupt(bsp));
	vcpu_accept_interrupt(bsp, 0x90);
	test_lapic_write(bsp, LAPIC_EOI, 0);
	test_check(!test_lapic_isr(bsp, 0x90) && test_lapic_isr(bsp, 0x45), "EOI ends the highest in service",
		   "ISR 0x90 %d 0x45 %d", test_lapic_isr(bsp, 0x90), test_lapic_isr(bsp, 0x45));
	test_lapic_write(bsp, LAPIC_EOI, 0);
	test_check_eq("then 0x44", 0x44, test_take_interrupt(bsp));
	test_lapic_write(bsp, LAPIC_TPR, 0);

	test_lapic_write(bsp, LAPIC_ESR, 0);
	test_lapic_write(bsp, LAPIC_ICR_LO, 0x05 | ICR_SELF);
	test_lapic_write(bsp, LAPIC_ESR, 0);
	test_check_eq("illegal vector: send error", 0x20, test_lapic_read(bsp, LAPIC_ESR));
	test_lapic_write(bsp, LAPIC_ESR, 0);
	test_lapic_write(bsp, LAPIC_ESR, 0);
	test_check_eq("ESR write clears", 0, test_lapic_read(bsp, LAPIC_ESR));
	test_lapic_write(bsp, LAPIC_LVT_ERROR, 0xee);
	test_lapic_read(bsp, 0x3f0); /* no such register */
	test_check_eq("illegal register: error interrupt", 0xee, test_take_interrupt(bsp));
	test_check(test_lapic_read(bsp, LAPIC_ESR) & 0x80, "illegal register in ESR", "ESR 0x%x",
		   test_lapic_read(bsp, LAPIC_ESR));
	test_lapic_write(bsp, LAPIC_LVT_ERROR, 0x10000);
	test_lapic_write(bsp, LAPIC_ESR, 0);
	test_lapic_write(bsp, LAPIC_ESR, 0);

	test_lapic_write(bsp, LAPIC_SVR, 0xff);
	test_check_eq("software disable masks LINT0", 0x18700, test_lapic_read(bsp, LAPIC_LVT_LINT0));
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x8700);
	test_check_eq("LVTs stay masked while disabled", 0x18700, test_lapic_read(bsp, LAPIC_LVT_LINT0));
	test_lapic_write(bsp, LAPIC_ICR_LO, 0x46 | ICR_SELF);
	test_check_eq("software-disabled: held in IRR", (uint64_t)-1,
		      (uint64_t)(int64_t)lapic_pending_vector(bsp->lapic));
	test_lapic_write(bsp, LAPIC_SVR, 0x1ff);
	test_check_eq("re-enabled: delivered", 0x46, test_take_interrupt(bsp));
	test_lapic_write(bsp, LAPIC_LVT_LINT0, 0x8700);
}

static void test_ipis(struct vm *vm)
{
	struct vcpu *c0 = vm->cpus[0], *c1 = vm->cpus[1], *c2 = vm->cpus[2];
	unsigned kicks = test_kicks(c1);
	bool init;
	int sipi;

	test_lapic_write(c2, LAPIC_SVR, 0x1ff);
	test_lapic_write(c0, LAPIC_ICR_HI, 1u << 24);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x70 | ICR_ASSERT);
	test_check(test_lapic_irr(c1, 0x70) && !test_lapic_irr(c0, 0x70), "fixed IPI to APIC ID 1", "IRRs %d %d",
		   test_lapic_irr(c0, 0x70), test_lapic_irr(c1, 0x70));
	test_check(test_kicks(c1) > kicks, "IPI kicks its target", "no kick");
	test_check_eq("ICR reads back", 0x4070, test_lapic_read(c0, LAPIC_ICR_LO));
	test_take_interrupt(c1);

	test_lapic_write(c0, LAPIC_ICR_LO, 0x71 | ICR_OTHERS);
	test_check(!test_lapic_irr(c0, 0x71) && test_lapic_irr(c1, 0x71) && test_lapic_irr(c2, 0x71),
		   "all excluding self", "IRRs %d %d %d", test_lapic_irr(c0, 0x71), test_lapic_irr(c1, 0x71),
		   test_lapic_irr(c2, 0x71));
	test_take_interrupt(c1);
	test_take_interrupt(c2);
	test_lapic_write(c1, LAPIC_ICR_LO, 0x72 | ICR_ALL);
	test_check(test_lapic_irr(c0, 0x72) && test_lapic_irr(c1, 0x72) && test_lapic_irr(c2, 0x72),
		   "all including self", "IRRs %d %d %d", test_lapic_irr(c0, 0x72), test_lapic_irr(c1, 0x72),
		   test_lapic_irr(c2, 0x72));
	for (int i = 0; i < 3; i++)
		test_take_interrupt(vm->cpus[i]);

	test_lapic_write(c1, LAPIC_LDR, 0x02000000);
	test_lapic_write(c2, LAPIC_LDR, 0x04000000);
	test_lapic_write(c0, LAPIC_ICR_HI, 0x04000000);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x73 | ICR_LOGICAL);
	test_check(!test_lapic_irr(c1, 0x73) && test_lapic_irr(c2, 0x73), "logical IPI", "IRRs %d %d",
		   test_lapic_irr(c1, 0x73), test_lapic_irr(c2, 0x73));
	test_take_interrupt(c2);

	test_lapic_write(c0, LAPIC_ICR_HI, 2u << 24);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x400 | ICR_ASSERT);
	test_check(vcpu_take_nmi(c2) && !vcpu_take_nmi(c2) && !vcpu_take_nmi(c1), "NMI IPI, once", "wrong NMIs");

	vcpu_take_init_sipi(c1, &init, &sipi);
	test_lapic_write(c0, LAPIC_ICR_HI, 1u << 24);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x500 | ICR_ASSERT | 1u << 15);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x500 | 1u << 15); /* de-assert: nothing */
	test_lapic_write(c0, LAPIC_ICR_LO, 0x69f | ICR_ASSERT);
	test_check(vcpu_take_init_sipi(c1, &init, &sipi) && init && sipi == 0x9f, "INIT then SIPI 0x9f",
		   "init %d sipi %d", init, sipi);
	test_check(!vcpu_take_init_sipi(c1, &init, &sipi), "taken once", "again");
	test_check_eq("INIT resets the LAPIC", 0xff, test_lapic_read(c1, LAPIC_SVR));
	test_check_eq("INIT keeps the ID", 1u << 24, test_lapic_read(c1, LAPIC_ID));
	test_lapic_write(c0, LAPIC_ICR_LO, 0x608 | ICR_ASSERT);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x500 | ICR_ASSERT);
	test_check(vcpu_take_init_sipi(c1, &init, &sipi) && init && sipi < 0, "INIT cancels an earlier SIPI",
		   "init %d sipi %d", init, sipi);
	test_lapic_write(c1, LAPIC_SVR, 0x1ff);
}

static bool irr_set(void *arg)
{
	struct vcpu *vcpu = arg;
	return test_lapic_irr(vcpu, 0x80);
}

static void test_timer(struct vm *vm)
{
	struct vcpu *c1 = vm->cpus[1];
	uint64_t t0;

	test_lapic_write(c1, LAPIC_TIMER_DIVIDE, 0xb); /* divide by 1: 1 GHz */
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80);
	t0 = test_now_ns();
	test_lapic_write(c1, LAPIC_TIMER_INIT, 20000000); /* 20 ms */
	uint32_t a = test_lapic_read(c1, LAPIC_TIMER_CURRENT);
	test_sleep_us(2000);
	uint32_t b = test_lapic_read(c1, LAPIC_TIMER_CURRENT);
	test_check(a <= 20000000 && b < a, "current count falls in real time", "%u then %u", a, b);
	test_check(test_wait(irr_set, c1, 5000000000ull), "one-shot fires", "no interrupt in 5 s");
	test_check(test_now_ns() - t0 >= 20000000, "not before its time", "after %llu ns",
		   (unsigned long long)(test_now_ns() - t0));
	test_check_eq("one-shot ends at 0", 0, test_lapic_read(c1, LAPIC_TIMER_CURRENT));
	test_take_interrupt(c1);
	test_sleep_us(30000);
	test_check(!test_lapic_irr(c1, 0x80), "one-shot fires once", "fired again");

	test_lapic_write(c1, LAPIC_TIMER_DIVIDE, 0x3); /* divide by 16 */
	test_check_eq("divide read-back", 0x3, test_lapic_read(c1, LAPIC_TIMER_DIVIDE));
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80 | 1u << 17);
	t0 = test_now_ns();
	test_lapic_write(c1, LAPIC_TIMER_INIT, 125000); /* 2 ms at 62.5 MHz */
	int fired = 0;
	while (fired < 5 && test_now_ns() - t0 < 5000000000ull) {
		if (test_wait(irr_set, c1, 1000000000ull) && test_take_interrupt(c1) == 0x80)
			fired++;
	}
	test_check(fired == 5, "periodic fires again and again", "%d times", fired);
	test_check(test_now_ns() - t0 >= 9000000, "periodic keeps its period", "5 in %llu ns",
		   (unsigned long long)(test_now_ns() - t0));
	test_lapic_write(c1, LAPIC_TIMER_INIT, 0);
	test_sleep_us(5000);
	test_lapic_write(c1, LAPIC_EOI, 0);
	if (test_lapic_irr(c1, 0x80))
		test_take_interrupt(c1);
	test_sleep_us(5000);
	test_check(!test_lapic_irr(c1, 0x80), "count 0 stops it", "still firing");

	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80);
	test_lapic_write(c1, LAPIC_TIMER_DIVIDE, 0xb);
	test_lapic_write(c1, LAPIC_TIMER_INIT, 3000000);
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80 | 1u << 17);
	fired = 0;
	t0 = test_now_ns();
	while (fired < 3 && test_now_ns() - t0 < 5000000000ull) {
		if (test_wait(irr_set, c1, 1000000000ull) && test_take_interrupt(c1) == 0x80)
			fired++;
	}
	test_check(fired == 3, "one-shot switched to periodic keeps counting", "%d times", fired);
	test_lapic_write(c1, LAPIC_TIMER_INIT, 0);
	test_sleep_us(5000);
	while (test_take_interrupt(c1) >= 0)
		;

	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80 | 1u << 16);
	test_lapic_write(c1, LAPIC_TIMER_INIT, 1000000);
	test_sleep_us(5000);
	test_check(!test_lapic_irr(c1, 0x80), "masked timer sends nothing", "IRR set");
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80);
	test_sleep_us(5000);
	test_check(!test_lapic_irr(c1, 0x80), "unmasking after expiry sends nothing", "IRR set");
}

static void test_tsc_deadline(struct vm *vm)
{
	struct vcpu *c1 = vm->cpus[1];
	bool fault;

	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80);
	test_check(wrmsr(c1, 0x6e0, test_guest_tsc() + 1000), "deadline write outside its mode", "#GP");
	test_check_eq("is ignored", 0, rdmsr(c1, 0x6e0, &fault));
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x80 | 2u << 17);
	uint64_t t0 = test_now_ns(), t1, c0 = __rdtsc();
	test_sleep_us(10000);
	t1 = test_now_ns();
	uint64_t per_ms = (__rdtsc() - c0) * 1000000 / (t1 - t0);
	t0 = test_now_ns();
	test_check(wrmsr(c1, 0x6e0, test_guest_tsc() + 10 * per_ms), "deadline write", "#GP");
	test_check(rdmsr(c1, 0x6e0, &fault) != 0, "deadline reads back", "0");
	test_lapic_write(c1, LAPIC_TIMER_INIT, 1234);
	test_check_eq("initial count ignored in deadline mode", 0, test_lapic_read(c1, LAPIC_TIMER_INIT));
	test_check(test_wait(irr_set, c1, 5000000000ull), "TSC deadline fires", "no interrupt in 5 s");
	test_check(test_now_ns() - t0 >= 8000000, "TSC deadline not early", "after %llu ns",
		   (unsigned long long)(test_now_ns() - t0));
	test_check_eq("deadline cleared once it fired", 0, rdmsr(c1, 0x6e0, &fault));
	test_take_interrupt(c1);
	wrmsr(c1, 0x6e0, 1);
	test_check(test_wait(irr_set, c1, 1000000000ull), "past deadline fires at once", "no interrupt");
	test_take_interrupt(c1);
	wrmsr(c1, 0x6e0, test_guest_tsc() + 1000 * per_ms);
	wrmsr(c1, 0x6e0, 0);
	test_sleep_us(5000);
	test_check(!test_lapic_irr(c1, 0x80), "deadline 0 disarms", "fired");
	test_lapic_write(c1, LAPIC_LVT_TIMER, 0x10000);
}

static void test_x2apic(struct vm *vm)
{
	struct vcpu *c0 = vm->cpus[0], *c2 = vm->cpus[2];
	bool fault;

	test_check(!wrmsr(c2, MSR_APIC_BASE, 0xfee00000 | 1u << 10), "x2APIC without enable: #GP", "accepted");
	test_check(!wrmsr(c2, MSR_APIC_BASE, 0xfee00801), "reserved bits: #GP", "accepted");
	rdmsr(c2, 0x802, &fault);
	test_check(fault, "x2APIC MSRs #GP in xAPIC mode", "no fault");
	test_lapic_write(c2, LAPIC_TPR, 0x20);
	test_check_eq("but the TPR is there for CR8", 0x20, rdmsr(c2, 0x808, &fault));
	test_check(wrmsr(c2, 0x808, 0x30) && test_lapic_read(c2, LAPIC_TPR) == 0x30, "CR8 writes the TPR", "0x%x",
		   test_lapic_read(c2, LAPIC_TPR));
	test_lapic_write(c2, LAPIC_TPR, 0);
	test_check(wrmsr(c2, MSR_APIC_BASE, 0xfee00c00), "enable x2APIC", "#GP");
	test_check_eq("x2APIC ID", 2, rdmsr(c2, 0x802, &fault));
	test_check_eq("x2APIC LDR", 0x4, rdmsr(c2, 0x80d, &fault));
	test_check_eq("no MMIO in x2APIC mode", 0, test_lapic_read(c2, LAPIC_VERSION));
	rdmsr(c2, 0x80b, &fault);
	test_check(fault, "EOI is write-only", "read");
	test_check(!wrmsr(c2, 0x80b, 1), "EOI must be written 0", "accepted");
	test_check(!wrmsr(c2, 0x802, 7), "ID is read-only", "accepted");
	rdmsr(c2, 0x80e, &fault);
	test_check(fault, "no DFR in x2APIC mode", "read");
	test_check(!wrmsr(c2, 0x808, 1ull << 32), "upper half reserved", "accepted");
	test_check(wrmsr(c2, 0x80f, 0x1ff), "SVR", "#GP");
	test_check(wrmsr(c2, 0x83f, 0x55), "self IPI register", "#GP");
	test_check_eq("self IPI", 0x55, test_take_interrupt(c2));
	test_check(wrmsr(c2, 0x830, 0x56 | 0ull << 32), "ICR is one 64-bit MSR", "#GP");
	test_check(test_lapic_irr(c0, 0x56), "x2APIC IPI to ID 0", "not delivered");
	test_take_interrupt(c0);
	test_check(wrmsr(c2, 0x830, 0x57 | 0xffffffffull << 32), "broadcast IPI", "#GP");
	test_check(test_lapic_irr(c0, 0x57), "x2APIC broadcast", "not delivered");
	test_take_interrupt(c0);
	bool ok = wrmsr(c2, 0x80b, 0);
	test_check(ok && rdmsr(c2, 0x830, &fault) == (0x57 | 0xffffffffull << 32), "ICR reads back", "0x%llx",
		   (unsigned long long)rdmsr(c2, 0x830, &fault));
	test_lapic_write(c0, LAPIC_ICR_HI, 2u << 24);
	test_lapic_write(c0, LAPIC_ICR_LO, 0x58 | ICR_ASSERT);
	test_check_eq("xAPIC sender reaches an x2APIC target", 0x58, test_take_interrupt(c2));
	test_check(!wrmsr(c2, MSR_APIC_BASE, 0xfee00800), "x2APIC to xAPIC: #GP", "accepted");
	test_check(wrmsr(c2, MSR_APIC_BASE, 0xfee00000), "disable", "#GP");
	rdmsr(c2, 0x802, &fault);
	test_check(fault, "disabled: no x2APIC MSRs", "no fault");
	test_check(wrmsr(c2, MSR_APIC_BASE, 0xfee00800), "enable again as xAPIC", "#GP");
	test_check_eq("back at reset state", 0xff, test_lapic_read(c2, LAPIC_SVR));
	rdmsr(c2, 0x12345, &fault);
	test_check(fault, "unknown MSR: #GP", "no fault");
}

static void test_hostile(struct vm *vm)
{
	struct vcpu *c1 = vm->cpus[1];
	bool fault;

	test_fuzz_mmio(vm, c1, 0xfee00000, 0x1000, 50000);
	test_fuzz_mmio(vm, NULL, 0xfee00000, 0x1000, 1000);
	for (uint32_t i = 0x800; i <= 0x8ff; i++) {
		lapic_msr_write(c1, i, (uint64_t)rand() << 32 | rand(), &fault);
		lapic_msr_read(c1, i, &fault);
	}
	wrmsr(c1, MSR_APIC_BASE, 0xfee00c00);
	for (int i = 0; i < 20000; i++) {
		uint32_t index = 0x800 + rand() % 0x100;
		lapic_msr_write(c1, index, rand() & 1 ? (uint32_t)rand() : (uint64_t)rand() << 32 | rand(), &fault);
		lapic_msr_read(c1, index, &fault);
	}
	for (int i = 0; i < 256; i++)
		lapic_accept_vector(c1->lapic, i - 10 + (i & 1) * 300);
	lapic_deliver(vm, 0xffffffff, true, 7, 0, true);
	for (int i = 0; i < 64; i++)
		vcpu_take_nmi(vm->cpus[i % 3]);
	test_check(true, "hostile register accesses", "-");
}

int main(void)
{
	struct vm *vm = test_vm_create(3);

	test_pit_quiet(vm);
	test_reset_state(vm);
	test_priorities(vm);
	test_ipis(vm);
	test_timer(vm);
	test_tsc_deadline(vm);
	test_x2apic(vm);
	test_hostile(vm);
	test_vm_destroy(vm);
	return test_finish();
}
