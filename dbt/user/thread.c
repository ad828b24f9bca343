/*
 * clone, fork, vfork and thread exit. A guest thread is a host thread with
 * its own translator context (its GS base); a guest process is a host
 * process. The host thread is made by pthread_create so that the runtime in
 * it has its own TLS (the host FS), and it returns to glibc when the guest
 * thread exits, which frees its stack; the guest's CLONE_* requests are
 * honoured by hand: its TID where it asked, its clear-TID word cleared and
 * woken at exit as the kernel does.
 *
 * A vfork child (CLONE_VM|CLONE_VFORK: vfork(), posix_spawn) is a host
 * clone with the same flags, so it shares memory and the code cache with
 * its parent, which the kernel suspends until the child execs or exits. The
 * child runs on a host stack and a context of its own, with the parent
 * thread's host TLS (the parent is not running), a copy of the parent's
 * signal dispositions and mask; the parent frees all of it when it resumes.
 */
#include <asm/prctl.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dbt/dbt.h"
#include "dbt/translator.h"
#include "dbt/user/user.h"

#define THREAD_STACK (1u << 20) /* the runtime's stack in a guest thread or vfork child */

/* AddressSanitizer's poison of a vfork child's stack frames outlives the
 * child: cleared before the stack is unmapped, since the next one may be
 * mapped at the same address. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define STACK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define STACK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The guest threads of this process still running; the last one to exit
 * gives the process its exit status, as natively. */
static int live_threads = 1;

/* What clone leaves the child: the parent's registers with RAX 0, the new
 * stack and TLS; RCX and R11 as SYSCALL leaves them. */
static void child_state(struct xlat_ctx *ctx, const struct xlat_ctx *p, uint64_t flags, uint64_t newsp, uint64_t tls)
{
	memcpy(ctx->gpr, p->gpr, sizeof(ctx->gpr));
	ctx->rflags = p->rflags;
	ctx->rip = p->rip;
	ctx->fs_base = flags & CLONE_SETTLS ? tls : p->fs_base;
	ctx->gs_base = p->gs_base;
	xlat_ctx_copy_fpu(ctx, p);
	ctx->gpr[XR_RAX] = 0;
	ctx->gpr[XR_RCX] = ctx->rip;
	ctx->gpr[XR_R11] = ctx->rflags;
	if (newsp)
		ctx->gpr[XR_RSP] = newsp;
}

static void thread_free(struct user_thread *t)
{
	xlat_ctx_destroy(t->ctx);
	if (t->interp)
		dbt_user_cpu_destroy(t->interp);
	free(t);
}

struct clone_request {
	struct user_thread *parent;
	uint64_t flags, newsp, ptid, ctid, tls;
	sem_t started;
	long result; /* the new TID or -errno */
};

static void *thread_main(void *arg)
{
	struct clone_request *req = arg;
	struct user_thread *t = calloc(1, sizeof(*t));
	long err;

	if (!t) {
		req->result = -ENOMEM;
		sem_post(&req->started);
		return NULL;
	}
	if ((err = xlat_ctx_create(&t->ctx, t)) < 0) {
		free(t);
		req->result = err;
		sem_post(&req->started);
		return NULL;
	}
	t->tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	t->pthread = true;
	t->mask = req->parent->mask; /* the host mask came with pthread_create */
	t->actions = req->parent->actions;
	child_state(t->ctx, req->parent->ctx, req->flags, req->newsp, req->tls);
	if (req->flags & CLONE_CHILD_SETTID)
		user_write((void *)(uintptr_t)req->ctid, &t->tid, sizeof(t->tid));
	if (req->flags & CLONE_PARENT_SETTID)
		user_write((void *)(uintptr_t)req->ptid, &t->tid, sizeof(t->tid));
	if (req->flags & CLONE_CHILD_CLEARTID)
		t->clear_tid = req->ctid;
	__atomic_add_fetch(&live_threads, 1, __ATOMIC_SEQ_CST);
	req->result = t->tid;
	sem_post(&req->started); /* req is the parent's: not touched after this */
	user_signal_thread_init(t);
	if (!setjmp(t->exit_jmp))
		user_loop(t);
	/* The guest thread exited (user_thread_exit): glibc frees the stack. */
	user_signal_thread_fini(t);
	thread_free(t);
	return NULL;
}

static long new_thread(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid,
		       uint64_t tls)
{
	struct clone_request req = {t, flags, newsp, ptid, ctid, tls, .result = -EAGAIN};
	pthread_attr_t attr;
	pthread_t th;

	sem_init(&req.started, 0, 0);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	int err = pthread_create(&th, &attr, thread_main, &req);
	pthread_attr_destroy(&attr);
	if (err)
		return -err;
	while (sem_wait(&req.started) < 0 && errno == EINTR)
		;
	sem_destroy(&req.started);
	return req.result;
}

/* A fork: the child is a copy with the calling thread only. */
static long new_process(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid,
			uint64_t tls)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		if (flags & CLONE_PARENT_SETTID)
			user_write((void *)(uintptr_t)ptid, &pid, sizeof(pid));
		return pid;
	}
	struct xlat_ctx *ctx = t->ctx;
	xlat_after_fork(ctx);
	live_threads = 1;
	t->tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	if (newsp)
		ctx->gpr[XR_RSP] = newsp;
	if (flags & CLONE_SETTLS)
		ctx->fs_base = tls;
	if (flags & CLONE_CHILD_SETTID)
		user_write((void *)(uintptr_t)ctid, &t->tid, sizeof(t->tid));
	if (flags & CLONE_CHILD_CLEARTID)
		user_set_tid_address(t, ctid);
	return 0;
}

