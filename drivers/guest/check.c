/* Start-up, the PASS/FAIL lines, and the way out through port 0xf4. */
#include "guest.h"

#define DEBUG_EXIT_PORT 0xf4

void serial_init(void);
void trap_init(void);

unsigned guest_checks_passed, guest_checks_failed;

static void check_line(bool ok, const char *name, const char *why_fmt, va_list ap)
{
	char why[256];

	if (ok) {
		guest_checks_passed++;
		printf("PASS %s\n", name);
		return;
	}
	guest_checks_failed++;
	vsnprintf(why, sizeof(why), why_fmt, ap);
	printf("FAIL %s: %s\n", name, why);
}

void check(bool ok, const char *name, const char *why_fmt, ...)
{
	va_list ap;
	va_start(ap, why_fmt);
	check_line(ok, name, why_fmt, ap);
	va_end(ap);
}

void check_pass(const char *name)
{
	check(true, name, "%s", "");
}

void check_eq(const char *name, uint64_t expected, uint64_t got)
{
	check(expected == got, name, "expected 0x%lx got 0x%lx", expected, got);
}

void check_eqf(uint64_t expected, uint64_t got, const char *name_fmt, ...)
{
	char name[160];
	va_list ap;

	va_start(ap, name_fmt);
	vsnprintf(name, sizeof(name), name_fmt, ap);
	va_end(ap);
	check_eq(name, expected, got);
}

void guest_exit(uint32_t v)
{
	for (;;) {
		outl(DEBUG_EXIT_PORT, v);
		/* No debug-exit device: stop here rather than run on. */
		irq_disable();
		__asm__ volatile("hlt");
	}
}

void guest_finish(void)
{
	bool ok = guest_checks_failed == 0 && guest_checks_passed > 0;

	printf("DONE %u checks, %u failed\n", guest_checks_passed + guest_checks_failed, guest_checks_failed);
	guest_exit(ok ? 0 : 1);
}

void guest_start(void)
{
	serial_init();
	trap_init();
	pic_disable();
	if (cpu_has_nx())
		wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
	main();
	guest_finish();
}
