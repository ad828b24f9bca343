/*
 * Engines in child processes. Each engine gets one long-lived child that
 * runs chunks of cases from shared memory into shared results when the
 * parent asks through a pipe (long-lived, so the shared pages stay mapped
 * in it). A child that dies on a case has that case recorded as a crash, a
 * child that makes no progress for STALL_NS is killed and its case
 * recorded as a timeout; either way a new child carries on after the case.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diff.h"

#define STALL_NS (10ull * 1000000000ull)

struct progress {
	volatile uint32_t current, done;
	volatile int opened, open_failed;
	char msg[128];
};

struct runner {
	const struct diff_engine *e;
	const struct diff_case *cases;
	struct diff_result *res;
	struct progress *p;
	pid_t pid;
	int cmd, reply; /* the parent's ends */
	bool busy, killed, broken;
	uint32_t n, last_done;
	uint64_t last_change;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void *diff_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("dbt-diff: mmap");
		exit(2);
	}
	return p;
}

struct runner *runner_new(const struct diff_engine *e, const struct diff_case *cases, unsigned capacity)
{
	struct runner *r = calloc(1, sizeof(*r));
	signal(SIGPIPE, SIG_IGN);
	if (!r) {
		perror("dbt-diff: calloc");
		exit(2);
	}
	r->e = e;
	r->cases = cases;
	r->res = diff_shared(capacity * sizeof(*r->res));
	r->p = diff_shared(sizeof(*r->p));
	r->pid = -1;
	return r;
}

struct diff_result *runner_results(struct runner *r)
{
	return r->res;
}

static void __attribute__((noreturn)) child(struct runner *r, int cmd, int reply)
{
	void *ctx = NULL;
	char err[128] = "";
	if (r->e->open(&ctx, err, sizeof(err))) {
		snprintf(r->p->msg, sizeof(r->p->msg), "%s", err);
		r->p->open_failed = 1;
		_exit(3);
	}
	r->p->opened = 1;
	for (;;) {
		uint32_t range[2];
		if (read(cmd, range, sizeof(range)) != sizeof(range))
			break;
		for (uint32_t i = range[0]; i < range[1]; i++) {
			r->p->current = i;
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			r->e->run(ctx, &r->cases[i], &r->res[i]);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			r->p->done = i + 1;
		}
		if (write(reply, "", 1) != 1)
			break;
	}
	r->e->close(ctx);
	_exit(0);
}

static void spawn(struct runner *r)
{
	int cmd[2], reply[2];
	if (pipe(cmd) || pipe(reply)) {
		perror("dbt-diff: pipe");
		exit(2);
	}
	fflush(stdout);
	fflush(stderr);
	r->p->opened = r->p->open_failed = 0;
	r->pid = fork();
	if (r->pid < 0) {
		perror("dbt-diff: fork");
		exit(2);
	}
	if (r->pid == 0) {
		/* Only this child's ends stay open: another runner's child must
		 * see its pipe close when the parent closes it. */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != cmd[0] && fd != reply[1])
				close(fd);
		child(r, cmd[0], reply[1]);
	}
	close(cmd[0]);
	close(reply[1]);
	r->cmd = cmd[1];
	r->reply = reply[0];
	r->killed = false;
}

static void reap(struct runner *r, int *status)
{
	close(r->cmd);
	close(r->reply);
	waitpid(r->pid, status, 0);
	r->pid = -1;
}

static void mark(struct diff_result *res, uint8_t status, const char *why)
{
	memset(res, 0, sizeof(*res));
	res->status = status;
	snprintf(res->message, sizeof(res->message), "%s", why);
}

/* Asks for cases [from, r->n); false if the engine cannot run at all. */
static bool submit(struct runner *r, uint32_t from)
{
	uint32_t range[2] = {from, r->n};
	if (r->broken) {
		for (uint32_t i = from; i < r->n; i++)
			mark(&r->res[i], DIFF_ERROR, r->p->msg);
		return false;
	}
	if (r->pid < 0)
		spawn(r);
	r->p->current = r->p->done = from;
	r->last_done = from;
	r->last_change = now_ns();
	/* If the child is already gone, reading its reply will say so. */
	if (write(r->cmd, range, sizeof(range)) != sizeof(range) && errno != EPIPE) {
		perror("dbt-diff: write");
		exit(2);
	}
	r->busy = true;
	return true;
}

/* The child's reply pipe closed: it died, or was killed for stalling. */
static void died(struct runner *r)
{
	int st = 0;
	uint32_t cur = r->p->current, done = r->p->done;
	bool opened = r->p->opened, killed = r->killed;
	char why[128];

	reap(r, &st);
	r->busy = false;
	if (!opened) {
		if (!r->p->open_failed)
			snprintf(r->p->msg, sizeof(r->p->msg), "engine %s died while starting", r->e->name);
		fprintf(stderr, "dbt-diff: engine %s cannot start: %s\n", r->e->name, r->p->msg);
		r->broken = true;
		submit(r, done);
		return;
	}
	if (done >= r->n)
		return;
	if (killed)
		snprintf(why, sizeof(why), "no progress in %llu s", STALL_NS / 1000000000ull);
	else if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "engine process killed by %s", strsignal(WTERMSIG(st)));
	else
		snprintf(why, sizeof(why), "engine process exited with status %d", WEXITSTATUS(st));
	mark(&r->res[cur], killed ? DIFF_TIMEOUT : DIFF_CRASH, why);
	if (cur + 1 < r->n)
		submit(r, cur + 1);
}

void runner_run(struct runner **rs, unsigned nr, uint32_t n)
{
	for (unsigned i = 0; i < nr; i++) {
		rs[i]->n = n;
		submit(rs[i], 0);
	}
	for (;;) {
		struct pollfd pfd[8];
		struct runner *who[8];
		unsigned np = 0;
		for (unsigned i = 0; i < nr && np < 8; i++)
			if (rs[i]->busy) {
				pfd[np] = (struct pollfd){.fd = rs[i]->reply, .events = POLLIN};
				who[np++] = rs[i];
			}
		if (!np)
			return;
		if (poll(pfd, np, 200) < 0 && errno != EINTR) {
			perror("dbt-diff: poll");
			exit(2);
		}
		for (unsigned k = 0; k < np; k++) {
			struct runner *r = who[k];
			if (pfd[k].revents) {
				char b;
				if (read(r->reply, &b, 1) == 1)
					r->busy = false;
				else
					died(r);
				continue;
			}
			uint32_t done = r->p->done;
			if (done != r->last_done) {
				r->last_done = done;
				r->last_change = now_ns();
			} else if (!r->killed && now_ns() - r->last_change > STALL_NS) {
				r->killed = true;
				kill(r->pid, SIGKILL);
			}
		}
	}
}

void runner_free(struct runner *r)
{
	int st;
	if (r->pid >= 0)
		reap(r, &st);
	free(r);
}
