/*
 * System calls writing code into memory that already holds translated
 * code (a JIT reading code from a pipe, a file or a socket into its RWX
 * buffer): they succeed and the new code runs.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

typedef int (*fn_t)(void);

/* mov eax, imm32; ret */
static void emit_const(uint8_t *p, int v)
{
	p[0] = 0xb8;
	memcpy(p + 1, &v, 4);
	p[5] = 0xc3;
}

int main(void)
{
	uint8_t *code = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t bytes[6];
	int fds[2];
	if (code == MAP_FAILED || pipe(fds) < 0)
		return 1;
	fn_t f = (fn_t)(void *)code;

	emit_const(code, 1);
	printf("before: %d\n", f());
	emit_const(bytes, 2);
	write(fds[1], bytes, sizeof(bytes));
	ssize_t n = read(fds[0], code, sizeof(bytes));
	printf("read: %zd, %d\n", n, f());

	/* Across two pages, both holding code. */
	uint8_t *g = code + 4096 - 3;
	emit_const(g, 3);
	emit_const(code + 4096 + 16, 33);
	printf("before: %d %d\n", ((fn_t)(void *)g)(), ((fn_t)(void *)(code + 4096 + 16))());
	uint8_t both[32];
	emit_const(both, 4);
	emit_const(both + 19, 44);
	write(fds[1], both, sizeof(both));
	struct iovec iov[2] = {{g, 10}, {g + 10, sizeof(both) - 10}};
	n = readv(fds[0], iov, 2);
	printf("readv: %zd, %d %d\n", n, ((fn_t)(void *)g)(), ((fn_t)(void *)(code + 4096 + 16))());

	/* A file at an offset. */
	FILE *tmp = tmpfile();
	emit_const(bytes, 5);
	fwrite("xxxx", 1, 4, tmp);
	fwrite(bytes, 1, sizeof(bytes), tmp);
	fflush(tmp);
	n = pread(fileno(tmp), code, sizeof(bytes), 4);
	printf("pread: %zd, %d\n", n, f());

	/* A socket. */
	int sv[2];
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	emit_const(bytes, 6);
	send(sv[0], bytes, sizeof(bytes), 0);
	struct iovec one = {code, sizeof(bytes)};
	struct msghdr m = {.msg_iov = &one, .msg_iovlen = 1};
	n = recvmsg(sv[1], &m, 0);
	printf("recvmsg: %zd, %d\n", n, f());
	emit_const(bytes, 7);
	send(sv[0], bytes, sizeof(bytes), 0);
	n = recvfrom(sv[1], code, sizeof(bytes), 0, NULL, NULL);
	printf("recvfrom: %zd, %d\n", n, f());

	/* getrandom over code, then code again. */
	f();
	printf("getrandom: %zd\n", getrandom(code, 64, 0));
	emit_const(code, 8);
	printf("after: %d\n", f());
	return 0;
}
