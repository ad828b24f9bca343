/*
 * What the translator cannot run (XEXIT_UNSUPPORTED: far transfers,
 * FS/GS string instructions, 32-bit addresses with a segment, anything
 * Zydis cannot re-encode) runs one instruction at a time in the interpreter
 * over the guest's registers and memory (dbt/usermode.c: identity memory),
 * then translated code resumes after it. A guest access to bad memory
 * faults on the host; host_signal() sees in_interp and turns it into the
 * instruction's fault, so the guest gets its SIGSEGV with the right address.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "dbt/dbt.h"
#include "dbt/translator.h"
#include "dbt/user/user.h"

/* The guest's x87/SSE state between the context's XSAVE image and the
 * interpreter's FXSAVE image, by the host CPU, so that components in their
 * initial state and the AVX upper halves stay exactly as they are. */
static void xsave_to_fx(const struct xlat_ctx *ctx, struct x86_fxsave *fx)
{
	__asm__ volatile("xrstor64 (%0)\n\tfxsave64 (%1)"
			 :
			 : "r"(ctx->xsave), "r"(fx), "a"((uint32_t)ctx->xsave_mask),
			   "d"((uint32_t)(ctx->xsave_mask >> 32))
			 : "memory");
}

static void fx_to_xsave(struct xlat_ctx *ctx, const struct x86_fxsave *fx)
{
	__asm__ volatile("xrstor64 (%0)\n\tfxrstor64 (%1)\n\txsave64 (%0)"
			 :
			 : "r"(ctx->xsave), "r"(fx), "a"((uint32_t)ctx->xsave_mask),
			   "d"((uint32_t)(ctx->xsave_mask >> 32))
			 : "memory");
}

/* The si_code Linux gives an x87 or SSE exception (fpu__exception_code). */
static int fpe_code(unsigned unmasked)
{
	if (unmasked & 0x01)
		return FPE_FLTINV;
	if (unmasked & 0x04)
		return FPE_FLTDIV;
	if (unmasked & 0x08)
		return FPE_FLTOVF;
	if (unmasked & 0x12)
		return FPE_FLTUND;
	if (unmasked & 0x20)
		return FPE_FLTRES;
	return 0;
}

/* The signal Linux sends for an exception of a user instruction at rip. */
static void fault_info(struct user_thread *t, const struct dbt_user_fault *f, const struct dbt_user_state *st,
		       siginfo_t *info)
{
	void *rip = (void *)(uintptr_t)st->rip;
	memset(info, 0, sizeof(*info));
	switch (f->vector) {
	case 0: *info = (siginfo_t){.si_signo = SIGFPE, .si_code = FPE_INTDIV, .si_addr = rip}; break;
	case 1:
	case 3: *info = (siginfo_t){.si_signo = SIGTRAP, .si_code = SI_KERNEL}; break;
	case 6: *info = (siginfo_t){.si_signo = SIGILL, .si_code = ILL_ILLOPN, .si_addr = rip}; break;
	case 14: *info = t->interp_info; break; /* the host's own fault, same address */
	case 16: {
		unsigned un = (st->fpu.fsw & 0x3f) & ~(st->fpu.fcw & 0x3f);
		*info = (siginfo_t){.si_signo = SIGFPE, .si_code = fpe_code(un), .si_addr = rip};
		break;
	}
	case 17: *info = (siginfo_t){.si_signo = SIGBUS, .si_code = BUS_ADRALN}; break;
	case 19: {
		unsigned un = (st->fpu.mxcsr & 0x3f) & ~((st->fpu.mxcsr >> 7) & 0x3f);
		*info = (siginfo_t){.si_signo = SIGFPE, .si_code = fpe_code(un), .si_addr = rip};
		break;
	}
	default: *info = (siginfo_t){.si_signo = SIGSEGV, .si_code = SI_KERNEL}; break; /* #GP, #SS, ... */
	}
}

void user_interpret(struct user_thread *t)
{
	static __thread struct dbt_user_state st;
	struct xlat_ctx *ctx = t->ctx;
	struct dbt_user_fault f;

	if (!t->interp && !(t->interp = dbt_user_cpu_create())) {
		fprintf(stderr, "vireo user: no memory for the interpreter\n");
		user_die(SIGKILL);
	}
	memcpy(st.gpr, ctx->gpr, sizeof(st.gpr));
	st.rip = ctx->rip;
	st.rflags = ctx->rflags;
	st.fs_base = ctx->fs_base;
	st.gs_base = ctx->gs_base;
	xsave_to_fx(ctx, &st.fpu);
	t->interp_faulted = false;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	t->in_interp = true;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	int n = dbt_user_run(t->interp, &st, 1, &f);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	t->in_interp = false;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (t->interp_faulted) /* left the host handler by longjmp */
		pthread_sigmask(SIG_SETMASK, &t->interp_mask, NULL);
	memcpy(ctx->gpr, st.gpr, sizeof(st.gpr));
	ctx->rip = st.rip;
	ctx->rflags = st.rflags;
	ctx->fs_base = st.fs_base;
	ctx->gs_base = st.gs_base;
	fx_to_xsave(ctx, &st.fpu);
	if (n >= 0)
		return;
	if (f.vector < 0) {
		fprintf(stderr, "vireo user: cannot run the instruction at %#lx: %s\n", (unsigned long)st.rip,
			f.message);
		user_die(SIGILL);
	}
	siginfo_t info;
	fault_info(t, &f, &st, &info);
	user_raise_fault(t, &info);
}
