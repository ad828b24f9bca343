/*
 * User networking through libslirp: the guest is alone on 10.0.2.0/24 with
 * a virtual router and host at 10.0.2.2 (DHCP server, NAT to the host's
 * sockets), a DNS forwarder at 10.0.2.3, and 10.0.2.15 the first address
 * DHCP gives; IPv6 on fec0::/64 likewise. No privileges needed.
 *   -netdev user,id=n0[,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,restrict=on]
 * hostfwd (repeatable, tcp or udp) listens on the host and forwards to the
 * guest; restrict=on keeps the guest from reaching anything outside
 * 10.0.2.0/24 (forwarded ports still work).
 *
 * libslirp is not thread-safe: one lock covers every call into it. Its own
 * thread polls the sockets slirp asks for and runs its timers; frames the
 * guest sends go in with slirp_input on the sender's thread. Frames for the
 * guest (slirp's send_packet, from either thread) wait in a ring until the
 * NIC takes them (net_recv); when the ring is full they are dropped and
 * counted, and TCP inside slirp retransmits.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <slirp/libslirp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "net/internal.h"

#define RX_RING	    256 /* frames waiting for the NIC */
#define MAX_POLLFDS 1024

struct slirp_timer {
	SlirpTimerId id;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
	struct slirp_timer *next;
};

struct user {
	struct net_backend nb;
	Slirp *slirp;
	pthread_mutex_t lock; /* slirp, timers */
	struct slirp_timer *timers;
	pthread_t thread;
	bool thread_running;
	atomic_bool stop;
	int wake_fd; /* eventfd: the poll loop looks again */
	struct pollfd *pfd;
	unsigned npfd;
	uint8_t *frame; /* a frame from the guest, under lock */
	bool warned;

	/* Frames for the guest. */
	pthread_mutex_t rx_lock;
	int rx_fd; /* eventfd: readable while the ring holds a frame */
	struct {
		uint8_t *data;
		size_t len;
	} ring[RX_RING];
	unsigned head, count;
};

static const char *const user_props[] = {"hostfwd", "restrict", "ipv6", NULL};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

static void wake(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		net_log("user network: cannot wake its thread: %s", strerror(errno));
}

static void drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		net_log("user network: eventfd: %s", strerror(errno));
}

/* ---- hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT ---------- */

struct hostfwd {
	bool udp;
	struct in_addr host, guest;
	int host_port, guest_port;
};

