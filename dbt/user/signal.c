/*
 * Guest signals. The guest's dispositions are kept here; the host gets
 * SIG_DFL and SIG_IGN as they are and, for a guest handler, host_signal(),
 * which records the signal and gets its thread back to the run loop, which
 * builds a Linux rt_sigframe on the guest stack and enters the guest handler
 * (translated like all guest code). The guest's signal mask is kept here
 * and given to the host thread but for SIGSEGV, SIGBUS and SIGTRAP, which
 * vireo's own faults need (write-protected code, the interpreter, stepping):
 * other blocked signals wait in the kernel as natively, those three in the
 * thread (deferred) until the guest unblocks them, and a fault the guest
 * blocks is its death as the kernel forces it. docs/dbt-translator.md,
 * "Signals".
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "dbt/dbt.h"
#include "dbt/translator.h"
#include "dbt/user/user.h"

#define NSIG_GUEST 64
#define ALTSTACK   (64u << 10)
#define MAGIC1	   0x46505853u /* FP_XSTATE_MAGIC1 */
#define MAGIC2	   0x46505845u

/* The kernel's struct sigaction (rt_sigaction's layout). */
struct guest_action {
	uint64_t handler, flags, restorer, mask;
};

/* The kernel's x86-64 ucontext and rt_sigframe. */
struct guest_mcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2, fpstate, reserved[8];
};
struct guest_ucontext {
	uint64_t flags, link;
	uint64_t ss_sp;
	int32_t ss_flags, pad;
	uint64_t ss_size;
	struct guest_mcontext mc;
	uint64_t sigmask;
};
struct guest_frame {
	uint64_t pretcode;
	struct guest_ucontext uc;
	siginfo_t info;
};

#define SA_RESTORER_FLAG     0x04000000u /* the kernel's SA_RESTORER */
#define SS_AUTODISARM_FLAG   (1u << 31)
#define UC_FP_XSTATE	     1
#define UC_SIGCONTEXT_SS     2
#define UC_STRICT_RESTORE_SS 4

struct user_actions {
	struct guest_action a[NSIG_GUEST + 1];
};

/* The process's (a vfork child has a copy), under actions_lock. */
static struct user_actions process_actions;
static pthread_mutex_t actions_lock = PTHREAD_MUTEX_INITIALIZER;

#define BIT(sig) (1ull << ((sig)-1))
/* Never blocked on the host: vireo's own faults. */
#define HOST_UNBLOCKED (BIT(SIGSEGV) | BIT(SIGBUS) | BIT(SIGTRAP))

static bool is_fault(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP;
}

/* Memory faults are always vireo's first (the interpreter's accesses), then
 * the guest's. */
static bool always_caught(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGTRAP;
}

static struct guest_action *actions_of(struct user_thread *t)
{
	return t ? t->actions->a : process_actions.a;
}

static uint64_t handler_of(struct user_thread *t, int sig)
{
	return __atomic_load_n(&actions_of(t)[sig].handler, __ATOMIC_RELAXED);
}

/* Does the guest have a handler for sig (async-signal-safe)? */
static bool guest_handles(struct user_thread *t, int sig)
{
	uint64_t h = handler_of(t, sig);
	return h != (uint64_t)(uintptr_t)SIG_DFL && h != (uint64_t)(uintptr_t)SIG_IGN;
}

/* ---- the host side ---- */

/* A passthrough SYSCALL site (translate.c): "syscall; mov rcx, next" or
 * "syscall; mov ecx, next". Returns the guest RIP after the SYSCALL when at
 * is the SYSCALL or the MOV after it, else 0. */
static uint64_t syscall_site(const uint8_t *at, bool *before)
{
	for (int back = 0; back <= 2; back += 2) {
		const uint8_t *p = at - back;
		if (p[0] != 0x0f || p[1] != 0x05)
			continue;
		*before = back == 0;
		if (p[2] == 0x48 && p[3] == 0xb9) {
			uint64_t v;
			memcpy(&v, p + 4, 8);
			return v;
		}
		if (p[2] == 0xb9) {
			uint32_t v;
			memcpy(&v, p + 3, 4);
			return v;
		}
	}
	return 0;
}

