/*
 * /proc/self/exe is the program, not whatever runs it: opened, stat'ed,
 * read as a link and exec'd (the program runs again with "again").
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int head(const char *path, unsigned char *h, off_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, h, 64) != 64 || fstat(fd, &st) < 0)
		return -1;
	*size = st.st_size;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char a[64], b[64], c[64];
	off_t sa, sb, sc;
	char own[64], link[4096];
	struct stat st, st2;

	if (argc > 1) {
		printf("again: %s\n", argv[1]);
		return 7;
	}
	snprintf(own, sizeof(own), "/proc/%d/exe", getpid());
	if (head(argv[0], a, &sa) < 0 || head("/proc/self/exe", b, &sb) < 0 || head(own, c, &sc) < 0) {
		printf("cannot open\n");
		return 1;
	}
	printf("open: header %s, size %s\n", !memcmp(a, b, 64) && !memcmp(a, c, 64) ? "same" : "differs",
	       sa == sb && sa == sc ? "same" : "differs");
	int fd = openat(AT_FDCWD, "/proc/self/exe", O_RDONLY);
	printf("openat: %s\n", fd >= 0 && fstat(fd, &st) == 0 && st.st_size == sa ? "same size" : "differs");
	close(fd);
	printf("stat: %s\n", stat("/proc/self/exe", &st) == 0 && stat(argv[0], &st2) == 0 && st.st_ino == st2.st_ino &&
				     st.st_dev == st2.st_dev
				 ? "same file"
				 : "differs");
	printf("lstat: %s\n", lstat("/proc/self/exe", &st) == 0 && S_ISLNK(st.st_mode) ? "a link" : "not a link");
	ssize_t n = readlink("/proc/self/exe", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	printf("readlink: %s\n", stat(link, &st) == 0 && st.st_ino == st2.st_ino ? "the program" : "another");
	fflush(stdout);
	char *args[] = {argv[0], "through /proc/self/exe", NULL};
	execv("/proc/self/exe", args);
	perror("execv");
	return 1;
}
