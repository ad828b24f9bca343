/*
 * qcow2 images as QEMU's docs/interop/qcow2.txt describes them: versions 2
 * and 3, read and write, with a backing image.
 *
 * The virtual disk is cut into clusters. A two-level table (the L1 table,
 * then one-cluster L2 tables) maps each guest cluster to a host cluster, to
 * zeros, to compressed data, or to nothing (the backing image's data, or
 * zeros). Host clusters are reference-counted through a two-level table too
 * (the refcount table, then one-cluster refcount blocks).
 *
 * Writes allocate clusters at the end of the file only: the space freed by
 * a superseded refcount table or compressed cluster is released but not
 * reused. Changed tables stay in memory until qcow2_flush writes them back in
 * the order that keeps the file consistent at every step (see flush).
 *
 * Every value read from the file is checked where it is read: a corrupt
 * image fails to open with a reason, or fails the one request with -EIO and
 * one block_warn.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "vmm/block/block.h"

#define QCOW2_MAGIC	       0x514649fbu
#define QCOW2_V2_HEADER	       72
#define QCOW2_V3_HEADER	       104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* QEMU's own limits: it makes no bigger tables and opens none. */
#define QCOW2_MAX_L1_BYTES	 (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME	 1023
/* L1 and L2 entries hold 56-bit host offsets. */
#define QCOW2_MAX_HOST (1ull << 56)

#define QCOW2_INCOMPAT_DIRTY	   (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT	   (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTENDED_L2 (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN	   0x1full

#define QCOW2_EXT_END		 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_NAMES	 0x6803f857u

#define QCOW2_COPIED	    (1ull << 63) /* refcount exactly 1: written in place */
#define QCOW2_COMPRESSED    (1ull << 62)
#define QCOW2_ZERO	    1ull /* v3: the cluster reads as zeros */
#define QCOW2_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED   0x7f000000000001ffull
#define QCOW2_L2_RESERVED   0x3f000000000001feull
#define QCOW2_REFT_RESERVED 0x1ffull

/* Compressed clusters inflated lately, kept so that reading one again (a
 * guest reading a cluster in small pieces) does not inflate it again. */
#define QCOW2_INFLATE_SLOTS 64

/* One cached L2 table or refcount block: a cluster of the file. */
struct qcow2_table {
	uint64_t offset;
	struct qcow2_table *hash_next;
	struct qcow2_table *lru_prev, *lru_next; /* on the clean list while clean */
	bool dirty;
	uint8_t data[];
};

/* Dirty tables stay until written back; clean ones are dropped, least
 * recently used first, beyond clean_max. */
struct qcow2_cache {
	struct qcow2_table **buckets;
	size_t nbuckets, count;
	struct qcow2_table *lru_head, *lru_tail;
	size_t clean, clean_max, dirty;
};

/* A range of the file to release once the tables no longer naming it are on disk. */
struct qcow2_range {
	uint64_t offset, length;
};

enum qcow2_kind { QCOW2_UNALLOCATED, QCOW2_ZEROS, QCOW2_DATA, QCOW2_COMPRESSED_DATA };

struct qcow2_cluster {
	enum qcow2_kind kind;
	uint64_t entry, host;
};

struct qcow2 {
	struct block_image *img;
	struct block_image *backing;
	uint32_t version;
	unsigned cluster_bits, l2_bits, refcount_order, refblock_bits;
	uint64_t cluster_size, l2_reserved, refcount_max;

	uint64_t *l1; /* host byte order */
	uint32_t l1_size;
	uint64_t l1_offset;
	bool l1_dirty;

	uint64_t *reftable; /* host byte order */
	uint64_t reftable_offset, reftable_entries;
	uint32_t reftable_clusters;
	bool reftable_dirty, reftable_moved, growing;

	struct qcow2_cache l2, refblocks;
	uint64_t alloc_end; /* new clusters go here: past everything the file holds */
	struct qcow2_range *freed;
	size_t nfreed, freed_cap;
	uint8_t *buf; /* one cluster, for copy-on-write */

	uint8_t *inflated, *deflated;
	uint64_t inflate_entry[QCOW2_INFLATE_SLOTS];
	uint64_t inflate_next;
};

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static int corrupt(struct qcow2 *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int corrupt(struct qcow2 *s, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	block_warn(s->img, "corrupt qcow2 image: %s", why);
	return -EIO;
}

static int open_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int open_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Reads len bytes at off; a read past the end of the file is an error. */
static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += n;
	}
	return 0;
}

static int write_meta(struct qcow2 *s, const void *buf, size_t len, uint64_t off, const char *what)
{
	int ret = write_full(s->img->fd, buf, len, off);

	if (ret < 0)
		block_warn(s->img, "cannot write the %s at 0x%llx: %s", what, (unsigned long long)off, strerror(-ret));
	return ret;
}

static int sync_file(struct qcow2 *s)
{
	if (fdatasync(s->img->fd) == 0)
		return 0;
	block_warn(s->img, "fdatasync: %s", strerror(errno));
	return -EIO;
}

/* ---- the table cache ------------------------------------------------------- */

static void lru_unlink(struct qcow2_cache *c, struct qcow2_table *t)
{
	*(t->lru_prev ? &t->lru_prev->lru_next : &c->lru_head) = t->lru_next;
	*(t->lru_next ? &t->lru_next->lru_prev : &c->lru_tail) = t->lru_prev;
	t->lru_prev = t->lru_next = NULL;
}

static void lru_append(struct qcow2_cache *c, struct qcow2_table *t)
{
	t->lru_prev = c->lru_tail;
	t->lru_next = NULL;
	*(c->lru_tail ? &c->lru_tail->lru_next : &c->lru_head) = t;
	c->lru_tail = t;
}

static size_t cache_bucket(const struct qcow2 *s, const struct qcow2_cache *c, uint64_t offset)
{
	return (offset >> s->cluster_bits) & (c->nbuckets - 1);
}