/* ucontext's index of each register, in encoding order. */
static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
				REG_R8,	 REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static int host_disposition(int sig, const struct guest_action *a);

/* A write fault on a page holding translations (user_smc_fault). Another
 * thread may have dropped them first, or hold the page while it translates
 * from it: retried, but a fault that keeps coming back at one address with
 * nothing to drop is the guest's own. */
static bool smc_fault(struct user_thread *t, uint64_t addr)
{
	if (user_smc_fault(addr)) {
		t->smc_retry = 0;
		return true;
	}
	if (!(user_maps_prot(addr) & PROT_EXEC) || !(user_maps_prot(addr) & PROT_WRITE))
		return false;
	if ((t->smc_retry >> 12) != (addr & ~4095ull) >> 12 || (t->smc_retry & 4095) == 0)
		t->smc_retry = (addr & ~4095ull) | 1024;
	t->smc_retry--;
	return (t->smc_retry & 4095) != 0;
}

static void host_signal(int sig, siginfo_t *info, void *ucv)
{
	ucontext_t *uc = ucv;
	struct user_thread *t = user_current_thread();
	uint64_t pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	int saved_errno = errno;

	if (!t) { /* a thread vireo made that runs no guest code */
		if (always_caught(sig) && info->si_code > 0)
			user_die(sig); /* vireo's own fault */
		errno = saved_errno;
		return;
	}
	bool in_cache = xlat_code_at(pc);
	if (sig == SIGSEGV && info->si_code == SEGV_ACCERR && (uc->uc_mcontext.gregs[REG_ERR] & 2) &&
	    smc_fault(t, (uintptr_t)info->si_addr)) {
		/* A write to a page holding translations: retried now. If the
		 * running block came from that page, the rest of it may be
		 * stale: step the write, then leave the block (below). */
		uint64_t rip = in_cache ? xlat_guest_rip(pc) : 0;
		if (rip && (rip >> 12 == (uintptr_t)info->si_addr >> 12 ||
			    (rip + 15) >> 12 == (uintptr_t)info->si_addr >> 12)) {
			t->smc_step = true;
			uc->uc_mcontext.gregs[REG_EFL] |= 0x100; /* TF */
		}
		goto out;
	}
	if (sig == SIGTRAP && t->smc_step) {
		t->smc_step = false;
		uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
		uint64_t rip = in_cache ? xlat_guest_rip(pc) : 0;
		if (rip && xlat_spilled_reg(pc) < 0 && xlat_insn_start(pc)) {
			t->ctx->target = rip;
			uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)xlat_signal_routine;
		}
		goto out;
	}
	if (always_caught(sig) && info->si_code > 0 && t->in_interp) {
		/* An access of the instruction the interpreter runs. */
		t->interp_info = *info;
		t->interp_mask = uc->uc_sigmask;
		t->interp_faulted = true;
		dbt_user_host_fault(t->interp, (uintptr_t)info->si_addr);
	}
	if (always_caught(sig) && info->si_code > 0 && (!guest_handles(t, sig) || (t->mask & BIT(sig))))
		user_die(sig); /* a fault the guest cannot take: the kernel forces the default */
	if (always_caught(sig) && info->si_code <= 0) { /* sent */
		uint64_t h = handler_of(t, sig);
		if (h == (uint64_t)(uintptr_t)SIG_IGN)
			goto out;
		if (t->mask & BIT(sig)) {
			t->pending_info[sig] = *info;
			__atomic_or_fetch(&t->deferred, BIT(sig), __ATOMIC_SEQ_CST);
			goto out;
		}
		if (h == (uint64_t)(uintptr_t)SIG_DFL)
			user_die(sig);
	}
	if (is_fault(sig) && info->si_code > 0) {
		/* Raised by an instruction: the guest's, if it ran in the
		 * cache; otherwise vireo's own bug, which must not loop. */
		uint64_t rip = in_cache ? xlat_guest_rip(pc) : 0;
		if (!rip)
			user_die(sig);
		t->fault_rip = rip;
		int spilled = xlat_spilled_reg(pc);
		if (spilled >= 0) /* the scratch of a rewritten operand gets its guest value back */
			uc->uc_mcontext.gregs[greg_of[spilled]] = (greg_t)t->ctx->spill[XS_A];
	}
	t->pending_info[sig] = *info;
	__atomic_or_fetch(&t->pending, 1ull << (sig - 1), __ATOMIC_SEQ_CST);
	if (!in_cache)
		goto out; /* the run loop looks before it enters */

	/* Translated code: stop it at a point where the guest state is exact,
	 * or make it leave at its next block end. */
	struct xlat_ctx *ctx = t->ctx;
	bool before = false;
	uint64_t next = t->fault_rip ? 0 : syscall_site((const uint8_t *)(uintptr_t)pc, &before);
	if (t->fault_rip || next) {
		/* The registers are the guest's: leave through the signal exit
		 * with RIP = the faulting instruction, the SYSCALL to restart,
		 * or the one after it. */
		ctx->target = t->fault_rip ? t->fault_rip : before ? next - 2 : next;
		if (!t->fault_rip && !before)
			uc->uc_mcontext.gregs[REG_RCX] = (greg_t)next;
		uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)xlat_signal_routine;
		t->fault_rip = 0;
	} else {
		xlat_unlink(ctx);
	}
