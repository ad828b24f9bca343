/*
 * Starting the program and the run loop of each of its threads: find or
 * translate the code at RIP, run it until it exits, act on the exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dbt/translator.h"
#include "dbt/user/user.h"

const char *user_exe_path;
const char *user_vireo_path;

long user_syscall6(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

_Noreturn void user_die(int sig)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t set;

	sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	user_syscall6(SYS_tgkill, getpid(), user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0), sig, 0, 0, 0);
	/* A signal whose default is to be ignored or stop: go as close. */
	user_syscall6(SYS_exit_group, 128 + sig, 0, 0, 0, 0, 0);
	__builtin_unreachable();
}

/* A fetch fault at rip: to the guest's handler, or death. */
static void user_fault(struct user_thread *t, int sig, uint64_t rip)
{
	siginfo_t info = {.si_signo = sig, .si_code = sig == SIGILL ? ILL_ILLOPN : SEGV_MAPERR};
	info.si_addr = (void *)(uintptr_t)rip;
	user_raise_fault(t, &info);
}

static void print_stats(void)
{
	fprintf(stderr,
		"vireo user: %lu blocks, %lu instructions, %lu bytes of code, %lu chained, %lu misses, %lu exits, "
		"%lu flushes, %lu zones reused, %lu abandoned\n",
		(unsigned long)xlat_stats.blocks, (unsigned long)xlat_stats.insns, (unsigned long)xlat_stats.bytes,
		(unsigned long)xlat_stats.chained, (unsigned long)xlat_stats.misses, (unsigned long)xlat_stats.exits,
		(unsigned long)xlat_stats.flushes, (unsigned long)xlat_stats.reclaimed,
		(unsigned long)xlat_stats.abandoned);
}

static bool stats_wanted;

void user_print_stats(void)
{
	if (stats_wanted)
		print_stats();
}

static __thread struct user_thread *current;

struct user_thread *user_current_thread(void)
{
	return current;
}

void user_set_current(struct user_thread *t)
{
	current = t;
}

_Noreturn void user_loop(struct user_thread *t)
{
	struct xlat_ctx *ctx = t->ctx;
	const struct xlat_exit *from = NULL;
	unsigned gen = __atomic_load_n(&xlat_flush_gen, __ATOMIC_ACQUIRE);

	current = t;
	for (;;) {
		int err = 0;
		if (__atomic_load_n(&t->pending, __ATOMIC_SEQ_CST)) {
			user_deliver_signals(t);
			from = NULL;
		}
		const void *code = xlat_code_for(ctx, ctx->rip, from, gen, &err);
		if (!code) {
			/* Natively the CPU faults fetching there. */
			user_fault(t, err == -EILSEQ ? SIGILL : SIGSEGV, ctx->rip);
			continue;
		}
		gen = __atomic_load_n(&xlat_flush_gen, __ATOMIC_ACQUIRE);
		xlat_enter(ctx, code);
		const struct xlat_exit *x = ctx->exit;
		xlat_stats.exits++;
		from = NULL;
		switch (x->kind) {
		case XEXIT_BRANCH:
			ctx->rip = x->target;
			from = x;
			break;
		case XEXIT_MISS:
			xlat_stats.misses++;
			ctx->rip = ctx->target;
			break;
		case XEXIT_SYSCALL:
			ctx->rip = x->target;
			xlat_quiesce(ctx); /* it may block: code retired meanwhile is reused */
			user_syscall(t);
			break;
		case XEXIT_SIGNAL: ctx->rip = ctx->target; break;
		case XEXIT_UNSUPPORTED:
			ctx->rip = x->target;
			user_interpret(t);
			break;
		default: user_die(SIGILL);
		}
	}
}

static int fail(const struct user_options *opt, int err, const char *why)
{
	/* As a shell reports a failed exec: 127 not found, 126 otherwise. */
	fprintf(stderr, "vireo user: %s: %s%s%s\n", opt->path, strerror(-err), why ? ": " : "", why ? why : "");
	return err == -ENOENT ? 127 : 126;
}

/* A "#!" script runs its interpreter, as binfmt_script does: argv becomes
 * [interpreter, optional argument, script path, argv[1]...]. 0 when path is
 * no script, 1 when opt now names the interpreter, -errno. */
static int script(struct user_options *opt, char *line, size_t size)
{
	int fd = open(opt->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* the loader reports it */
	ssize_t n = read(fd, line, size - 1);
	close(fd);
	if (n < 2 || line[0] != '#' || line[1] != '!')
		return 0;
	line[n] = 0;
	char *end = strchr(line, '\n');
	if (!end)
		return -ENOEXEC;
	*end = 0;
	char *interp = line + 2 + strspn(line + 2, " \t");
	char *arg = interp + strcspn(interp, " \t");
	if (*arg) {
		*arg++ = 0;
		arg += strspn(arg, " \t");
		arg[strcspn(arg, "\r")] = 0;
	}
	if (!*interp)
		return -ENOEXEC;
	size_t argc = 0;
	while (opt->argv[argc])
		argc++;
	char **argv = calloc(argc + 3, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	size_t k = 0;
	argv[k++] = interp;
	if (*arg)
		argv[k++] = arg;
	argv[k++] = (char *)opt->path;
	for (size_t i = 1; i < argc; i++)
		argv[k++] = opt->argv[i];
	opt->argv = argv;
	opt->path = interp;
	return 1;
}

int user_run(const struct user_options *given)
{
	struct user_options options = *given, *opt = &options;
	static char line[256];
	static struct user_thread main_thread;
	struct user_image img;
	const char *why = NULL;
	char exe[PATH_MAX];
	int err;

	stats_wanted = getenv("VIREO_XLAT_STATS") != NULL;
	if ((err = script(opt, line, sizeof(line))) < 0)
		return fail(opt, err, "bad #! line");
	if (!realpath(opt->path, exe))
		return fail(opt, -errno, NULL);
	user_exe_path = strdup(exe);
	user_vireo_path = opt->vireo;

	struct xlat_env env = {.fetchable = user_maps_fetchable, .code_page = user_maps_code_page};
	if ((err = xlat_init(&env, user_syscalls, user_syscall_count)) < 0)
		return fail(opt, err, "cannot start the translator");
	if ((err = user_elf_load(opt->path, &img, &why)) < 0)
		return fail(opt, err, why);
	user_maps_add_vdso();
	user_brk_init(img.brk);
	uint64_t sp = user_stack_build(&img, opt->argv, opt->envp, opt->path);
	if (!sp)
		return fail(opt, -E2BIG, "cannot build its stack");
	if ((err = xlat_ctx_create(&main_thread.ctx, &main_thread)) < 0)
		return fail(opt, err, "cannot create a translator context");
	main_thread.tid = (int)user_syscall6(SYS_gettid, 0, 0, 0, 0, 0, 0);
	user_signal_init(&main_thread);
	struct xlat_ctx *ctx = main_thread.ctx;
	/* The registers as Linux's start_thread leaves them: zero but RSP;
	 * RDX 0 (no function for atexit). */
	memset(ctx->gpr, 0, sizeof(ctx->gpr));
	ctx->gpr[XR_RSP] = sp;
	ctx->rip = img.start;
	user_loop(&main_thread);
}
