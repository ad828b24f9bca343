/*
 * Network back ends: where a virtual NIC's Ethernet frames go and where the
 * frames for it come from. Each back end is opened from a -netdev spec as
 * QEMU spells it:
 *
 *   tap,id=n0,ifname=tap0,script=no,downscript=no[,queues=N]   net/tap.c
 *   user,id=n0[,hostfwd=tcp::2222-:22][,restrict=on]            net/slirp.c
 *
 * A back end has one or more queues (a multi-queue tap has one file
 * descriptor per queue); a NIC's queue pair i uses back-end queue i.
 * Frames go out with net_send from any thread (one sender per queue at a
 * time). Frames come in on the NIC's side: it polls net_rx_fd(q) and takes
 * them with net_recv(q), on its own threads, so it can stop reading when the
 * guest has no buffers (the back end then queues, and drops when full).
 *
 * Back ends that carry offload information (tap with IFF_VNET_HDR) put a
 * struct virtio_net_hdr_v1 (NET_HDR_LEN bytes) in front of every frame in
 * both directions: net_hdr_len says whether they do. No offload is enabled
 * (TUNSETOFFLOAD 0): the header received always says "no checksum to do, no
 * segmentation", and the header sent must say the same.
 */
#ifndef VIREO_NET_H
#define VIREO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* The largest Ethernet frame (header included, vnet header not) either
 * direction carries: a 65535-byte MTU and the 14-byte Ethernet header, and
 * one spare as QEMU allows. */
#define NET_FRAME_MAX 65550
/* struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start,
 * csum_offset, num_buffers. */
#define NET_HDR_LEN 12
/* Queues of one back end (queue pairs of one NIC). */
#define NET_MAX_QUEUES 16

struct net_backend;

/* Counters of one back end, since it was opened. */
struct net_stats {
	uint64_t tx_frames, tx_bytes, tx_errors;  /* to the network */
	uint64_t rx_frames, rx_bytes, rx_dropped; /* from it: dropped when the NIC did not keep up */
};

/* Checks a -netdev spec (type, property names and values) without opening
 * anything, and gives its id. Returns 0, or -EINVAL with one line in err. */
int net_check(const char *spec, char *id, size_t idlen, char *err, size_t errlen);
/* Opens the back end: 0 with *out set, or a negative errno and one line in
 * err naming what could not be done (a missing tap device, a port taken). */
int net_open(const char *spec, struct net_backend **out, char *err, size_t errlen);
void net_close(struct net_backend *nb);

const char *net_id(const struct net_backend *nb);
const char *net_type(const struct net_backend *nb);
unsigned net_queues(const struct net_backend *nb);
/* NET_HDR_LEN when frames carry a virtio-net header, else 0. */
unsigned net_hdr_len(const struct net_backend *nb);

/* Sends one frame (header first when net_hdr_len) on queue q. Returns 0, or
 * a negative errno when the frame was not sent (counted in tx_errors). */
int net_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt);
/* A file descriptor that polls readable when queue q may have a frame. */
int net_rx_fd(struct net_backend *nb, unsigned q);
/* Takes queue q's next frame (header first when net_hdr_len) into buf:
 * its length, 0 when there is none now, or a negative errno. A frame longer
 * than len is dropped. */
ssize_t net_recv(struct net_backend *nb, unsigned q, void *buf, size_t len);
/* The NIC uses queues [0, n) from now on: a multi-queue tap attaches those
 * and detaches the others, so the kernel steers no flow to a queue nobody
 * reads. */
void net_set_active_queues(struct net_backend *nb, unsigned n);

void net_get_stats(struct net_backend *nb, struct net_stats *stats);

#endif