static void cache_unhash(struct qcow2 *s, struct qcow2_cache *c, struct qcow2_table *t)
{
	struct qcow2_table **p = &c->buckets[cache_bucket(s, c, t->offset)];

	while (*p != t)
		p = &(*p)->hash_next;
	*p = t->hash_next;
	c->count--;
}

static int cache_hash(struct qcow2 *s, struct qcow2_cache *c, struct qcow2_table *t)
{
	if (c->count >= c->nbuckets) {
		size_t n = c->nbuckets ? 2 * c->nbuckets : 64;
		struct qcow2_table **b = calloc(n, sizeof(*b));

		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < c->nbuckets; i++) {
			while (c->buckets[i]) {
				struct qcow2_table *m = c->buckets[i];
				size_t j = (m->offset >> s->cluster_bits) & (n - 1);

				c->buckets[i] = m->hash_next;
				m->hash_next = b[j];
				b[j] = m;
			}
		}
		free(c->buckets);
		c->buckets = b;
		c->nbuckets = n;
	}
	size_t i = cache_bucket(s, c, t->offset);
	t->hash_next = c->buckets[i];
	c->buckets[i] = t;
	c->count++;
	return 0;
}

static void cache_trim(struct qcow2 *s, struct qcow2_cache *c)
{
	while (c->clean > c->clean_max) {
		struct qcow2_table *t = c->lru_head;

		lru_unlink(c, t);
		cache_unhash(s, c, t);
		c->clean--;
		free(t);
	}
}

/*
 * The table at offset, from the cache or else read from the file; with
 * fresh, a new table (all zeros, dirty) that is not read. The pointer stays
 * valid until the next cache_get of the same cache.
 */
static int cache_get(struct qcow2 *s, struct qcow2_cache *c, uint64_t offset, bool fresh, struct qcow2_table **out)
{
	struct qcow2_table *t;

	for (t = c->nbuckets ? c->buckets[cache_bucket(s, c, offset)] : NULL; t; t = t->hash_next) {
		if (t->offset == offset) {
			if (!t->dirty) {
				lru_unlink(c, t);
				lru_append(c, t);
			}
			*out = t;
			return 0;
		}
	}
	t = calloc(1, sizeof(*t) + s->cluster_size);
	if (!t)
		return -ENOMEM;
	t->offset = offset;
	if (!fresh) {
		int ret = read_full(s->img->fd, t->data, s->cluster_size, offset);
		if (ret < 0) {
			free(t);
			return corrupt(s, "cannot read the table at 0x%llx: %s", (unsigned long long)offset,
				       strerror(-ret));
		}
	}
	if (cache_hash(s, c, t) < 0) {
		free(t);
		return -ENOMEM;
	}
	if (fresh) {
		t->dirty = true;
		c->dirty++;
	} else {
		lru_append(c, t);
		c->clean++;
		cache_trim(s, c);
	}
	*out = t;
	return 0;
}

static void cache_mark_dirty(struct qcow2_cache *c, struct qcow2_table *t)
{
	if (t->dirty)
		return;
	lru_unlink(c, t);
	c->clean--;
	t->dirty = true;
	c->dirty++;
}

static int cache_write_back(struct qcow2 *s, struct qcow2_cache *c, const char *what)
{
	for (size_t i = 0; i < c->nbuckets && c->dirty; i++) {
		for (struct qcow2_table *t = c->buckets[i]; t; t = t->hash_next) {
			if (!t->dirty)
				continue;
			int ret = write_meta(s, t->data, s->cluster_size, t->offset, what);
			if (ret < 0)
				return ret;
			t->dirty = false;
			c->dirty--;
			lru_append(c, t);
			c->clean++;
		}
	}
	cache_trim(s, c);
	return 0;
}

static void cache_free(struct qcow2_cache *c)
{
	for (size_t i = 0; i < c->nbuckets; i++) {
		while (c->buckets[i]) {
			struct qcow2_table *t = c->buckets[i];

			c->buckets[i] = t->hash_next;
			free(t);
		}
	}
	free(c->buckets);
}

/* ---- refcounts ---------------------------------------------------------------- */

static uint64_t refcount_read(const struct qcow2 *s, const uint8_t *block, uint64_t i)
{
	switch (s->refcount_order) {
	case 3: return block[i];
	case 4: return (uint64_t)block[2 * i] << 8 | block[2 * i + 1];
	case 5: return get32(block + 4 * i);
	case 6: return get64(block + 8 * i);
	default: { /* 1, 2 or 4 bits, bit 0 the least significant */
		unsigned bits = 1u << s->refcount_order, shift = (i * bits) & 7;
		return (block[i * bits / 8] >> shift) & ((1u << bits) - 1);
	}
	}
}

static void refcount_write(const struct qcow2 *s, uint8_t *block, uint64_t i, uint64_t v)
{
	switch (s->refcount_order) {
	case 3: block[i] = v; break;
	case 4:
		block[2 * i] = v >> 8;
		block[2 * i + 1] = v;
		break;
	case 5: put32(block + 4 * i, v); break;
	case 6: put64(block + 8 * i, v); break;
	default: {
		unsigned bits = 1u << s->refcount_order, shift = (i * bits) & 7;
		uint8_t mask = ((1u << bits) - 1) << shift;
		block[i * bits / 8] = (block[i * bits / 8] & ~mask) | ((v << shift) & mask);
	}
	}
}

static unsigned refblock_shift(const struct qcow2 *s)
{
	return s->cluster_bits + s->refblock_bits; /* bytes of the file one refcount block covers */
}

/* The refcount block covering host offset (NULL where there is none) and the index in it. */
static int refblock_get(struct qcow2 *s, uint64_t host, struct qcow2_table **t, uint64_t *index)
{
	uint64_t ri = host >> refblock_shift(s), off;

	*t = NULL;
	*index = (host >> s->cluster_bits) & ((1ull << s->refblock_bits) - 1);
	if (ri >= s->reftable_entries || !s->reftable[ri])
		return 0;
	off = s->reftable[ri];
	if ((off & QCOW2_REFT_RESERVED) || (off & (s->cluster_size - 1)) || off >= s->alloc_end)
		return corrupt(s, "refcount block offset 0x%llx (refcount table entry %llu) is invalid",
			       (unsigned long long)off, (unsigned long long)ri);
	return cache_get(s, &s->refblocks, off, false, t);
}

