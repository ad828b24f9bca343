/*
 * The tap back end: an existing Linux tap device, or a new one when Vireo
 * may create it (CAP_NET_ADMIN; it goes away with Vireo).
 *   -netdev tap,id=n0,ifname=tap0,script=no,downscript=no[,queues=N][,vnet_hdr=on|off]
 * queues=N opens the device N times with IFF_MULTI_QUEUE (the device must
 * have been made multi_queue: ip tuntap add dev tap0 mode tap multi_queue);
 * the NIC's queue pair i reads and writes queue i, and queues the guest does
 * not use are detached (TUNSETQUEUE) so the kernel steers no flow to them.
 * With IFF_VNET_HDR (the default when the kernel has it) every frame carries
 * a 12-byte virtio_net_hdr_v1 (TUNSETVNETHDRSZ 12); offloads stay off
 * (TUNSETOFFLOAD 0), so the kernel checksums and segments everything itself.
 * Scripts are not run: the device is set up beforehand.
 */
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net/internal.h"

struct tap {
	struct net_backend nb;
	char ifname[IFNAMSIZ];
	int fd[NET_MAX_QUEUES];
	bool attached[NET_MAX_QUEUES];
	bool multi_queue;
	pthread_mutex_t lock; /* attached */
};

static const char *const tap_props[] = {"ifname", "script", "downscript", "queues", "vnet_hdr", "vhost", NULL};

static int tap_check(const char *props, char *err, size_t errlen)
{
	char v[64];
	unsigned queues;

	if (net_prop(props, "ifname", 0, v, sizeof(v)) && (!*v || strlen(v) >= IFNAMSIZ || strchr(v, '/'))) {
		snprintf(err, errlen, "-netdev tap: bad ifname '%s' (a device name of 1 to %d characters)", v,
			 IFNAMSIZ - 1);
		return -EINVAL;
	}
	for (const char *const *s = (const char *const[]){"script", "downscript", NULL}; *s; s++) {
		if (net_prop(props, *s, 0, v, sizeof(v)) && strcmp(v, "no") && *v) {
			snprintf(err, errlen,
				 "-netdev tap: Vireo runs no scripts (%s=%s): set the tap device up beforehand and "
				 "give %s=no",
				 *s, v, *s);
			return -EINVAL;
		}
	}
	if (net_prop(props, "queues", 0, v, sizeof(v)) && net_uint(v, 1, NET_MAX_QUEUES, &queues) < 0) {
		snprintf(err, errlen, "-netdev tap: queues='%s' is not a number from 1 to %d", v, NET_MAX_QUEUES);
		return -EINVAL;
	}
	if (net_prop(props, "vnet_hdr", 0, v, sizeof(v)) && net_bool(v) < 0) {
		snprintf(err, errlen, "-netdev tap: vnet_hdr='%s' is not on or off", v);
		return -EINVAL;
	}
	if (net_prop(props, "vhost", 0, v, sizeof(v)) && net_bool(v) != 0) {
		snprintf(err, errlen, "-netdev tap: vhost='%s': Vireo has no vhost-net (vhost=off)", v);
		return -EINVAL;
	}
	return 0;
}

