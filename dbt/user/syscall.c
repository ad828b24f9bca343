/*
 * The system calls the runtime sees. Translated code makes every other
 * SYSCALL itself, on the host (the inline filter in translate.c); these are
 * the ones whose meaning involves the translator: memory maps (what may
 * execute, translations to drop), the break, FS/GS bases, threads and
 * processes, exec, exit, signals, and /proc/self/exe (opened, stat'ed, read
 * as a link or exec'd, it is the guest program, not vireo).
 */
#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dbt/translator.h"
#include "dbt/user/user.h"

const uint16_t user_syscalls[] = {
    SYS_mmap,	      SYS_munmap,      SYS_mprotect,	   SYS_mremap,
    SYS_brk,	      SYS_arch_prctl,  SYS_clone,	   SYS_clone3,
    SYS_fork,	      SYS_vfork,       SYS_execve,	   SYS_execveat,
    SYS_exit,	      SYS_exit_group,  SYS_readlink,	   SYS_readlinkat,
    SYS_rseq,	      SYS_shmat,       SYS_shmdt,	   SYS_rt_sigaction,
    SYS_rt_sigreturn, SYS_sigaltstack, SYS_rt_sigprocmask, SYS_set_tid_address,
    SYS_open,	      SYS_openat,      SYS_openat2,	   SYS_stat,
    SYS_newfstatat,   SYS_statx,
};
const size_t user_syscall_count = sizeof(user_syscalls) / sizeof(user_syscalls[0]);

/* munmap, mprotect, mremap or a MAP_FIXED mmap changed what is at
 * [addr, addr + len): drop what was translated from it. */
static void changed(uint64_t addr, uint64_t len, int prot)
{
	user_maps_set(addr, len, prot);
	xlat_invalidate(addr, len);
}

static long do_mmap(const uint64_t *a)
{
	long r = user_syscall6(SYS_mmap, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
	if (r >= 0)
		changed((uint64_t)r, (a[1] + 4095) & ~4095ull, (int)a[2]);
	return r;
}

static long do_mremap(const uint64_t *a)
{
	int prot = user_maps_prot(a[0]);
	long r = user_syscall6(SYS_mremap, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], 0);
	if (r >= 0) {
		changed(a[0], (a[1] + 4095) & ~4095ull, 0);
		changed((uint64_t)r, (a[2] + 4095) & ~4095ull, prot);
	}
	return r;
}

static long do_arch_prctl(struct xlat_ctx *ctx, uint64_t code, uint64_t addr)
{
	switch (code) {
	case ARCH_SET_FS: ctx->fs_base = addr; return 0;
	case ARCH_SET_GS: ctx->gs_base = addr; return 0;
	case ARCH_GET_FS:
	case ARCH_GET_GS: {
		uint64_t v = code == ARCH_GET_FS ? ctx->fs_base : ctx->gs_base;
		return user_write((void *)(uintptr_t)addr, &v, 8);
	}
	default: return user_syscall6(SYS_arch_prctl, (long)code, (long)addr, 0, 0, 0, 0);
	}
}

/* The guest program when the guest's path names /proc/self/exe (the link
 * is vireo's), else NULL: the guest's path is used as it is. */
static const char *exe_link(uint64_t upath)
{
	char path[64], own[64];
	if (user_read_string(path, sizeof(path), upath) < 0)
		return NULL;
	snprintf(own, sizeof(own), "/proc/%d/exe", getpid());
	if (!strcmp(path, "/proc/self/exe") || !strcmp(path, "/proc/thread-self/exe") || !strcmp(path, own))
		return user_exe_path;
	return NULL;
}

/* A path argument: the guest's, or the guest program for /proc/self/exe. */
static long path_arg(uint64_t upath)
{
	const char *exe = exe_link(upath);
	return exe ? (long)(uintptr_t)exe : (long)upath;
}