static int refcount_get(struct qcow2 *s, uint64_t host, uint64_t *rc)
{
	struct qcow2_table *t;
	uint64_t i;
	int ret = refblock_get(s, host, &t, &i);

	*rc = ret < 0 || !t ? 0 : refcount_read(s, t->data, i);
	return ret;
}

static int reftable_grow(struct qcow2 *s);

/* Adds delta to the refcount of the host cluster at host, making the
 * refcount block (at the end of the file) where there is none. */
static int refcount_add(struct qcow2 *s, uint64_t host, int delta, unsigned depth)
{
	uint64_t ri = host >> refblock_shift(s), i, v;
	struct qcow2_table *t;
	int ret;

	if (depth > 4)
		return corrupt(s, "runaway refcount block allocation");
	if (ri >= s->reftable_entries) {
		if (delta < 0)
			return corrupt(s, "freeing cluster 0x%llx, which has no refcount", (unsigned long long)host);
		if ((ret = reftable_grow(s)) < 0)
			return ret;
	}
	if (!s->reftable[ri]) {
		uint64_t block = s->alloc_end;

		if (delta < 0)
			return corrupt(s, "freeing cluster 0x%llx, which has no refcount", (unsigned long long)host);
		if (block + s->cluster_size > QCOW2_MAX_HOST)
			return -ENOSPC;
		s->alloc_end += s->cluster_size;
		if ((ret = cache_get(s, &s->refblocks, block, true, &t)) < 0)
			return ret;
		s->reftable[ri] = block;
		s->reftable_dirty = true;
		/* The new block counts itself where it covers itself. */
		if ((ret = refcount_add(s, block, 1, depth + 1)) < 0)
			return ret;
	}
	if ((ret = refblock_get(s, host, &t, &i)) < 0)
		return ret;
	v = refcount_read(s, t->data, i);
	if (delta < 0 && v == 0)
		return corrupt(s, "refcount of cluster 0x%llx would drop below 0", (unsigned long long)host);
	if (delta > 0 && v == s->refcount_max)
		return corrupt(s, "refcount of cluster 0x%llx would overflow", (unsigned long long)host);
	refcount_write(s, t->data, i, v + delta);
	cache_mark_dirty(&s->refblocks, t);
	return 0;
}

static int freed_add(struct qcow2 *s, uint64_t offset, uint64_t length)
{
	if (s->nfreed == s->freed_cap) {
		size_t n = s->freed_cap ? 2 * s->freed_cap : 16;
		struct qcow2_range *f = realloc(s->freed, n * sizeof(*f));

		if (!f)
			return -ENOMEM;
		s->freed = f;
		s->freed_cap = n;
	}
	s->freed[s->nfreed++] = (struct qcow2_range){offset, length};
	return 0;
}

/*
 * Moves the refcount table to the end of the file, twice as large (or more:
 * it must also count its own clusters and the refcount blocks they need).
 * The header names the new table at the next flush; the old one is freed
 * after that.
 */
