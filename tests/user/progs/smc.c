/*
 * Self-modifying code without mprotect: functions written into an RWX
 * mapping, called, patched and called again; a function that patches an
 * instruction later in its own block; threads patching and calling their
 * own functions in one shared page, a function written by one thread and
 * run by another after a flag, rounds of that (argument "threads"); a
 * multi-threaded JIT rewriting its code thousands of times with memory
 * bounded (argument "jit").
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef int (*fn_t)(int);

static uint8_t *page;

/* mov eax, imm32; ret */
static void emit_const(uint8_t *p, int v)
{
	p[0] = 0xb8;
	memcpy(p + 1, &v, 4);
	p[5] = 0xc3;
}

/* Patches the immediate of the MOV that follows it, then runs it:
 *   lea rcx, [rip + 3]; mov [rcx], edi; mov eax, 0; ret */
static const uint8_t self_patch[] = {0x48, 0x8d, 0x0d, 0x03, 0x00, 0x00, 0x00, 0x89,
				     0x39, 0xb8, 0x00, 0x00, 0x00, 0x00, 0xc3};

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint8_t *f = page + 1024 + 64 * id;
	long sum = 0;
	for (int i = 0; i < 2000; i++) {
		emit_const(f, id * 100000 + i);
		sum += ((fn_t)(void *)f)(0);
	}
	return (void *)sum;
}

/* Code written from signal handlers: one that blocks every signal (SIGSEGV
 * too: vireo's own write faults must still reach it), and a SIGSEGV
 * handler, which runs with SIGSEGV blocked. */
static uint8_t *sig_fn;
static long sig_sum;
static sigjmp_buf sig_jmp;

static void on_usr1(int sig)
{
	static int n;
	(void)sig;
	emit_const(sig_fn, ++n);
	sig_sum += ((fn_t)(void *)sig_fn)(0);
}

static void on_segv(int sig)
{
	on_usr1(sig);
	siglongjmp(sig_jmp, 1);
}

static long from_handlers(uint8_t *guard)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigfillset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_segv;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	emit_const(sig_fn, 0);
	((fn_t)(void *)sig_fn)(0);
	for (int i = 0; i < 100; i++) {
		raise(SIGUSR1);
		if (!sigsetjmp(sig_jmp, 1))
			*(volatile int *)guard = 1;
	}
	return sig_sum;
}

/* With SIGSEGV blocked by the program, a write to code still works, and the
 * mask reads back as set. */
static int with_segv_blocked(uint8_t *f)
{
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sum = 0;
	for (int i = 0; i < 50; i++) {
		emit_const(f, i);
		sum += ((fn_t)(void *)f)(0);
	}
	sigprocmask(SIG_UNBLOCK, &set, &old);
	return sum * 2 + sigismember(&old, SIGSEGV);
}

/* A store across the boundary of two pages that both hold code: the
 * immediate of a MOV at the end of one page, its RET on the next. */
static long across_pages(uint8_t *two)
{
	uint8_t *f = two + 4092, *g = two + 4096 + 64;
	long sum = 0;
	emit_const(g, 7);
	for (int i = 0; i < 300; i++) {
		emit_const(f, 0);
		sum += ((fn_t)(void *)g)(0);
		*(volatile uint32_t *)(f + 1) = (uint32_t)i; /* bytes 4093..4096 */
		sum += ((fn_t)(void *)f)(0);
	}
	return sum;
}

/* Cross-modifying code: one thread writes a function and then releases a
 * flag; the other, once it sees the flag, must run the new code. */
static int handoff_flag;

static void *handoff_writer(void *arg)
{
	uint8_t *f = arg;
	for (int k = 1; k <= 200; k++) {
		while (__atomic_load_n(&handoff_flag, __ATOMIC_ACQUIRE) != 0)
			;
		emit_const(f, k);
		__atomic_store_n(&handoff_flag, k, __ATOMIC_RELEASE);
	}
	return NULL;
}

static long handoff(uint8_t *f)
{
	pthread_t w;
	long wrong = 0;
	emit_const(f, 0);
	((fn_t)(void *)f)(0);
	pthread_create(&w, NULL, handoff_writer, f);
	for (int k = 1; k <= 200; k++) {
		while (__atomic_load_n(&handoff_flag, __ATOMIC_ACQUIRE) != k)
			;
		wrong += ((fn_t)(void *)f)(0) != k;
		__atomic_store_n(&handoff_flag, 0, __ATOMIC_RELEASE);
	}
	pthread_join(w, NULL);
	return wrong;
}