static void tap_close(struct net_backend *nb)
{
	struct tap *t = (struct tap *)nb;

	for (unsigned q = 0; q < NET_MAX_QUEUES; q++)
		if (t->fd[q] >= 0)
			close(t->fd[q]);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Attaches one more file descriptor to the device: queue q. */
static int tap_attach(struct tap *t, unsigned q, short flags, bool exists, char *err, size_t errlen)
{
	struct ifreq ifr = {.ifr_flags = flags};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK), e;

	if (fd < 0) {
		e = errno;
		if (exists || e != EACCES)
			snprintf(err, errlen, "-netdev tap: cannot open /dev/net/tun: %s", strerror(e));
		else
			snprintf(err, errlen,
				 "-netdev tap: no tap device '%s', and Vireo may not create one (/dev/net/tun: %s)",
				 t->ifname, strerror(e));
		return -e;
	}
	memcpy(ifr.ifr_name, t->ifname, sizeof(ifr.ifr_name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		e = errno;
		close(fd);
		if (!exists && (e == EPERM || e == EACCES))
			snprintf(err, errlen,
				 "-netdev tap: no tap device '%s', and Vireo may not create one (CAP_NET_ADMIN): %s",
				 t->ifname[0] ? t->ifname : "(any)", strerror(e));
		else if (e == EPERM || e == EACCES)
			snprintf(err, errlen,
				 "-netdev tap: tap device '%s': %s (ip tuntap add ... user NAME gives it to a user)",
				 t->ifname, strerror(e));
		else if (e == EINVAL && exists)
			snprintf(err, errlen, "-netdev tap: '%s' is not a tap device%s", t->ifname,
				 flags & IFF_MULTI_QUEUE
				     ? " made with multi_queue (ip tuntap add dev NAME mode tap multi_queue)"
				     : "");
		else if (e == EBUSY)
			snprintf(err, errlen, "-netdev tap: tap device '%s' is busy (in use by another program?)",
				 t->ifname);
		else
			snprintf(err, errlen, "-netdev tap: cannot attach to tap device '%s': %s", t->ifname,
				 strerror(e));
		return -e;
	}
	if (!t->ifname[0])
		memcpy(t->ifname, ifr.ifr_name, sizeof(t->ifname) - 1);
	t->fd[q] = fd;
	t->attached[q] = true;
	if (t->nb.hdr_len) {
		int sz = NET_HDR_LEN;
		if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
			snprintf(err, errlen, "-netdev tap: tap device '%s': cannot set its virtio-net header: %s",
				 t->ifname, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int tap_open(const char *props, struct net_backend **out, char *err, size_t errlen)
{
	struct tap *t = calloc(1, sizeof(*t));
	unsigned queues = 1, features = 0;
	char v[64];
	bool exists, hdr = true;
	short flags = IFF_TAP | IFF_NO_PI;
	int fd, ret = 0;

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	for (unsigned q = 0; q < NET_MAX_QUEUES; q++)
		t->fd[q] = -1;
	if (net_prop(props, "ifname", 0, v, sizeof(v)))
		snprintf(t->ifname, sizeof(t->ifname), "%.*s", IFNAMSIZ - 1, v);
	if (net_prop(props, "queues", 0, v, sizeof(v)))
		net_uint(v, 1, NET_MAX_QUEUES, &queues);
	if (net_prop(props, "vnet_hdr", 0, v, sizeof(v)))
		hdr = net_bool(v) == 1;
	exists = t->ifname[0] && if_nametoindex(t->ifname);

	/* What this kernel's tun driver can do. */
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		if (ioctl(fd, TUNGETFEATURES, &features) < 0)
			features = 0;
		close(fd);
	}
	if (hdr && features && !(features & IFF_VNET_HDR))
		hdr = false;
	if (queues > 1 && features && !(features & IFF_MULTI_QUEUE)) {
		snprintf(err, errlen, "-netdev tap: queues=%u: this kernel's tap has no multi-queue support", queues);
		tap_close(&t->nb);
		return -ENOTSUP;
	}
	t->nb.hdr_len = hdr ? NET_HDR_LEN : 0;
	t->nb.queues = queues;
	if (hdr)
		flags |= IFF_VNET_HDR;
	t->multi_queue = queues > 1;
	ret = tap_attach(t, 0, flags | (t->multi_queue ? IFF_MULTI_QUEUE : 0), exists, err, errlen);
	if (ret == -EINVAL && exists && !t->multi_queue) {
		/* A device made multi_queue takes single users only as one of its queues. */
		t->multi_queue = true;
		ret = tap_attach(t, 0, flags | IFF_MULTI_QUEUE, exists, err, errlen);
		if (ret == -EINVAL)
			snprintf(err, errlen, "-netdev tap: '%s' is not a tap device", t->ifname);
	}
	for (unsigned q = 1; q < queues && !ret; q++)
		ret = tap_attach(t, q, flags | IFF_MULTI_QUEUE, true, err, errlen);
	if (ret < 0) {
		tap_close(&t->nb);
		return ret;
	}
	*out = &t->nb;
	return 0;
}

static void tap_set_active_queues(struct net_backend *nb, unsigned n)
{
	struct tap *t = (struct tap *)nb;

	if (!t->multi_queue || nb->queues < 2)
		return;
	pthread_mutex_lock(&t->lock);
	/* Attach first: a multi-queue device keeps at least one queue. */
	for (unsigned q = 0; q < n; q++) {
		struct ifreq ifr = {.ifr_flags = IFF_ATTACH_QUEUE};
		if (!t->attached[q] && ioctl(t->fd[q], TUNSETQUEUE, &ifr) == 0)
			t->attached[q] = true;
	}
	for (unsigned q = n; q < nb->queues; q++) {
		struct ifreq ifr = {.ifr_flags = IFF_DETACH_QUEUE};
		if (t->attached[q] && ioctl(t->fd[q], TUNSETQUEUE, &ifr) == 0)
			t->attached[q] = false;
	}
	pthread_mutex_unlock(&t->lock);
}

static int tap_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
	struct tap *t = (struct tap *)nb;
	ssize_t n;

	do
		n = writev(t->fd[q], iov, iovcnt);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

static int tap_rx_fd(struct net_backend *nb, unsigned q)
{
	return ((struct tap *)nb)->fd[q];
}

static ssize_t tap_recv(struct net_backend *nb, unsigned q, void *buf, size_t len)
{
	struct tap *t = (struct tap *)nb;
	ssize_t n;

	do
		n = read(t->fd[q], buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EBADFD ? 0 : -errno;
	if ((size_t)n >= len) { /* as long as the buffer: cut short */
		atomic_fetch_add(&nb->rx_dropped, 1);
		return 0;
	}
	return n;
}

const struct net_backend_ops net_tap_ops = {
    .type = "tap",
    .props = tap_props,
    .check = tap_check,
    .open = tap_open,
    .close = tap_close,
    .send = tap_send,
    .rx_fd = tap_rx_fd,
    .recv = tap_recv,
    .set_active_queues = tap_set_active_queues,
};
