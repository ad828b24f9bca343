/*
 * The initial stack, laid out as Linux's create_elf_tables does: from the
 * top, the executable's name, the environment and argument strings, the
 * platform string and 16 random bytes; below them auxv, envp, argv and argc,
 * with RSP 16-byte aligned at argc.
 */
#include <elf.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dbt/user/user.h"

#define STACK_MAX  (64ull << 20)
#define STACK_MIN  (1ull << 20)
#define STACK_FILL (128u << 10) /* stack that is mapped now, below the strings */

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

static uint64_t stack_size(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_STACK, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > STACK_MAX)
		return STACK_MAX;
	return rl.rlim_cur < STACK_MIN ? STACK_MIN : rl.rlim_cur;
}

static uint64_t push_bytes(uint64_t sp, const void *p, size_t n)
{
	sp -= n;
	memcpy((void *)(uintptr_t)sp, p, n);
	return sp;
}

static size_t count(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

uint64_t user_stack_build(const struct user_image *img, char **argv, char **envp, const char *execfn)
{
	uint64_t size = stack_size();
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return 0;
	user_maps_set((uintptr_t)base, size, PROT_READ | PROT_WRITE);

	uint64_t sp = (uintptr_t)base + size - 8;
	size_t argc = count(argv), envc = count(envp);
	uint64_t strings = 0;
	for (size_t i = 0; i < argc; i++)
		strings += strlen(argv[i]) + 1;
	for (size_t i = 0; i < envc; i++)
		strings += strlen(envp[i]) + 1;
	if (strings + strlen(execfn) + 4096 > size / 4)
		return 0; /* E2BIG for the kernel; we have checked nothing else */

	uint64_t execfn_at = sp = push_bytes(sp, execfn, strlen(execfn) + 1);
	uint64_t env_at[envc + 1], arg_at[argc + 1];
	for (size_t i = envc; i-- > 0;)
		env_at[i] = sp = push_bytes(sp, envp[i], strlen(envp[i]) + 1);
	for (size_t i = argc; i-- > 0;)
		arg_at[i] = sp = push_bytes(sp, argv[i], strlen(argv[i]) + 1);
	uint64_t platform_at = sp = push_bytes(sp, "x86_64", 7);
	uint8_t random[16];
	if (getrandom(random, sizeof(random), 0) != sizeof(random))
		memset(random, 0x5a, sizeof(random));
	sp &= ~15ull;
	uint64_t random_at = sp = push_bytes(sp, random, sizeof(random));

	uint64_t aux[][2] = {
	    {AT_SYSINFO_EHDR, getauxval(AT_SYSINFO_EHDR)},
	    {AT_MINSIGSTKSZ, getauxval(AT_MINSIGSTKSZ)},
	    {AT_HWCAP, getauxval(AT_HWCAP)},
	    {AT_PAGESZ, 4096},
	    {AT_CLKTCK, (uint64_t)sysconf(_SC_CLK_TCK)},
	    {AT_PHDR, img->phdr},
	    {AT_PHENT, img->phent},
	    {AT_PHNUM, img->phnum},
	    {AT_BASE, img->interp_base},
	    {AT_FLAGS, 0},
	    {AT_ENTRY, img->entry},
	    {AT_UID, getuid()},
	    {AT_EUID, geteuid()},
	    {AT_GID, getgid()},
	    {AT_EGID, getegid()},
	    {AT_SECURE, 0},
	    {AT_RANDOM, random_at},
	    {AT_HWCAP2, getauxval(AT_HWCAP2)},
	    {AT_EXECFN, execfn_at},
	    {AT_PLATFORM, platform_at},
	    {AT_NULL, 0},
	};
	size_t naux = sizeof(aux) / sizeof(aux[0]);
	if (!aux[0][1]) /* no vDSO on the host: leave it out */
		aux[0][0] = AT_IGNORE;
	size_t words = 1 + argc + 1 + envc + 1 + 2 * naux;
	sp -= words * 8;
	sp &= ~15ull;
	if (sp < (uintptr_t)base + STACK_FILL)
		return 0;

	uint64_t *w = (uint64_t *)(uintptr_t)sp;
	*w++ = argc;
	for (size_t i = 0; i < argc; i++)
		*w++ = arg_at[i];
	*w++ = 0;
	for (size_t i = 0; i < envc; i++)
		*w++ = env_at[i];
	*w++ = 0;
	memcpy(w, aux, sizeof(aux));
	return sp;
}