out:
	errno = saved_errno;
}

/* Host handlers run on their own stack: the guest's may be anything. */
void user_signal_thread_init(struct user_thread *t)
{
	stack_t ss = {.ss_sp = malloc(ALTSTACK), .ss_size = ALTSTACK};
	if (ss.ss_sp && sigaltstack(&ss, NULL) == 0)
		t->host_altstack = ss.ss_sp;
	else
		free(ss.ss_sp);
}

void user_signal_thread_fini(struct user_thread *t)
{
	stack_t ss = {.ss_flags = SS_DISABLE};
	sigaltstack(&ss, NULL);
	free(t->host_altstack);
	t->host_altstack = NULL;
}

struct user_actions *user_actions_copy(const struct user_actions *a)
{
	struct user_actions *c = malloc(sizeof(*c));
	if (c) {
		pthread_mutex_lock(&actions_lock);
		*c = *a;
		pthread_mutex_unlock(&actions_lock);
	}
	return c;
}

void user_set_mask(struct user_thread *t, uint64_t mask)
{
	mask &= ~(BIT(SIGKILL) | BIT(SIGSTOP));
	t->mask = mask;
	uint64_t host = mask & ~HOST_UNBLOCKED;
	user_syscall6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&host, 0, 8, 0, 0);
	uint64_t now = __atomic_load_n(&t->deferred, __ATOMIC_SEQ_CST) & ~mask;
	if (now) { /* sent while blocked, due now */
		__atomic_and_fetch(&t->deferred, ~now, __ATOMIC_SEQ_CST);
		__atomic_or_fetch(&t->pending, now, __ATOMIC_SEQ_CST);
	}
}

/* As the kernel: the new mask is set before the old one is written. */
long user_rt_sigprocmask(struct user_thread *t, int how, uint64_t set, uint64_t oset, uint64_t size)
{
	uint64_t old = t->mask, m;

	if (size != 8)
		return -EINVAL;
	if (set) {
		if (user_read(&m, set, sizeof(m)) < 0)
			return -EFAULT;
		switch (how) {
		case SIG_BLOCK: m |= old; break;
		case SIG_UNBLOCK: m = old & ~m; break;
		case SIG_SETMASK: break;
		default: return -EINVAL;
		}
		user_set_mask(t, m);
	}
	if (oset && user_write((void *)(uintptr_t)oset, &old, sizeof(old)) < 0)
		return -EFAULT;
	return 0;
}

