/*
 * virtio-console (virtio 1.2, 5.3) with one port, port 0, without
 * VIRTIO_CONSOLE_F_MULTIPORT: Linux makes it hvc0, so console=hvc0 works.
 *   -device virtio-serial-pci -device virtconsole    (or vireo --console virtio)
 * The virtconsole port is connected to the VM's console back end, the one
 * --serial / -serial chose (stdio, file or none); the 16550 keeps writing
 * there too, for early boot. When that back end is stdio, a reader thread
 * feeds stdin to the guest, character by character when stdin is a
 * terminal (ICANON and ECHO off, ISIG kept: Ctrl-C still stops Vireo) in
 * the foreground. A virtio-serial-pci without a virtconsole has its port
 * unconnected.
 *
 * Also VIRTIO_CONSOLE_F_EMERG_WRITE: a character written to emerg_wr goes
 * out at once, before any queue exists.
 */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/virtio/virtio.h"

#define CONSOLE_F_EMERG_WRITE 2
#define CONSOLE_QUEUE_SIZE    128
#define CONSOLE_RX	      0 /* receiveq: to the guest */
#define CONSOLE_TX	      1 /* transmitq: from the guest */
#define CONSOLE_INPUT_BUFFER  4096
#define PCI_CLASS_COMM_OTHER  0x078000

/* struct virtio_console_config */
enum { CFG_COLS = 0, CFG_ROWS = 2, CFG_MAX_NR_PORTS = 4, CFG_EMERG_WR = 8, CFG_SIZE = 12 };

struct virtio_console {
	struct virtio_device vdev;
	bool connected; /* a virtconsole is attached: output goes to the back end */
	bool input;	/* ... and stdin is its input */

	/* Input: the reader thread runs from DRIVER_OK to reset. */
	pthread_mutex_t lock; /* pending, and the receive queue's requests */
	uint8_t pending[CONSOLE_INPUT_BUFFER];
	size_t pending_len;
	pthread_t reader;
	bool reader_running;
	atomic_bool stopping;
	int wake_fd; /* eventfd: stop, or room in pending again */
};

/* ---- the terminal: character at a time while the guest reads it ----------- */

static struct termios saved_termios;
static volatile sig_atomic_t termios_changed;

static void console_termios_restore(void)
{
	if (termios_changed) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
		termios_changed = 0;
	}
}