static int reftable_grow(struct qcow2 *s)
{
	uint64_t cs = s->cluster_size, clusters = 2 * (uint64_t)s->reftable_clusters, entries, table, *grown;
	int ret = 0;

	if (s->growing)
		return corrupt(s, "the refcount table cannot count itself");
	for (;;) {
		entries = clusters << (s->cluster_bits - 3);
		uint64_t end = s->alloc_end + (2 * clusters + 2) * cs;
		if ((end >> refblock_shift(s)) < entries || clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
			break;
		clusters *= 2;
	}
	if (clusters * cs > QCOW2_MAX_REFTABLE_BYTES || s->alloc_end + clusters * cs > QCOW2_MAX_HOST) {
		block_warn(s->img, "image full: its refcount table would pass %u MiB", QCOW2_MAX_REFTABLE_BYTES >> 20);
		return -ENOSPC;
	}
	if (!(grown = calloc(entries, sizeof(*grown))))
		return -ENOMEM;
	memcpy(grown, s->reftable, s->reftable_entries * sizeof(*grown));
	if (freed_add(s, s->reftable_offset, (uint64_t)s->reftable_clusters * cs) < 0) {
		free(grown);
		return -ENOMEM;
	}
	table = s->alloc_end;
	s->alloc_end += clusters * cs;
	free(s->reftable);
	s->reftable = grown;
	s->reftable_entries = entries;
	s->reftable_clusters = clusters;
	s->reftable_offset = table;
	s->reftable_dirty = s->reftable_moved = true;
	s->growing = true;
	for (uint64_t i = 0; i < clusters && ret >= 0; i++)
		ret = refcount_add(s, table + i * cs, 1, 0);
	s->growing = false;
	return ret;
}

/* A free cluster at the end of the file, its refcount set to 1. */
static int cluster_alloc(struct qcow2 *s, uint64_t *host)
{
	for (unsigned skipped = 0; skipped < 65536; skipped++) {
		uint64_t off = s->alloc_end, rc;
		int ret;

		if (off + s->cluster_size > QCOW2_MAX_HOST) {
			block_warn(s->img, "image full: host offsets past 64 PiB");
			return -ENOSPC;
		}
		if ((ret = refcount_get(s, off, &rc)) < 0)
			return ret;
		s->alloc_end += s->cluster_size;
		if (rc) /* counted past the end of the file: left as it is */
			continue;
		if ((ret = refcount_add(s, off, 1, 0)) < 0)
			return ret;
		*host = off;
		return 0;
	}
	return corrupt(s, "the refcounts claim too many clusters past the end of the file");
}

/* Whether cluster_alloc will return exactly at (no refcount block to make first). */
static bool cluster_alloc_at(struct qcow2 *s, uint64_t at)
{
	uint64_t ri = at >> refblock_shift(s), rc;

	return s->alloc_end == at && ri < s->reftable_entries && s->reftable[ri] && refcount_get(s, at, &rc) == 0 &&
	       rc == 0;
}

/* ---- mapping ------------------------------------------------------------------ */

/* The L2 table of L1 entry l1i (NULL for none); with alloc, made where there
 * is none, and owned (refcount 1) for writing. */
static int l2_get(struct qcow2 *s, uint64_t l1i, bool alloc, struct qcow2_table **t)
{
	uint64_t e = s->l1[l1i], off = e & QCOW2_OFFSET_MASK, rc;
	int ret;

	*t = NULL;
	if (e & QCOW2_L1_RESERVED)
		return corrupt(s, "L1 entry %llu (0x%llx) has reserved bits set", (unsigned long long)l1i,
			       (unsigned long long)e);
	if (!off) {
		if (!alloc)
			return 0;
		if ((ret = cluster_alloc(s, &off)) < 0 || (ret = cache_get(s, &s->l2, off, true, t)) < 0)
			return ret;
		s->l1[l1i] = off | QCOW2_COPIED;
		s->l1_dirty = true;
		return 0;
	}
	if ((off & (s->cluster_size - 1)) || off >= s->alloc_end)
		return corrupt(s, "L2 table offset 0x%llx (L1 entry %llu) is unaligned or past the end of the file",
			       (unsigned long long)off, (unsigned long long)l1i);
	if (alloc && !(e & QCOW2_COPIED)) {
		if ((ret = refcount_get(s, off, &rc)) < 0)
			return ret;
		if (rc != 1)
			return corrupt(s, "L2 table 0x%llx is shared (refcount %llu): cannot write it",
				       (unsigned long long)off, (unsigned long long)rc);
		s->l1[l1i] |= QCOW2_COPIED;
		s->l1_dirty = true;
	}
	return cache_get(s, &s->l2, off, false, t);
}

static int l2_decode(struct qcow2 *s, const struct qcow2_table *t, uint64_t i, struct qcow2_cluster *c)
{
	uint64_t e = get64(t->data + 8 * i);

	c->entry = e;
	c->host = e & QCOW2_OFFSET_MASK;
	if (e & QCOW2_COMPRESSED) {
		c->kind = QCOW2_COMPRESSED_DATA;
		return 0;
	}
	if ((e & s->l2_reserved) || (c->host & (s->cluster_size - 1)) || c->host >= s->alloc_end ||
	    (!c->host && (e & QCOW2_COPIED)))
		return corrupt(s,
			       "L2 entry %llu of table 0x%llx (0x%llx): reserved bits, unaligned, or past the end "
			       "of the file",
			       (unsigned long long)i, (unsigned long long)t->offset, (unsigned long long)e);
	if (e & QCOW2_ZERO)
		c->kind = QCOW2_ZEROS;
	else
		c->kind = c->host ? QCOW2_DATA : QCOW2_UNALLOCATED;
	return 0;
}

/* Inflates a compressed cluster into a slot of the ring; its offset there. */
static int compressed_read(struct qcow2 *s, uint64_t entry, uint64_t *slot_offset)
{
	unsigned x = 62 - (s->cluster_bits - 8);
	uint64_t host = entry & ((1ull << x) - 1);
	uint64_t sectors = ((entry & ~(QCOW2_COPIED | QCOW2_COMPRESSED)) >> x) + 1;
	uint64_t len = sectors * 512 - (host & 511), cs = s->cluster_size;
	unsigned slot;
	ssize_t n;
	z_stream z;

	for (slot = 0; slot < QCOW2_INFLATE_SLOTS; slot++) {
		if (s->inflate_entry[slot] == entry) {
			*slot_offset = slot * cs;
			return 0;
		}
	}
	if (host >= s->alloc_end)
		return corrupt(s, "compressed cluster at 0x%llx is past the end of the file", (unsigned long long)host);
	if (!s->inflated) {
		if (!(s->inflated = malloc(QCOW2_INFLATE_SLOTS * cs)) ||
		    !(s->deflated = malloc(2 * cs))) {
			block_warn(s->img, "no memory to decompress clusters: %s", strerror(errno));
			free(s->inflated);
			s->inflated = NULL;
			return -ENOMEM;
		}
	}
	do
		n = pread(s->img->fd, s->deflated, len, host);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return corrupt(s, "cannot read the compressed cluster at 0x%llx", (unsigned long long)host);
	slot = s->inflate_next % QCOW2_INFLATE_SLOTS;
	s->inflate_next++;
	s->inflate_entry[slot] = 0;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK) /* raw deflate, as QEMU writes it */
		return -ENOMEM;
	z.next_in = s->deflated;
	z.avail_in = n;
	z.next_out = s->inflated + slot * cs;
	z.avail_out = cs;
	int ret = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR) || z.avail_out)
		return corrupt(s, "the compressed cluster at 0x%llx does not inflate to one cluster",
			       (unsigned long long)host);
	s->inflate_entry[slot] = entry;
	*slot_offset = slot * cs;
	return 0;
}

/* The host clusters a compressed cluster's data touches, for freeing it. */
static int compressed_free(struct qcow2 *s, uint64_t entry)
{
	unsigned x = 62 - (s->cluster_bits - 8);
	uint64_t host = entry & ((1ull << x) - 1);
	uint64_t sectors = ((entry & ~(QCOW2_COPIED | QCOW2_COMPRESSED)) >> x) + 1;

	return freed_add(s, host & ~511ull, sectors * 512);
}

/* Where nothing is allocated: the backing image, then zeros past its end. */
static int map_unallocated(struct qcow2 *s, uint64_t offset, uint64_t length, struct block_extent *ext)
{
	uint64_t backing_size = s->backing ? block_size(s->backing) : 0;

	if (offset < backing_size)
		return block_map(s->backing, offset, length < backing_size - offset ? length : backing_size - offset,
				 false, ext);
	*ext = (struct block_extent){.kind = BLOCK_EXTENT_ZERO, .length = length};
	return 0;
}