void user_signal_exec(struct user_thread *t, bool before)
{
	pthread_mutex_lock(&actions_lock);
	for (int sig = 1; sig <= NSIG_GUEST; sig++) {
		if (!always_caught(sig) || t->actions->a[sig].handler != (uint64_t)(uintptr_t)SIG_IGN)
			continue;
		struct sigaction ign = {.sa_handler = SIG_IGN};
		if (before)
			sigaction(sig, &ign, NULL);
		else
			host_disposition(sig, &t->actions->a[sig]);
	}
	pthread_mutex_unlock(&actions_lock);
	if (before)
		user_syscall6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&t->mask, 0, 8, 0, 0);
	else
		user_set_mask(t, t->mask);
}

static int host_disposition(int sig, const struct guest_action *a)
{
	struct sigaction sa = {0};
	if (!always_caught(sig) &&
	    (a->handler == (uint64_t)(uintptr_t)SIG_DFL || a->handler == (uint64_t)(uintptr_t)SIG_IGN)) {
		sa.sa_handler = (void (*)(int))(uintptr_t)a->handler;
		sa.sa_flags = (int)(a->flags & (SA_NOCLDSTOP | SA_NOCLDWAIT));
	} else {
		sa.sa_sigaction = host_signal;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK | (int)(a->flags & (SA_RESTART | SA_NOCLDSTOP | SA_NOCLDWAIT));
		sigfillset(&sa.sa_mask);
	}
	return sigaction(sig, &sa, NULL) < 0 ? -errno : 0;
}

/* The main thread: dispositions and mask are what execve left (ignored
 * signals stay ignored), the host handler is installed for vireo's faults. */
void user_signal_init(struct user_thread *t)
{
	uint64_t mask = 0;

	t->actions = &process_actions;
	for (int sig = 1; sig <= NSIG_GUEST; sig++) {
		struct sigaction old;
		if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			process_actions.a[sig].handler = (uint64_t)(uintptr_t)SIG_IGN;
	}
	host_disposition(SIGSEGV, &process_actions.a[SIGSEGV]);
	host_disposition(SIGBUS, &process_actions.a[SIGBUS]);
	host_disposition(SIGTRAP, &process_actions.a[SIGTRAP]);
	user_syscall6(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&mask, 8, 0, 0);
	user_set_mask(t, mask);
	user_signal_thread_init(t);
}

void user_raise_fault(struct user_thread *t, const siginfo_t *info)
{
	int sig = info->si_signo;
	if (!guest_handles(t, sig) || (t->mask & BIT(sig)))
		user_die(sig); /* the kernel forces the default action */
	t->pending_info[sig] = *info;
	__atomic_or_fetch(&t->pending, 1ull << (sig - 1), __ATOMIC_SEQ_CST);
}

long user_rt_sigaction(struct user_thread *t, int sig, uint64_t act, uint64_t oact, uint64_t size)
{
	struct guest_action *actions = t->actions->a;
	struct guest_action a;
	long r = 0;

	if (size != 8 || sig < 1 || sig > NSIG_GUEST)
		return -EINVAL;
	if (act && user_read(&a, act, sizeof(a)) < 0)
		return -EFAULT;
	if (act && (sig == SIGKILL || sig == SIGSTOP))
		return -EINVAL;
	pthread_mutex_lock(&actions_lock);
	struct guest_action old = actions[sig];
	if (oact && user_write((void *)(uintptr_t)oact, &old, sizeof(old)) < 0)
		r = -EFAULT;
	else if (act) {
		actions[sig] = a;
		r = host_disposition(sig, &a);
	}
	pthread_mutex_unlock(&actions_lock);
	return r;
}

