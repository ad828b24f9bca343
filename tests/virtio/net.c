/*
 * virtio-net driven as a driver would (driver.h), on real back ends:
 *
 *   slirp (-netdev user,restrict=on): identification and configuration,
 *   feature negotiation, an ARP request out and slirp's reply in (one
 *   buffer, then spread over small mergeable buffers), the control queue's
 *   commands and refusals, hostile transmit requests (short header, oversized
 *   frame, offload flags nobody negotiated), and reset with the receive
 *   thread running;
 *
 *   a multi-queue tap (queues=2, mq) in a network namespace of the test's
 *   own, addressed 10.0.3.1/24 by the test: VQ_PAIRS_SET, ARP and ICMP echo
 *   with the Linux kernel on the other side, sent on each queue pair. Skipped
 *   (said so) when the namespace cannot be made (not root).
 */
#include <arpa/inet.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "tests/virtio/driver.h"

#define NET_F_MAC	    5
#define NET_F_MRG_RXBUF	    15
#define NET_F_STATUS	    16
#define NET_F_CTRL_VQ	    17
#define NET_F_CTRL_RX	    18
#define NET_F_MQ	    22
#define NET_F_CTRL_MAC_ADDR 23
#define NET_FEATURES                                                                                                   \
	(VIRTIO_BIT(NET_F_MAC) | VIRTIO_BIT(NET_F_MRG_RXBUF) | VIRTIO_BIT(NET_F_STATUS) | VIRTIO_BIT(NET_F_CTRL_VQ) |  \
	 VIRTIO_BIT(NET_F_CTRL_RX) | VIRTIO_BIT(NET_F_CTRL_MAC_ADDR))
#define HDR	12
#define TIMEOUT 5000000000ull

static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t tap_mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01};

/* ---- frames --------------------------------------------------------------------------- */