/* A signal that ends Vireo leaves the terminal as it found it. */
static void console_termios_signal(int sig)
{
	console_termios_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void console_termios_raw(void)
{
	static const int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	static bool hooked;
	struct termios t;

	if (termios_changed || !isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return;
	t = saved_termios;
	t.c_lflag &= ~(ICANON | ECHO);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (!hooked) {
		hooked = true;
		atexit(console_termios_restore);
		for (unsigned i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
			struct sigaction sa = {.sa_handler = console_termios_signal};
			struct sigaction old;
			if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
				sigaction(signals[i], &sa, NULL);
		}
	}
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		termios_changed = 1;
}

/* ---- input ------------------------------------------------------------------ */

/* Moves pending input into the receive queue's buffers; lock held. Returns
 * whether room was made. */
static bool console_deliver(struct virtio_console *c)
{
	struct virtq *vq = &c->vdev.vqs[CONSOLE_RX];
	struct virtq_req *req;
	bool pushed = false, made_room = false;

	if (!c->pending_len || !(req = malloc(sizeof(*req))))
		return false;
	while (c->pending_len && virtq_pop(vq, req) > 0) {
		size_t n = virtq_req_write(req, 0, c->pending, c->pending_len);

		if (req->out_num)
			virtio_device_warn(&c->vdev, "receive buffer %u has device-readable parts", req->head);
		memmove(c->pending, c->pending + n, c->pending_len - n);
		c->pending_len -= n;
		made_room |= n > 0;
		virtq_push(vq, req, n);
		pushed = true;
	}
	free(req);
	if (pushed)
		virtq_notify(vq);
	return made_room;
}

static void *console_reader(void *arg)
{
	struct virtio_console *c = arg;
	bool eof = false;

	while (!atomic_load(&c->stopping)) {
		struct pollfd fds[2] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
		uint8_t buf[CONSOLE_INPUT_BUFFER];
		size_t room;
		uint64_t count;
		ssize_t n;

		pthread_mutex_lock(&c->lock);
		room = sizeof(c->pending) - c->pending_len;
		pthread_mutex_unlock(&c->lock);
		if (poll(fds, room && !eof ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[0].revents & POLLIN && read(c->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
			break;
		if (room && !eof && fds[1].revents) {
			n = read(STDIN_FILENO, buf, room);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				eof = true; /* stdin closed: output goes on */
				continue;
			}
			pthread_mutex_lock(&c->lock);
			memcpy(c->pending + c->pending_len, buf, n);
			c->pending_len += n;
			console_deliver(c);
			pthread_mutex_unlock(&c->lock);
		}
	}
	return NULL;
}

static void console_wake(struct virtio_console *c)
{
	uint64_t one = 1;

	if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vmm_log("virtio-console: cannot wake its input thread: %s", strerror(errno));
}

/* ---- the device --------------------------------------------------------------- */

static uint64_t console_features(struct virtio_device *dev)
{
	(void)dev;
	return VIRTIO_BIT(CONSOLE_F_EMERG_WRITE);
}

static uint32_t console_config_read(struct virtio_device *dev, unsigned offset, unsigned size)
{
	uint8_t cfg[CFG_SIZE] = {0};
	uint32_t v = 0;
	(void)dev;

	/* No F_SIZE: cols and rows read 0; one port. */
	cfg[CFG_MAX_NR_PORTS] = 1;
	memcpy(&v, cfg + offset, size);
	return v;
}

static void console_config_write(struct virtio_device *dev, unsigned offset, unsigned size, uint32_t value)
{
	struct virtio_console *c = dev->priv;
	uint8_t ch = value;

	if (offset != CFG_EMERG_WR || !virtio_has_feature(dev, CONSOLE_F_EMERG_WRITE)) {
		virtio_device_warn(dev, "write of %u bytes to read-only configuration at 0x%x", size, offset);
		return;
	}
	if (c->connected)
		console_write(dev->vm, &ch, 1);
}

static void console_transmit(struct virtio_console *c, struct virtq *vq)
{
	struct virtq_req *req = malloc(sizeof(*req));

	if (!req)
		return;
	while (virtq_pop(vq, req) > 0) {
		if (req->in_num)
			virtio_device_warn(&c->vdev, "transmit buffer %u has device-writable parts", req->head);
		for (unsigned i = 0; c->connected && i < req->out_num; i++)
			console_write(c->vdev.vm, req->iov[i].iov_base, req->iov[i].iov_len);
		virtq_push(vq, req, 0);
	}
	virtq_notify(vq);
	free(req);
}

static void console_queue_notify(struct virtio_device *dev, struct virtq *vq)
{
	struct virtio_console *c = dev->priv;
	bool room;

	if (vq->index == CONSOLE_TX) {
		console_transmit(c, vq);
		return;
	}
	/* New receive buffers: hand over what waits, and let the reader read on. */
	pthread_mutex_lock(&c->lock);
	room = console_deliver(c);
	pthread_mutex_unlock(&c->lock);
	if (room && c->reader_running)
		console_wake(c);
}

static void console_driver_ok(struct virtio_device *dev)
{
	struct virtio_console *c = dev->priv;
	int ret;

	if (!c->input || c->reader_running)
		return;
	/* A terminal belongs to its foreground job: in the background, reading
	 * it or changing its modes would stop Vireo (SIGTTIN, SIGTTOU). */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) != getpgrp())
		return;
	atomic_store(&c->stopping, false);
	console_termios_raw();
	ret = pthread_create(&c->reader, NULL, console_reader, c);
	if (ret) {
		vmm_log("virtio-console: cannot start its input thread: %s", strerror(ret));
		console_termios_restore();
		return;
	}
	c->reader_running = true;
}

static void console_reset(struct virtio_device *dev)
{
	struct virtio_console *c = dev->priv;

	if (c->reader_running) {
		atomic_store(&c->stopping, true);
		console_wake(c);
		pthread_join(c->reader, NULL);
		c->reader_running = false;
		console_termios_restore();
	}
	pthread_mutex_lock(&c->lock);
	c->pending_len = 0;
	pthread_mutex_unlock(&c->lock);
}

static void console_free(struct virtio_console *c)
{
	virtio_device_cleanup(&c->vdev);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void console_destroy(struct virtio_device *dev)
{
	console_free(dev->priv);
}

static const struct virtio_device_ops console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .pci_class = PCI_CLASS_COMM_OTHER,
    .config_size = CFG_SIZE,
    .features = console_features,
    .config_read = console_config_read,
    .config_write = console_config_write,
    .queue_notify = console_queue_notify,
    .driver_ok = console_driver_ok,
    .reset = console_reset,
    .destroy = console_destroy,
};

/* ---- -device virtio-serial-pci, -device virtconsole ---------------------------- */

static bool is_serial(const char *driver)
{
	return !strcmp(driver, "virtio-serial-pci") || !strcmp(driver, "virtio-serial");
}

static int console_check(const struct virtio_spec *spec, char *err, size_t errlen)
{
	bool serial = false;
	char value[8];

	if (virtio_spec_prop(spec, "chardev", NULL, 0)) {
		snprintf(err, errlen, "%s: chardev= is not supported: the console port uses the --serial back end",
			 spec->driver);
		return -EINVAL;
	}
	if (is_serial(spec->driver))
		return 0;
	/* virtconsole: a port of the virtio-serial device before it, the only
	 * one; it is not a PCI function, so it takes no transport property. */
	for (const char *const *p = virtio_pci_props; *p; p++) {
		if (strcmp(*p, "id") && virtio_spec_prop(spec, *p, value, sizeof(value))) {
			snprintf(err, errlen, "virtconsole: '%s' is a property of virtio-serial-pci", *p);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < spec->index; i++) {
		const char *d = spec->cfg->devices[i];
		size_t n = strcspn(d, ",");

		if (n == strlen("virtconsole") && !strncmp(d, "virtconsole", n)) {
			snprintf(err, errlen, "virtconsole: Vireo's virtio-serial has one port, and it is taken");
			return -EINVAL;
		}
		if ((n == strlen("virtio-serial-pci") && !strncmp(d, "virtio-serial-pci", n)) ||
		    (n == strlen("virtio-serial") && !strncmp(d, "virtio-serial", n)))
			serial = true;
	}
	if (!serial) {
		snprintf(err, errlen, "virtconsole needs a -device virtio-serial-pci before it");
		return -EINVAL;
	}
	return 0;
}

static int console_create(struct vm *vm, const struct virtio_spec *spec)
{
	struct virtio_console *c;
	struct virtio_device *dev;
	const char *serial = vm->cfg.serial ? vm->cfg.serial : "stdio";
	int ret;

	if (!is_serial(spec->driver)) {
		dev = virtio_device_last(vm, &console_ops);
		if (!dev)
			return -ENODEV;
		c = dev->priv;
		c->connected = true;
		c->input = !strcmp(serial, "stdio");
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = c->wake_fd < 0 ? -errno : virtio_device_init(&c->vdev, vm, &console_ops, c, 2, CONSOLE_QUEUE_SIZE);
	if (!ret)
		ret = virtio_device_add(&c->vdev, spec);
	if (ret < 0)
		console_free(c);
	return ret;
}

static const char *const console_drivers[] = {"virtio-serial-pci", "virtio-serial", "virtconsole", NULL};

/* Taken only to be refused with a better message than an unknown one's. */
static const char *const console_props[] = {"chardev", NULL};

static struct virtio_model console_model = {
    .drivers = console_drivers,
    .props = console_props,
    .check = console_check,
    .create = console_create,
};

VIRTIO_MODEL(console_model)
