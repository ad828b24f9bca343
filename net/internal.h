/*
 * Inside net/: what each back end type provides, and the spec parser they
 * share. Nothing outside net/ includes this file.
 */
#ifndef VIREO_NET_INTERNAL_H
#define VIREO_NET_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "net/net.h"

struct net_backend_ops {
	const char *type;	  /* "tap", "user" */
	const char *const *props; /* beyond id; NULL-terminated */
	/* Checks property values; the names were checked against props. */
	int (*check)(const char *props, char *err, size_t errlen);
	int (*open)(const char *props, struct net_backend **out, char *err, size_t errlen);
	void (*close)(struct net_backend *nb);
	int (*send)(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt);
	int (*rx_fd)(struct net_backend *nb, unsigned q);
	ssize_t (*recv)(struct net_backend *nb, unsigned q, void *buf, size_t len);
	void (*set_active_queues)(struct net_backend *nb, unsigned n); /* optional */
};

/* The part every back end starts with; open fills it. */
struct net_backend {
	const struct net_backend_ops *ops;
	char id[32];
	unsigned queues, hdr_len;
	atomic_uint_least64_t tx_frames, tx_bytes, tx_errors, rx_frames, rx_bytes, rx_dropped;
};

extern const struct net_backend_ops net_tap_ops;
extern const struct net_backend_ops net_user_ops;

/*
 * Properties: "name=value,name=value" after the type. net_prop finds the
 * nth (from 0) property called name and copies its value ("" for a bare
 * name); false when there is none, or when the value does not fit.
 */
bool net_prop(const char *props, const char *name, unsigned nth, char *value, size_t len);
/* on/off/yes/no/true/false: 1 or 0, -1 for anything else. */
int net_bool(const char *value);
/* A property value that is a whole number in [min, max]. */
int net_uint(const char *value, unsigned min, unsigned max, unsigned *out);

/* One line to stderr, prefixed "vireo: ", for what happens after open. */
void net_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
