/* The i8254: channel 2 through port 0x61 in mode 0 and mode 3, latches and
 * read-back, BCD, and channel 0's periodic interrupt on IRQ0. */
#include "tests/vmm/harness.h"

static uint16_t latch_ch2(struct vm *vm)
{
	test_outb(vm, 0x43, 0x80);
	uint8_t lo = test_inb(vm, 0x42);
	return lo | test_inb(vm, 0x42) << 8;
}

static bool out2_high(void *arg)
{
	return test_inb(arg, 0x61) & 0x20;
}

static bool out2_low(void *arg)
{
	return !(test_inb(arg, 0x61) & 0x20);
}

static void test_mode0(struct vm *vm)
{
	const uint16_t count = 11932; /* 10 ms */

	test_outb(vm, 0x61, (test_inb(vm, 0x61) & ~0x02) | 0x01);
	test_check_eq("port 0x61 gate bit", 0x01, test_inb(vm, 0x61) & 0x03);
	uint64_t t0 = test_now_ns();
	test_outb(vm, 0x43, 0xb0);
	test_outb(vm, 0x42, count & 0xff);
	test_outb(vm, 0x42, count >> 8);
	bool low = out2_low(vm);
	uint64_t t1 = test_now_ns();
	test_check(low || t1 - t0 >= 9000000, "mode 0: OUT low while counting", "high after %llu ns",
		   (unsigned long long)(t1 - t0));
	uint64_t ta = test_now_ns();
	uint16_t a = latch_ch2(vm);
	test_sleep_us(1000);
	uint16_t b = latch_ch2(vm);
	/* A loaded host may sleep past the end of the count: then it wrapped. */
	bool late = test_now_ns() - ta >= 9000000;
	test_check(a <= count && (b < a || late), "latched count falls in real time", "%u then %u", a, b);
	test_check(test_wait(out2_high, vm, 2000000000ull), "mode 0: OUT rises at the end", "still low");
	test_check(test_now_ns() - t0 >= 9900000, "mode 0: not before the count", "after %llu ns",
		   (unsigned long long)(test_now_ns() - t0));
	uint16_t c = latch_ch2(vm);
	test_check(c > count, "mode 0 wraps past zero", "count %u", c);

	/* Read-back: status of channel 2, then its count. */
	test_outb(vm, 0x43, 0xe8);
	uint8_t status = test_inb(vm, 0x42);
	test_check_eq("read-back status: OUT, lohi, mode 0, binary", 0xb0, status);
	test_outb(vm, 0x43, 0xd8);
	uint8_t lo = test_inb(vm, 0x42), hi = test_inb(vm, 0x42);
	test_check((lo | hi << 8) > count, "read-back latches the count", "0x%04x", lo | hi << 8);

	/* A low gate holds the count in mode 0. */
	test_outb(vm, 0x43, 0xb0);
	test_outb(vm, 0x42, 0xff);
	test_outb(vm, 0x42, 0xff);
	test_outb(vm, 0x61, test_inb(vm, 0x61) & ~0x01);
	a = latch_ch2(vm);
	test_sleep_us(2000);
	b = latch_ch2(vm);
	test_check_eq("low gate holds the count", a, b);
	test_outb(vm, 0x61, test_inb(vm, 0x61) | 0x01);
	test_sleep_us(2000);
	test_check(latch_ch2(vm) < b, "high gate resumes it", "stuck");

	/* Writing the control word: OUT low in mode 0, null count until loaded. */
	test_outb(vm, 0x43, 0xb0);
	test_outb(vm, 0x43, 0xe8);
	test_check_eq("after the control word: OUT low, null count", 0x70, test_inb(vm, 0x42));
}

static void test_bcd(struct vm *vm)
{
	test_outb(vm, 0x43, 0xb1); /* channel 2, lohi, mode 0, BCD */
	test_outb(vm, 0x42, 0x00);
	test_outb(vm, 0x42, 0x50); /* 5000 */
	test_sleep_us(1000);
	uint16_t v = latch_ch2(vm);
	bool digits = (v & 0xf) < 10 && (v >> 4 & 0xf) < 10 && (v >> 8 & 0xf) < 10 && (v >> 12) < 10;
	test_check(digits && v != 0x5000, "BCD count", "0x%04x", v);
	test_outb(vm, 0x43, 0xe8);
	test_check_eq("read-back shows BCD", 0x31, test_inb(vm, 0x42) & 0x3f);
}

