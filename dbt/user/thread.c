/*
 * clone, fork and thread exit. A guest thread is a host thread with its own
 * translator context (its GS base); a guest process is a host process. The
 * host thread is made by pthread_create so that the runtime in it has its
 * own TLS (the host FS); the guest's CLONE_* requests are then honoured by
 * hand: its TID where it asked, its clear-TID address given to the kernel.
 */
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dbt/translator.h"
#include "dbt/user/user.h"

#define THREAD_STACK (1u << 20) /* the runtime's stack in a guest thread */

struct clone_request {
	struct xlat_ctx *parent;
	uint64_t flags, newsp, ptid, ctid, tls;
	sem_t started;
	long result; /* the new TID or -errno */
};

static void *thread_main(void *arg)
{
	struct clone_request *req = arg;
	struct user_thread *t = calloc(1, sizeof(*t));
	struct xlat_ctx *ctx;
	long err;

	if (!t) {
		req->result = -ENOMEM;
		sem_post(&req->started);
		return NULL;
	}
	if ((err = xlat_ctx_create(&ctx, t)) < 0) {
		free(t);
		req->result = err;
		sem_post(&req->started);
		return NULL;
	}
	t->ctx = ctx;
	t->tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	/* The parent's registers, RAX 0, the new stack and TLS. */
	struct xlat_ctx *p = req->parent;
	memcpy(ctx->gpr, p->gpr, sizeof(ctx->gpr));
	ctx->rflags = p->rflags;
	ctx->rip = p->rip;
	ctx->fs_base = req->flags & CLONE_SETTLS ? req->tls : p->fs_base;
	ctx->gs_base = p->gs_base;
	xlat_ctx_copy_fpu(ctx, p);
	ctx->gpr[XR_RAX] = 0;
	ctx->gpr[XR_RCX] = ctx->rip;
	ctx->gpr[XR_R11] = ctx->rflags;
	if (req->newsp)
		ctx->gpr[XR_RSP] = req->newsp;
	if (req->flags & CLONE_CHILD_SETTID)
		user_write((void *)(uintptr_t)req->ctid, &t->tid, sizeof(t->tid));
	if (req->flags & CLONE_PARENT_SETTID)
		user_write((void *)(uintptr_t)req->ptid, &t->tid, sizeof(t->tid));
	if (req->flags & CLONE_CHILD_CLEARTID)
		user_syscall6(SYS_set_tid_address, (long)req->ctid, 0, 0, 0, 0, 0);
	req->result = t->tid;
	sem_post(&req->started); /* req is the parent's: not touched after this */
	user_loop(t);
}

static long new_thread(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid,
		       uint64_t tls)
{
	struct clone_request req = {t->ctx, flags, newsp, ptid, ctid, tls, .result = -EAGAIN};
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

/* fork, and vfork made a fork (the parent does not wait; memory is not
 * shared, which posix_spawn tolerates: see docs). */
static long new_process(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid,
			uint64_t tls)
{
	if ((flags & CSIGNAL) != SIGCHLD)
		return -EINVAL;
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
	t->tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	if (newsp)
		ctx->gpr[XR_RSP] = newsp;
	if (flags & CLONE_SETTLS)
		ctx->fs_base = tls;
	if (flags & CLONE_CHILD_SETTID)
		user_write((void *)(uintptr_t)ctid, &t->tid, sizeof(t->tid));
	if (flags & CLONE_CHILD_CLEARTID)
		user_syscall6(SYS_set_tid_address, (long)ctid, 0, 0, 0, 0, 0);
	return 0;
}

long user_clone(struct user_thread *t, uint64_t flags, uint64_t newsp, uint64_t ptid, uint64_t ctid, uint64_t tls)
{
	if ((flags & (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND)) == (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND))
		return new_thread(t, flags, newsp, ptid, ctid, tls);
	if (flags & CLONE_THREAD)
		return -EINVAL;
	if ((flags & CLONE_VM) && !(flags & CLONE_VFORK))
		return -ENOSYS; /* a process sharing memory with ours: not yet */
	return new_process(t, flags & ~(uint64_t)(CLONE_VM | CLONE_VFORK), newsp, ptid, ctid, tls);
}

_Noreturn void user_thread_exit(struct user_thread *t, int status)
{
	xlat_ctx_destroy(t->ctx); /* t itself may be the main thread's: kept */
	/* The kernel clears the guest's clear-TID word and wakes its waiter. */
	user_syscall6(SYS_exit, status, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}
