/*
 * The i8254 PIT, the TSC measured against it, and the MC146818 RTC and CMOS
 * RAM: channel 0 counter latch and read-back, channel 2's output seen through
 * port 0x61, the clock registers' ranges and their advance over a PIT-timed
 * wait, and an NVRAM byte. Rates are compared with each other, never with a
 * fixed frequency, so a slow interpreter passes as well as QEMU.
 */
#include "guest.h"

#define PIT_CH0	     0x40
#define PIT_CH2	     0x42
#define PIT_CMD	     0x43
#define PORT_B	     0x61 /* bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 OUT */
#define PORT_B_OUT2  BIT(5)
#define CH0_RELOAD   50000
#define LATCH_GAP    200 /* PIT ticks between channel 0 latches */
#define TICKS_10MS   11932
#define MS_TICKS     1193
#define RTC_SECONDS  0x00
#define RTC_MINUTES  0x02
#define RTC_HOURS    0x04
#define RTC_WEEKDAY  0x06
#define RTC_DAY	     0x07
#define RTC_MONTH    0x08
#define RTC_YEAR     0x09
#define RTC_REG_A    0x0a
#define RTC_REG_B    0x0b
#define RTC_REG_C    0x0c
#define RTC_REG_D    0x0d
#define RTC_A_UIP    BIT(7)
#define RTC_B_SET    BIT(7)
#define RTC_B_BINARY BIT(2)
#define RTC_B_24H    BIT(1)
#define RTC_C_UF     BIT(4)
#define RTC_D_VRT    BIT(7)
#define RTC_HOUR_PM  BIT(7)
#define NVRAM_REG    0x40 /* past the clock and the checksummed 0x10-0x2f */

static uint16_t pit_latch_ch0(void)
{
	outb(PIT_CMD, 0x00); /* counter latch, channel 0 */
	uint8_t lo = inb(PIT_CH0);
	return lo | inb(PIT_CH0) << 8;
}

