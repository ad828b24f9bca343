/*
 * virtio-net (virtio 1.2, 5.1) on a network back end (net/net.h):
 *   -netdev tap,id=n0,ifname=tap0,script=no,queues=2 -device virtio-net-pci,netdev=n0[,mac=..][,mq=on]
 *   -netdev user,id=n0 -device virtio-net-pci,netdev=n0
 *
 * Features: MAC, STATUS (the link is always up), MRG_RXBUF, CTRL_VQ with
 * CTRL_RX and CTRL_MAC_ADDR, and MQ when the back end has several queues
 * (mq=on, the default then): queue pair i is receiveq 2i and transmitq
 * 2i + 1, the control queue comes last. No checksum or segmentation offload
 * is offered, so every header must say "nothing to do".
 *
 * Transmit runs on the vCPU that rings the doorbell: it drains the queue
 * into the back end's queue of the same pair. Receive runs on one thread per
 * queue pair, started at DRIVER_OK and stopped by reset: it takes a frame
 * from the back end, fills as many receive buffers as the frame needs
 * (mergeable buffers) and publishes them in one used-ring update. When the
 * guest has posted no buffer the thread stops reading the back end until
 * the driver kicks the receive queue, so the back end holds the frames (a
 * tap's kernel queue, slirp's ring) and drops there when full.
 *
 * The device delivers every frame to the guest, whatever the receive mode
 * and MAC filter commands say: they are checked and acknowledged, as
 * filters a NIC may apply loosely (5.1.6.5.1: the device may deliver more).
 */
#include <ctype.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/net.h"
#include "vmm/virtio/virtio.h"

/* Feature bits (5.1.3). */
#define NET_F_MAC	    5
#define NET_F_MRG_RXBUF	    15
#define NET_F_STATUS	    16
#define NET_F_CTRL_VQ	    17
#define NET_F_CTRL_RX	    18
#define NET_F_MQ	    22
#define NET_F_CTRL_MAC_ADDR 23

#define NET_S_LINK_UP		   1
#define NET_QUEUE_SIZE		   256
#define PCI_CLASS_NETWORK_ETHERNET 0x020000
#define ETH_HEADER_LEN		   14
#define RX_NOTIFY_BATCH		   64

/* struct virtio_net_config */
enum { CFG_MAC = 0, CFG_STATUS = 6, CFG_MAX_PAIRS = 8, CFG_SIZE = 10 };

/* struct virtio_net_hdr_v1 */
enum { HDR_FLAGS = 0, HDR_GSO_TYPE = 1, HDR_NUM_BUFFERS = 10 };
#define HDR_F_NEEDS_CSUM 1
#define HDR_GSO_NONE	 0

/* The control queue (5.1.6.5): classes, commands, acks. */
enum { CTRL_RX = 0, CTRL_MAC = 1, CTRL_MQ = 4 };
enum { CTRL_RX_PROMISC = 0, CTRL_RX_ALLMULTI = 1 };
enum { CTRL_MAC_TABLE_SET = 0, CTRL_MAC_ADDR_SET = 1 };
enum { CTRL_MQ_VQ_PAIRS_SET = 0 };
enum { CTRL_OK = 0, CTRL_ERR = 1 };

struct virtio_net;

enum rx_result { RX_DELIVERED, RX_DROPPED, RX_NO_BUFFERS };

struct net_pair {
	struct virtio_net *n;
	unsigned index;

	/* Transmit: one vCPU at a time drains the queue, in order. */
	pthread_mutex_t tx_lock;
	struct virtq_req *tx_req;
	struct iovec tx_iov[VIRTQ_MAX_SIZE + 1];

	/* Receive: the thread's own state. */
	pthread_t thread;
	atomic_bool running;			/* written under the register lock, read by doorbells */
	int wake_fd;				/* eventfd: stop, receive buffers posted, queue pairs changed */
	uint8_t *frame;				/* header + frame */
	size_t frame_len;			/* of the frame waiting for buffers; 0: none */
	struct virtq_req *reqs[VIRTQ_MAX_SIZE]; /* the buffers taken for it, allocated as needed */
	uint32_t written[VIRTQ_MAX_SIZE];
	unsigned nreqs;
	size_t room;
};

