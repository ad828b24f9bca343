/*
 * The back ends' common part: -netdev specs (type, id, property names) and
 * the calls the NIC makes, which go to the back end's ops.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "net/internal.h"

#ifndef VIREO_HAVE_SLIRP
/* Built without libslirp: -netdev user is known, and refused with the reason. */
static int user_missing(const char *props, char *err, size_t errlen)
{
	(void)props;
	snprintf(err, errlen, "-netdev user: this Vireo was built without libslirp (apt-get install libslirp-dev)");
	return -ENOTSUP;
}

static const char *const user_props[] = {"hostfwd", "restrict", "ipv6", NULL};
const struct net_backend_ops net_user_ops = {.type = "user", .props = user_props, .check = user_missing};
#endif

static const struct net_backend_ops *const backends[] = {&net_tap_ops, &net_user_ops};

void net_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vireo: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

bool net_prop(const char *props, const char *name, unsigned nth, char *value, size_t len)
{
	size_t want = strlen(name);

	for (const char *p = props; *p;) {
		const char *end = strchrnul(p, ','), *eq = memchr(p, '=', end - p);
		size_t n = eq ? (size_t)(eq - p) : (size_t)(end - p);

		if (n == want && !strncmp(p, name, n) && !nth--) {
			size_t vlen = eq ? (size_t)(end - eq - 1) : 0;
			if (len) {
				if (vlen >= len)
					return false;
				memcpy(value, eq ? eq + 1 : "", vlen);
				value[vlen] = 0;
			}
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

int net_bool(const char *value)
{
	if (!strcmp(value, "on") || !strcmp(value, "yes") || !strcmp(value, "true"))
		return 1;
	if (!strcmp(value, "off") || !strcmp(value, "no") || !strcmp(value, "false"))
		return 0;
	return -1;
}

int net_uint(const char *value, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!isdigit((unsigned char)*value))
		return -EINVAL;
	errno = 0;
	v = strtoul(value, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static bool name_in(const char *name, size_t len, const char *const *list)
{
	for (; list && *list; list++)
		if (strlen(*list) == len && !strncmp(*list, name, len))
			return true;
	return false;
}

/* Finds the type's ops and checks the names of its properties; *props
 * points past the type. */
static int net_parse(const char *spec, const struct net_backend_ops **ops, const char **props, char *id, size_t idlen,
		     char *err, size_t errlen)
{
	size_t tlen = strcspn(spec, ",");
	static const char *const common[] = {"id", NULL};
	char value[64];

	*ops = NULL;
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strlen(backends[i]->type) == tlen && !strncmp(backends[i]->type, spec, tlen))
			*ops = backends[i];
	if (!*ops) {
		snprintf(err, errlen, "unsupported network back end '%.*s' (tap or user)", (int)tlen, spec);
		return -EINVAL;
	}
	*props = spec[tlen] ? spec + tlen + 1 : spec + tlen;
	for (const char *p = *props; *p;) {
		const char *end = strchrnul(p, ','), *eq = memchr(p, '=', end - p);
		size_t n = eq ? (size_t)(eq - p) : (size_t)(end - p);

		if (!name_in(p, n, common) && !name_in(p, n, (*ops)->props)) {
			snprintf(err, errlen, "-netdev %s has no property '%.*s'", (*ops)->type, (int)n, p);
			return -EINVAL;
		}
		p = *end ? end + 1 : end;
	}
	if (!net_prop(*props, "id", 0, value, sizeof(value)) || !*value) {
		snprintf(err, errlen, "-netdev %s needs an id (id=NAME)", (*ops)->type);
		return -EINVAL;
	}
	if (net_prop(*props, "id", 1, NULL, 0)) {
		snprintf(err, errlen, "-netdev %s: id given twice", (*ops)->type);
		return -EINVAL;
	}
	for (const char *c = value; *c; c++) {
		if (!isalnum((unsigned char)*c) && !strchr("-_.", *c)) {
			snprintf(err, errlen, "-netdev %s: bad id '%s' (letters, digits, '-', '_' and '.')",
				 (*ops)->type, value);
			return -EINVAL;
		}
	}
	if (strlen(value) >= idlen || strlen(value) >= sizeof(((struct net_backend *)0)->id)) {
		snprintf(err, errlen, "-netdev %s: id '%s' is too long", (*ops)->type, value);
		return -EINVAL;
	}
	strcpy(id, value);
	return 0;
}

int net_check(const char *spec, char *id, size_t idlen, char *err, size_t errlen)
{
	const struct net_backend_ops *ops;
	const char *props;
	int ret = net_parse(spec, &ops, &props, id, idlen, err, errlen);

	return ret < 0 ? ret : ops->check(props, err, errlen);
}

int net_open(const char *spec, struct net_backend **out, char *err, size_t errlen)
{
	const struct net_backend_ops *ops;
	const char *props;
	char id[32];
	int ret = net_parse(spec, &ops, &props, id, sizeof(id), err, errlen);

	if (!ret)
		ret = ops->check(props, err, errlen);
	if (!ret)
		ret = ops->open(props, out, err, errlen);
	if (ret < 0)
		return ret;
	(*out)->ops = ops;
	strcpy((*out)->id, id);
	return 0;
}

void net_close(struct net_backend *nb)
{
	if (nb)
		nb->ops->close(nb);
}

const char *net_id(const struct net_backend *nb)
{
	return nb->id;
}

const char *net_type(const struct net_backend *nb)
{
	return nb->ops->type;
}

unsigned net_queues(const struct net_backend *nb)
{
	return nb->queues;
}

unsigned net_hdr_len(const struct net_backend *nb)
{
	return nb->hdr_len;
}

int net_send(struct net_backend *nb, unsigned q, const struct iovec *iov, int iovcnt)
{
	size_t bytes = 0;
	int ret;

	for (int i = 0; i < iovcnt; i++)
		bytes += iov[i].iov_len;
	ret = q < nb->queues ? nb->ops->send(nb, q, iov, iovcnt) : -EINVAL;
	if (ret < 0) {
		atomic_fetch_add(&nb->tx_errors, 1);
		return ret;
	}
	atomic_fetch_add(&nb->tx_frames, 1);
	atomic_fetch_add(&nb->tx_bytes, bytes - nb->hdr_len);
	return 0;
}

int net_rx_fd(struct net_backend *nb, unsigned q)
{
	return q < nb->queues ? nb->ops->rx_fd(nb, q) : -1;
}

ssize_t net_recv(struct net_backend *nb, unsigned q, void *buf, size_t len)
{
	ssize_t n = q < nb->queues ? nb->ops->recv(nb, q, buf, len) : -EINVAL;

	if (n > 0) {
		atomic_fetch_add(&nb->rx_frames, 1);
		atomic_fetch_add(&nb->rx_bytes, n - nb->hdr_len);
	}
	return n;
}

void net_set_active_queues(struct net_backend *nb, unsigned n)
{
	if (nb->ops->set_active_queues)
		nb->ops->set_active_queues(nb, n < 1 ? 1 : n > nb->queues ? nb->queues : n);
}

void net_get_stats(struct net_backend *nb, struct net_stats *s)
{
	s->tx_frames = atomic_load(&nb->tx_frames);
	s->tx_bytes = atomic_load(&nb->tx_bytes);
	s->tx_errors = atomic_load(&nb->tx_errors);
	s->rx_frames = atomic_load(&nb->rx_frames);
	s->rx_bytes = atomic_load(&nb->rx_bytes);
	s->rx_dropped = atomic_load(&nb->rx_dropped);
}
