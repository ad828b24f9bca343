/* The HPET: capabilities, the main counter (running, halted, written), and
 * timers in one-shot, periodic, 32-bit, edge and level modes reaching the
 * IOAPIC; then hostile accesses. */
#include "tests/vmm/harness.h"

#define HPET(reg)     (HPET_BASE + (reg))
#define TIMER(n, reg) (HPET_BASE + 0x100 + 0x20 * (n) + (reg))
#define VEC	      0x41

static struct vm *vm;

static uint64_t rd64(uint64_t addr)
{
	return bus_read(&vm->mmio, vm->cpus[0], addr, 8);
}

static void wr64(uint64_t addr, uint64_t v)
{
	bus_write(&vm->mmio, vm->cpus[0], addr, 8, v);
}

static uint32_t rd32(uint64_t addr)
{
	return test_mmio_read32(vm, vm->cpus[0], addr);
}

static void wr32(uint64_t addr, uint32_t v)
{
	test_mmio_write32(vm, vm->cpus[0], addr, v);
}

static bool vector_pending(void *arg)
{
	(void)arg;
	return test_lapic_irr(vm->cpus[0], VEC);
}

static void test_capabilities(void)
{
	uint64_t cap = rd64(HPET(0));
	test_check_eq("revision 1", 1, cap & 0xff);
	test_check_eq("three timers", 2, (cap >> 8) & 0x1f);
	test_check(cap & (1u << 13), "64-bit counter", "cap 0x%llx", (unsigned long long)cap);
	test_check(!(cap & (1u << 15)), "no legacy replacement route", "cap 0x%llx", (unsigned long long)cap);
	test_check_eq("vendor", 0x8086, (cap >> 16) & 0xffff);
	test_check_eq("period 10 ns", 10000000, cap >> 32);
	test_check_eq("the ACPI table's block ID", (uint32_t)cap, hpet_timer_block_id());
	test_check_eq("high half by a 32-bit read", 10000000, rd32(HPET(4)));
	uint64_t t0 = rd64(TIMER(0, 0));
	test_check(t0 & (1u << 4) && t0 & (1u << 5), "timer 0: periodic and 64-bit capable", "0x%llx",
		   (unsigned long long)t0);
	test_check_eq("timers may use IOAPIC inputs 10 and 11", 0xc00, t0 >> 32);
}

static void test_counter(void)
{
	test_check_eq("halted at reset", 0, rd64(HPET(0xf0)));
	wr64(HPET(0xf0), 0x123400000000ull);
	test_check_eq("writable while halted", 0x123400000000ull, rd64(HPET(0xf0)));
	wr64(HPET(0xf0), 0);

	uint64_t n0 = test_now_ns();
	wr64(HPET(0x10), 1);
	test_sleep_us(20000);
	uint64_t c = rd64(HPET(0xf0)), ns = test_now_ns() - n0;
	test_check(c >= 1900000 && c <= ns / 10 + 1000, "runs at 100 MHz", "%llu ticks in %llu ns",
		   (unsigned long long)c, (unsigned long long)ns);
	wr64(HPET(0xf0), 5);
	test_check(rd64(HPET(0xf0)) >= c, "writes ignored while running", "counter went back");
	uint32_t lo = rd32(HPET(0xf0)), hi = rd32(HPET(0xf4));
	test_check(hi == 0 && lo > c, "32-bit reads of the halves", "0x%x:%08x", hi, lo);

	wr64(HPET(0x10), 0);
	c = rd64(HPET(0xf0));
	test_sleep_us(5000);
	test_check_eq("halted: the counter stops", c, rd64(HPET(0xf0)));
	wr64(HPET(0x10), 1);
	test_sleep_us(1000);
	test_check(rd64(HPET(0xf0)) > c, "enabled again: it goes on from there", "stuck at %llu",
		   (unsigned long long)c);
}

static void test_one_shot(void)
{
	test_ioapic_route(vm, 10, VEC, 0, false);
	wr64(TIMER(0, 0), 10 << 9 | 1 << 2); /* route 10, edge, enabled */
	uint64_t t0 = test_now_ns();
	wr64(TIMER(0, 8), rd64(HPET(0xf0)) + 500000); /* 5 ms */
	test_check(test_wait(vector_pending, NULL, 2000000000ull), "one-shot: interrupt on IOAPIC input 10",
		   "none after 2 s");
	uint64_t ns = test_now_ns() - t0;
	test_check(ns >= 4900000, "one-shot: not before the comparator", "after %llu ns", (unsigned long long)ns);
	test_check_eq("one-shot: delivered", VEC, test_take_interrupt(vm->cpus[0]));
	test_sleep_us(20000);
	test_check(!vector_pending(NULL), "one-shot: only once", "a second interrupt");
	test_check_eq("edge mode sets no status bit", 0, rd64(HPET(0x20)) & 1);

	/* A comparator just behind the counter is due at once. */
	wr64(TIMER(0, 8), rd64(HPET(0xf0)) - 10);
	test_check(test_wait(vector_pending, NULL, 2000000000ull), "a comparator just passed fires", "none");
	test_take_interrupt(vm->cpus[0]);

	/* Interrupts disabled: the comparator matches, nothing arrives. */
	wr64(TIMER(0, 0), 10 << 9);
	wr64(TIMER(0, 8), rd64(HPET(0xf0)) + 100000);
	test_sleep_us(20000);
	test_check(!vector_pending(NULL), "Tn_INT_ENB clear: no interrupt", "one came");
}