/* readlink of /proc/self/exe names the guest program, not vireo. */
static long do_readlink(int dirfd, uint64_t upath, char *buf, long size, long nr)
{
	if (exe_link(upath)) {
		if (size <= 0)
			return -EINVAL;
		size_t n = strlen(user_exe_path);
		if ((size_t)size < n)
			n = (size_t)size;
		return user_write(buf, user_exe_path, n) < 0 ? -EFAULT : (long)n;
	}
	if (nr == SYS_readlink)
		return user_syscall6(SYS_readlink, (long)upath, (long)buf, size, 0, 0, 0);
	return user_syscall6(SYS_readlinkat, dirfd, (long)upath, (long)buf, size, 0, 0);
}

/* execve: the new program runs under vireo too. The kernel's own checks come
 * first, so a program that cannot run fails in the caller as natively. */
static long do_execve(struct user_thread *t, int dirfd, uint64_t upath, uint64_t uargv, uint64_t uenvp, int flags)
{
	char path[PATH_MAX], full[PATH_MAX];
	enum { ARGS_MAX = 4096 };
	/* On the stack: a vfork child's heap is its parent's, and a successful
	 * execve frees nothing. */
	uint64_t args[ARGS_MAX + 1];
	char *nargv[ARGS_MAX + 7];
	long r;

	if (user_read_string(path, sizeof(path), upath) < 0)
		return -EFAULT;
	if (exe_link(upath))
		snprintf(path, sizeof(path), "%s", user_exe_path);
	if (path[0] != '/' && dirfd != AT_FDCWD) {
		char link[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		ssize_t n = readlink(link, full, sizeof(full) - 1);
		if (n < 0)
			return -EBADF;
		full[n] = 0;
		strncat(full, "/", sizeof(full) - strlen(full) - 1);
		strncat(full, path, sizeof(full) - strlen(full) - 1);
		strcpy(path, full);
	}
	if (flags & ~AT_SYMLINK_NOFOLLOW)
		return -EINVAL;
	if (access(path, X_OK) < 0)
		return -errno;
	char argv0[PATH_MAX] = "";
	size_t argc = 0;
	for (; uargv; argc++) {
		if (argc == ARGS_MAX)
			return -E2BIG;
		if (user_read(&args[argc], uargv + 8 * argc, 8) < 0)
			return -EFAULT;
		if (!args[argc])
			break;
	}
	if (argc && user_read_string(argv0, sizeof(argv0), args[0]) < 0)
		return -EFAULT;
	size_t k = 0;
	nargv[k++] = (char *)user_vireo_path;
	nargv[k++] = "user";
	nargv[k++] = "--argv0";
	nargv[k++] = argv0;
	nargv[k++] = "--";
	nargv[k++] = path;
	for (size_t i = 1; i < argc; i++)
		nargv[k++] = (char *)(uintptr_t)args[i]; /* the kernel checks these */
	nargv[k] = NULL;
	user_signal_exec(t, true);
	r = user_syscall6(SYS_execve, (long)user_vireo_path, (long)nargv, (long)uenvp, 0, 0, 0);
	user_signal_exec(t, false);
	return r;
}

void user_syscall(struct user_thread *t)
{
	struct xlat_ctx *ctx = t->ctx;
	uint64_t *g = ctx->gpr;
	uint64_t nr = g[XR_RAX];
	const uint64_t a[6] = {g[XR_RDI], g[XR_RSI], g[XR_RDX], g[XR_R10], g[XR_R8], g[XR_R9]};
	long r;

	switch (nr) {
	case SYS_mmap: r = do_mmap(a); break;
	case SYS_munmap:
		r = user_syscall6(SYS_munmap, (long)a[0], (long)a[1], 0, 0, 0, 0);
		if (r == 0)
			changed(a[0], (a[1] + 4095) & ~4095ull, 0);
		break;
	case SYS_mprotect:
		r = user_syscall6(SYS_mprotect, (long)a[0], (long)a[1], (long)a[2], 0, 0, 0);
		if (r == 0)
			changed(a[0], (a[1] + 4095) & ~4095ull, (int)a[2]);
		break;
	case SYS_mremap: r = do_mremap(a); break;
	case SYS_shmat: r = user_syscall6(SYS_shmat, (long)a[0], (long)a[1], (long)a[2], 0, 0, 0); break;
	case SYS_shmdt:
		r = user_syscall6(SYS_shmdt, (long)a[0], 0, 0, 0, 0, 0);
		if (r == 0)
			xlat_invalidate(a[0], 4096);
		break;
	case SYS_brk: r = (long)user_brk_set(a[0]); break;
	case SYS_arch_prctl: r = do_arch_prctl(ctx, a[0], a[1]); break;
	case SYS_clone: r = user_clone(t, a[0], a[1], a[2], a[3], a[4]); break;
	case SYS_fork: r = user_clone(t, SIGCHLD, 0, 0, 0, 0); break;
	case SYS_vfork: r = user_clone(t, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0); break;
	case SYS_clone3: r = -ENOSYS; break; /* glibc falls back to clone */
	case SYS_rseq: r = -ENOSYS; break;   /* its abort IPs would be guest addresses */
	case SYS_execve: r = do_execve(t, AT_FDCWD, a[0], a[1], a[2], 0); break;
	case SYS_execveat: r = do_execve(t, (int)a[0], a[1], a[2], a[3], (int)a[4]); break;
	case SYS_readlink: r = do_readlink(AT_FDCWD, a[0], (char *)a[1], (long)a[2], SYS_readlink); break;
	case SYS_readlinkat: r = do_readlink((int)a[0], a[1], (char *)a[2], (long)a[3], SYS_readlinkat); break;
	case SYS_exit_group:
		user_print_stats();
		user_syscall6(SYS_exit_group, (long)a[0], 0, 0, 0, 0, 0);
		__builtin_unreachable();
	case SYS_exit: user_thread_exit(t, (int)a[0]);
	case SYS_open: r = user_syscall6(SYS_open, path_arg(a[0]), (long)a[1], (long)a[2], 0, 0, 0); break;
	case SYS_stat: r = user_syscall6(SYS_stat, path_arg(a[0]), (long)a[1], 0, 0, 0, 0); break;
	case SYS_openat:
	case SYS_openat2: r = user_syscall6((long)nr, (long)a[0], path_arg(a[1]), (long)a[2], (long)a[3], 0, 0); break;
	case SYS_newfstatat:
		r = user_syscall6(SYS_newfstatat, (long)a[0], a[3] & AT_SYMLINK_NOFOLLOW ? (long)a[1] : path_arg(a[1]),
				  (long)a[2], (long)a[3], 0, 0);
		break;
	case SYS_statx:
		r = user_syscall6(SYS_statx, (long)a[0], a[2] & AT_SYMLINK_NOFOLLOW ? (long)a[1] : path_arg(a[1]),
				  (long)a[2], (long)a[3], (long)a[4], 0);
		break;
	case SYS_set_tid_address: r = user_set_tid_address(t, a[0]); break;
	case SYS_rt_sigprocmask: r = user_rt_sigprocmask(t, (int)a[0], a[1], a[2], a[3]); break;
	case SYS_rt_sigaction: r = user_rt_sigaction(t, (int)a[0], a[1], a[2], a[3]); break;
	case SYS_sigaltstack: r = user_sigaltstack(t, a[0], a[1]); break;
	case SYS_rt_sigreturn: user_rt_sigreturn(t); return; /* every register from the frame */
	default:
		if (user_sysbuf_handles(nr)) {
			r = user_sysbuf_syscall(nr, a);
			break;
		}
		r = user_syscall6((long)nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
		break;
	}
	g[XR_RAX] = (uint64_t)r;
	/* What SYSCALL leaves in RCX and R11. */
	g[XR_RCX] = ctx->rip;
	g[XR_R11] = ctx->rflags;
}
