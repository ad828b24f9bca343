/* vireo user: runs an x86-64 Linux program under the translator. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbt/user/user.h"
#include "tools/vireo/vireo.h"

extern char **environ;

static void usage(FILE *f)
{
	fprintf(f, "usage: vireo user [--argv0 NAME] [--] PROG [ARGS...]\n"
		   "  Runs the x86-64 Linux program PROG (looked up in PATH when it has no '/')\n"
		   "  with its code translated; exit status and signals are the program's.\n"
		   "  --argv0 NAME   the program's argv[0] (default: PROG as given)\n"
		   "  VIREO_XLAT_STATS=1 prints translator counters at exit.\n");
}

/* PROG as execvp would find it. */
static const char *find_program(const char *name, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	if (strchr(name, '/') || !path)
		return name;
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, size, "%.*s%s%s", (int)n, path, n ? "/" : "", name);
		if (access(buf, X_OK) == 0)
			return buf;
		path += n + (path[n] == ':');
	}
	return name;
}

int vireo_user(int argc, char **argv)
{
	const char *argv0 = NULL;
	int i = 0;
	char found[PATH_MAX], self[PATH_MAX];

	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--argv0") && i + 1 < argc) {
			argv0 = argv[i + 1];
			i += 2;
			continue;
		}
		fprintf(stderr, "vireo user: unknown option '%s'\n", argv[i]);
		usage(stderr);
		return 125;
	}
	if (i >= argc) {
		usage(stderr);
		return 125;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		fprintf(stderr, "vireo user: cannot find vireo itself: %s\n", strerror(errno));
		return 125;
	}
	self[n] = 0;
	char **args = argv + i;
	if (argv0)
		args[0] = (char *)argv0;
	struct user_options opt = {
	    .path = find_program(argv[i], found, sizeof(found)),
	    .argv = args,
	    .envp = environ,
	    .vireo = self,
	};
	return user_run(&opt);
}