struct vfork_request {
	struct user_thread *child;
	uint64_t flags, ctid;
};

static int vfork_main(void *arg)
{
	struct vfork_request *req = arg;
	struct user_thread *t = req->child;

	user_syscall6(SYS_arch_prctl, ARCH_SET_GS, (long)t->ctx, 0, 0, 0, 0);
	user_set_current(t);
	user_set_mask(t, t->mask); /* the parent blocked every signal for the clone */
	t->tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	if (req->flags & CLONE_CHILD_SETTID)
		user_write((void *)(uintptr_t)req->ctid, &t->tid, sizeof(t->tid));
	if (req->flags & CLONE_CHILD_CLEARTID)
		user_set_tid_address(t, req->ctid);
	user_loop(t);
}

static long new_vfork(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid, uint64_t tls)
{
	struct user_thread *c = calloc(1, sizeof(*c));
	void *stack = MAP_FAILED;
	long r = -ENOMEM;

	if (!c)
		return -ENOMEM;
	/* xlat_ctx_create points the caller's GS at the new context: the
	 * parent's comes back at once, the child takes its own. */
	r = xlat_ctx_create(&c->ctx, c);
	user_syscall6(SYS_arch_prctl, ARCH_SET_GS, (long)t->ctx, 0, 0, 0, 0);
	if (r < 0) {
		free(c);
		return r;
	}
	r = -ENOMEM;
	c->actions = user_actions_copy(t->actions);
	stack = mmap(NULL, THREAD_STACK, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
	if (!c->actions || stack == MAP_FAILED)
		goto out;
	c->vfork_child = true;
	c->mask = t->mask;
	c->altstack = t->altstack; /* kept by CLONE_VFORK, as the kernel does */
	child_state(c->ctx, t->ctx, flags, newsp, tls);
	struct vfork_request req = {c, flags, ctid};
	int host_flags = CLONE_VM | CLONE_VFORK | (int)(flags & CSIGNAL);
	/* No signal handler runs in this thread until it is current again. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pid_t pid = clone(vfork_main, (uint8_t *)stack + THREAD_STACK, host_flags, &req);
	r = pid < 0 ? -errno : pid;
	/* The child has exec'd or exited: it ran with this thread's TLS. */
	user_set_current(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid > 0 && (flags & CLONE_PARENT_SETTID))
		user_write((void *)(uintptr_t)ptid, &pid, sizeof(pid));
out:
	if (stack != MAP_FAILED) {
		STACK_UNPOISON(stack, THREAD_STACK);
		munmap(stack, THREAD_STACK);
	}
	free(c->actions);
	thread_free(c);
	return r;
}

long user_clone(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid, uint64_t tls)
{
	if ((flags & (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND)) == (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND))
		return new_thread(t, flags, newsp, ptid, ctid, tls);
	if (flags & (CLONE_THREAD | CLONE_SIGHAND))
		return -EINVAL;
	if ((flags & CSIGNAL) > (uint64_t)SIGRTMAX)
		return -EINVAL;
	if ((flags & (CLONE_VM | CLONE_VFORK)) == (CLONE_VM | CLONE_VFORK))
		return new_vfork(t, flags, newsp, ptid, ctid, tls);
	if (flags & CLONE_VM)
		return -ENOSYS; /* a process sharing memory with ours that runs alongside: not yet */
	return new_process(t, flags, newsp, ptid, ctid, tls);
}

long user_set_tid_address(struct user_thread *t, uint64_t addr)
{
	t->clear_tid = addr;
	if (!t->pthread) /* the kernel's word is ours to give */
		user_syscall6(SYS_set_tid_address, (long)addr, 0, 0, 0, 0, 0);
	return t->tid;
}

_Noreturn void user_thread_exit(struct user_thread *t, int status)
{
	sigset_t all;

	if (t->vfork_child) /* its parent frees its state */
		user_syscall6(SYS_exit, status, 0, 0, 0, 0, 0);
	/* No guest signal reaches this thread any more: process signals go to
	 * the others. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	if (__atomic_sub_fetch(&live_threads, 1, __ATOMIC_SEQ_CST) == 0) {
		user_print_stats();
		user_syscall6(SYS_exit_group, status, 0, 0, 0, 0, 0);
	}
	if (t->pthread) {
		if (t->clear_tid) {
			/* What the kernel does for the guest at thread exit
			 * (the host's word is glibc's, for its stack cache). */
			int zero = 0;
			if (user_write((void *)(uintptr_t)t->clear_tid, &zero, sizeof(zero)) == 0)
				user_syscall6(SYS_futex, (long)t->clear_tid, FUTEX_WAKE, 1, 0, 0, 0);
		}
		user_set_current(NULL);
		longjmp(t->exit_jmp, 1);
	}
	xlat_ctx_destroy(t->ctx); /* t itself is the main thread's: kept */
	user_syscall6(SYS_exit, status, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}
