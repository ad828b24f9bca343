/* The CMOS RTC: the host's time in BCD and binary, 12 and 24 hours, SET,
 * UIP, register C, periodic, update-ended and alarm interrupts, NVRAM. */
#include <stdio.h>
#include <time.h>

#include "tests/vmm/harness.h"

static uint8_t cmos_read(struct vm *vm, uint8_t reg)
{
	test_outb(vm, 0x70, reg);
	return test_inb(vm, 0x71);
}

static void cmos_write(struct vm *vm, uint8_t reg, uint8_t v)
{
	test_outb(vm, 0x70, reg);
	test_outb(vm, 0x71, v);
}

static int from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xf);
}

static bool is_bcd(uint8_t v)
{
	return (v & 0xf) < 10 && (v >> 4) < 10;
}

/* The RTC's time as seconds since the epoch (registers in the format B says). */
static time_t rtc_time(struct vm *vm)
{
	uint8_t b = cmos_read(vm, 0x0b);
	int (*conv)(uint8_t) = NULL;
	struct tm tm = {0};
	uint8_t hours = cmos_read(vm, 0x04);

	conv = b & 0x04 ? NULL : from_bcd;
#define C(v) (conv ? conv(v) : (v))
	tm.tm_sec = C(cmos_read(vm, 0x00));
	tm.tm_min = C(cmos_read(vm, 0x02));
	tm.tm_hour = C(hours & 0x7f);
	if (!(b & 0x02))
		tm.tm_hour = tm.tm_hour % 12 + (hours & 0x80 ? 12 : 0);
	tm.tm_mday = C(cmos_read(vm, 0x07));
	tm.tm_mon = C(cmos_read(vm, 0x08)) - 1;
	tm.tm_year = C(cmos_read(vm, 0x32)) * 100 + C(cmos_read(vm, 0x09)) - 1900;
#undef C
	return timegm(&tm);
}

static void test_time(struct vm *vm)
{
	test_check_eq("register A at reset", 0x26, cmos_read(vm, 0x0a) & 0x7f);
	test_check_eq("register B at reset: 24 h, BCD", 0x02, cmos_read(vm, 0x0b));
	test_check_eq("register D: valid RAM and time", 0x80, cmos_read(vm, 0x0d));
	bool bcd = is_bcd(cmos_read(vm, 0x00)) && is_bcd(cmos_read(vm, 0x02)) && is_bcd(cmos_read(vm, 0x04)) &&
		   is_bcd(cmos_read(vm, 0x07)) && is_bcd(cmos_read(vm, 0x08)) && is_bcd(cmos_read(vm, 0x09));
	test_check(bcd, "time registers are BCD", "not BCD");
	time_t host = time(NULL), guest = rtc_time(vm);
	test_check(guest >= host - 2 && guest <= host + 2, "BCD time is the host's UTC", "%lld vs %lld",
		   (long long)guest, (long long)host);
	struct tm tm;
	gmtime_r(&host, &tm);
	test_check_eq("weekday", tm.tm_wday + 1, from_bcd(cmos_read(vm, 0x06)));

	cmos_write(vm, 0x0b, 0x06);
	host = time(NULL);
	guest = rtc_time(vm);
	test_check(guest >= host - 2 && guest <= host + 2, "binary time", "%lld vs %lld", (long long)guest,
		   (long long)host);
	test_check(cmos_read(vm, 0x02) < 60, "binary minutes", "0x%x", cmos_read(vm, 0x02));

	cmos_write(vm, 0x0b, 0x04);
	uint8_t h = cmos_read(vm, 0x04);
	test_check((h & 0x7f) >= 1 && (h & 0x7f) <= 12, "12-hour clock", "hours 0x%x", h);
	host = time(NULL);
	guest = rtc_time(vm);
	test_check(guest >= host - 2 && guest <= host + 2, "12-hour time", "%lld vs %lld", (long long)guest,
		   (long long)host);
	cmos_write(vm, 0x0b, 0x02);

	/* Set 2001-02-03 14:05:06 with SET, in 12-hour BCD. */
	cmos_write(vm, 0x0b, 0x80);
	cmos_write(vm, 0x00, 0x06);
	cmos_write(vm, 0x02, 0x05);
	cmos_write(vm, 0x04, 0x82);
	cmos_write(vm, 0x07, 0x03);
	cmos_write(vm, 0x08, 0x02);
	cmos_write(vm, 0x09, 0x01);
	cmos_write(vm, 0x32, 0x20);
	test_check_eq("SET freezes the registers", 0x06, cmos_read(vm, 0x00));
	cmos_write(vm, 0x0b, 0x02);
	test_check_eq("hours converted to 24 h", 0x14, cmos_read(vm, 0x04));
	struct tm want = {.tm_sec = 6, .tm_min = 5, .tm_hour = 14, .tm_mday = 3, .tm_mon = 1, .tm_year = 101};
	time_t t = rtc_time(vm);
	test_check(t >= timegm(&want) && t <= timegm(&want) + 1, "the set time runs on", "%lld vs %lld", (long long)t,
		   (long long)timegm(&want));

	/* Setting one field of a running clock. */
	cmos_write(vm, 0x09, 0x99);
	test_check_eq("year written while running", 0x99, cmos_read(vm, 0x09));
	test_check_eq("other fields kept", 0x03, cmos_read(vm, 0x07));
}