long user_sigaltstack(struct user_thread *t, uint64_t uss, uint64_t uold)
{
	stack_t ss, old = t->altstack;
	uint64_t sp = t->ctx->gpr[XR_RSP];
	bool on = old.ss_size && sp - (uintptr_t)old.ss_sp < old.ss_size;

	old.ss_flags = old.ss_size ? (on ? SS_ONSTACK : 0) : SS_DISABLE;
	if (uss) {
		if (user_read(&ss, uss, sizeof(ss)) < 0)
			return -EFAULT;
		if (on)
			return -EPERM;
		if (ss.ss_flags & ~(SS_DISABLE | SS_AUTODISARM_FLAG))
			return -EINVAL;
		if (ss.ss_flags & SS_DISABLE)
			ss.ss_size = 0;
		else if (ss.ss_size < (size_t)MINSIGSTKSZ)
			return -ENOMEM;
	}
	if (uold && user_write((void *)(uintptr_t)uold, &old, sizeof(old)) < 0)
		return -EFAULT;
	if (uss)
		t->altstack = ss;
	return 0;
}

/* ---- delivery ---- */

static int next_pending(struct user_thread *t)
{
	uint64_t p = __atomic_load_n(&t->pending, __ATOMIC_SEQ_CST);
	if (!p)
		return 0;
	/* Synchronous signals first, as the kernel does. */
	for (int s = 1; s <= NSIG_GUEST; s++)
		if ((p & (1ull << (s - 1))) && is_fault(s))
			return s;
	return __builtin_ctzll(p) + 1;
}

void user_deliver_signals(struct user_thread *t)
{
	struct xlat_ctx *ctx = t->ctx;
	int sig;

	while ((sig = next_pending(t)) != 0) {
		__atomic_and_fetch(&t->pending, ~(1ull << (sig - 1)), __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&actions_lock);
		struct guest_action *actions = t->actions->a, a = actions[sig];
		if (a.flags & SA_RESETHAND) {
			actions[sig] = (struct guest_action){0};
			host_disposition(sig, &actions[sig]);
		}
		pthread_mutex_unlock(&actions_lock);
		if (a.handler == (uint64_t)(uintptr_t)SIG_IGN)
			continue;
		if (a.handler == (uint64_t)(uintptr_t)SIG_DFL)
			user_die(sig); /* handler reset in between: the default action */

		/* The frame: below the red zone or on the alternate stack. */
		uint64_t sp = ctx->gpr[XR_RSP];
		bool on_alt = t->altstack.ss_size && sp - (uintptr_t)t->altstack.ss_sp < t->altstack.ss_size;
		if ((a.flags & SA_ONSTACK) && t->altstack.ss_size && !on_alt)
			sp = (uintptr_t)t->altstack.ss_sp + t->altstack.ss_size;
		else
			sp -= 128;
		uint32_t xsize = xlat_xsave_size();
		uint64_t fp = (sp - xsize - 4) & ~63ull;
		sp = ((fp - sizeof(struct guest_frame)) & ~15ull) - 8;

		uint64_t old = t->mask;
		struct guest_frame f = {.pretcode = a.restorer, .info = t->pending_info[sig]};
		uint64_t *g = ctx->gpr;
		f.uc.flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
		f.uc.ss_sp = (uintptr_t)t->altstack.ss_sp;
		f.uc.ss_flags = t->altstack.ss_size ? (on_alt ? SS_ONSTACK : 0) : SS_DISABLE;
		f.uc.ss_size = t->altstack.ss_size;
		f.uc.mc = (struct guest_mcontext){
		    g[XR_R8],  g[XR_R9],  g[XR_R10], g[XR_R11],	  g[XR_R12],  g[XR_R13],  g[XR_R14],
		    g[XR_R15], g[XR_RDI], g[XR_RSI], g[XR_RBP],	  g[XR_RBX],  g[XR_RDX],  g[XR_RAX],
		    g[XR_RCX], g[XR_RSP], ctx->rip,  ctx->rflags, .cs = 0x33, .ss = 0x2b, .fpstate = fp,
		};
		if (is_fault(sig) && f.info.si_code > 0) {
			f.uc.mc.trapno = sig == SIGSEGV || sig == SIGBUS ? 14
					 : sig == SIGFPE		 ? 0
					 : sig == SIGILL		 ? 6
									 : 3;
			f.uc.mc.cr2 = (uintptr_t)f.info.si_addr;
		}
		f.uc.sigmask = old;

		/* The FPU image with its software bytes, as fpu__save_sig does. */
		uint8_t *img = malloc(xsize + 4);
		if (!img)
			user_die(SIGSEGV);
		/* XSAVE, not the exit's XSAVEOPT (which may leave components in
		 * their initial state unwritten): a handler reads the frame. */
		__asm__ volatile("xrstor64 (%0)\n\txsave64 (%0)"
				 :
				 : "r"(ctx->xsave), "a"((uint32_t)xlat_xsave_mask()),
				   "d"((uint32_t)(xlat_xsave_mask() >> 32))
				 : "memory");
		memcpy(img, ctx->xsave, xsize);
		uint32_t sw[4] = {MAGIC1, xsize + 4, (uint32_t)xlat_xsave_mask(), (uint32_t)xsize};
		memcpy(img + 464, sw, sizeof(sw));
		uint64_t feat = xlat_xsave_mask();
		memcpy(img + 472, &feat, 8);
		uint32_t m2 = MAGIC2;
		memcpy(img + xsize, &m2, 4);
		int bad = user_write((void *)(uintptr_t)fp, img, xsize + 4) < 0 ||
			  user_write((void *)(uintptr_t)sp, &f, sizeof(f)) < 0;
		free(img);
		if (bad || !(a.flags & SA_RESTORER_FLAG))
			user_die(SIGSEGV); /* the kernel's force_sigsegv */

		user_set_mask(t, old | a.mask | (a.flags & SA_NODEFER ? 0 : BIT(sig)));
		if (on_alt == false && (a.flags & SA_ONSTACK) && (t->altstack.ss_flags & SS_AUTODISARM_FLAG))
			t->altstack.ss_size = 0;

		g[XR_RDI] = (uint64_t)sig;
		g[XR_RSI] = sp + offsetof(struct guest_frame, info);
		g[XR_RDX] = sp + offsetof(struct guest_frame, uc);
		g[XR_RAX] = 0;
		g[XR_RSP] = sp;
		ctx->rip = a.handler;
		ctx->rflags &= ~(uint64_t)((1 << 10) | (1 << 8) | (1 << 16)); /* DF, TF, RF */
	}
}

