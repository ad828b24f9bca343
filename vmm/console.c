/*
 * The serial console's host side: output to stdout or a file, input from
 * stdin. Input is read without waiting by the UART when it has room (its
 * clock-thread poll and its receive register), so no thread of its own is
 * needed. A terminal on stdin is put in raw mode, so that Ctrl-C and job
 * control keys reach the guest's shell; Ctrl-A x quits and Ctrl-A Ctrl-A
 * sends a Ctrl-A, as in QEMU.
 *
 * stdin belongs to the process: the VM that opened the console with
 * "stdio" reads it; any other VM sees no input. A VM with a virtconsole
 * leaves it to that device (vmm/dev/virtio_console.c), which reads stdin
 * itself while its driver is up.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/internal.h"

#define ESCAPE_CHAR 0x01 /* Ctrl-A */

static struct vm *input_vm; /* reads stdin; NULL when nobody does */
static bool input_eof, escape_pending;
static bool tty_raw;
static struct termios tty_saved;

static void console_tty_restore(void)
{
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
		tty_raw = false;
	}
}

/* Raw input on a terminal we own (the foreground process group), output
 * processing left on so that host messages still start their lines. */
static void console_tty_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetpgrp(STDIN_FILENO) != getpgrp() || tcgetattr(STDIN_FILENO, &tty_saved) < 0)
		return;
	t = tty_saved;
	t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(CSIZE | PARENB);
	t.c_cflag |= CS8;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0) {
		static bool registered;
		tty_raw = true;
		if (!registered)
			atexit(console_tty_restore);
		registered = true;
	}
}

static bool has_virtconsole(const struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->ndevices; i++)
		if (!strncmp(cfg->devices[i], "virtconsole", 11) &&
		    (cfg->devices[i][11] == 0 || cfg->devices[i][11] == ','))
			return true;
	return false;
}

int console_open(struct vm *vm, char *err, size_t errlen)
{
	const char *s = vm->cfg.serial ? vm->cfg.serial : "stdio";

	if (!strcmp(s, "stdio")) {
		vm->console_fd = STDOUT_FILENO;
		if (!input_vm && !has_virtconsole(&vm->cfg)) {
			input_vm = vm;
			input_eof = escape_pending = false;
			console_tty_raw();
		}
		return 0;
	}
	if (!strcmp(s, "none")) {
		vm->console_fd = -1;
		return 0;
	}
	if (!strncmp(s, "file:", 5)) {
		vm->console_fd = open(s + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (vm->console_fd < 0) {
			snprintf(err, errlen, "cannot open serial file %s: %s", s + 5, strerror(errno));
			return -errno;
		}
		return 0;
	}
	snprintf(err, errlen, "unknown serial back end '%s' (stdio, none or file:PATH)", s);
	return -EINVAL;
}

void console_close(struct vm *vm)
{
	if (input_vm == vm) {
		console_tty_restore();
		input_vm = NULL;
	}
	if (vm->console_fd > STDERR_FILENO)
		close(vm->console_fd);
	vm->console_fd = -1;
}

int console_write(struct vm *vm, const void *buf, size_t len)
{
	const char *p = buf;

	if (vm->console_fd < 0)
		return 0;
	while (len) {
		ssize_t n = write(vm->console_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= n;
	}
	return 0;
}

bool console_has_input(struct vm *vm)
{
	return input_vm == vm && !input_eof;
}

/* Takes the escape sequences out of what was read; returns what is left. */
static size_t console_escapes(struct vm *vm, uint8_t *buf, size_t n)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = buf[i];
		if (escape_pending) {
			escape_pending = false;
			if (c == 'x' || c == 'X') {
				console_write(vm, "\r\nvireo: quit (Ctrl-A x)\r\n", 26);
				vm_request_exit(vm, VM_EXIT_POWEROFF, "quit from the console (Ctrl-A x)");
				continue;
			}
			if (c == 'h' || c == '?') {
				static const char help[] = "\r\nvireo: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A\r\n";
				console_write(vm, help, sizeof(help) - 1);
				continue;
			}
			if (c != ESCAPE_CHAR)
				buf[out++] = ESCAPE_CHAR;
			buf[out++] = c;
		} else if (c == ESCAPE_CHAR) {
			escape_pending = true;
		} else {
			buf[out++] = c;
		}
	}
	return out;
}

size_t console_read(struct vm *vm, void *buf, size_t len)
{
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};

	/* A Ctrl-A held over from the last read may come back with the next byte. */
	if (escape_pending && len)
		len--;
	while (len && console_has_input(vm) && poll(&p, 1, 0) > 0) {
		ssize_t n = read(STDIN_FILENO, buf, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return 0;
		if (n <= 0) {
			input_eof = true;
			return 0;
		}
		n = tty_raw ? console_escapes(vm, buf, n) : (size_t)n;
		if (n)
			return n;
	}
	return 0;
}