/* Whether cluster i of t continues the run that c starts at first. */
static bool run_continues(struct qcow2 *s, struct qcow2_table *t, uint64_t first, uint64_t i,
			  const struct qcow2_cluster *c)
{
	struct qcow2_cluster next;

	if (l2_decode(s, t, i, &next) < 0 || next.kind != c->kind || c->kind == QCOW2_COMPRESSED_DATA)
		return false;
	if (c->kind != QCOW2_DATA)
		return true;
	return next.host == c->host + ((i - first) << s->cluster_bits) &&
	       (next.entry & QCOW2_COPIED) == (c->entry & QCOW2_COPIED);
}

static int map_read(struct qcow2 *s, struct qcow2_table *t, uint64_t l2i, uint64_t offset, uint64_t length,
		    struct block_extent *ext)
{
	uint64_t in = offset & (s->cluster_size - 1), n = s->cluster_size - in, slot;
	struct qcow2_cluster c;
	int ret;

	if (!t)
		return map_unallocated(s, offset, length, ext);
	if ((ret = l2_decode(s, t, l2i, &c)) < 0)
		return ret;
	for (uint64_t i = l2i + 1; n < length && run_continues(s, t, l2i, i, &c); i++)
		n += s->cluster_size;
	n = n < length ? n : length;
	switch (c.kind) {
	case QCOW2_UNALLOCATED: return map_unallocated(s, offset, n, ext);
	case QCOW2_ZEROS: *ext = (struct block_extent){.kind = BLOCK_EXTENT_ZERO, .length = n}; return 0;
	case QCOW2_DATA: *ext = (struct block_extent){.kind = BLOCK_EXTENT_DATA, .fd = s->img->fd, .offset = c.host + in, .length = n}; return 0;
	case QCOW2_COMPRESSED_DATA:
		if ((ret = compressed_read(s, c.entry, &slot)) < 0)
			return ret;
		*ext = (struct block_extent){.kind = BLOCK_EXTENT_MEMORY, .length = n, .data = s->inflated + slot + in};
		return 0;
	}
	return -EIO;
}

/*
 * Fills the parts of a new host cluster that a write of [from, to) (offsets
 * in the cluster) leaves out with what the guest cluster held before: the
 * backing image's data, decompressed data, or zeros (which a new cluster
 * past the end of the file already reads as).
 */
static int cluster_fill(struct qcow2 *s, const struct qcow2_cluster *old, uint64_t guest, uint64_t host, uint64_t from,
			uint64_t to)
{
	uint64_t backing_size = s->backing ? block_size(s->backing) : 0, slot, cs = s->cluster_size;
	uint64_t parts[2][2] = {{0, from}, {to, cs}};
	int ret;

	if (old->kind == QCOW2_COMPRESSED_DATA) {
		if ((ret = compressed_read(s, old->entry, &slot)) < 0)
			return ret;
		memcpy(s->buf, s->inflated + slot, cs);
	} else if (old->kind == QCOW2_UNALLOCATED && guest < backing_size) {
		uint64_t have = backing_size - guest < cs ? backing_size - guest : cs;

		memset(s->buf, 0, cs);
		if ((ret = block_read(s->backing, guest, s->buf, have)) < 0) {
			block_warn(s->img, "cannot read the backing image for copy-on-write: %s", strerror(-ret));
			return -EIO;
		}
	} else if (old->kind == QCOW2_ZEROS && old->host) {
		memset(s->buf, 0, cs); /* preallocated: the host cluster may hold anything */
	} else {
		return 0;
	}
	for (int p = 0; p < 2; p++) {
		if (parts[p][0] < parts[p][1] &&
		    (ret = write_full(s->img->fd, s->buf + parts[p][0], parts[p][1] - parts[p][0],
				      host + parts[p][0])) < 0) {
			block_warn(s->img, "copy-on-write to 0x%llx: %s", (unsigned long long)host, strerror(-ret));
			return -EIO;
		}
	}
	return 0;
}

/* Whether a write may go to cluster c in place; shared clusters may not. */
static int cluster_owned(struct qcow2 *s, struct qcow2_table *t, uint64_t i, const struct qcow2_cluster *c, bool *owned)
{
	uint64_t rc;
	int ret;

	*owned = (c->kind == QCOW2_DATA || (c->kind == QCOW2_ZEROS && c->host)) && (c->entry & QCOW2_COPIED);
	if (*owned || c->kind != QCOW2_DATA)
		return 0;
	if ((ret = refcount_get(s, c->host, &rc)) < 0)
		return ret;
	if (rc != 1)
		return corrupt(s, "cluster 0x%llx is shared (refcount %llu): cannot write it",
			       (unsigned long long)c->host, (unsigned long long)rc);
	put64(t->data + 8 * i, c->entry | QCOW2_COPIED);
	cache_mark_dirty(&s->l2, t);
	*owned = true;
	return 0;
}

static int map_write(struct qcow2 *s, struct qcow2_table *t, uint64_t l2i, uint64_t offset, uint64_t length,
		     struct block_extent *ext)
{
	uint64_t cs = s->cluster_size, in = offset & (cs - 1), n = cs - in, host;
	struct qcow2_cluster c, next;
	bool owned;
	int ret;