static void test_level(void)
{
	test_ioapic_route(vm, 11, VEC, 0, true);
	wr64(TIMER(1, 0), 11 << 9 | 1 << 2 | 1 << 1); /* route 11, level, enabled */
	wr64(TIMER(1, 8), rd64(HPET(0xf0)) + 100000);
	test_check(test_wait(vector_pending, NULL, 2000000000ull), "level: interrupt on IOAPIC input 11", "none");
	test_check_eq("level: status bit 1", 2, rd64(HPET(0x20)) & 2);
	test_check_eq("level: delivered", VEC, test_take_interrupt(vm->cpus[0]));
	/* Still asserted: the IOAPIC delivers again after the EOI. */
	test_check(test_wait(vector_pending, NULL, 1000000000ull), "level: held until the status is cleared", "not");
	wr64(HPET(0x20), 2);
	test_check_eq("status cleared by writing 1", 0, rd64(HPET(0x20)) & 2);
	test_take_interrupt(vm->cpus[0]);
	test_sleep_us(5000);
	test_check(!vector_pending(NULL), "level: line low after the status is cleared", "still delivering");

	/* A route the timer cannot take is refused. */
	wr64(TIMER(1, 0), 3 << 9 | 1 << 1);
	test_check_eq("route 3 refused, route 11 kept", 11, (rd64(TIMER(1, 0)) >> 9) & 0x1f);
	wr64(TIMER(1, 0), 11 << 9);
	test_ioapic_write(vm, 0x10 + 2 * 11, 1u << 16);
}

static void test_periodic(void)
{
	test_ioapic_route(vm, 10, VEC, 0, false);
	/* Linux's sequence: SET_VALUE with the first deadline, then the period. */
	wr32(TIMER(2, 0), 10 << 9 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 8);
	uint32_t now = rd32(HPET(0xf0));
	wr32(TIMER(2, 8), now + 100000);
	wr32(TIMER(2, 8), 100000); /* 1 ms */
	test_check_eq("SET_VALUE clears itself", 0, rd64(TIMER(2, 0)) & (1 << 6));
	test_check_eq("32-bit mode: comparator reads 32 bits", 0, rd64(TIMER(2, 8)) >> 32);
	uint64_t t0 = test_now_ns();
	int n = 0;
	while (n < 10 && test_now_ns() - t0 < 5000000000ull) {
		if (test_wait(vector_pending, NULL, 1000000000ull) && test_take_interrupt(vm->cpus[0]) == VEC)
			n++;
	}
	uint64_t ns = test_now_ns() - t0;
	test_check(n == 10, "periodic: an interrupt every period", "%d interrupts", n);
	test_check(ns >= 9000000, "periodic: 1 kHz", "10 in %llu ns", (unsigned long long)ns);
	uint32_t cmp = rd32(TIMER(2, 8));
	test_check((int32_t)(cmp - rd32(HPET(0xf0))) > 0, "periodic: the comparator moves ahead", "0x%x", cmp);
	/* A period of one tick: interrupts come, at most every 100 us. */
	wr64(TIMER(2, 0), 10 << 9 | 1 << 2 | 1 << 3 | 1 << 6);
	wr64(TIMER(2, 8), rd64(HPET(0xf0)) + 10);
	wr64(TIMER(2, 8), 1);
	t0 = test_now_ns();
	n = 0;
	while (test_now_ns() - t0 < 20000000ull) {
		if (vector_pending(NULL) && test_take_interrupt(vm->cpus[0]) == VEC)
			n++;
		test_sleep_us(10);
	}
	test_check(n >= 5 && n <= 201, "a 10 ns period: at most one interrupt per 100 us", "%d in 20 ms", n);
	wr64(TIMER(2, 0), 10 << 9);
	test_sleep_us(5000);
	while (vector_pending(NULL))
		test_take_interrupt(vm->cpus[0]);
}

int main(void)
{
	vm = test_vm_create(1);
	test_lapic_write(vm->cpus[0], LAPIC_SVR, 0x1ff);
	test_capabilities();
	test_counter();
	test_one_shot();
	test_level();
	test_periodic();
	test_fuzz_mmio(vm, vm->cpus[0], HPET_BASE, HPET_SIZE, 50000);
	test_check(true, "hostile MMIO accesses", "-");
	test_vm_destroy(vm);
	return test_finish();
}
