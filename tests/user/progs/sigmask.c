/*
 * A program that blocks SIGSEGV, SIGBUS and SIGTRAP (sigprocmask,
 * pthread_sigmask, a handler's sa_mask) and then patches its own code,
 * directly and through an instruction the translator leaves to the
 * interpreter: nothing it can see happens. What it blocks is what it reads
 * back, across execve too; a SIGSEGV sent while blocked waits until it is
 * unblocked; a fault while SIGSEGV is blocked kills it (argument "fault").
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int (*fn_t)(void);

static uint8_t *code;
static volatile int *volatile bad = (int *)16;

/* mov eax, imm32; ret */
static void emit_const(uint8_t *p, int v)
{
	p[0] = 0xb8;
	memcpy(p + 1, &v, 4);
	p[5] = 0xc3;
}

/* Run, patch, run: the second run sees the patch. */
static int patch_and_run(int slot, int v)
{
	uint8_t *f = code + 64 * slot;
	emit_const(f, v);
	int a = ((fn_t)(void *)f)();
	emit_const(f, v + 1);
	return a * 1000 + ((fn_t)(void *)f)();
}

/* The patch copied by "fs rep movsb" (the interpreter runs it). */
static int patch_interpreted(int slot, int v)
{
	uint8_t *f = code + 64 * slot, src[6];
	emit_const(f, v);
	int a = ((fn_t)(void *)f)();
	emit_const(src, v + 1);
	uint64_t fs;
	__asm__ volatile("mov %%fs:0, %0" : "=r"(fs));
	uint64_t si = (uintptr_t)src - fs, n = sizeof(src);
	uint8_t *di = f;
	__asm__ volatile("cld\n\tfs rep movsb" : "+S"(si), "+D"(di), "+c"(n) : : "memory");
	return a * 1000 + ((fn_t)(void *)f)();
}

static void block(int how)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGSEGV);
	sigaddset(&s, SIGBUS);
	sigaddset(&s, SIGTRAP);
	sigprocmask(how, &s, NULL);
}

static int blocked(int sig)
{
	sigset_t s;
	sigprocmask(SIG_BLOCK, NULL, &s);
	return sigismember(&s, sig);
}

static void *thread(void *arg)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGSEGV);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	return (void *)(intptr_t)patch_and_run(3, (int)(intptr_t)arg);
}

static volatile int usr1_result, segv_seen;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_result = patch_and_run(4, 40) * 10 + blocked(SIGSEGV) + blocked(SIGBUS);
}

static void on_segv(int sig)
{
	(void)sig;
	segv_seen++;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "exec")) {
		printf("after execve: SIGSEGV %s, SIGTRAP %s, SIGBUS %s\n",
		       blocked(SIGSEGV) ? "blocked" : "not blocked", blocked(SIGTRAP) ? "blocked" : "not blocked",
		       blocked(SIGBUS) ? "blocked" : "not blocked");
		return 0;
	}
	code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "fault")) {
		block(SIG_BLOCK);
		printf("%d\n", patch_and_run(0, 1));
		fflush(stdout);
		*bad = 1; /* killed by SIGSEGV, blocked or not */
		return 0;
	}
	block(SIG_BLOCK);
	printf("blocked: SIGSEGV %d, SIGBUS %d, SIGTRAP %d, SIGUSR1 %d\n", blocked(SIGSEGV), blocked(SIGBUS),
	       blocked(SIGTRAP), blocked(SIGUSR1));
	printf("patched: %d\n", patch_and_run(0, 10));
	printf("patched by the interpreter: %d\n", patch_interpreted(1, 20));

	pthread_t t;
	void *r;
	block(SIG_UNBLOCK);
	pthread_create(&t, NULL, thread, (void *)30);
	pthread_join(t, &r);
	printf("patched in a thread blocking SIGSEGV: %ld\n", (long)(intptr_t)r);

	struct sigaction sa = {.sa_handler = on_usr1};
	sigaddset(&sa.sa_mask, SIGSEGV);
	sigaddset(&sa.sa_mask, SIGBUS);
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	printf("patched in a handler masking SIGSEGV and SIGBUS: %d\n", usr1_result);
	printf("after the handler: SIGSEGV %d\n", blocked(SIGSEGV));

	/* Sent while blocked: delivered when unblocked. */
	struct sigaction sb = {.sa_handler = on_segv};
	sigaction(SIGSEGV, &sb, NULL);
	block(SIG_BLOCK);
	raise(SIGSEGV);
	printf("sent while blocked: handled %d\n", segv_seen);
	block(SIG_UNBLOCK);
	printf("after unblocking: handled %d\n", segv_seen);

	/* The mask goes through execve. */
	block(SIG_BLOCK);
	fflush(stdout);
	char *args[] = {argv[0], "exec", NULL};
	execv(argv[0], args);
	return 1;
}