struct virtio_net {
	struct virtio_device vdev;
	struct net_backend *nb;
	unsigned max_pairs;
	atomic_uint active_pairs;
	atomic_bool stopping;

	pthread_mutex_t ctrl_lock; /* mac */
	uint8_t mac[6], default_mac[6];

	atomic_uint_least64_t rx_dropped, tx_dropped;
	struct net_pair pairs[NET_MAX_QUEUES];
};

/* ---- features and configuration --------------------------------------------------- */

static uint64_t net_features(struct virtio_device *dev)
{
	struct virtio_net *n = dev->priv;
	uint64_t f = VIRTIO_BIT(NET_F_MAC) | VIRTIO_BIT(NET_F_MRG_RXBUF) | VIRTIO_BIT(NET_F_STATUS) |
		     VIRTIO_BIT(NET_F_CTRL_VQ) | VIRTIO_BIT(NET_F_CTRL_RX) | VIRTIO_BIT(NET_F_CTRL_MAC_ADDR);

	return n->max_pairs > 1 ? f | VIRTIO_BIT(NET_F_MQ) : f;
}

/* 5.1.3.1: the control queue's features need the control queue. */
static bool net_features_ok(struct virtio_device *dev, uint64_t features)
{
	(void)dev;
	return features & VIRTIO_BIT(NET_F_CTRL_VQ) ||
	       !(features & (VIRTIO_BIT(NET_F_CTRL_RX) | VIRTIO_BIT(NET_F_MQ) | VIRTIO_BIT(NET_F_CTRL_MAC_ADDR)));
}

static uint32_t net_config_read(struct virtio_device *dev, unsigned offset, unsigned size)
{
	struct virtio_net *n = dev->priv;
	uint8_t cfg[CFG_SIZE] = {0};
	uint16_t status = NET_S_LINK_UP, pairs = n->max_pairs;
	uint32_t v = 0;

	pthread_mutex_lock(&n->ctrl_lock);
	memcpy(cfg + CFG_MAC, n->mac, 6);
	pthread_mutex_unlock(&n->ctrl_lock);
	memcpy(cfg + CFG_STATUS, &status, 2);
	memcpy(cfg + CFG_MAX_PAIRS, &pairs, 2);
	memcpy(&v, cfg + offset, size);
	return v;
}

/* Queue pairs the driver may use: all of them with MQ, else one (5.1.2). */
static unsigned net_pairs(struct virtio_net *n)
{
	return virtio_has_feature(&n->vdev, NET_F_MQ) ? n->max_pairs : 1;
}