	if ((ret = l2_decode(s, t, l2i, &c)) < 0 || (ret = cluster_owned(s, t, l2i, &c, &owned)) < 0)
		return ret;
	if (owned) {
		host = c.host;
		if (c.kind == QCOW2_ZEROS) {
			if ((ret = cluster_fill(s, &c, offset - in, host, in, length < n ? in + length : cs)) < 0)
				return ret;
			put64(t->data + 8 * l2i, host | QCOW2_COPIED);
			cache_mark_dirty(&s->l2, t);
		}
		for (uint64_t i = l2i + 1; n < length && c.kind == QCOW2_DATA && run_continues(s, t, l2i, i, &c); i++)
			n += cs;
	} else {
		if (c.kind == QCOW2_ZEROS && c.host && (ret = freed_add(s, c.host, cs)) < 0)
			return ret;
		if (c.kind == QCOW2_COMPRESSED_DATA && (ret = compressed_free(s, c.entry)) < 0)
			return ret;
		if ((ret = cluster_alloc(s, &host)) < 0 ||
		    (ret = cluster_fill(s, &c, offset - in, host, in, length < n ? in + length : cs)) < 0)
			return ret;
		put64(t->data + 8 * l2i, host | QCOW2_COPIED);
		cache_mark_dirty(&s->l2, t);
		/* Following clusters the write covers whole need no filling: one
		 * extent while the allocations stay contiguous. */
		for (uint64_t i = l2i + 1, at = host + cs; n + cs <= length; i++, at += cs) {
			if (l2_decode(s, t, i, &next) < 0 ||
			    !(next.kind == QCOW2_UNALLOCATED || (next.kind == QCOW2_ZEROS && !next.host)) ||
			    !cluster_alloc_at(s, at) || cluster_alloc(s, &at) < 0)
				break;
			put64(t->data + 8 * i, at | QCOW2_COPIED);
			n += cs;
		}
	}
	n = n < length ? n : length;
	*ext = (struct block_extent){.kind = BLOCK_EXTENT_DATA, .fd = s->img->fd, .offset = host + in, .length = n};
	return 0;
}

static int qcow2_map(struct block_image *img, uint64_t offset, uint64_t length, bool write, struct block_extent *ext)
{
	struct qcow2 *s = img->priv;
	uint64_t in = offset & (s->cluster_size - 1), guest_cluster = offset >> s->cluster_bits;
	uint64_t l2_entries = 1ull << s->l2_bits, l2i = guest_cluster & (l2_entries - 1);
	uint64_t table_left = ((l2_entries - l2i) << s->cluster_bits) - in; /* one L2 table per extent */
	struct qcow2_table *t;
	int ret;

	if (length > table_left)
		length = table_left;
	if ((ret = l2_get(s, guest_cluster >> s->l2_bits, write, &t)) < 0)
		return ret;
	return write ? map_write(s, t, l2i, offset, length, ext) : map_read(s, t, l2i, offset, length, ext);
}

/* ---- write-back ------------------------------------------------------------- */

static int write_table(struct qcow2 *s, const uint64_t *table, uint64_t entries, uint64_t bytes, uint64_t offset,
		       const char *what)
{
	uint8_t *buf = calloc(1, bytes);
	int ret;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < entries; i++)
		put64(buf + 8 * i, table[i]);
	ret = write_meta(s, buf, bytes, offset, what);
	free(buf);
	return ret;
}

/*
 * Writes the changed metadata back so that the file is consistent after
 * every step, with a sync between steps:
 *   1. the data the tables will point at (written by the caller, and
 *      copy-on-write) is on disk;
 *   2. refcount blocks, then the refcount table, then the header naming a
 *      moved refcount table: a cluster is counted before anything uses it;
 *   3. L2 tables, then the L1 table: a table is on disk before an entry
 *      points at it;
 *   4. only then the refcounts of freed clusters drop.
 * A crash in between leaks clusters at worst (qemu-img check -r leaks).
 */
static int qcow2_flush(struct block_image *img)
{
	struct qcow2 *s = img->priv;
	struct stat st;
	uint8_t fields[12];
	int ret;

	if (!s->l1_dirty && !s->reftable_dirty && !s->l2.dirty && !s->refblocks.dirty && !s->nfreed)
		return 0;
	/* Every cluster the tables name lies inside the file, even ones the guest has not written yet. */
	if (fstat(img->fd, &st) < 0 || ((uint64_t)st.st_size < s->alloc_end && ftruncate(img->fd, s->alloc_end) < 0)) {
		block_warn(img, "cannot extend the image to %llu bytes: %s", (unsigned long long)s->alloc_end,
			   strerror(errno));
		return -EIO;
	}
	if ((ret = sync_file(s)) < 0 || (ret = cache_write_back(s, &s->refblocks, "refcount block")) < 0)
		return ret;
	if (s->reftable_dirty) {
		if ((ret = sync_file(s)) < 0 || (ret = write_table(s, s->reftable, s->reftable_entries,
								   (uint64_t)s->reftable_clusters << s->cluster_bits,
								   s->reftable_offset, "refcount table")) < 0)
			return ret;
		s->reftable_dirty = false;
	}
	if (s->reftable_moved) {
		put64(fields, s->reftable_offset);
		put32(fields + 8, s->reftable_clusters);
		if ((ret = sync_file(s)) < 0 || (ret = write_meta(s, fields, sizeof(fields), 48, "header")) < 0)
			return ret;
		s->reftable_moved = false;
	}
	if (s->l2.dirty && ((ret = sync_file(s)) < 0 || (ret = cache_write_back(s, &s->l2, "L2 table")) < 0))
		return ret;
	if (s->l1_dirty) {
		if ((ret = sync_file(s)) < 0 ||
		    (ret = write_table(s, s->l1, s->l1_size, (uint64_t)s->l1_size * 8, s->l1_offset, "L1 table")) < 0)
			return ret;
		s->l1_dirty = false;
	}
	if (s->nfreed) {
		if ((ret = sync_file(s)) < 0)
			return ret;
		for (; s->nfreed; s->nfreed--) {
			struct qcow2_range *r = &s->freed[s->nfreed - 1];
			uint64_t first = r->offset & ~(s->cluster_size - 1), end = r->offset + r->length;

			for (uint64_t c = first; c < end; c += s->cluster_size)
				if ((ret = refcount_add(s, c, -1, 0)) < 0)
					return ret;
		}
		if ((ret = cache_write_back(s, &s->refblocks, "refcount block")) < 0)
			return ret;
	}
	return 0;
}

/* ---- opening ------------------------------------------------------------------ */

static void qcow2_free(struct qcow2 *s)
{
	if (s->backing)
		block_close(s->backing);
	cache_free(&s->l2);
	cache_free(&s->refblocks);
	free(s->inflated);
	free(s->deflated);
	free(s->l1);
	free(s->reftable);
	free(s->freed);
	free(s->buf);
	free(s);
}

