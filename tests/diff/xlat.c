/*
 * The translator as an engine: the case's bytes at DIFF_CODE translated as
 * user-mode blocks and run over the same pages as the host run, with what
 * the translator cannot run going through the interpreter's user mode, as
 * under `vireo user`. The case ends with a direct jump to a stop address,
 * which exits to the runner; a fault in translated code arrives as a signal
 * whose context holds the guest's registers (the host's, while translated
 * code runs) and whose PC maps back to the guest instruction.
 */
#include <asm/prctl.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "dbt/dbt.h"
#include "dbt/translator.h"
#include "diff.h"

#define STOP_OFF  0x800 /* the stop address, in the code page */
#define MAX_EXITS 100000

struct xengine {
	struct xlat_ctx *ctx;
	struct dbt_cpu *interp;
	void *altstack;
};

static sigjmp_buf xjmp;
static struct diff_result *volatile xres;
static volatile sig_atomic_t xactive, xin_interp;
static struct dbt_cpu *xinterp;
static struct xlat_ctx *xctx;

/* The case's code, up to the stop: the stop itself never translates (the
 * translator would otherwise make it ahead and chain the jump to it), so
 * reaching it is always an exit. */
static size_t fetchable(void *opaque, uint64_t addr, size_t len)
{
	(void)opaque;
	if (addr < DIFF_CODE || addr >= DIFF_CODE + STOP_OFF)
		return 0;
	return DIFF_CODE + STOP_OFF - addr < len ? DIFF_CODE + STOP_OFF - addr : len;
}

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct diff_result *r = xres;
	const greg_t *gr = uc->uc_mcontext.gregs;
	static const int order[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
				      REG_R8,  REG_R9,	REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
	uint64_t pc = (uint64_t)gr[REG_RIP];

	if (xin_interp && (sig == SIGSEGV || sig == SIGBUS)) {
		/* The interpreter's access: its instruction's fault. */
		r->vector = (uint8_t)gr[REG_TRAPNO];
		r->error_code = (uint32_t)gr[REG_ERR];
		r->fault_addr = (uint64_t)si->si_addr;
		dbt_user_host_fault(xinterp, (uintptr_t)si->si_addr);
	}
	if (!xactive || !xlat_code_at(pc) || !xlat_guest_rip(pc)) {
		signal(sig, SIG_DFL); /* the runner's own bug: the parent reports it */
		return;
	}
	xactive = 0;
	int spilled = xlat_spilled_reg(pc);
	if (spilled >= 0)
		uc->uc_mcontext.gregs[order[spilled]] = (greg_t)xctx->spill[XS_A];
	r->status = DIFF_FAULT;
	r->vector = (uint8_t)gr[REG_TRAPNO];
	r->error_code = (uint32_t)gr[REG_ERR];
	r->fault_addr = (uint64_t)si->si_addr;
	for (int i = 0; i < 16; i++)
		r->st.gpr[i] = (uint64_t)gr[order[i]];
	r->st.rip = xlat_guest_rip(pc);
	r->st.rflags = (uint64_t)gr[REG_EFL];
	if (uc->uc_mcontext.fpregs)
		memcpy(&r->st.fpu, uc->uc_mcontext.fpregs, sizeof(r->st.fpu));
	snprintf(r->message, sizeof(r->message), "%s", strsignal(sig));
	siglongjmp(xjmp, 1);
}