static void net_wake(struct net_pair *p)
{
	uint64_t one = 1;

	if (write(p->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vmm_log("virtio-net: cannot wake a receive thread: %s", strerror(errno));
}

/* ---- transmit ------------------------------------------------------------------------ */

/* Sends one request's frame: checked, header replaced by one of our own. */
static void net_tx_one(struct virtio_net *n, struct net_pair *p, const struct virtq_req *req)
{
	static const uint8_t clean_hdr[NET_HDR_LEN];
	uint8_t hdr[NET_HDR_LEN];
	size_t skip = NET_HDR_LEN, len;
	int cnt = 0;

	if (req->in_num)
		virtio_device_warn(&n->vdev, "transmit request %u has device-writable buffers", req->head);
	if (req->out_len < NET_HDR_LEN) {
		virtio_device_warn(&n->vdev, "transmit request %u: %u bytes, less than the %d-byte header", req->head,
				   req->out_len, NET_HDR_LEN);
		goto drop;
	}
	len = req->out_len - NET_HDR_LEN;
	if (len < ETH_HEADER_LEN || len > NET_FRAME_MAX) {
		virtio_device_warn(&n->vdev, "transmit request %u: a frame of %zu bytes (%d to %d)", req->head, len,
				   ETH_HEADER_LEN, NET_FRAME_MAX);
		goto drop;
	}
	virtq_req_read(req, 0, hdr, sizeof(hdr));
	if (hdr[HDR_FLAGS] & HDR_F_NEEDS_CSUM || hdr[HDR_GSO_TYPE] != HDR_GSO_NONE) {
		virtio_device_warn(&n->vdev,
				   "transmit request %u asks for checksum or segmentation offload (flags 0x%x, gso "
				   "%u), which was not negotiated",
				   req->head, hdr[HDR_FLAGS], hdr[HDR_GSO_TYPE]);
		goto drop;
	}
	if (net_hdr_len(n->nb))
		p->tx_iov[cnt++] = (struct iovec){.iov_base = (void *)clean_hdr, .iov_len = NET_HDR_LEN};
	for (unsigned i = 0; i < req->out_num; i++) {
		if (req->iov[i].iov_len <= skip) {
			skip -= req->iov[i].iov_len;
			continue;
		}
		p->tx_iov[cnt++] = (struct iovec){.iov_base = (uint8_t *)req->iov[i].iov_base + skip,
						  .iov_len = req->iov[i].iov_len - skip};
		skip = 0;
	}
	if (net_send(n->nb, p->index, p->tx_iov, cnt) == 0)
		return;
drop:
	atomic_fetch_add(&n->tx_dropped, 1);
}

static void net_tx(struct virtio_net *n, struct net_pair *p, struct virtq *vq)
{
	pthread_mutex_lock(&p->tx_lock);
	if (!p->tx_req && !(p->tx_req = malloc(sizeof(*p->tx_req)))) {
		pthread_mutex_unlock(&p->tx_lock);
		return;
	}
	do {
		virtq_disable_notify(vq);
		while (virtq_pop(vq, p->tx_req) > 0) {
			net_tx_one(n, p, p->tx_req);
			virtq_push(vq, p->tx_req, 0);
		}
	} while (virtq_enable_notify(vq));
	virtq_notify(vq);
	pthread_mutex_unlock(&p->tx_lock);
}

/* ---- receive --------------------------------------------------------------------------- */

/* Gives back the buffers taken for a frame that is dropped. */
static void net_rx_drop(struct net_pair *p, struct virtq *vq)
{
	for (unsigned i = 0; i < p->nreqs; i++)
		p->written[i] = 0;
	virtq_push_many(vq, (const struct virtq_req *const *)p->reqs, p->written, p->nreqs);
	p->nreqs = 0;
	p->room = 0;
	p->frame_len = 0;
	atomic_fetch_add(&p->n->rx_dropped, 1);
}

/* Puts the waiting frame into receive buffers, taking as many as it needs
 * (one without MRG_RXBUF). */
static enum rx_result net_rx_deliver(struct net_pair *p, struct virtq *vq)
{
	struct virtio_net *n = p->n;
	bool mergeable = virtio_has_feature(&n->vdev, NET_F_MRG_RXBUF);
	unsigned max = mergeable ? VIRTQ_MAX_SIZE : 1;
	uint16_t num_buffers;
	size_t off = 0;

	while (p->room < p->frame_len) {
		struct virtq_req *req;
		int ret;

		if (p->nreqs == max) {
			net_rx_drop(p, vq);
			return RX_DROPPED;
		}
		if (!p->reqs[p->nreqs] && !(p->reqs[p->nreqs] = malloc(sizeof(*req)))) {
			net_rx_drop(p, vq);
			return RX_DROPPED;
		}
		req = p->reqs[p->nreqs];
		ret = virtq_pop(vq, req);
		if (ret == 0 && virtq_enable_notify(vq)) {
			virtq_disable_notify(vq);
			continue;
		}
		if (ret == 0)
			return RX_NO_BUFFERS;
		if (ret < 0) { /* a broken ring: nothing more until reset */
			p->nreqs = 0;
			net_rx_drop(p, vq);
			return RX_NO_BUFFERS;
		}
		if (req->out_num || (!p->nreqs && req->in_len < NET_HDR_LEN)) {
			virtio_device_warn(&n->vdev, "receive buffer %u: %s", req->head,
					   req->out_num ? "device-readable parts" : "shorter than the header");
			virtq_push(vq, req, 0);
			continue;
		}
		p->nreqs++;
		p->room += req->in_len;
		if (!mergeable && p->room < p->frame_len) {
			net_rx_drop(p, vq); /* the buffers the driver posts are too small for its MTU */
			return RX_DROPPED;
		}
	}
	num_buffers = p->nreqs;
	memcpy(p->frame + HDR_NUM_BUFFERS, &num_buffers, 2);
	for (unsigned i = 0; i < p->nreqs; i++) {
		size_t chunk = p->frame_len - off < p->reqs[i]->in_len ? p->frame_len - off : p->reqs[i]->in_len;

		p->written[i] = virtq_req_write(p->reqs[i], 0, p->frame + off, chunk);
		off += chunk;
	}
	virtq_push_many(vq, (const struct virtq_req *const *)p->reqs, p->written, p->nreqs);
	p->nreqs = 0;
	p->room = 0;
	p->frame_len = 0;
	return RX_DELIVERED;
}

/* Takes the back end's next frame for this pair, if any, with a clean header. */
static void net_rx_fetch(struct net_pair *p)
{
	struct virtio_net *n = p->n;
	unsigned hdr = net_hdr_len(n->nb);
	ssize_t len = net_recv(n->nb, p->index, p->frame + NET_HDR_LEN - hdr, NET_FRAME_MAX + hdr);

	if (len <= 0)
		return;
	/* The tap's header says nothing to do: no offload was enabled on it. */
	if (len < (ssize_t)hdr + ETH_HEADER_LEN ||
	    (hdr && (p->frame[HDR_FLAGS] & HDR_F_NEEDS_CSUM || p->frame[HDR_GSO_TYPE] != HDR_GSO_NONE))) {
		atomic_fetch_add(&n->rx_dropped, 1);
		return;
	}
	memset(p->frame, 0, NET_HDR_LEN);
	p->frame_len = len + NET_HDR_LEN - hdr;
}

static void *net_rx_thread(void *arg)
{
	struct net_pair *p = arg;
	struct virtio_net *n = p->n;
	struct virtq *vq = &n->vdev.vqs[2 * p->index];
	int rx_fd = net_rx_fd(n->nb, p->index);
	bool starved = false;
	unsigned batch = 0;

	virtq_disable_notify(vq);
	while (!atomic_load(&n->stopping)) {
		bool active = p->index < atomic_load(&n->active_pairs);
		struct pollfd fds[2] = {{.fd = p->wake_fd, .events = POLLIN}, {.fd = rx_fd, .events = POLLIN}};
		uint64_t count;

		if (active && !starved) {
			if (!p->frame_len)
				net_rx_fetch(p);
			if (p->frame_len) {
				switch (net_rx_deliver(p, vq)) {
				case RX_DELIVERED:
					if (++batch == RX_NOTIFY_BATCH) {
						virtq_notify(vq);
						batch = 0;
					}
					continue;
				case RX_DROPPED: continue;
				case RX_NO_BUFFERS: starved = true; break;
				}
			}
		}
		if (batch) {
			virtq_notify(vq);
			batch = 0;
		}
		if (poll(fds, active && !starved && !p->frame_len && rx_fd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents & POLLIN) {
			if (read(p->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
				break;
			if (starved)
				virtq_disable_notify(vq);
			starved = false;
		}
	}
	return NULL;
}

/* ---- the control queue ------------------------------------------------------------------- */

static uint8_t net_ctrl_command(struct virtio_net *n, const struct virtq_req *req)
{
	uint8_t cmd[2], data[6];
	size_t len = req->out_len - 2;

	virtq_req_read(req, 0, cmd, 2);
	switch (cmd[0]) {
	case CTRL_RX:
		if (!virtio_has_feature(&n->vdev, NET_F_CTRL_RX) || cmd[1] > CTRL_RX_ALLMULTI || len != 1)
			return CTRL_ERR;
		return CTRL_OK; /* every frame is delivered anyway */
	case CTRL_MAC:
		if (cmd[1] == CTRL_MAC_ADDR_SET) {
			if (!virtio_has_feature(&n->vdev, NET_F_CTRL_MAC_ADDR) || len != 6)
				return CTRL_ERR;
			virtq_req_read(req, 2, data, 6);
			pthread_mutex_lock(&n->ctrl_lock);
			memcpy(n->mac, data, 6);
			pthread_mutex_unlock(&n->ctrl_lock);
			return CTRL_OK;
		}
		if (cmd[1] == CTRL_MAC_TABLE_SET && virtio_has_feature(&n->vdev, NET_F_CTRL_RX)) {
			/* Two tables, unicast then multicast: u32 entries, 6 bytes each. */
			uint64_t at = 0;
			for (int t = 0; t < 2; t++) {
				uint32_t entries;
				if (len - at < 4 || virtq_req_read(req, 2 + at, &entries, 4) != 4)
					return CTRL_ERR;
				at += 4 + 6ull * entries;
				if (at > len)
					return CTRL_ERR;
			}
			return at == len ? CTRL_OK : CTRL_ERR;
		}
		return CTRL_ERR;
	case CTRL_MQ: {
		uint16_t pairs;
		if (!virtio_has_feature(&n->vdev, NET_F_MQ) || cmd[1] != CTRL_MQ_VQ_PAIRS_SET || len != 2)
			return CTRL_ERR;
		virtq_req_read(req, 2, &pairs, 2);
		if (pairs < 1 || pairs > n->max_pairs)
			return CTRL_ERR;
		/* The back end's queues are attached before the threads read them,
		 * and the threads leave them before they are detached. */
		if (pairs > atomic_load(&n->active_pairs)) {
			net_set_active_queues(n->nb, pairs);
			atomic_store(&n->active_pairs, pairs);
		} else {
			atomic_store(&n->active_pairs, pairs);
			net_set_active_queues(n->nb, pairs);
		}
		for (unsigned i = 0; i < n->max_pairs; i++)
			if (atomic_load(&n->pairs[i].running))
				net_wake(&n->pairs[i]);
		return CTRL_OK;
	}
	default: return CTRL_ERR;
	}
}

static void net_ctrl(struct virtio_net *n, struct virtq *vq)
{
	struct virtq_req *req = malloc(sizeof(*req));

	while (req && virtq_pop(vq, req) > 0) {
		uint8_t ack;

		if (req->out_len < 2 || !req->in_len) {
			virtio_device_warn(&n->vdev,
					   "control request %u: %u bytes to read, %u to write (at least 2, 1)",
					   req->head, req->out_len, req->in_len);
			virtq_push(vq, req, 0);
			continue;
		}
		ack = net_ctrl_command(n, req);
		virtq_push(vq, req, virtq_req_write(req, 0, &ack, 1));
	}
	virtq_notify(vq);
	free(req);
}

static void net_queue_notify(struct virtio_device *dev, struct virtq *vq)
{
	struct virtio_net *n = dev->priv;
	unsigned pairs = net_pairs(n);

	if (vq->index < 2 * pairs && vq->index % 2)
		net_tx(n, &n->pairs[vq->index / 2], vq);
	else if (vq->index < 2 * pairs && atomic_load(&n->pairs[vq->index / 2].running))
		net_wake(&n->pairs[vq->index / 2]);
	else if (vq->index == 2 * pairs && virtio_has_feature(dev, NET_F_CTRL_VQ))
		net_ctrl(n, vq);
	else
		virtio_device_warn(dev, "doorbell of queue %u, which the negotiated features do not use", vq->index);
}

/* ---- start and stop ------------------------------------------------------------------------ */

static void net_stop(struct virtio_net *n)
{
	atomic_store(&n->stopping, true);
	for (unsigned i = 0; i < n->max_pairs; i++) {
		struct net_pair *p = &n->pairs[i];

		if (atomic_load(&p->running)) {
			net_wake(p);
			pthread_join(p->thread, NULL);
			atomic_store(&p->running, false);
		}
		/* A transmit in progress on a vCPU finishes before reset returns;
		 * later ones find the queue disabled. */
		pthread_mutex_lock(&p->tx_lock);
		pthread_mutex_unlock(&p->tx_lock);
		p->frame_len = 0;
		p->nreqs = 0;
		p->room = 0;
	}
}

static void net_driver_ok(struct virtio_device *dev)
{
	struct virtio_net *n = dev->priv;
	unsigned pairs = net_pairs(n);

	/* 5.1.6.5.5: until VQ_PAIRS_SET the driver uses the first pair only. */
	atomic_store(&n->active_pairs, 1);
	net_set_active_queues(n->nb, 1);
	atomic_store(&n->stopping, false);
	for (unsigned i = 0; i < pairs; i++) {
		struct net_pair *p = &n->pairs[i];
		int ret = pthread_create(&p->thread, NULL, net_rx_thread, p);

		if (ret) {
			vmm_log("virtio-net at %s: cannot start receive thread %u: %s", dev->location, i,
				strerror(ret));
			break;
		}
		atomic_store(&p->running, true);
	}
}

static void net_reset(struct virtio_device *dev)
{
	struct virtio_net *n = dev->priv;

	net_stop(n);
	pthread_mutex_lock(&n->ctrl_lock);
	memcpy(n->mac, n->default_mac, 6);
	pthread_mutex_unlock(&n->ctrl_lock);
}

static void net_free(struct virtio_net *n)
{
	for (unsigned i = 0; i < NET_MAX_QUEUES; i++) {
		struct net_pair *p = &n->pairs[i];

		free(p->tx_req);
		free(p->frame);
		for (unsigned r = 0; r < VIRTQ_MAX_SIZE; r++)
			free(p->reqs[r]);
		if (p->wake_fd >= 0)
			close(p->wake_fd);
		pthread_mutex_destroy(&p->tx_lock);
	}
	pthread_mutex_destroy(&n->ctrl_lock);
	virtio_device_cleanup(&n->vdev);
	free(n);
}

static void net_destroy(struct virtio_device *dev)
{
	struct virtio_net *n = dev->priv;

	net_stop(n);
	if (dev->vm->cfg.stats) {
		struct net_stats s;

		net_get_stats(n->nb, &s);
		fprintf(stderr,
			"vireo: virtio-net at %s (%s %s): rx %llu frames %llu bytes, %llu dropped; tx %llu frames %llu "
			"bytes, %llu dropped\n",
			dev->location, net_type(n->nb), net_id(n->nb), (unsigned long long)s.rx_frames,
			(unsigned long long)s.rx_bytes,
			(unsigned long long)(s.rx_dropped + atomic_load(&n->rx_dropped)),
			(unsigned long long)s.tx_frames, (unsigned long long)s.tx_bytes,
			(unsigned long long)(s.tx_errors + atomic_load(&n->tx_dropped)));
	}
	net_free(n);
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .pci_class = PCI_CLASS_NETWORK_ETHERNET,
    .config_size = CFG_SIZE,
    .features = net_features,
    .features_ok = net_features_ok,
    .config_read = net_config_read,
    .queue_notify = net_queue_notify,
    .driver_ok = net_driver_ok,
    .reset = net_reset,
    .destroy = net_destroy,
};

/* ---- -device virtio-net-pci,netdev=ID[,mac=52:54:00:12:34:56][,mq=on|off] ------------------ */

static bool is_net(const char *driver, size_t len)
{
	return (len == strlen("virtio-net-pci") && !strncmp(driver, "virtio-net-pci", len)) ||
	       (len == strlen("virtio-net") && !strncmp(driver, "virtio-net", len));
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++, s += 3) {
		if (!isxdigit((unsigned char)s[0]) || !isxdigit((unsigned char)s[1]) || s[2] != (i < 5 ? ':' : 0))
			return -EINVAL;
		mac[i] = strtoul((char[]){s[0], s[1], 0}, NULL, 16);
	}
	return mac[0] & 1 ? -EINVAL : 0; /* a group address is no NIC's */
}

static int net_model_check(const struct virtio_spec *spec, char *err, size_t errlen)
{
	char netdev[64], value[64], other[64], id[32], ignored[8];
	uint8_t mac[6];
	bool found = false;

	if (!virtio_spec_prop(spec, "netdev", netdev, sizeof(netdev)) || !*netdev) {
		snprintf(err, errlen, "%s needs netdev=ID, the id of a -netdev back end", spec->driver);
		return -EINVAL;
	}
	for (unsigned i = 0; i < spec->cfg->nnetdevs && !found; i++)
		found = net_check(spec->cfg->netdevs[i], id, sizeof(id), ignored, sizeof(ignored)) == 0 &&
			!strcmp(id, netdev);
	if (!found) {
		snprintf(err, errlen, "%s: no -netdev with id '%s'", spec->driver, netdev);
		return -EINVAL;
	}
	for (unsigned i = 0; i < spec->index; i++) {
		const char *d = spec->cfg->devices[i], *comma = strchr(d, ',');
		struct virtio_spec earlier = {.props = comma ? comma + 1 : ""};

		if (is_net(d, comma ? (size_t)(comma - d) : strlen(d)) &&
		    virtio_spec_prop(&earlier, "netdev", other, sizeof(other)) && !strcmp(other, netdev)) {
			snprintf(err, errlen, "%s: -netdev '%s' is already another NIC's", spec->driver, netdev);
			return -EINVAL;
		}
	}
	if (virtio_spec_prop(spec, "mac", value, sizeof(value)) && parse_mac(value, mac) < 0) {
		snprintf(err, errlen, "%s: bad mac '%s' (six hex bytes such as 52:54:00:12:34:56, not a group address)",
			 spec->driver, value);
		return -EINVAL;
	}
	if (virtio_spec_prop(spec, "mq", value, sizeof(value)) && strcmp(value, "on") && strcmp(value, "off")) {
		snprintf(err, errlen, "%s: mq='%s' is not on or off", spec->driver, value);
		return -EINVAL;
	}
	return 0;
}

static int net_create(struct vm *vm, const struct virtio_spec *spec)
{
	struct virtio_net *n;
	char netdev[64], value[64];
	unsigned nth = 0;
	int ret;

	virtio_spec_prop(spec, "netdev", netdev, sizeof(netdev));
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	pthread_mutex_init(&n->ctrl_lock, NULL);
	for (unsigned i = 0; i < NET_MAX_QUEUES; i++) {
		n->pairs[i] = (struct net_pair){.n = n, .index = i, .wake_fd = -1};
		pthread_mutex_init(&n->pairs[i].tx_lock, NULL);
	}
	n->nb = vm_netdev(vm, netdev);
	if (!n->nb) {
		net_free(n);
		return -ENODEV;
	}
	n->max_pairs = net_queues(n->nb);
	if (virtio_spec_prop(spec, "mq", value, sizeof(value)) && !strcmp(value, "off"))
		n->max_pairs = 1;
	/* QEMU's default addresses: 52:54:00:12:34:56, the next NIC ...:57. */
	for (unsigned i = 0; i < spec->index; i++)
		nth += is_net(vm->cfg.devices[i], strcspn(vm->cfg.devices[i], ","));
	if (!virtio_spec_prop(spec, "mac", value, sizeof(value)) || parse_mac(value, n->default_mac) < 0)
		memcpy(n->default_mac, (uint8_t[]){0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x56 + nth)}, 6);
	memcpy(n->mac, n->default_mac, 6);
	ret = 0;
	for (unsigned i = 0; i < n->max_pairs && !ret; i++) {
		struct net_pair *p = &n->pairs[i];

		p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		p->frame = malloc(NET_HDR_LEN + NET_FRAME_MAX);
		ret = p->wake_fd < 0 ? -errno : !p->frame ? -ENOMEM : 0;
	}
	if (!ret)
		ret = virtio_device_init(&n->vdev, vm, &net_ops, n, 2 * n->max_pairs + 1, NET_QUEUE_SIZE);
	if (!ret)
		ret = virtio_device_add(&n->vdev, spec);
	if (ret < 0)
		net_free(n);
	return ret;
}

static const char *const net_drivers[] = {"virtio-net-pci", "virtio-net", NULL};
static const char *const net_props[] = {"netdev", "mac", "mq", NULL};

static struct virtio_model net_model = {
    .drivers = net_drivers,
    .props = net_props,
    .check = net_model_check,
    .create = net_create,
};

VIRTIO_MODEL(net_model)