static bool uip_seen(struct vm *vm)
{
	return cmos_read(vm, 0x0a) & 0x80;
}

/* Watches the seconds tick over, reading as fast as it can. UIP must be
 * set for about 244 us before each update; a loaded host that deschedules
 * the loop around an update just makes it watch the next one. */
static void test_uip(struct vm *vm)
{
	uint64_t t = test_now_ns(), end = t + 5000000000ull, last = t, covered_since = t;
	uint64_t uip_first = 0, uip_last = 0;
	uint8_t sec = cmos_read(vm, 0x00);
	int verdict = -1;

	while (verdict < 0 && t < end) {
		bool uip = uip_seen(vm);
		uint8_t s = cmos_read(vm, 0x00);
		t = test_now_ns();
		if (t - last > 50000)
			covered_since = t;
		last = t;
		if (uip) {
			if (!uip_last || t - uip_last > 100000)
				uip_first = t;
			uip_last = t;
		}
		if (s != sec) {
			sec = s;
			if (t - covered_since > 1000000)
				verdict = uip_last && t - uip_last < 100000 && uip_last - uip_first > 100000 &&
					  uip_last - uip_first < 400000;
		}
	}
	if (verdict < 0)
		printf("note: the host was too busy to watch an update without a gap\n");
	test_check(verdict != 0, "UIP for ~244 us before each update", "last seen %lld ns before, for %lld ns",
		   (long long)(t - uip_last), (long long)(uip_last - uip_first));

	cmos_write(vm, 0x0a, 0x66); /* divider reset: stopped */
	uint8_t s = cmos_read(vm, 0x00);
	test_sleep_us(1100000);
	test_check_eq("divider reset stops the clock", s, cmos_read(vm, 0x00));
	test_check(!uip_seen(vm), "no UIP while stopped", "set");
	cmos_write(vm, 0x0a, 0x26);
}

static bool vector_pending(void *arg)
{
	return test_lapic_irr(((struct vm *)arg)->cpus[0], 0x38);
}

