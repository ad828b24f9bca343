/*
 * The case's data and stack pages at their fixed addresses, for the engines
 * that run cases in their own process (native.c, xlat.c): mapped once, the
 * case's bytes copied in before a run, the results copied out after it with
 * the host's x87/SSE control state put back for the engine's own code.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "diff.h"

int diff_pages_map(char *err, size_t errlen)
{
	void *data = mmap((void *)DIFF_DATA, DIFF_PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	void *stack = mmap((void *)DIFF_STACK, DIFF_PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (data != (void *)DIFF_DATA || stack != (void *)DIFF_STACK) {
		snprintf(err, errlen, "cannot map the case pages at 0x%llx: %s", DIFF_CODE, strerror(errno));
		return -EEXIST;
	}
	return 0;
}

void diff_pages_load(const struct diff_case *c)
{
	memcpy((void *)DIFF_DATA, c->data, DIFF_PAGE);
	memcpy((void *)DIFF_STACK, c->stack, DIFF_PAGE);
}

void diff_pages_save(struct diff_result *r)
{
	__asm__ volatile("fninit");
	__builtin_ia32_ldmxcsr(0x1f80);
	memcpy(r->data, (void *)DIFF_DATA, DIFF_PAGE);
	memcpy(r->stack, (void *)DIFF_STACK, DIFF_PAGE);
}

void diff_pages_unmap(void)
{
	munmap((void *)DIFF_CODE, DIFF_PAGE);
	munmap((void *)DIFF_DATA, DIFF_PAGE);
	munmap((void *)DIFF_STACK, DIFF_PAGE);
}