static size_t arp_request(uint8_t *f, const uint8_t mac[6], const char *from, const char *to)
{
	memset(f, 0, 60);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	memcpy(f + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
	memcpy(f + 22, mac, 6);
	inet_pton(AF_INET, from, f + 28);
	inet_pton(AF_INET, to, f + 38);
	return 60;
}

static uint16_t ip_checksum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* An ICMP echo request of 64 bytes of payload to dst_mac. */
static size_t icmp_echo(uint8_t *f, const uint8_t src_mac[6], const uint8_t dst_mac[6], const char *from,
			const char *to, uint16_t seq)
{
	uint8_t *ip = f + 14, *icmp = ip + 20;
	uint16_t c;

	memcpy(f, dst_mac, 6);
	memcpy(f + 6, src_mac, 6);
	f[12] = 0x08, f[13] = 0x00;
	memset(ip, 0, 20);
	ip[0] = 0x45, ip[2] = 0, ip[3] = 20 + 8 + 64, ip[8] = 64, ip[9] = 1;
	inet_pton(AF_INET, from, ip + 12);
	inet_pton(AF_INET, to, ip + 16);
	c = ip_checksum(ip, 20);
	ip[10] = c >> 8, ip[11] = c;
	memset(icmp, 0, 8);
	icmp[0] = 8, icmp[4] = 0x12, icmp[5] = 0x34, icmp[6] = seq >> 8, icmp[7] = seq;
	for (int i = 0; i < 64; i++)
		icmp[8 + i] = i;
	c = ip_checksum(icmp, 8 + 64);
	icmp[2] = c >> 8, icmp[3] = c;
	return 14 + 20 + 8 + 64;
}

/* ---- a NIC as its driver keeps it ------------------------------------------------------- */

struct nic {
	struct vdev d;
	struct ring rx[2], tx[2], ctrl;
	unsigned pairs;
	uint64_t buf; /* this NIC's buffers */
	uint16_t rx_next[2], tx_next[2];
};

static void nic_start(struct nic *n, uint64_t features, unsigned pairs)
{
	n->pairs = pairs;
	negotiate(&n->d, features);
	for (unsigned i = 0; i < pairs; i++) {
		ring_setup(&n->rx[i], &n->d, 2 * i, 64, 0xffff);
		ring_setup(&n->tx[i], &n->d, 2 * i + 1, 64, 0xffff);
		n->rx_next[i] = n->tx_next[i] = 0;
	}
	ring_setup(&n->ctrl, &n->d, 2 * pairs, 16, 0xffff);
	cc_write(&n->d, CC_STATUS, 1, status(&n->d) | VIRTIO_STATUS_DRIVER_OK);
}

/* Sends a frame on pair q: the header in one descriptor, the frame in another. */
static void nic_send(struct nic *n, unsigned q, const void *frame, size_t len, uint8_t hdr_flags)
{
	struct ring *r = &n->tx[q];
	uint16_t d = (r->avail_idx * 2) % r->size;
	uint64_t at = n->buf + 0x40000 + q * 0x20000 + (r->avail_idx % 16) * 0x1000;

	memset(hva(at), 0, HDR);
	*(uint8_t *)hva(at) = hdr_flags;
	memcpy(hva(at + 0x100), frame, len);
	ring_desc(r, d, at, HDR, VIRTQ_DESC_F_NEXT, d + 1);
	ring_desc(r, d + 1, at + 0x100, len, 0, 0);
	ring_post(r, d);
	ring_kick(r);
}

/* Posts count receive buffers of size bytes each on pair q. */
static void nic_post_rx(struct nic *n, unsigned q, unsigned count, uint32_t size)
{
	struct ring *r = &n->rx[q];

	for (unsigned i = 0; i < count; i++) {
		uint16_t d = r->avail_idx % r->size;
		ring_desc(r, d, n->buf + q * 0x20000 + d * 0x800, size, VIRTQ_DESC_F_WRITE, 0);
		ring_post(r, d);
	}
	ring_kick(r);
}

struct wait_used {
	struct ring *r;
	uint16_t want;
};

static bool used_reached(void *arg)
{
	struct wait_used *w = arg;
	return (uint16_t)(ring_used_idx(w->r) - w->want) < 0x8000;
}

static bool wait_used(struct ring *r, uint16_t want)
{
	struct wait_used w = {r, want};
	return test_wait(used_reached, &w, TIMEOUT);
}

/* The head and length of used entry i. */
static void used_entry(struct ring *r, uint16_t i, uint32_t *head, uint32_t *len)
{
	memcpy(head, hva(r->used + 4 + 8 * (i % r->size)), 4);
	memcpy(len, hva(r->used + 4 + 8 * (i % r->size) + 4), 4);
}

/* Gathers the frame that starts at used entry i of pair q's receive ring
 * (num_buffers entries): header into hdr, frame into f; returns the frame's
 * length and advances rx_next. */
static size_t nic_receive(struct nic *n, unsigned q, uint8_t *hdr, uint8_t *f, size_t max)
{
	struct ring *r = &n->rx[q];
	uint16_t nbufs;
	uint8_t all[4096];
	size_t total = 0;
	uint32_t head, len;

	used_entry(r, n->rx_next[q], &head, &len);
	memcpy(&nbufs, (uint8_t *)hva(n->buf + q * 0x20000 + head * 0x800) + 10, 2);
	for (uint16_t b = 0; b < nbufs && b < 64; b++) {
		used_entry(r, n->rx_next[q] + b, &head, &len);
		if (total + len > sizeof(all))
			break;
		memcpy(all + total, hva(n->buf + q * 0x20000 + head * 0x800), len);
		total += len;
	}
	n->rx_next[q] += nbufs;
	memcpy(hdr, all, HDR);
	total = total < HDR ? 0 : total - HDR;
	memcpy(f, all + HDR, total < max ? total : max);
	return total;
}

/* Sends a control command; returns the ack, or -1 when none came back. */
static int nic_ctrl(struct nic *n, const void *cmd, size_t len)
{
	struct ring *r = &n->ctrl;
	uint64_t at = n->buf + 0x80000;
	uint16_t before = ring_used_idx(r);
	uint32_t head, written;

	memcpy(hva(at), cmd, len);
	*(uint8_t *)hva(at + 0x100) = 0xee;
	ring_desc(r, 0, at, len, VIRTQ_DESC_F_NEXT, 1);
	ring_desc(r, 1, at + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
	ring_post(r, 0);
	ring_kick(r);
	if (ring_used_idx(r) != (uint16_t)(before + 1))
		return -1;
	used_entry(r, before, &head, &written);
	return written == 1 ? *(uint8_t *)hva(at + 0x100) : -1;
}

static bool is_arp_reply_from(const uint8_t *f, size_t len, const char *ip, const uint8_t to[6])
{
	uint8_t addr[4];

	inet_pton(AF_INET, ip, addr);
	return len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && !memcmp(f + 28, addr, 4) &&
	       !memcmp(f, to, 6);
}

/* ---- slirp ------------------------------------------------------------------------------- */

static void test_slirp(void)
{
	struct nic n = {.buf = BUF_BASE};
	uint8_t frame[2048], hdr[HDR], got[2048];
	uint64_t df;
	size_t len, glen;
	uint16_t nbufs;

	test_check(find_device(0x1041, 0, &n.d), "virtio-net found (1af4:1041)", "not on bus 0");
	test_check_eq("class: Ethernet controller", 0x020000, cfg_read(n.d.slot, 0x08, 4) >> 8);
	test_check_eq("one queue pair and a control queue", 3, cc_read(&n.d, CC_NUMQ, 2));
	test_check_eq("device configuration of 10 bytes", 10, n.d.device_len);
	test_check(mmio_read(n.d.device, 4) == 0x12005452 && mmio_read(n.d.device + 4, 2) == 0x5634,
		   "default MAC 52:54:00:12:34:56", "reads %08llx %04llx", (unsigned long long)mmio_read(n.d.device, 4),
		   (unsigned long long)mmio_read(n.d.device + 4, 2));
	test_check_eq("status: link up", 1, mmio_read(n.d.device + 6, 2));
	test_check_eq("max_virtqueue_pairs 1", 1, mmio_read(n.d.device + 8, 2));
	cc_write(&n.d, CC_DFSELECT, 4, 0);
	df = cc_read(&n.d, CC_DF, 4);
	test_check_eq("offers MAC, MRG_RXBUF, STATUS, CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR; no MQ, no offloads",
		      NET_FEATURES, df & 0xffffff);
	test_check(!negotiate(&n.d, VIRTIO_BIT(NET_F_CTRL_RX)), "CTRL_RX without CTRL_VQ: no FEATURES_OK",
		   "status 0x%x", status(&n.d));

	nic_start(&n, NET_FEATURES, 1);
	test_check(status(&n.d) & VIRTIO_STATUS_DRIVER_OK, "DRIVER_OK", "status 0x%x", status(&n.d));

	/* ARP for the virtual router: slirp answers. */
	nic_post_rx(&n, 0, 1, 2048);
	len = arp_request(frame, guest_mac, "10.0.2.15", "10.0.2.2");
	nic_send(&n, 0, frame, len, 0);
	test_check_eq("the transmit request is used", 1, ring_used_idx(&n.tx[0]));
	test_check(wait_used(&n.rx[0], 1), "slirp's ARP reply arrives", "receive ring used idx %u",
		   ring_used_idx(&n.rx[0]));
	glen = nic_receive(&n, 0, hdr, got, sizeof(got));
	memcpy(&nbufs, hdr + 10, 2);
	test_check(is_arp_reply_from(got, glen, "10.0.2.2", guest_mac), "it is an ARP reply from 10.0.2.2 to us",
		   "%zu bytes, ethertype %02x%02x", glen, got[12], got[13]);
	test_check(nbufs == 1 && hdr[0] == 0 && hdr[1] == 0, "header: one buffer, no flags, no GSO",
		   "num_buffers %u flags %u gso %u", nbufs, hdr[0], hdr[1]);

	/* The same reply over 16-byte buffers: mergeable, published together. */
	nic_post_rx(&n, 0, 12, 16);
	nic_send(&n, 0, frame, len, 0);
	test_check(wait_used(&n.rx[0], 2), "a reply spread over small buffers", "used idx %u", ring_used_idx(&n.rx[0]));
	glen = nic_receive(&n, 0, hdr, got, sizeof(got));
	memcpy(&nbufs, hdr + 10, 2);
	test_check(nbufs == (HDR + glen + 15) / 16 && is_arp_reply_from(got, glen, "10.0.2.2", guest_mac),
		   "num_buffers covers the frame, which reads back whole", "num_buffers %u for %zu bytes", nbufs, glen);
	test_check_eq("every buffer of the frame is in the used ring", n.rx_next[0], ring_used_idx(&n.rx[0]));

	/* The control queue. */
	test_check_eq("RX_PROMISC on: OK", 0, nic_ctrl(&n, "\x00\x00\x01", 3));
	test_check_eq("RX_ALLMULTI with 2 data bytes: ERR", 1, nic_ctrl(&n, "\x00\x01\x01\x00", 4));
	test_check_eq("MAC_ADDR_SET: OK", 0, nic_ctrl(&n, "\x01\x01\x52\x54\x00\xab\xcd\xef", 8));
	test_check_eq("... and the configuration shows it", 0xefcd, mmio_read(n.d.device + 4, 2));
	test_check_eq("MAC_TABLE_SET, 1 unicast + 0 multicast: OK", 0,
		      nic_ctrl(&n, "\x01\x00\x01\x00\x00\x00\x52\x54\x00\x12\x34\x56\x00\x00\x00\x00", 16));
	test_check_eq("MAC_TABLE_SET with 2^32-1 entries: ERR", 1,
		      nic_ctrl(&n, "\x01\x00\xff\xff\xff\xff\x52\x54\x00\x12\x34\x56\x00\x00\x00\x00", 16));
	test_check_eq("MQ_VQ_PAIRS_SET without MQ: ERR", 1, nic_ctrl(&n, "\x04\x00\x01\x00", 4));
	test_check_eq("an unknown class: ERR", 1, nic_ctrl(&n, "\x09\x00", 2));
	test_check_eq("a one-byte command: used, no ack", -1, nic_ctrl(&n, "\x00", 1));

	/* Hostile transmit requests: used, dropped, the device goes on. */
	{
		uint16_t tx = ring_used_idx(&n.tx[0]), d = (n.tx[0].avail_idx * 2) % n.tx[0].size;
		uint64_t big = BUF_BASE + 0x100000;

		ring_desc(&n.tx[0], d, BUF_BASE + 0x90000, 8, 0, 0);
		ring_post(&n.tx[0], d);
		ring_kick(&n.tx[0]);
		test_check_eq("an 8-byte request (shorter than the header) is used", tx + 1, ring_used_idx(&n.tx[0]));
		d = (n.tx[0].avail_idx * 2) % n.tx[0].size;
		ring_desc(&n.tx[0], d, big, HDR + 70000, 0, 0);
		memset(hva(big), 0, HDR + 70000);
		ring_post(&n.tx[0], d);
		ring_kick(&n.tx[0]);
		test_check_eq("a 70000-byte frame is used (and dropped)", tx + 2, ring_used_idx(&n.tx[0]));
		nic_send(&n, 0, frame, len, 1 /* NEEDS_CSUM */);
		test_check_eq("a frame asking for checksum offload is used (and dropped)", tx + 3,
			      ring_used_idx(&n.tx[0]));
		test_check(!(status(&n.d) & VIRTIO_STATUS_NEEDS_RESET), "none of them needs a reset", "status 0x%x",
			   status(&n.d));
	}
	nic_post_rx(&n, 0, 1, 2048);
	nic_send(&n, 0, frame, len, 0);
	test_check(wait_used(&n.rx[0], n.rx_next[0] + 1), "after them, ARP still works", "used idx %u",
		   ring_used_idx(&n.rx[0]));
	nic_receive(&n, 0, hdr, got, sizeof(got));

	/* Reset with buffers posted and the receive thread waiting; then again. */
	nic_post_rx(&n, 0, 4, 2048);
	cc_write(&n.d, CC_STATUS, 1, 0);
	test_check_eq("reset", 0, status(&n.d));
	test_check_eq("reset restores the MAC", 0x5634, mmio_read(n.d.device + 4, 2));
	nic_start(&n, NET_FEATURES, 1);
	nic_post_rx(&n, 0, 1, 2048);
	nic_send(&n, 0, frame, len, 0);
	test_check(wait_used(&n.rx[0], 1), "after reset, ARP works again", "used idx %u", ring_used_idx(&n.rx[0]));
	cc_write(&n.d, CC_STATUS, 1, 0);
}

/* Takes frames from both receive queues until one matches (the kernel also
 * sends IPv6 neighbour discovery and the like); its length, or 0. */
static size_t nic_wait_frame(struct nic *n, uint8_t *f, bool (*match)(const uint8_t *, size_t, const void *),
			     const void *arg)
{
	uint8_t hdr[HDR];

	for (int tries = 0; tries < 500; tries++) {
		for (unsigned q = 0; q < n->pairs; q++) {
			while (ring_used_idx(&n->rx[q]) != n->rx_next[q]) {
				size_t len = nic_receive(n, q, hdr, f, 2048);
				if (match(f, len, arg))
					return len;
			}
		}
		test_sleep_us(10000);
	}
	return 0;
}

static bool is_kernel_arp_reply(const uint8_t *f, size_t len, const void *arg)
{
	(void)arg;
	return is_arp_reply_from(f, len, "10.0.3.1", tap_mac);
}

/* The echo reply to request (same sequence number and payload). */
static bool is_echo_reply(const uint8_t *f, size_t len, const void *request)
{
	const uint8_t *req = request;

	return len >= 14 + 20 + 8 + 64 && f[12] == 0x08 && f[13] == 0 && f[14 + 9] == 1 && f[34] == 0 &&
	       f[34 + 6] == req[34 + 6] && f[34 + 7] == req[34 + 7] && !memcmp(f + 42, req + 42, 64);
}

/* ---- a multi-queue tap ---------------------------------------------------------------------- */

static void test_tap(void)
{
	struct nic n = {.buf = BUF_BASE + 0x400000};
	uint8_t frame[2048], got[2048], kernel_mac[6];
	size_t len, glen;

	test_check(find_device(0x1041, 1, &n.d), "the tap's virtio-net found", "not on bus 0");
	test_check_eq("two queue pairs and a control queue", 5, cc_read(&n.d, CC_NUMQ, 2));
	test_check_eq("max_virtqueue_pairs 2", 2, mmio_read(n.d.device + 8, 2));
	cc_write(&n.d, CC_DFSELECT, 4, 0);
	test_check(cc_read(&n.d, CC_DF, 4) & VIRTIO_BIT(NET_F_MQ), "offers MQ", "features 0x%llx",
		   (unsigned long long)cc_read(&n.d, CC_DF, 4));
	nic_start(&n, NET_FEATURES | VIRTIO_BIT(NET_F_MQ), 2);
	test_check_eq("MQ_VQ_PAIRS_SET 3 (more than there are): ERR", 1, nic_ctrl(&n, "\x04\x00\x03\x00", 4));
	test_check_eq("MQ_VQ_PAIRS_SET 0: ERR", 1, nic_ctrl(&n, "\x04\x00\x00\x00", 4));
	test_check_eq("MQ_VQ_PAIRS_SET 2: OK", 0, nic_ctrl(&n, "\x04\x00\x02\x00", 4));
	nic_post_rx(&n, 0, 16, 2048);
	nic_post_rx(&n, 1, 16, 2048);

	/* ARP for the kernel's side of the tap, from queue pair 0. */
	len = arp_request(frame, tap_mac, "10.0.3.2", "10.0.3.1");
	nic_send(&n, 0, frame, len, 0);
	glen = nic_wait_frame(&n, got, is_kernel_arp_reply, NULL);
	test_check(glen, "the kernel answers ARP through the tap", "no ARP reply on either receive queue");
	memcpy(kernel_mac, got + 6, 6);

	/* ICMP echo from each queue pair: the kernel replies. */
	for (unsigned q = 0; q < 2; q++) {
		char name[80];

		len = icmp_echo(frame, tap_mac, kernel_mac, "10.0.3.2", "10.0.3.1", q);
		nic_send(&n, q, frame, len, 0);
		snprintf(name, sizeof(name), "ICMP echo sent on queue pair %u: the kernel's reply arrives", q);
		test_check(nic_wait_frame(&n, got, is_echo_reply, frame), name, "rx used %u/%u",
			   ring_used_idx(&n.rx[0]), ring_used_idx(&n.rx[1]));
	}
	test_check_eq("MQ_VQ_PAIRS_SET 1: OK", 0, nic_ctrl(&n, "\x04\x00\x01\x00", 4));
	cc_write(&n.d, CC_STATUS, 1, 0);
	test_check_eq("reset", 0, status(&n.d));
}

int main(void)
{
	const char *devices[] = {"virtio-net-pci,netdev=u0", "virtio-net-pci,netdev=t0,mac=52:54:00:aa:bb:01"};
	const char *netdevs[] = {"user,id=u0,restrict=on,ipv6=off", "tap,id=t0,ifname=vtap0,queues=2"};
	struct vm_config cfg = {.cpus = 1, .memory = 64ull << 20, .serial = "none", .ndevices = 1, .nnetdevs = 1};
	bool tap = unshare(CLONE_NEWNET) == 0;
	int ret;

	if (tap)
		cfg.ndevices = cfg.nnetdevs = 2;
	else
		printf("SKIP the tap part: no network namespace of our own here (%s)\n", strerror(errno));
	memcpy(cfg.devices, devices, sizeof(devices));
	memcpy(cfg.netdevs, netdevs, sizeof(netdevs));
	vm = test_vm_create_config(&cfg);
	test_pic_init(vm, 0xff, 0xff);
	test_pit_quiet(vm);

	test_slirp();
	if (tap) {
		/* Vireo made vtap0 in our namespace (it may): address it as its host side. */
		if (system("ip link set lo up && ip link set vtap0 up && ip addr add 10.0.3.1/24 dev vtap0") != 0)
			test_check(false, "the test sets vtap0 up", "ip failed");
		else
			test_tap();
	}

	ret = test_finish();
	test_vm_destroy(vm);
	return ret;
}