static void test_interrupts(struct vm *vm)
{
	struct vcpu *bsp = vm->cpus[0];
	uint8_t c;

	test_ioapic_route(vm, 8, 0x38, 0, false);
	cmos_read(vm, 0x0c);
	cmos_write(vm, 0x0b, 0x42); /* PIE, 1024 Hz */
	test_check(test_wait(vector_pending, vm, 1000000000ull), "periodic interrupt on IRQ 8", "none");
	test_take_interrupt(bsp);
	c = cmos_read(vm, 0x0c);
	test_check((c & 0xc0) == 0xc0, "register C: IRQF and PF", "0x%x", c);
	int n = 0;
	uint64_t t0 = test_now_ns();
	while (n < 20 && test_now_ns() - t0 < 2000000000ull) {
		if (test_wait(vector_pending, vm, 100000000ull)) {
			test_take_interrupt(bsp);
			cmos_read(vm, 0x0c);
			n++;
		}
	}
	test_check(n == 20 && test_now_ns() - t0 >= 15000000, "1024 Hz", "%d in %llu ns", n,
		   (unsigned long long)(test_now_ns() - t0));
	t0 = test_now_ns();
	cmos_write(vm, 0x0a, 0x2f); /* 2 Hz */
	cmos_read(vm, 0x0c);
	test_take_interrupt(bsp);
	test_sleep_us(100000);
	test_check(!vector_pending(vm) || test_now_ns() - t0 > 400000000, "2 Hz is slower", "interrupt within 100 ms");
	cmos_write(vm, 0x0b, 0x02);
	cmos_write(vm, 0x0a, 0x26);
	cmos_read(vm, 0x0c);
	test_take_interrupt(bsp);

	cmos_write(vm, 0x0b, 0x12); /* UIE */
	test_check(test_wait(vector_pending, vm, 2000000000ull), "update-ended interrupt", "none in 2 s");
	test_take_interrupt(bsp);
	c = cmos_read(vm, 0x0c);
	test_check((c & 0x90) == 0x90, "register C: IRQF and UF", "0x%x", c);
	test_check_eq("register C cleared by the read", 0, cmos_read(vm, 0x0c) & 0x80);
	cmos_write(vm, 0x0b, 0x02);

	uint8_t s = from_bcd(cmos_read(vm, 0x00));
	uint8_t alarm = (s + 2) % 60;
	cmos_write(vm, 0x01, (alarm / 10) << 4 | alarm % 10);
	cmos_write(vm, 0x03, 0xff);
	cmos_write(vm, 0x05, 0xff);
	cmos_read(vm, 0x0c);
	cmos_write(vm, 0x0b, 0x22); /* AIE */
	test_check(test_wait(vector_pending, vm, 4000000000ull), "alarm interrupt", "none in 4 s");
	test_take_interrupt(bsp);
	c = cmos_read(vm, 0x0c);
	test_check((c & 0xa0) == 0xa0, "register C: IRQF and AF", "0x%x", c);
	test_check_eq("alarm second", alarm, from_bcd(cmos_read(vm, 0x00)) % 60);
	cmos_write(vm, 0x0b, 0x02);

	cmos_write(vm, 0x0b, 0x92);
	test_check_eq("SET clears UIE", 0x82, cmos_read(vm, 0x0b));
	cmos_write(vm, 0x0b, 0x02);
}

static void test_nvram(struct vm *vm)
{
	cmos_write(vm, 0x40, 0x5a);
	test_check_eq("NVRAM byte", 0x5a, cmos_read(vm, 0x40));
	test_outb(vm, 0x70, 0xc0); /* NMI mask bit set */
	test_check_eq("NMI mask bit ignored", 0x5a, test_inb(vm, 0x71));
	test_check_eq("index port reads 0xff", 0xff, test_inb(vm, 0x70));
	cmos_write(vm, 0x0c, 0xff);
	cmos_write(vm, 0x0d, 0x00);
	test_check_eq("register D is read-only", 0x80, cmos_read(vm, 0x0d));
	test_check_eq("memory 16 MiB-4 GiB in 64 KiB units", 0x300, cmos_read(vm, 0x34) | cmos_read(vm, 0x35) << 8);
	test_check_eq("extended memory in KiB", 0xfc00, cmos_read(vm, 0x30) | cmos_read(vm, 0x31) << 8);
}

int main(void)
{
	struct vm *vm = test_vm_create(1);

	test_pit_quiet(vm);
	test_nvram(vm);
	test_time(vm);
	test_uip(vm);
	test_interrupts(vm);
	test_fuzz_pio(vm, 0x70, 2, 50000);
	test_check(true, "hostile port accesses", "-");
	test_vm_destroy(vm);
	return test_finish();
}
