/* Signals: SIGALRM ending pause(), a SIGSEGV handler that longjmps out of
 * the fault, SIGCHLD, an interval timer interrupting a busy loop, and
 * death by an unhandled SIGUSR1. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <setjmp.h>
#include <sys/wait.h>
#include <sys/time.h>
static volatile int alarms, chld;
static sigjmp_buf jb;
static void on_alarm(int s)
{
	(void)s;
	alarms++;
}
static void on_chld(int s)
{
	(void)s;
	chld++;
}
static void on_segv(int s, siginfo_t *i, void *u)
{
	(void)s;
	(void)u;
	printf("segv at %p\n", i->si_addr);
	siglongjmp(jb, 1);
}
int main(void)
{
	setvbuf(stdout, 0, _IONBF, 0); signal(SIGALRM, on_alarm);
	alarm(1);
	pause();
	printf("alarms %d\n", alarms);
	struct sigaction sa = {0};
	sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, 0);
	if (!sigsetjmp(jb, 1)) {
		volatile int *volatile bad = (int *)0x10;
		*bad = 1;
	}
	printf("after segv\n");
	signal(SIGCHLD, on_chld);
	pid_t p = fork();
	if (!p) _exit(7);
	int st; while (waitpid(p, &st, 0) < 0) ;
	printf("child %d chld %d\n", WEXITSTATUS(st), chld);
	volatile double x = 1.0; for (int i = 0; i < 10; i++) x *= 1.5;
	struct itimerval it = {{0, 10000}, {0, 10000}};
	signal(SIGALRM, on_alarm); alarms = 0;
	setitimer(ITIMER_REAL, &it, 0);
	volatile unsigned long n = 0; while (alarms < 5) n++;
	printf("timer ok %g\n", x);
	raise(SIGUSR1);
	return 0;
}
