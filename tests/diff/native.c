/*
 * The oracle: cases run on the host CPU. The code page is a memfd mapped
 * twice (executable at DIFF_CODE, writable elsewhere), the data and stack
 * pages sit at their fixed addresses with nothing mapped around them, so a
 * stray access faults as it does in the guest. A case that raises an
 * exception comes back through a signal handler on its own stack, which
 * records the vector (the kernel's trap number), the error code, the fault
 * address and the state at the fault.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "diff.h"

void diff_native_enter(const struct diff_state *in);
void diff_native_exit(void);
extern struct diff_state diff_native_out;
extern const uint8_t diff_native_stop[], diff_native_stop_end[];

struct native {
	uint8_t *code_rw;
	void *altstack;
};

static sigjmp_buf native_jmp;
static struct diff_result *volatile native_res;
static volatile sig_atomic_t native_active;

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct diff_result *r = native_res;
	const greg_t *gr = uc->uc_mcontext.gregs;
	static const int order[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
				      REG_R8,  REG_R9,	REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

	if (!native_active) {
		/* The runner itself: die of it, the parent reports the crash. */
		signal(sig, SIG_DFL);
		return;
	}
	native_active = 0;
	r->status = DIFF_FAULT;
	r->vector = (uint8_t)gr[REG_TRAPNO];
	r->error_code = (uint32_t)gr[REG_ERR];
	r->fault_addr = (uint64_t)si->si_addr;
	for (int i = 0; i < 16; i++)
		r->st.gpr[i] = (uint64_t)gr[order[i]];
	r->st.rip = (uint64_t)gr[REG_RIP];
	r->st.rflags = (uint64_t)gr[REG_EFL];
	if (uc->uc_mcontext.fpregs)
		memcpy(&r->st.fpu, uc->uc_mcontext.fpregs, sizeof(r->st.fpu));
	snprintf(r->message, sizeof(r->message), "%s", strsignal(sig));
	siglongjmp(native_jmp, 1);
}

static int native_open(void **ctx, char *err, size_t errlen)
{
	struct native *n = calloc(1, sizeof(*n));
	int fd = memfd_create("diff-code", MFD_CLOEXEC);
	if (!n || fd < 0 || ftruncate(fd, DIFF_PAGE) < 0) {
		snprintf(err, errlen, "memfd: %s", strerror(errno));
		return -errno;
	}
	n->code_rw = mmap(NULL, DIFF_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	void *code = mmap((void *)DIFF_CODE, DIFF_PAGE, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	close(fd);
	if (n->code_rw == MAP_FAILED || code != (void *)DIFF_CODE) {
		snprintf(err, errlen, "cannot map the case pages at 0x%llx: %s", DIFF_CODE, strerror(errno));
		return -EEXIST;
	}
	int e = diff_pages_map(err, errlen);
	if (e < 0)
		return e;
	/* Guard pages: the case's neighbours must fault. */
	for (uint64_t a = DIFF_CODE - DIFF_PAGE; a < DIFF_CODE + DIFF_REGION_SIZE; a += DIFF_PAGE) {
		if (a == DIFF_CODE || a == DIFF_DATA || a == DIFF_STACK)
			continue;
		if (msync((void *)a, DIFF_PAGE, MS_ASYNC) == 0 || errno != ENOMEM) {
			snprintf(err, errlen, "something is mapped at 0x%llx, next to the case pages",
				 (unsigned long long)a);
			return -EEXIST;
		}
	}
	stack_t ss = {.ss_size = 256 * 1024};
	ss.ss_sp = n->altstack = malloc(ss.ss_size);
	if (!ss.ss_sp || sigaltstack(&ss, NULL) < 0) {
		snprintf(err, errlen, "sigaltstack: %s", strerror(errno));
		return -errno;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	*ctx = n;
	return 0;
}

static void native_run(void *ctx, const struct diff_case *c, struct diff_result *r)
{
	struct native *n = ctx;
	uint64_t exit_addr = (uint64_t)(uintptr_t)diff_native_exit;
	size_t stop_len = (size_t)(diff_native_stop_end - diff_native_stop);
	static struct diff_state in __attribute__((aligned(64)));

	memset(n->code_rw, 0xcc, DIFF_PAGE);
	memcpy(n->code_rw, c->code, c->code_len);
	memcpy(n->code_rw + c->code_len, diff_native_stop, stop_len);
	memcpy(n->code_rw + c->code_len + stop_len, &exit_addr, 8);
	diff_pages_load(c);
	in = c->init;
	in.rip = DIFF_CODE;

	memset(r, 0, offsetof(struct diff_result, st));
	native_res = r;
	if (sigsetjmp(native_jmp, 1) == 0) {
		native_active = 1;
		diff_native_enter(&in);
		native_active = 0;
		r->status = DIFF_STOP;
		r->st = diff_native_out;
		r->st.rip = DIFF_CODE + c->code_len;
	}
	diff_pages_save(r);
}

static void native_close(void *ctx)
{
	struct native *n = ctx;
	diff_pages_unmap();
	munmap(n->code_rw, DIFF_PAGE);
	free(n);
}

const struct diff_engine diff_engine_native = {
    .name = "native",
    .open = native_open,
    .run = native_run,
    .close = native_close,
};