/* The incompatible features we do not know, by name where the image names them. */
static void unknown_features(uint64_t bits, const uint8_t *names, uint32_t names_len, char *out, size_t outlen)
{
	size_t used = 0;

	out[0] = 0;
	for (unsigned b = 0; b < 64; b++) {
		const char *name = NULL;
		int namelen = 0;

		if (!(bits & (1ull << b)))
			continue;
		for (uint32_t i = 0; names && i + 48 <= names_len; i += 48) {
			if (names[i] == 0 && names[i + 1] == b) {
				name = (const char *)names + i + 2;
				namelen = strnlen(name, 46);
			}
		}
		int n = name
			    ? snprintf(out + used, outlen - used, "%sbit %u (%.*s)", used ? ", " : "", b, namelen, name)
			    : snprintf(out + used, outlen - used, "%sbit %u", used ? ", " : "", b);
		if (n < 0 || (size_t)n >= outlen - used)
			return;
		used += n;
	}
}

/* Reads a table of entries 64-bit big-endian entries at offset, which must lie in the file. */
static int table_load(struct qcow2 *s, uint64_t offset, uint64_t entries, uint64_t alloc_entries, uint64_t file_size,
		      uint64_t **out)
{
	uint64_t bytes = entries * 8;

	/* The header cluster is never a table: writing one back would overwrite it. */
	if ((offset & (s->cluster_size - 1)) || offset < s->cluster_size || offset > file_size ||
	    bytes > file_size - offset)
		return -ERANGE;
	if (!(*out = calloc(alloc_entries ? alloc_entries : 1, sizeof(uint64_t))))
		return -ENOMEM;
	if (read_full(s->img->fd, *out, bytes, offset) < 0)
		return -EIO;
	for (uint64_t i = 0; i < entries; i++)
		(*out)[i] = be64toh((*out)[i]);
	return 0;
}