static void test_pit_channel0(void)
{
	outb(PIT_CMD, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
	outb(PIT_CH0, CH0_RELOAD & 0xff);
	outb(PIT_CH0, CH0_RELOAD >> 8);
	pit_wait_ticks(10); /* the count loads on the next clock */

	/* Mode 2 counts reload..1, then reloads. */
	uint16_t prev = pit_latch_ch0(), bad = 0;
	unsigned min_step = CH0_RELOAD;
	bool in_range = prev >= 1 && prev <= CH0_RELOAD;
	if (!in_range)
		bad = prev;
	for (int i = 0; i < 8; i++) {
		pit_wait_ticks(LATCH_GAP);
		uint16_t cur = pit_latch_ch0();
		if (cur < 1 || cur > CH0_RELOAD) {
			in_range = false;
			bad = cur;
		}
		unsigned step = (prev + CH0_RELOAD - cur) % CH0_RELOAD;
		if (step < min_step)
			min_step = step;
		prev = cur;
	}
	check(in_range, "pit ch0 latched count within reload", "read %u, reload %u", bad, CH0_RELOAD);
	/* Channel 2 waited LATCH_GAP ticks of the same clock between latches. */
	check(min_step >= LATCH_GAP / 2, "pit ch0 latched count decreases", "smallest step %u over %u-tick waits",
	      min_step, LATCH_GAP);

	outb(PIT_CMD, 0xe2); /* read-back: status only, channel 0 */
	uint8_t status = inb(PIT_CH0);
	/* Null count (bit 6) is clear once the count has loaded. */
	check_eq("pit read-back status lobyte/hibyte mode 2 binary", 0x34, status & 0x7f);

	outb(PIT_CMD, 0xc2); /* read-back: status and count, channel 0 */
	status = inb(PIT_CH0);
	uint8_t lo = inb(PIT_CH0);
	uint16_t count = lo | inb(PIT_CH0) << 8;
	check_eq("pit read-back status before count", 0x34, status & 0x7f);
	check(count >= 1 && count <= CH0_RELOAD, "pit read-back count within reload", "read %u, reload %u", count,
	      CH0_RELOAD);
	outb(PIT_CMD, 0x30); /* mode 0 with no count written: counting stops */
}

static uint64_t tsc_over_pit(uint16_t ticks)
{
	uint64_t t0 = rdtsc();
	pit_wait_ticks(ticks);
	return rdtsc() - t0;
}

/* Returns TSC cycles in 10 ms of PIT time. */
static uint64_t test_tsc_against_pit(void)
{
	uint64_t a = 0, b = 0;
	bool agree = false;

	/* A host that deschedules the VM stretches one measurement: retry. */
	for (int i = 0; i < 3 && !agree; i++) {
		a = tsc_over_pit(TICKS_10MS);
		b = tsc_over_pit(TICKS_10MS);
		agree = a && b && a <= 2 * b && b <= 2 * a;
	}
	check(agree, "tsc over two 10 ms pit waits agrees within 2x", "%lu and %lu cycles", a, b);
	return a < b ? a : b;
}

static void test_pit_channel2(uint64_t tsc_10ms)
{
	/* Gate on, speaker off; channel 2, lobyte/hibyte, mode 0, binary. */
	outb(PORT_B, (inb(PORT_B) & ~0x02) | 0x01);
	outb(PIT_CMD, 0xb0);
	outb(PIT_CH2, TICKS_10MS & 0xff);
	outb(PIT_CH2, TICKS_10MS >> 8);
	uint64_t t0 = rdtsc();
	bool low = !(inb(PORT_B) & PORT_B_OUT2);

	/* Bounded by 1 s of TSC time, and by spins should the TSC not run. */
	bool high = false;
	uint64_t elapsed = 0;
	for (uint64_t i = 0; i < 100000000 && !high; i++) {
		high = inb(PORT_B) & PORT_B_OUT2;
		elapsed = rdtsc() - t0;
		if (tsc_10ms && elapsed > 100 * tsc_10ms)
			break;
	}
	check(low, "pit ch2 out low after programming mode 0", "port 0x61 bit 5 set");
	check(high, "pit ch2 out high after count expires", "still low after %lu TSC cycles", elapsed);
	check(elapsed >= tsc_10ms / 2, "pit ch2 out stays low until count expires",
	      "high after %lu TSC cycles, 10 ms is about %lu", elapsed, tsc_10ms);

	/* Mode 0 holds OUT high until the channel is programmed again. */
	uint64_t t1 = rdtsc();
	for (uint64_t i = 0; i < 1000000 && rdtsc() - t1 < tsc_10ms / 10; i++)
		cpu_pause();
	check(inb(PORT_B) & PORT_B_OUT2, "pit ch2 out stays high after expiry", "port 0x61 bit 5 clear");
}

struct rtc_time {
	uint8_t sec, min, hour, weekday, day, month, year;
};

static bool rtc_wait_not_updating(void)
{
	/* UIP stays set for under 2.3 ms per update; allow 10 ms. */
	for (int i = 0; i < 40; i++) {
		if (!(cmos_read(RTC_REG_A) & RTC_A_UIP))
			return true;
		pit_wait_ticks(MS_TICKS / 4);
	}
	return false;
}

static struct rtc_time rtc_fields(void)
{
	struct rtc_time t;

	t.sec = cmos_read(RTC_SECONDS);
	t.min = cmos_read(RTC_MINUTES);
	t.hour = cmos_read(RTC_HOURS);
	t.weekday = cmos_read(RTC_WEEKDAY);
	t.day = cmos_read(RTC_DAY);
	t.month = cmos_read(RTC_MONTH);
	t.year = cmos_read(RTC_YEAR);
	return t;
}

/* Two equal reads after UIP clears cannot straddle an update. */
static bool rtc_read(struct rtc_time *t)
{
	for (int tries = 0; tries < 5; tries++) {
		if (!rtc_wait_not_updating())
			return false;
		struct rtc_time a = rtc_fields(), b = rtc_fields();
		if (!memcmp(&a, &b, sizeof(a))) {
			*t = a;
			return true;
		}
	}
	return false;
}

static bool bcd_valid(uint8_t v)
{
	return (v & 0xf) <= 9 && (v >> 4) <= 9;
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xf);
}

struct rtc_mode {
	bool binary, h24;
};

/* Decodes one field; false if BCD digits are invalid. */
static bool rtc_decode(struct rtc_mode m, uint8_t raw, unsigned *v)
{
	if (!m.binary && !bcd_valid(raw))
		return false;
	*v = m.binary ? raw : from_bcd(raw);
	return true;
}

/* Hours as 0..23, or 24 (out of range) if the register is invalid. */
static unsigned rtc_hour24(struct rtc_mode m, uint8_t raw)
{
	unsigned h;

	if (m.h24)
		return rtc_decode(m, raw, &h) ? h : 24;
	if (!rtc_decode(m, raw & ~RTC_HOUR_PM, &h) || h < 1 || h > 12)
		return 24;
	return h % 12 + (raw & RTC_HOUR_PM ? 12 : 0);
}