static int parse_port(const char *s, size_t n, int *port)
{
	unsigned v;
	char buf[8];

	if (!n || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = 0;
	if (net_uint(buf, 0, 65535, &v) < 0)
		return -EINVAL;
	*port = v;
	return 0;
}

static int parse_addr(const char *s, size_t n, struct in_addr *addr, in_addr_t dflt)
{
	char buf[INET_ADDRSTRLEN];

	if (!n) {
		addr->s_addr = dflt;
		return 0;
	}
	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = 0;
	return inet_pton(AF_INET, buf, addr) == 1 ? 0 : -EINVAL;
}

static int parse_hostfwd(const char *v, struct hostfwd *fw)
{
	const char *colon, *dash, *colon2;

	memset(fw, 0, sizeof(*fw));
	if (!strncmp(v, "tcp:", 4)) {
		v += 4;
	} else if (!strncmp(v, "udp:", 4)) {
		fw->udp = true;
		v += 4;
	} else if (*v != ':') {
		return -EINVAL;
	} else {
		v++;
	}
	if (!(colon = strchr(v, ':')) || !(dash = strchr(colon, '-')) || !(colon2 = strchr(dash, ':')))
		return -EINVAL;
	if (parse_addr(v, colon - v, &fw->host, htonl(INADDR_ANY)) < 0 ||
	    parse_port(colon + 1, dash - colon - 1, &fw->host_port) < 0 ||
	    parse_addr(dash + 1, colon2 - dash - 1, &fw->guest, inet_addr("10.0.2.15")) < 0 ||
	    parse_port(colon2 + 1, strlen(colon2 + 1), &fw->guest_port) < 0 || !fw->guest_port)
		return -EINVAL;
	return 0;
}

static int user_check(const char *props, char *err, size_t errlen)
{
	char v[128];
	struct hostfwd fw;

	for (unsigned i = 0; net_prop(props, "hostfwd", i, NULL, 0); i++) {
		if (!net_prop(props, "hostfwd", i, v, sizeof(v)) || parse_hostfwd(v, &fw) < 0) {
			snprintf(err, errlen,
				 "-netdev user: bad hostfwd '%s' (tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT)",
				 v);
			return -EINVAL;
		}
	}
	for (const char *const *b = (const char *const[]){"restrict", "ipv6", NULL}; *b; b++) {
		if (net_prop(props, *b, 0, v, sizeof(v)) && net_bool(v) < 0) {
			snprintf(err, errlen, "-netdev user: %s='%s' is not on or off", *b, v);
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- libslirp's callbacks ----------------------------------------------------- */

/* A frame for the guest; slirp's lock is held. */
static ssize_t user_send_packet(const void *buf, size_t len, void *opaque)
{
	struct user *u = opaque;
	uint8_t *copy;

	if (len > NET_FRAME_MAX || !(copy = malloc(len))) {
		atomic_fetch_add(&u->nb.rx_dropped, 1);
		return len;
	}
	memcpy(copy, buf, len);
	pthread_mutex_lock(&u->rx_lock);
	if (u->count == RX_RING) {
		pthread_mutex_unlock(&u->rx_lock);
		free(copy);
		atomic_fetch_add(&u->nb.rx_dropped, 1);
		return len;
	}
	u->ring[(u->head + u->count) % RX_RING].data = copy;
	u->ring[(u->head + u->count) % RX_RING].len = len;
	if (!u->count++)
		wake(u->rx_fd);
	pthread_mutex_unlock(&u->rx_lock);
	return len;
}

static void user_guest_error(const char *msg, void *opaque)
{
	struct user *u = opaque;

	if (!u->warned) {
		u->warned = true;
		net_log("user network %s: the guest sent something slirp refused: %s", u->nb.id, msg);
	}
}

static int64_t user_clock_ns(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void *user_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct user *u = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->id = id;
	t->cb_opaque = cb_opaque;
	t->expire_ms = -1;
	t->next = u->timers;
	u->timers = t;
	return t;
}

static void user_timer_free(void *timer, void *opaque)
{
	struct user *u = opaque;

	for (struct slirp_timer **p = &u->timers; *p; p = &(*p)->next) {
		if (*p == timer) {
			*p = (*p)->next;
			free(timer);
			return;
		}
	}
}

static void user_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct slirp_timer *t = timer;

	if (t) {
		t->expire_ms = expire_ms;
		wake(((struct user *)opaque)->wake_fd);
	}
}

static void user_register_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

static void user_notify(void *opaque)
{
	wake(((struct user *)opaque)->wake_fd);
}

static const SlirpCb user_callbacks = {
    .send_packet = user_send_packet,
    .guest_error = user_guest_error,
    .clock_get_ns = user_clock_ns,
    .timer_free = user_timer_free,
    .timer_mod = user_timer_mod,
    .register_poll_fd = user_register_poll_fd,
    .unregister_poll_fd = user_register_poll_fd,
    .notify = user_notify,
    .timer_new_opaque = user_timer_new_opaque,
};

/* ---- the poll loop -------------------------------------------------------------- */

static int user_add_poll(int fd, int events, void *opaque)
{
	struct user *u = opaque;
	short ev = 0;

	if (u->npfd == MAX_POLLFDS)
		return -1;
	if (events & SLIRP_POLL_IN)
		ev |= POLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= POLLPRI;
	u->pfd[u->npfd] = (struct pollfd){.fd = fd, .events = ev};
	return u->npfd++;
}

static int user_get_revents(int idx, void *opaque)
{
	struct user *u = opaque;
	short r;
	int events = 0;

	if (idx < 0 || (unsigned)idx >= u->npfd)
		return 0;
	r = u->pfd[idx].revents;
	if (r & POLLIN)
		events |= SLIRP_POLL_IN;
	if (r & POLLOUT)
		events |= SLIRP_POLL_OUT;
	if (r & POLLPRI)
		events |= SLIRP_POLL_PRI;
	if (r & POLLERR)
		events |= SLIRP_POLL_ERR;
	if (r & POLLHUP)
		events |= SLIRP_POLL_HUP;
	return events;
}

static void *user_thread(void *arg)
{
	struct user *u = arg;

	while (!atomic_load(&u->stop)) {
		uint32_t timeout = UINT32_MAX;
		int64_t now;
		int ret, poll_errno;

		pthread_mutex_lock(&u->lock);
		u->npfd = 0;
		user_add_poll(u->wake_fd, SLIRP_POLL_IN, u);
		slirp_pollfds_fill(u->slirp, &timeout, user_add_poll, u);
		now = now_ms();
		for (struct slirp_timer *t = u->timers; t; t = t->next)
			if (t->expire_ms >= 0)
				timeout = t->expire_ms <= now		 ? 0
					  : t->expire_ms - now < timeout ? t->expire_ms - now
									 : timeout;
		pthread_mutex_unlock(&u->lock);

		/* Bounded, so a missed wake-up costs a second at most. */
		ret = poll(u->pfd, u->npfd, timeout > 1000 ? 1000 : (int)timeout);
		poll_errno = errno;

		pthread_mutex_lock(&u->lock);
		if (ret > 0 && u->pfd[0].revents & POLLIN)
			drain(u->wake_fd);
		slirp_pollfds_poll(u->slirp, ret < 0 && poll_errno != EINTR, user_get_revents, u);
		now = now_ms();
		for (struct slirp_timer *t = u->timers; t; t = t->next) {
			if (t->expire_ms >= 0 && t->expire_ms <= now) {
				t->expire_ms = -1;
				slirp_handle_timer(u->slirp, t->id, t->cb_opaque);
				break; /* the handler may have freed or added timers: look again next round */
			}
		}
		pthread_mutex_unlock(&u->lock);
	}
	return NULL;
}

/* ---- the back end --------------------------------------------------------------- */

static void user_close(struct net_backend *nb)
{
	struct user *u = (struct user *)nb;

	if (u->thread_running) {
		atomic_store(&u->stop, true);
		wake(u->wake_fd);
		pthread_join(u->thread, NULL);
	}
	if (u->slirp)
		slirp_cleanup(u->slirp);
	while (u->timers)
		user_timer_free(u->timers, u);
	for (unsigned i = 0; i < u->count; i++)
		free(u->ring[(u->head + i) % RX_RING].data);
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	if (u->rx_fd >= 0)
		close(u->rx_fd);
	free(u->pfd);
	free(u->frame);
	pthread_mutex_destroy(&u->lock);
	pthread_mutex_destroy(&u->rx_lock);
	free(u);
}

static int user_open(const char *props, struct net_backend **out, char *err, size_t errlen)
{
	struct user *u = calloc(1, sizeof(*u));
	SlirpConfig cfg = {.version = 4, .in_enabled = true, .in6_enabled = true, .vprefix_len = 64};
	char v[128];
	int ret;

	if (!u)
		return -ENOMEM;
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->rx_lock, NULL);
	u->nb.queues = 1;
	u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->rx_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->pfd = calloc(MAX_POLLFDS, sizeof(*u->pfd));
	u->frame = malloc(NET_FRAME_MAX);
	if (u->wake_fd < 0 || u->rx_fd < 0 || !u->pfd || !u->frame) {
		ret = u->pfd && u->frame ? -errno : -ENOMEM;
		snprintf(err, errlen, "-netdev user: %s", strerror(-ret));
		user_close(&u->nb);
		return ret;
	}
	if (net_prop(props, "restrict", 0, v, sizeof(v)))
		cfg.restricted = net_bool(v) == 1;
	if (net_prop(props, "ipv6", 0, v, sizeof(v)))
		cfg.in6_enabled = net_bool(v) == 1;
	inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
	inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
	inet_pton(AF_INET, "10.0.2.2", &cfg.vhost);
	inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
	inet_pton(AF_INET, "10.0.2.3", &cfg.vnameserver);
	inet_pton(AF_INET6, "fec0::", &cfg.vprefix_addr6);
	inet_pton(AF_INET6, "fec0::2", &cfg.vhost6);
	inet_pton(AF_INET6, "fec0::3", &cfg.vnameserver6);
	cfg.vhostname = "vireo";
	u->slirp = slirp_new(&cfg, &user_callbacks, u);
	if (!u->slirp) {
		snprintf(err, errlen, "-netdev user: libslirp could not start");
		user_close(&u->nb);
		return -ENOMEM;
	}
	for (unsigned i = 0; net_prop(props, "hostfwd", i, v, sizeof(v)); i++) {
		struct hostfwd fw;

		parse_hostfwd(v, &fw);
		if (slirp_add_hostfwd(u->slirp, fw.udp, fw.host, fw.host_port, fw.guest, fw.guest_port) < 0) {
			snprintf(err, errlen, "-netdev user: hostfwd '%s': cannot listen on host port %d: %s", v,
				 fw.host_port, strerror(errno));
			user_close(&u->nb);
			return -EADDRINUSE;
		}
	}
	ret = pthread_create(&u->thread, NULL, user_thread, u);
	if (ret) {
		snprintf(err, errlen, "-netdev user: cannot start its thread: %s", strerror(ret));
		user_close(&u->nb);
		return -ret;
	}
	u->thread_running = true;
	*out = &u->nb;
	return 0;
}

static int user_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
	struct user *u = (struct user *)nb;
	size_t len = 0;

	(void)q;
	pthread_mutex_lock(&u->lock);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > NET_FRAME_MAX - len) {
			pthread_mutex_unlock(&u->lock);
			return -EMSGSIZE;
		}
		memcpy(u->frame + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	slirp_input(u->slirp, u->frame, len);
	pthread_mutex_unlock(&u->lock);
	/* slirp may have new sockets or timers for its loop to look at. */
	wake(u->wake_fd);
	return 0;
}

static int user_rx_fd(struct net_backend *nb, unsigned q)
{
	(void)q;
	return ((struct user *)nb)->rx_fd;
}

static ssize_t user_recv(struct net_backend *nb, unsigned q, void *buf, size_t len)
{
	struct user *u = (struct user *)nb;
	uint8_t *data;
	size_t n;

	(void)q;
	pthread_mutex_lock(&u->rx_lock);
	if (!u->count) {
		pthread_mutex_unlock(&u->rx_lock);
		return 0;
	}
	data = u->ring[u->head].data;
	n = u->ring[u->head].len;
	u->head = (u->head + 1) % RX_RING;
	if (!--u->count)
		drain(u->rx_fd);
	pthread_mutex_unlock(&u->rx_lock);
	if (n > len) {
		atomic_fetch_add(&nb->rx_dropped, 1);
		n = 0;
	} else {
		memcpy(buf, data, n);
	}
	free(data);
	return n;
}

const struct net_backend_ops net_user_ops = {
    .type = "user",
    .props = user_props,
    .check = user_check,
    .open = user_open,
    .close = user_close,
    .send = user_send,
    .rx_fd = user_rx_fd,
    .recv = user_recv,
};
