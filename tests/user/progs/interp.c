/*
 * Instructions the translator hands to the interpreter (far returns, string
 * instructions with an FS override, 32-bit addresses with FS), their
 * results and their faults: a bad address in one must be the guest's
 * SIGSEGV with that address, as natively.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static sigjmp_buf back;
static volatile void *fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	fault_addr = si->si_addr;
	siglongjmp(back, 1);
}

static uint64_t far_return(uint64_t v)
{
	uint64_t out;
	__asm__ volatile("lea 1f(%%rip), %%rcx\n\t"
			 "pushq $0x33\n\t"
			 "push %%rcx\n\t"
			 "lretq\n"
			 "1:\tlea 1(%1), %0"
			 : "=r"(out)
			 : "r"(v)
			 : "rcx", "memory");
	return out;
}

static uint64_t fs_self(void)
{
	uint64_t v;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(v));
	return v;
}

/* fs lodsq from offset 0: the TCB's self pointer. */
static uint64_t fs_lods(void)
{
	uint64_t v, si = 0;
	__asm__ volatile("fs lodsq" : "=a"(v), "+S"(si) : : "memory");
	(void)si;
	return v;
}

static uint32_t fs_addr32(void)
{
	uint32_t v;
	__asm__ volatile("xor %%ecx, %%ecx\n\t"
			 "addr32 mov %%fs:(%%ecx), %0"
			 : "=r"(v)
			 :
			 : "rcx");
	return v;
}

/* fs rep movsb from the TCB into dst. */
static void fs_movs(void *dst, size_t n)
{
	uint64_t si = 0;
	__asm__ volatile("cld\n\tfs rep movsb" : "+S"(si), "+D"(dst), "+c"(n) : : "memory");
}

int main(void)
{
	struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
	sigaction(SIGSEGV, &sa, NULL);

	uint64_t sum = 0;
	for (uint64_t i = 0; i < 1000; i++)
		sum += far_return(i);
	printf("far returns: %llu\n", (unsigned long long)sum);
	printf("fs lods is fs:0: %d\n", fs_lods() == fs_self());
	printf("addr32 fs load is fs:0: %d\n", fs_addr32() == (uint32_t)fs_self());
	uint64_t copy[2] = {0, 0};
	fs_movs(copy, 8);
	printf("fs movs copies fs:0: %d\n", copy[0] == fs_self());

	char *bad = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(bad + 4096, 4096);
	for (int i = 0; i < 3; i++) {
		fault_addr = NULL;
		if (!sigsetjmp(back, 1)) {
			fs_movs(bad + 4096 - 4 + i, 8); /* the write crosses into the hole */
			printf("no fault\n");
		} else {
			printf("fault %d at hole+%ld\n", i, (long)((char *)fault_addr - (bad + 4096)));
		}
	}
	return 0;
}