static void test_mode3(struct vm *vm)
{
	test_outb(vm, 0x43, 0xb6); /* channel 2, lohi, mode 3 */
	test_outb(vm, 0x42, 0x9c);
	test_outb(vm, 0x42, 0x2e); /* 11932: 100 Hz */
	test_check(test_wait(out2_low, vm, 1000000000ull) && test_wait(out2_high, vm, 1000000000ull),
		   "mode 3: square wave on OUT", "OUT did not toggle");
	test_outb(vm, 0x61, test_inb(vm, 0x61) & ~0x01);
	test_sleep_us(20000);
	test_check(out2_high(vm), "mode 3: low gate holds OUT high", "low");
}

static bool pit_vector(void *arg)
{
	return test_lapic_irr(((struct vm *)arg)->cpus[0], 0x30);
}

static void test_channel0(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];
	uint64_t t0;
	int n = 0;

	/* IRQ0 reaches IOAPIC pin 2. */
	test_ioapic_route(vm, 2, 0x30, 0, false);
	test_outb(vm, 0x43, 0x34); /* channel 0, lohi, mode 2 */
	test_outb(vm, 0x40, 0xa9);
	test_outb(vm, 0x40, 0x04); /* 1193: 1 kHz */
	t0 = test_now_ns();
	while (n < 10 && test_now_ns() - t0 < 5000000000ull) {
		if (test_wait(pit_vector, vm, 1000000000ull) && test_take_interrupt(bsp) == 0x30)
			n++;
	}
	test_check(n == 10, "mode 2: IRQ0 through IOAPIC pin 2", "%d interrupts", n);
	test_check(test_now_ns() - t0 >= 9000000, "mode 2: 1 kHz", "10 in %llu ns",
		   (unsigned long long)(test_now_ns() - t0));
	test_ioapic_write(vm, 0x14, 1u << 16);

	/* ... and 8259 line 0. */
	test_pic_init(vm, 0xfe, 0xff);
	test_outb(vm, 0x43, 0x36); /* mode 3 */
	test_outb(vm, 0x40, 0xa9);
	test_outb(vm, 0x40, 0x04);
	t0 = test_now_ns();
	n = 0;
	while (n < 5 && test_now_ns() - t0 < 5000000000ull) {
		if (pic_pending_vector(vm) == 0x20) {
			test_check_eq("IRQ0 by INTA", 0x20, pic_acknowledge(vm));
			test_outb(vm, 0x20, 0x20);
			n++;
		}
		test_sleep_us(100);
	}
	test_check(n == 5, "mode 3: IRQ0 through the 8259", "%d interrupts", n);

	/* Mode 0 raises IRQ0 once. */
	test_outb(vm, 0x43, 0x30);
	test_outb(vm, 0x40, 0xa9);
	test_outb(vm, 0x40, 0x04);
	test_sleep_us(20000);
	test_check_eq("mode 0: one interrupt", 0x20, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	test_sleep_us(20000);
	test_check_eq("mode 0: only one", (uint64_t)-1, (uint64_t)(int64_t)pic_pending_vector(vm));

	/* The fastest a guest can ask for still leaves the clock thread alive. */
	test_outb(vm, 0x43, 0x34);
	test_outb(vm, 0x40, 0x02);
	test_outb(vm, 0x40, 0x00);
	test_sleep_us(20000);
	test_check_eq("count 2 in mode 2 still interrupts", 0x20, pic_acknowledge(vm));
	test_outb(vm, 0x20, 0x20);
	test_outb(vm, 0x21, 0xff);
}

int main(void)
{
	struct vm *vm = test_vm_create(1);

	test_mode0(vm);
	test_bcd(vm);
	test_mode3(vm);
	test_channel0(vm);
	test_fuzz_pio(vm, 0x40, 4, 50000);
	test_fuzz_pio(vm, 0x61, 1, 5000);
	test_check(true, "hostile port accesses", "-");
	test_vm_destroy(vm);
	return test_finish();
}