static int qcow2_load(struct qcow2 *s, char *err, size_t errlen)
{
	struct block_image *img = s->img;
	uint8_t *h = NULL;
	const uint8_t *names = NULL;
	uint32_t names_len = 0, header_length = QCOW2_V2_HEADER;
	uint64_t incompat = 0, autoclear = 0, file_size, cs;
	char backing_format[32] = "", backing_name[QCOW2_MAX_BACKING_NAME + 1], why[2048];
	struct stat st;
	int ret = -EINVAL;

	if (fstat(img->fd, &st) < 0)
		return open_error(err, errlen, "%s", strerror(errno));
	file_size = st.st_size;
	uint8_t head[QCOW2_V2_HEADER];
	if (file_size < QCOW2_V2_HEADER || read_full(img->fd, head, sizeof(head), 0) < 0)
		return open_error(err, errlen, "truncated header: the file has %llu bytes",
				  (unsigned long long)file_size);
	if (get32(head) != QCOW2_MAGIC)
		return open_error(err, errlen, "not a qcow2 image (bad magic)");
	s->version = get32(head + 4);
	if (s->version != 2 && s->version != 3)
		return open_error(err, errlen, "qcow2 version %u is not supported (2 and 3 are)", s->version);
	s->cluster_bits = get32(head + 20);
	if (s->cluster_bits < QCOW2_MIN_CLUSTER_BITS || s->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return open_error(err, errlen, "cluster_bits %u: cluster sizes from 512 B to 2 MiB are supported",
				  s->cluster_bits);
	cs = s->cluster_size = 1ull << s->cluster_bits;
	s->l2_bits = s->cluster_bits - 3;
	/* The header cluster: header, extensions, backing file name. */
	if (!(h = calloc(1, cs)) || !(s->buf = malloc(cs)))
		goto nomem;
	if (read_full(img->fd, h, file_size < cs ? file_size : cs, 0) < 0) {
		ret = open_error(err, errlen, "cannot read the header");
		goto out;
	}
	s->refcount_order = 4;
	if (s->version == 3) {
		header_length = get32(h + 100);
		if (header_length < QCOW2_V3_HEADER || header_length % 8 || header_length > cs ||
		    file_size < header_length) {
			ret = open_error(err, errlen, "bad v3 header length %u", header_length);
			goto out;
		}
		incompat = get64(h + 72);
		autoclear = get64(h + 88);
		s->refcount_order = get32(h + 96);
		if (s->refcount_order > 6) {
			ret = open_error(err, errlen, "refcount_order %u is out of range (0 to 6)", s->refcount_order);
			goto out;
		}
	}
	s->refblock_bits = s->cluster_bits + 3 - s->refcount_order;
	s->refcount_max = s->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << s->refcount_order)) - 1;
	s->l2_reserved = QCOW2_L2_RESERVED | (s->version == 2 ? QCOW2_ZERO : 0);

	/* Header extensions, up to the end of the header cluster. */
	for (uint64_t at = header_length; at + 8 <= cs;) {
		uint32_t type = get32(h + at), len = get32(h + at + 4);

		if (type == QCOW2_EXT_END)
			break;
		if (len > cs - at - 8) {
			ret = open_error(err, errlen, "header extension 0x%x at %llu runs past the header cluster",
					 type, (unsigned long long)at);
			goto out;
		}
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (len >= sizeof(backing_format) || memchr(h + at + 8, 0, len)) {
				ret = open_error(err, errlen, "bad backing format name");
				goto out;
			}
			memcpy(backing_format, h + at + 8, len);
			backing_format[len] = 0;
		} else if (type == QCOW2_EXT_FEATURE_NAMES) {
			names = h + at + 8;
			names_len = len;
		}
		at += 8 + (((uint64_t)len + 7) & ~7ull);
	}

	if (incompat & ~QCOW2_INCOMPAT_KNOWN) {
		unknown_features(incompat & ~QCOW2_INCOMPAT_KNOWN, names, names_len, why, sizeof(why));
		ret = open_error(err, errlen, "unknown incompatible features: %s", why);
		goto out;
	}
	if (incompat & QCOW2_INCOMPAT_DATA_FILE) {
		ret = open_error(err, errlen, "images with an external data file are not supported");
		goto out;
	}
	if (incompat & QCOW2_INCOMPAT_COMPRESSION) {
		ret = open_error(err, errlen, "compression type %u is not supported (only zlib is)",
				 header_length > 104 ? h[104] : 0);
		goto out;
	}
	if (incompat & QCOW2_INCOMPAT_EXTENDED_L2) {
		ret = open_error(err, errlen, "extended L2 entries (subclusters) are not supported");
		goto out;
	}
	if ((incompat & QCOW2_INCOMPAT_CORRUPT) && !img->read_only) {
		ret = open_error(err, errlen,
				 "the image is marked corrupt: open it read-only, or repair it with "
				 "qemu-img check -r all");
		goto out;
	}
	if ((incompat & QCOW2_INCOMPAT_DIRTY) && !img->read_only) {
		ret = open_error(err, errlen,
				 "the image was not closed cleanly (dirty bit): its refcounts need "
				 "qemu-img check -r all before it can be written");
		goto out;
	}
	if (get32(h + 32)) {
		ret = open_error(err, errlen, "encrypted images are not supported");
		goto out;
	}
	if (get32(h + 60) && !img->read_only) {
		ret = open_error(err, errlen, "the image has internal snapshots: it can only be opened read-only");
		goto out;
	}

	/* The virtual size must fit the L1 table. */
	uint64_t size = get64(h + 24);
	unsigned l1_shift = s->cluster_bits + s->l2_bits;
	s->l1_size = get32(h + 36);
	s->l1_offset = get64(h + 40);
	if ((uint64_t)s->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		ret = open_error(err, errlen, "L1 table of %u entries is too large", s->l1_size);
		goto out;
	}
	if ((size >> l1_shift) + !!(size & ((1ull << l1_shift) - 1)) > s->l1_size) {
		ret = open_error(err, errlen, "L1 table of %u entries is too small for a %llu-byte disk", s->l1_size,
				 (unsigned long long)size);
		goto out;
	}
	ret = table_load(s, s->l1_offset, s->l1_size, s->l1_size, file_size, &s->l1);
	if (ret < 0) {
		ret = ret == -ENOMEM ? -ENOMEM
				     : open_error(err, errlen, "L1 table at 0x%llx is unaligned or outside the file",
						  (unsigned long long)s->l1_offset);
		goto out;
	}
	s->reftable_offset = get64(h + 48);
	s->reftable_clusters = get32(h + 56);
	if (!s->reftable_clusters || (uint64_t)s->reftable_clusters * cs > QCOW2_MAX_REFTABLE_BYTES) {
		ret = open_error(err, errlen, "refcount table of %u clusters: bad size", s->reftable_clusters);
		goto out;
	}
	s->reftable_entries = (uint64_t)s->reftable_clusters << (s->cluster_bits - 3);
	ret = table_load(s, s->reftable_offset, s->reftable_entries, s->reftable_entries, file_size, &s->reftable);
	if (ret < 0) {
		ret = ret == -ENOMEM
			  ? -ENOMEM
			  : open_error(err, errlen, "refcount table at 0x%llx is unaligned or outside the file",
				       (unsigned long long)s->reftable_offset);
		goto out;
	}
	s->alloc_end = (file_size + cs - 1) & ~(cs - 1);
	s->l2.clean_max = (4u << 20) >> s->cluster_bits > 16 ? (4u << 20) >> s->cluster_bits : 16;
	s->refblocks.clean_max = (1u << 20) >> s->cluster_bits > 16 ? (1u << 20) >> s->cluster_bits : 16;

	/* Unknown autoclear bits must go before anyone writes; we keep none (no bitmaps). */
	if (autoclear && !img->read_only) {
		uint8_t zero[8] = {0};

		if (write_full(img->fd, zero, sizeof(zero), 88) < 0 || fdatasync(img->fd) < 0) {
			ret = open_error(err, errlen, "cannot clear the autoclear features: %s", strerror(errno));
			goto out;
		}
	}

	uint64_t backing_offset = get64(h + 8);
	uint32_t backing_len = get32(h + 16);
	if (backing_offset) {
		if (!backing_len || backing_len > QCOW2_MAX_BACKING_NAME || backing_offset > file_size ||
		    backing_len > file_size - backing_offset ||
		    read_full(img->fd, backing_name, backing_len, backing_offset) < 0 ||
		    memchr(backing_name, 0, backing_len)) {
			ret = open_error(err, errlen, "bad backing file name (%u bytes at 0x%llx)", backing_len,
					 (unsigned long long)backing_offset);
			goto out;
		}
		backing_name[backing_len] = 0;
		s->backing =
		    block_open_backing(img, backing_name, backing_format[0] ? backing_format : NULL, why, sizeof(why));
		if (!s->backing) {
			ret = open_error(err, errlen, "backing file: %s", why);
			goto out;
		}
	}
	img->size = size / BLOCK_SECTOR * BLOCK_SECTOR;
	ret = 0;
	goto out;
nomem:
	ret = open_error(err, errlen, "out of memory");
out:
	free(h);
	return ret;
}

static bool qcow2_probe(const uint8_t *head, size_t len)
{
	return len >= 4 && get32(head) == QCOW2_MAGIC;
}

static int qcow2_open(struct block_image *img, char *err, size_t errlen)
{
	struct qcow2 *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return open_error(err, errlen, "out of memory");
	s->img = img;
	img->priv = s;
	ret = qcow2_load(s, err, errlen);
	if (ret < 0) {
		if (ret == -ENOMEM)
			open_error(err, errlen, "out of memory");
		qcow2_free(s);
		img->priv = NULL;
	}
	return ret;
}

static void qcow2_close(struct block_image *img)
{
	qcow2_free(img->priv);
}

static struct block_format qcow2_format = {
    .name = "qcow2",
    .probe = qcow2_probe,
    .open = qcow2_open,
    .map = qcow2_map,
    .flush = qcow2_flush,
    .close = qcow2_close,
};

BLOCK_FORMAT(qcow2_format)