/* Rounds of threads patching one page, each call checked. */
static void *checker(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint8_t *f = page + 1024 + 64 * id;
	long wrong = 0;
	for (int i = 0; i < 20; i++) {
		emit_const(f, id * 1000 + i);
		wrong += ((fn_t)(void *)f)(0) != id * 1000 + i;
	}
	return (void *)wrong;
}

static long stress(int rounds)
{
	long wrong = 0;
	for (int r = 0; r < rounds; r++) {
		pthread_t th[4];
		for (int i = 0; i < 4; i++)
			pthread_create(&th[i], NULL, checker, (void *)(intptr_t)i);
		for (int i = 0; i < 4; i++) {
			void *w;
			pthread_join(th[i], &w);
			wrong += (long)w;
		}
	}
	return wrong;
}

/* A JIT that keeps rewriting: each thread writes a long function (ADDs of
 * changing immediates) into its own RWX pages and calls it, thousands of
 * times, which fills the code cache with invalidated code again and again;
 * memory must stay bounded. */
#define JIT_ADDS   700
#define JIT_ROUNDS 1500

static void *jit_worker(void *arg)
{
	uint8_t *code = arg;
	long wrong = 0;
	for (int r = 0; r < JIT_ROUNDS; r++) {
		uint8_t *p = code;
		int want = 0;
		*p++ = 0x31, *p++ = 0xc0; /* xor eax, eax */
		for (int i = 0; i < JIT_ADDS; i++) {
			int v = r * 3 + i;
			*p++ = 0x05; /* add eax, imm32 */
			memcpy(p, &v, 4);
			p += 4;
			want += v;
		}
		*p = 0xc3;
		wrong += ((fn_t)(void *)code)(0) != want;
	}
	return (void *)wrong;
}

/* Blocked in a system call made from translated code all along: it must
 * not keep the code cache from reusing its memory. */
static void *sleeper(void *arg)
{
	(void)arg;
	poll(NULL, 0, -1);
	return NULL;
}

static long vm_rss_mib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib / 1024;
}

static int jit(void)
{
	uint8_t *code = mmap(NULL, 4 * 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 1;
	pthread_t th[4], s;
	pthread_create(&s, NULL, sleeper, NULL);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, jit_worker, code + 8192 * i);
	long wrong = 0;
	for (int i = 0; i < 4; i++) {
		void *w;
		pthread_join(th[i], &w);
		wrong += (long)w;
	}
	long rss = vm_rss_mib();
	printf("jit: %ld wrong, memory %s\n", wrong, rss >= 0 && rss < 200 ? "bounded" : "grew");
	if (rss >= 200)
		fprintf(stderr, "VmRSS %ld MiB\n", rss);
	return 0;
}

int main(int argc, char **argv)
{
	page = mmap(NULL, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return 1;
	if (argc > 1 && !strcmp(argv[1], "jit"))
		return jit();

	long sum = 0;
	for (int i = 0; i < 3000; i++) {
		emit_const(page, i * 7);
		sum += ((fn_t)(void *)page)(0);
	}
	printf("patched immediates: %ld\n", sum);

	/* Data next to code in the same page, written between calls. */
	volatile int *counter = (volatile int *)(page + 512);
	for (int i = 0; i < 1000; i++)
		*counter += ((fn_t)(void *)page)(0) == 2999 * 7;
	printf("data beside code: %d\n", *counter);

	memcpy(page + 4096, self_patch, sizeof(self_patch));
	fn_t sp = (fn_t)(void *)(page + 4096);
	sum = 0;
	for (int i = 0; i < 1000; i++)
		sum += sp(i);
	printf("patched ahead in its own block: %ld\n", sum);

	uint8_t *more = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (more == MAP_FAILED)
		return 1;
	printf("store across two code pages: %ld\n", across_pages(more));
	printf("SIGSEGV blocked: %d\n", with_segv_blocked(more + 2048));
	mprotect(more + 3 * 4096, 4096, PROT_NONE);
	sig_fn = more + 2 * 4096 + 100;
	printf("from signal handlers: %ld\n", from_handlers(more + 3 * 4096));

	if (argc < 2 || strcmp(argv[1], "threads"))
		return 0;
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(th[i], &r);
		printf("thread %d: %ld\n", i, (long)r);
	}
	printf("handoff: %ld wrong\n", handoff(page + 2048));
	printf("200 rounds of 4 threads: %ld wrong\n", stress(200));
	return 0;
}
