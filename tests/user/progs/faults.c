/* Bad things a program can do; each must end as it does natively:
 * faults MODE with MODE one of unmapped, noexec, ud2, div0, smash, null. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void smash(const char *s)
{
	char buf[8];
	strcpy(buf, s); /* with -fstack-protector-all: __stack_chk_fail, SIGABRT */
	printf("%s\n", buf);
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	static unsigned char data[16] = {0xc3};
	volatile int zero = 0;
	if (!strcmp(m, "unmapped"))
		((void (*)(void))0x1000)();
	if (!strcmp(m, "noexec"))
		((void (*)(void))data)();
	if (!strcmp(m, "ud2"))
		__asm__ volatile("ud2");
	if (!strcmp(m, "div0"))
		printf("%d\n", 1 / zero);
	if (!strcmp(m, "smash"))
		smash("this string is far too long for the buffer");
	if (!strcmp(m, "null"))
		printf("%d\n", *(volatile int *)0);
	return 0;
}