/* rt_sigreturn: RSP is just past pretcode, at the ucontext. */
void user_rt_sigreturn(struct user_thread *t)
{
	struct xlat_ctx *ctx = t->ctx;
	struct guest_ucontext uc;
	uint64_t *g = ctx->gpr;

	if (user_read(&uc, g[XR_RSP], sizeof(uc)) < 0)
		user_die(SIGSEGV);
	const struct guest_mcontext *m = &uc.mc;
	uint64_t regs[16] = {m->rax, m->rcx, m->rdx, m->rbx, m->rsp, m->rbp, m->rsi, m->rdi,
			     m->r8,  m->r9,  m->r10, m->r11, m->r12, m->r13, m->r14, m->r15};
	memcpy(g, regs, sizeof(regs));
	ctx->rip = m->rip;
	/* The flags a user may change (FIX_EFLAGS). */
	const uint64_t fix = 0x40dd5; /* AC OF DF TF SF ZF AF PF CF RF */
	ctx->rflags = (ctx->rflags & ~fix) | (m->eflags & fix) | 0x10000ull * 0;
	if (m->fpstate) {
		uint32_t xsize = xlat_xsave_size();
		uint8_t *img = malloc(xsize);
		if (img && user_read(img, m->fpstate, xsize) == 0) {
			uint64_t *bv = (uint64_t *)(img + 512);
			*bv &= xlat_xsave_mask();
			memset(img + 464, 0, 48); /* the software bytes are not state */
			memcpy(ctx->xsave, img, xsize);
		}
		free(img);
	}
	user_set_mask(t, uc.sigmask);
	if (!(uc.ss_flags & SS_DISABLE) && uc.ss_size)
		t->altstack = (stack_t){.ss_sp = (void *)(uintptr_t)uc.ss_sp, .ss_size = uc.ss_size};
}
