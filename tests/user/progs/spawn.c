/*
 * vfork and posix_spawn: the child shares the parent's memory and the
 * parent waits until it execs or exits. A vfork child's store is seen by
 * the parent; posix_spawn of a missing program fails in the parent (the
 * child reports its exec error through shared memory); a CLONE_VM |
 * CLONE_VFORK clone on its own stack, as glibc's posix_spawn makes it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile int shared, alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static int wait_status(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int clone_child(void *arg)
{
	shared = *(int *)arg;
	return 9;
}

int main(void)
{
	/* The child writes, late: the parent runs only after it exits. A
	 * signal sent to the parent meanwhile is handled when it resumes. */
	signal(SIGALRM, on_alarm);
	ualarm(20 * 1000, 0);
	pid_t pid = vfork();
	if (pid == 0) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
		shared = 42;
		_exit(3);
	}
	printf("vfork: shared %d before wait, alarms %d\n", shared, alarms);
	printf("vfork: status %d\n", wait_status(pid));

	/* vfork + execve, output through a pipe. */
	int fds[2];
	char buf[64] = "";
	if (pipe(fds) < 0)
		return 1;
	fflush(stdout);
	pid = vfork();
	if (pid == 0) {
		dup2(fds[1], 1);
		char *argv[] = {"echo", "exec'd", "child", NULL};
		execve("/bin/echo", argv, environ);
		_exit(127);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	printf("vfork+execve: %.*s", (int)(n > 0 ? n : 0), buf);
	printf("vfork+execve: status %d\n", wait_status(pid));

	/* A failed exec in a vfork child: its errno store is the parent's. */
	pid = vfork();
	if (pid == 0) {
		char *argv[] = {"nothing", NULL};
		execve("/nonexistent/nothing", argv, environ);
		shared = errno;
		_exit(127);
	}
	printf("vfork exec error: status %d errno %s\n", wait_status(pid), strerror(shared));

	/* posix_spawn: success, a missing program, file actions. */
	char *argv[] = {"sh", "-c", "exit 5", NULL};
	int err = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
	printf("posix_spawn: %s, status %d\n", strerror(err), err ? -1 : wait_status(pid));
	char *missing[] = {"missing", NULL};
	err = posix_spawn(&pid, "/nonexistent/missing", NULL, NULL, missing, environ);
	printf("posix_spawn missing: %s\n", strerror(err));
	err = posix_spawnp(&pid, "no-such-program-here", NULL, NULL, missing, environ);
	printf("posix_spawnp missing: %s\n", strerror(err));
	if (pipe(fds) < 0)
		return 1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	char *echo[] = {"echo", "spawned", NULL};
	err = posix_spawnp(&pid, "echo", &fa, NULL, echo, environ);
	close(fds[1]);
	memset(buf, 0, sizeof(buf));
	n = read(fds[0], buf, sizeof(buf) - 1);
	printf("posix_spawnp: %s, %.*s", strerror(err), (int)(n > 0 ? n : 0), buf);
	printf("posix_spawnp: status %d\n", wait_status(pid));
	posix_spawn_file_actions_destroy(&fa);

	/* clone(CLONE_VM | CLONE_VFORK) on a stack of its own. */
	static char stack[64 * 1024] __attribute__((aligned(16)));
	int value = 77;
	pid = clone(clone_child, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &value);
	printf("clone vfork: shared %d, status %d\n", shared, wait_status(pid));

	/* Repeated: each child's state is freed by its parent. */
	for (int i = 0; i < 30; i++) {
		char *t[] = {"true", NULL};
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, t, environ) || wait_status(pid)) {
			printf("spawn %d failed\n", i);
			return 1;
		}
	}
	printf("30 spawns\n");
	return 0;
}