static int xlat_open(void **ctxp, char *err, size_t errlen)
{
	struct xengine *x = calloc(1, sizeof(*x));
	struct xlat_env env = {.fetchable = fetchable};
	int e;

	if (!x)
		return -ENOMEM;
	void *code = mmap((void *)DIFF_CODE, DIFF_PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (code != (void *)DIFF_CODE) {
		snprintf(err, errlen, "cannot map the case pages at 0x%llx: %s", DIFF_CODE, strerror(errno));
		return -EEXIST;
	}
	if ((e = diff_pages_map(err, errlen)) < 0)
		return e;
	if ((e = xlat_init(&env, NULL, 0)) < 0 || (e = xlat_ctx_create(&x->ctx, x)) < 0) {
		snprintf(err, errlen, "cannot start the translator: %s", strerror(-e));
		return e;
	}
	xctx = x->ctx;
	xinterp = x->interp = dbt_user_cpu_create();
	stack_t ss = {.ss_size = 256 * 1024};
	ss.ss_sp = x->altstack = malloc(ss.ss_size);
	if (!x->interp || !ss.ss_sp || sigaltstack(&ss, NULL) < 0) {
		snprintf(err, errlen, "no memory for the interpreter or the signal stack");
		return -ENOMEM;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	*ctxp = x;
	return 0;
}

/* The guest's x87/SSE state between FXSAVE images and the context's XSAVE
 * image, through the host's registers. */
static void fx_into_ctx(struct xlat_ctx *ctx, const struct x86_fxsave *fx)
{
	__asm__ volatile("fxrstor64 (%1)\n\txsave64 (%0)"
			 :
			 : "r"(ctx->xsave), "r"(fx), "a"((uint32_t)ctx->xsave_mask),
			   "d"((uint32_t)(ctx->xsave_mask >> 32))
			 : "memory");
}

static void fx_from_ctx(const struct xlat_ctx *ctx, struct x86_fxsave *fx)
{
	__asm__ volatile("xrstor64 (%0)\n\tfxsave64 (%1)"
			 :
			 : "r"(ctx->xsave), "r"(fx), "a"((uint32_t)ctx->xsave_mask),
			   "d"((uint32_t)(ctx->xsave_mask >> 32))
			 : "memory");
}

/* One instruction the translator exited on, in the interpreter. */
static bool interpret(struct xengine *x, struct diff_result *r)
{
	static struct dbt_user_state st;
	struct dbt_user_fault f;
	struct xlat_ctx *ctx = x->ctx;

	memcpy(st.gpr, ctx->gpr, sizeof(st.gpr));
	st.rip = ctx->rip;
	st.rflags = ctx->rflags;
	st.fs_base = ctx->fs_base;
	st.gs_base = ctx->gs_base;
	fx_from_ctx(ctx, &st.fpu);
	r->vector = 0;
	xin_interp = 1;
	int n = dbt_user_run(x->interp, &st, 1, &f);
	xin_interp = 0;
	memcpy(ctx->gpr, st.gpr, sizeof(st.gpr));
	ctx->rip = st.rip;
	ctx->rflags = st.rflags;
	fx_into_ctx(ctx, &st.fpu);
	if (n >= 0)
		return true;
	r->status = f.vector < 0 ? DIFF_ERROR : DIFF_FAULT;
	if (f.vector >= 0 && f.vector != 14) { /* 14: the host's trap number and error code are set */
		r->vector = (uint8_t)f.vector;
		r->error_code = f.error == (uint32_t)-1 ? 0 : f.error;
		r->fault_addr = 0;
	}
	snprintf(r->message, sizeof(r->message), "%s", f.vector < 0 ? f.message : "interpreter fault");
	return false;
}

static void xlat_run(void *ctxp, const struct diff_case *c, struct diff_result *r)
{
	struct xengine *x = ctxp;
	struct xlat_ctx *ctx = x->ctx;
	uint8_t *code = (uint8_t *)(uintptr_t)DIFF_CODE;
	uint64_t stop = DIFF_CODE + STOP_OFF;
	sigset_t mask;

	memset(code, 0xcc, DIFF_PAGE);
	memcpy(code, c->code, c->code_len);
	code[c->code_len] = 0xe9; /* jmp rel32 to the stop */
	int32_t rel = (int32_t)(stop - (DIFF_CODE + c->code_len + 5));
	memcpy(code + c->code_len + 1, &rel, 4);
	diff_pages_load(c);
	xlat_invalidate(DIFF_CODE, DIFF_PAGE);

	memcpy(ctx->gpr, c->init.gpr, sizeof(ctx->gpr));
	ctx->rip = DIFF_CODE;
	ctx->rflags = c->init.rflags | 0x202;
	syscall(SYS_arch_prctl, ARCH_GET_FS, &ctx->fs_base); /* as the host run has it */
	ctx->gs_base = 0;
	fx_into_ctx(ctx, &c->init.fpu);

	memset(r, 0, offsetof(struct diff_result, st));
	xres = r;
	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	if (sigsetjmp(xjmp, 0) == 0) {
		const struct xlat_exit *from = NULL;
		unsigned exits = 0;
		for (;; exits++) {
			int err = 0;
			if (exits == MAX_EXITS) {
				r->status = DIFF_TIMEOUT;
				snprintf(r->message, sizeof(r->message), "%u exits", exits);
				break;
			}
			const void *host = xlat_code_for(ctx, ctx->rip, from, xlat_flush_gen, &err);
			if (!host) { /* a fetch from outside the code page: #PF, as the host reports it */
				r->status = DIFF_FAULT;
				r->vector = err == -EILSEQ ? 6 : 14;
				r->error_code = err == -EILSEQ ? 0
							       : 0x14 | (ctx->rip - DIFF_DATA < DIFF_PAGE ||
									 ctx->rip - DIFF_STACK < DIFF_PAGE);
				r->fault_addr = err == -EILSEQ ? 0 : ctx->rip;
				break;
			}
			xactive = 1;
			xlat_enter(ctx, host);
			xactive = 0;
			const struct xlat_exit *e = ctx->exit;
			from = NULL;
			if (e->kind == XEXIT_BRANCH && e->target == stop) {
				r->status = DIFF_STOP;
				ctx->rip = DIFF_CODE + c->code_len;
				break;
			}
			if (e->kind == XEXIT_BRANCH) {
				ctx->rip = e->target;
				from = e;
			} else if (e->kind == XEXIT_MISS) {
				ctx->rip = ctx->target;
			} else if (e->kind == XEXIT_UNSUPPORTED) {
				ctx->rip = e->target;
				if (!interpret(x, r))
					break;
			} else {
				r->status = DIFF_ERROR;
				snprintf(r->message, sizeof(r->message), "exit kind %u", e->kind);
				break;
			}
		}
		memcpy(r->st.gpr, ctx->gpr, sizeof(ctx->gpr));
		r->st.rip = ctx->rip;
		r->st.rflags = ctx->rflags;
		fx_from_ctx(ctx, &r->st.fpu);
	} else {
		pthread_sigmask(SIG_SETMASK, &mask, NULL);
	}
	diff_pages_save(r);
}

static void xlat_close(void *ctxp)
{
	struct xengine *x = ctxp;
	diff_pages_unmap();
	free(x);
}

const struct diff_engine diff_engine_xlat = {
    .name = "xlat",
    .open = xlat_open,
    .run = xlat_run,
    .close = xlat_close,
};