static void check_field(struct rtc_mode m, const char *name, uint8_t raw, unsigned lo, unsigned hi)
{
	unsigned v = 0;
	bool ok = rtc_decode(m, raw, &v) && v >= lo && v <= hi;
	check(ok, name, "raw 0x%02x, want %u..%u in %s", raw, lo, hi, m.binary ? "binary" : "BCD");
}

static unsigned rtc_second_of_day(struct rtc_mode m, struct rtc_time t)
{
	unsigned s = 0, min = 0;

	rtc_decode(m, t.sec, &s);
	rtc_decode(m, t.min, &min);
	return rtc_hour24(m, t.hour) * 3600 + min * 60 + s;
}

static void test_rtc(void)
{
	uint8_t a = cmos_read(RTC_REG_A), b = cmos_read(RTC_REG_B), d = cmos_read(RTC_REG_D);
	struct rtc_mode m = {b & RTC_B_BINARY, b & RTC_B_24H};
	struct rtc_time t0, t1;

	printf("INFO rtc register B 0x%02x: %s, %s\n", b, m.binary ? "binary" : "BCD", m.h24 ? "24-hour" : "12-hour");
	check_eq("rtc register a divider 32.768 kHz", 0x20, a & 0x70);
	check(!(b & RTC_B_SET), "rtc register b set bit clear", "register B 0x%02x", b);
	check(d & RTC_D_VRT, "rtc register d valid ram and time", "register D 0x%02x", d);

	bool read = rtc_read(&t0);
	check(read, "rtc read between updates", "UIP stuck or fields changing");
	if (!read)
		return;
	printf("INFO rtc time %02x %02x %02x %02x %02x:%02x:%02x (raw year month day weekday h:m:s)\n", t0.year,
	       t0.month, t0.day, t0.weekday, t0.hour, t0.min, t0.sec);
	check_field(m, "rtc seconds valid", t0.sec, 0, 59);
	check_field(m, "rtc minutes valid", t0.min, 0, 59);
	check(rtc_hour24(m, t0.hour) < 24, "rtc hours valid", "raw 0x%02x", t0.hour);
	check_field(m, "rtc weekday valid", t0.weekday, 1, 7);
	check_field(m, "rtc day valid", t0.day, 1, 31);
	check_field(m, "rtc month valid", t0.month, 1, 12);
	/* The clock is the host's: the two-digit year is 24 or later in this century. */
	check_field(m, "rtc year at least 2024", t0.year, 24, 99);

	/* Clear the flags, then wait 1.2 s. */
	cmos_read(RTC_REG_C);
	for (int i = 0; i < 120; i++)
		pit_wait_ticks(TICKS_10MS);
	uint8_t c = cmos_read(RTC_REG_C);
	read = rtc_read(&t1);
	check(read, "rtc second read between updates", "UIP stuck or fields changing");
	if (!read)
		return;
	unsigned advance = (rtc_second_of_day(m, t1) + 86400 - rtc_second_of_day(m, t0)) % 86400;
	check(advance == 1 || advance == 2, "rtc advances 1-2 s over 1.2 s of pit time",
	      "advanced %u s: raw h:m:s %02x:%02x:%02x then %02x:%02x:%02x", advance, t0.hour, t0.min, t0.sec, t1.hour,
	      t1.min, t1.sec);
	check(c & RTC_C_UF, "rtc register c update-ended flag after 1.2 s", "register C 0x%02x", c);
}

static void test_nvram(void)
{
	uint8_t saved = cmos_read(NVRAM_REG), next = cmos_read(NVRAM_REG + 1);

	cmos_write(NVRAM_REG, 0xa5);
	uint8_t r1 = cmos_read(NVRAM_REG);
	cmos_write(NVRAM_REG, 0x5a);
	uint8_t r2 = cmos_read(NVRAM_REG);
	uint8_t next_after = cmos_read(NVRAM_REG + 1);
	cmos_write(NVRAM_REG, saved);
	check_eq("cmos nvram readback 0xa5", 0xa5, r1);
	check_eq("cmos nvram readback 0x5a", 0x5a, r2);
	check_eq("cmos nvram neighbour untouched", next, next_after);
	check_eq("cmos nvram restored", saved, cmos_read(NVRAM_REG));
}

void main(void)
{
	test_pit_channel0();
	uint64_t tsc_10ms = test_tsc_against_pit();
	test_pit_channel2(tsc_10ms);
	test_rtc();
	test_nvram();
}
