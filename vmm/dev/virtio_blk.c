/*
 * virtio-blk (virtio 1.2, 5.2): a disk backed by a disk image (vmm/block/),
 * one device per image.
 *   -drive file=disk.img,if=none,id=d0 -device virtio-blk-pci,drive=d0[,serial=S][,num-queues=N]
 *   -drive file=disk.img,if=virtio      (or vireo --disk disk.img)
 *
 * The I/O is done off the vCPUs: one I/O thread per device serves all its
 * queues through one io_uring, from DRIVER_OK to reset. A doorbell only
 * wakes it (an eventfd it reads through the ring). It pops requests, asks
 * block_map where their sectors live and submits a readv or writev per
 * extent (zero extents are filled in place), so many requests are in flight
 * at once; completions write the status byte and return the request. A
 * flush is a barrier: nothing more is popped until every write before it
 * has completed, then block_flush writes back the format's metadata and
 * syncs. Reset waits for everything in flight, so once it returns nothing
 * touches guest memory.
 */
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/block/block.h"
#include "vmm/virtio/virtio.h"

#define BLK_QUEUE_SIZE	  256
#define BLK_MAX_QUEUES	  64
#define BLK_RING_ENTRIES  256
#define BLK_ID_BYTES	  20 /* GET_ID's answer: the serial, NUL-padded */
#define BLK_HEADER	  16 /* struct virtio_blk_outhdr */
#define BLK_RANGE	  16 /* struct virtio_blk_discard_write_zeroes */
#define BLK_RANGES_MAX	  16 /* ranges in one discard or write-zeroes request */
#define BLK_RANGE_SECTORS 0x3fffff
#define BLK_DISCARD_ALIGN 8 /* sectors: the host file system's 4 KiB blocks */
#define PCI_CLASS_STORAGE 0x010000

enum {
	BLK_F_SEG_MAX = 2,
	BLK_F_RO = 5,
	BLK_F_BLK_SIZE = 6,
	BLK_F_FLUSH = 9,
	BLK_F_MQ = 12,
	BLK_F_DISCARD = 13,
	BLK_F_WRITE_ZEROES = 14,
};

enum {
	BLK_T_IN = 0,
	BLK_T_OUT = 1,
	BLK_T_FLUSH = 4,
	BLK_T_GET_ID = 8,
	BLK_T_DISCARD = 11,
	BLK_T_WRITE_ZEROES = 13,
};

enum { BLK_S_OK = 0, BLK_S_IOERR = 1, BLK_S_UNSUPP = 2 };
#define BLK_WRITE_ZEROES_UNMAP 1

/* struct virtio_blk_config */
enum {
	CFG_CAPACITY = 0,
	CFG_SEG_MAX = 12,
	CFG_BLK_SIZE = 20,
	CFG_NUM_QUEUES = 34,
	CFG_MAX_DISCARD_SECTORS = 36,
	CFG_MAX_DISCARD_SEG = 40,
	CFG_DISCARD_ALIGN = 44,
	CFG_MAX_WRITE_ZEROES_SECTORS = 48,
	CFG_MAX_WRITE_ZEROES_SEG = 52,
	CFG_WRITE_ZEROES_MAY_UNMAP = 56,
	CFG_SIZE = 60,
};

struct blk_request;

/* One submission: a readv/writev of one extent, or a fallocate. */
struct blk_io {
	struct blk_request *req;
	enum { BLK_IO_READ, BLK_IO_WRITE, BLK_IO_FALLOCATE } op;
	int fd;
	int mode; /* fallocate's */
	uint64_t offset;
	uint64_t length;    /* bytes still to move */
	unsigned iov_first; /* in req->iov */
	unsigned iovcnt;
	struct blk_io *next; /* waiting for a free submission slot */
};

struct blk_request {
	struct virtq_req vreq;
	struct virtq *vq;
	uint32_t type;
	uint8_t status;
	bool writes;			   /* counts in writes_in_flight */
	uint32_t written;		   /* bytes written into the guest's buffers, status included */
	unsigned pending;		   /* submissions not yet completed */
	struct iovec data[VIRTQ_MAX_SIZE]; /* the data part of the guest's buffers */
	unsigned ndata;
	struct iovec *iov; /* data cut at extent boundaries, one run per blk_io */
	unsigned niov, iov_cap;
	struct blk_io *io;
	unsigned nio, io_cap;
	struct blk_request *next_free;
};

struct virtio_blk {
	struct virtio_device vdev;
	struct block_image *img;
	char serial[BLK_ID_BYTES];
	bool discard; /* DISCARD and WRITE_ZEROES offered: a writable raw image */

	struct io_uring ring;
	bool ring_ready;
	int kick_fd; /* eventfd: a doorbell, or stop */
	uint64_t kick_count;
	pthread_t thread;
	bool running;
	atomic_bool stopping;

	/* The I/O thread's own. */
	unsigned in_flight;	   /* submissions, the eventfd read included */
	unsigned writes_in_flight; /* requests that change the disk */
	struct blk_request *flush; /* waiting for writes_in_flight to reach 0 */
	struct blk_request *free;
	unsigned nrequests, max_requests;
	struct blk_io *waiting, **waiting_tail;
	bool *notify_due; /* per queue: requests were pushed */
};

/* ---- requests ----------------------------------------------------------------- */

static struct blk_request *blk_request_get(struct virtio_blk *blk)
{
	struct blk_request *req = blk->free;

	if (req) {
		blk->free = req->next_free;
		return req;
	}
	/* A driver may make a chain available again before it is used: the
	 * pool bounds what one guest can have in flight. */
	if (blk->nrequests == blk->max_requests || !(req = calloc(1, sizeof(*req))))
		return NULL;
	blk->nrequests++;
	return req;
}

static void blk_request_put(struct virtio_blk *blk, struct blk_request *req)
{
	req->next_free = blk->free;
	blk->free = req;
}

static void blk_request_done(struct virtio_blk *blk, struct blk_request *req)
{
	struct virtq_req *vr = &req->vreq;

	if (req->writes)
		blk->writes_in_flight--;
	virtq_req_write(vr, vr->in_len - 1, &req->status, 1);
	virtq_push(req->vq, vr, req->status == BLK_S_OK ? req->written : 1);
	blk->notify_due[req->vq->index] = true;
	blk_request_put(blk, req);
}

static void blk_fail(struct virtio_blk *blk, struct blk_request *req, const char *what, uint64_t offset, int err)
{
	req->status = BLK_S_IOERR;
	block_warn(blk->img, "%s at byte %llu failed: %s", what, (unsigned long long)offset, strerror(err));
}

/* ---- io_uring ------------------------------------------------------------------ */

static void blk_submit(struct virtio_blk *blk, struct blk_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&blk->ring);

	if (!sqe && io_uring_submit(&blk->ring) >= 0)
		sqe = io_uring_get_sqe(&blk->ring);
	if (!sqe) { /* the kernel wants completions reaped first */
		io->next = NULL;
		*blk->waiting_tail = io;
		blk->waiting_tail = &io->next;
		return;
	}
	switch (io->op) {
	case BLK_IO_READ: io_uring_prep_readv(sqe, io->fd, &io->req->iov[io->iov_first], io->iovcnt, io->offset); break;
	case BLK_IO_WRITE:
		io_uring_prep_writev(sqe, io->fd, &io->req->iov[io->iov_first], io->iovcnt, io->offset);
		break;
	case BLK_IO_FALLOCATE: io_uring_prep_fallocate(sqe, io->fd, io->mode, io->offset, io->length); break;
	}
	io_uring_sqe_set_data(sqe, io);
}

/* Counts io in flight and submits it. */
static void blk_start_io(struct virtio_blk *blk, struct blk_io *io)
{
	io->req->pending++;
	blk->in_flight++;
	blk_submit(blk, io);
}

static void blk_submit_waiting(struct virtio_blk *blk)
{
	struct blk_io *io = blk->waiting;

	blk->waiting = NULL;
	blk->waiting_tail = &blk->waiting;
	while (io) {
		struct blk_io *next = io->next;
		blk_submit(blk, io);
		io = next;
	}
}

/* The eventfd read that a doorbell or reset completes. */
static void blk_arm_kick(struct virtio_blk *blk)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&blk->ring);

	if (!sqe && io_uring_submit(&blk->ring) >= 0)
		sqe = io_uring_get_sqe(&blk->ring);
	if (!sqe) {
		vmm_log("%s at %s: cannot wait for doorbells: io_uring is full", blk->vdev.ops->name,
			blk->vdev.location);
		return;
	}
	io_uring_prep_read(sqe, blk->kick_fd, &blk->kick_count, sizeof(blk->kick_count), 0);
	io_uring_sqe_set_data(sqe, NULL);
	blk->in_flight++;
}

/* Drops n bytes, which moved, from the front of io. */
static void blk_io_advance(struct blk_io *io, size_t n)
{
	io->offset += n;
	io->length -= n;
	while (n) {
		struct iovec *v = &io->req->iov[io->iov_first];
		size_t step = n < v->iov_len ? n : v->iov_len;

		v->iov_base = (uint8_t *)v->iov_base + step;
		v->iov_len -= step;
		n -= step;
		if (!v->iov_len) {
			io->iov_first++;
			io->iovcnt--;
		}
	}
}

static void blk_io_complete(struct virtio_blk *blk, struct blk_io *io, int res)
{
	struct blk_request *req = io->req;
	bool stopping = atomic_load(&blk->stopping);

	blk->in_flight--;
	req->pending--;
	if ((res == -EINTR || res == -EAGAIN) && !stopping) {
		blk_start_io(blk, io);
	} else if (io->op == BLK_IO_FALLOCATE) {
		/* Zeroing a range without ZERO_RANGE (tmpfs, older file systems):
		 * punch a hole, which reads as zeros too. A discard is a hint. */
		if (res == -EOPNOTSUPP && (io->mode & FALLOC_FL_ZERO_RANGE)) {
			io->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
			blk_start_io(blk, io);
		} else if (res < 0 && !(res == -EOPNOTSUPP && req->type == BLK_T_DISCARD)) {
			blk_fail(blk, req, req->type == BLK_T_DISCARD ? "discard" : "write zeroes", io->offset, -res);
		}
	} else if (res < 0) {
		blk_fail(blk, req, io->op == BLK_IO_READ ? "read" : "write", io->offset, -res);
	} else if ((uint64_t)res < io->length) {
		if (res > 0 && !stopping) {
			blk_io_advance(io, res);
			blk_start_io(blk, io);
		} else if (res == 0 && io->op == BLK_IO_READ) {
			/* Past the end of the file: zeros, as a hole would read. */
			for (unsigned i = 0; i < io->iovcnt; i++)
				memset(req->iov[io->iov_first + i].iov_base, 0, req->iov[io->iov_first + i].iov_len);
		} else {
			blk_fail(blk, req, io->op == BLK_IO_READ ? "read" : "write", io->offset + res, EIO);
		}
	}
	if (!req->pending)
		blk_request_done(blk, req);
}

/* Takes the completions there are; the eventfd read comes back armed. */
static void blk_reap(struct virtio_blk *blk)
{
	struct io_uring_cqe *cqes[64];
	unsigned n;

	while ((n = io_uring_peek_batch_cqe(&blk->ring, cqes, 64)) > 0) {
		struct {
			void *io;
			int res;
		} done[64];

		for (unsigned i = 0; i < n; i++) {
			done[i].io = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&blk->ring, n);
		for (unsigned i = 0; i < n; i++) {
			if (done[i].io) {
				blk_io_complete(blk, done[i].io, done[i].res);
			} else {
				blk->in_flight--;
				if (!atomic_load(&blk->stopping))
					blk_arm_kick(blk);
			}
		}
	}
}

/* ---- parsing and mapping ----------------------------------------------------------- */

/* Room for one more run in req->iov, or false. */
static bool blk_iov_room(struct blk_request *req)
{
	struct iovec *iov;
	unsigned cap = req->iov_cap ? 2 * req->iov_cap : 2 * VIRTQ_MAX_SIZE;

	if (req->niov < req->iov_cap)
		return true;
	if (!(iov = realloc(req->iov, cap * sizeof(*iov))))
		return false;
	req->iov = iov;
	req->iov_cap = cap;
	return true;
}

static struct blk_io *blk_io_add(struct blk_request *req)
{
	struct blk_io *io;
	unsigned cap = req->io_cap ? 2 * req->io_cap : 8;

	if (req->nio == req->io_cap) {
		if (!(io = realloc(req->io, cap * sizeof(*io))))
			return NULL;
		req->io = io;
		req->io_cap = cap;
	}
	io = &req->io[req->nio++];
	memset(io, 0, sizeof(*io));
	io->req = req;
	return io;
}

/* The data part of the request: len bytes of its segments from first on,
 * skip bytes in, into req->data. */
static void blk_data(struct blk_request *req, unsigned first, size_t skip, size_t len)
{
	const struct virtq_req *vr = &req->vreq;

	req->ndata = 0;
	for (unsigned i = first; i < vr->out_num + vr->in_num && len; i++) {
		size_t seg = vr->iov[i].iov_len;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		seg -= skip;
		if (seg > len)
			seg = len;
		req->data[req->ndata++] = (struct iovec){(uint8_t *)vr->iov[i].iov_base + skip, seg};
		len -= seg;
		skip = 0;
	}
}

/*
 * Maps the data to the disk from offset, extent by extent: each data extent
 * becomes a readv/writev of the runs of guest buffers it covers, each zero
 * extent is zeroed in the guest at once and each memory extent (an inflated
 * compressed cluster) copied there at once. 0 or -errno.
 */
static int blk_map_data(struct virtio_blk *blk, struct blk_request *req, uint64_t offset, bool write)
{
	unsigned seg = 0;
	size_t at = 0; /* in req->data[seg] */
	uint64_t left = 0;

	for (unsigned i = 0; i < req->ndata; i++)
		left += req->data[i].iov_len;
	while (left) {
		struct block_extent ext;
		struct blk_io *io = NULL;
		int ret = block_map(blk->img, offset, left, write, &ext);

		if (ret < 0)
			return ret;
		if (ext.kind == BLOCK_EXTENT_DATA) {
			if (!(io = blk_io_add(req)))
				return -ENOMEM;
			*io = (struct blk_io){.req = req,
					      .op = write ? BLK_IO_WRITE : BLK_IO_READ,
					      .fd = ext.fd,
					      .offset = ext.offset,
					      .length = ext.length,
					      .iov_first = req->niov};
		}
		for (uint64_t need = ext.length; need;) {
			struct iovec *d = &req->data[seg];
			size_t n = d->iov_len - at < need ? d->iov_len - at : need;
			uint8_t *p = (uint8_t *)d->iov_base + at;

			if (ext.kind == BLOCK_EXTENT_ZERO) {
				memset(p, 0, n);
			} else if (ext.kind == BLOCK_EXTENT_MEMORY) {
				memcpy(p, (const uint8_t *)ext.data + (ext.length - need), n);
			} else {
				if (!blk_iov_room(req))
					return -ENOMEM;
				req->iov[req->niov++] = (struct iovec){p, n};
				io->iovcnt++;
			}
			need -= n;
			at += n;
			if (at == d->iov_len) {
				seg++;
				at = 0;
			}
		}
		offset += ext.length;
		left -= ext.length;
	}
	return 0;
}

/* Whether [sector, sector + bytes / 512) lies within the disk. */
static bool blk_in_disk(struct virtio_blk *blk, uint64_t sector, uint64_t bytes)
{
	uint64_t size = block_size(blk->img);

	return sector <= size / BLOCK_SECTOR && bytes <= size - sector * BLOCK_SECTOR;
}

static void blk_read_write(struct virtio_blk *blk, struct blk_request *req, uint64_t sector)
{
	struct virtq_req *vr = &req->vreq;
	bool write = req->type == BLK_T_OUT;
	/* IN: device-writable data before the status byte; OUT: device-readable
	 * data after the header, and nothing writable but the status. */
	uint64_t len = write ? vr->out_len - BLK_HEADER : vr->in_len - 1u;
	int ret;

	if ((write && vr->in_len != 1) || (!write && vr->out_len != BLK_HEADER)) {
		virtio_device_warn(&blk->vdev, "%s request %u has %s data buffers", write ? "write" : "read", vr->head,
				   write ? "device-writable" : "device-readable");
		req->status = BLK_S_IOERR;
		return;
	}
	if (len % BLOCK_SECTOR || !blk_in_disk(blk, sector, len)) {
		virtio_device_warn(&blk->vdev, "%s of %llu bytes at sector %llu: %s", write ? "write" : "read",
				   (unsigned long long)len, (unsigned long long)sector,
				   len % BLOCK_SECTOR ? "not a whole number of sectors" : "beyond the end of the disk");
		req->status = BLK_S_IOERR;
		return;
	}
	if (write && block_read_only(blk->img)) {
		virtio_device_warn(&blk->vdev, "write to a read-only disk (sector %llu)", (unsigned long long)sector);
		req->status = BLK_S_IOERR;
		return;
	}
	blk_data(req, write ? 0 : vr->out_num, write ? BLK_HEADER : 0, len);
	ret = blk_map_data(blk, req, sector * BLOCK_SECTOR, write);
	if (ret < 0) {
		blk_fail(blk, req, write ? "write" : "read", sector * BLOCK_SECTOR, -ret);
		return;
	}
	req->writes = write;
	req->written = write ? 1 : len + 1;
}

/* DISCARD and WRITE_ZEROES: a fallocate per range. */
static void blk_discard(struct virtio_blk *blk, struct blk_request *req)
{
	struct virtq_req *vr = &req->vreq;
	bool zeroes = req->type == BLK_T_WRITE_ZEROES;
	unsigned ranges = (vr->out_len - BLK_HEADER) / BLK_RANGE;

	if (!blk->discard) {
		virtio_device_warn(&blk->vdev, "%s request %u, which the disk does not offer",
				   zeroes ? "write-zeroes" : "discard", vr->head);
		req->status = block_read_only(blk->img) ? BLK_S_IOERR : BLK_S_UNSUPP;
		return;
	}
	if (vr->in_len != 1 || (vr->out_len - BLK_HEADER) % BLK_RANGE || !ranges || ranges > BLK_RANGES_MAX) {
		virtio_device_warn(&blk->vdev, "%s request %u: %u bytes of ranges", zeroes ? "write-zeroes" : "discard",
				   vr->head, vr->out_len - BLK_HEADER);
		req->status = BLK_S_IOERR;
		return;
	}
	for (unsigned i = 0; i < ranges; i++) {
		struct {
			uint64_t sector;
			uint32_t sectors, flags;
		} r;
		struct block_extent ext;
		struct blk_io *io;
		bool keep;
		int ret;

		virtq_req_read(vr, BLK_HEADER + i * BLK_RANGE, &r, sizeof(r));
		/* 5.2.6.2: unmap is write-zeroes' only flag, and discard has none. */
		if (r.flags & ~(zeroes ? BLK_WRITE_ZEROES_UNMAP : 0u)) {
			req->status = BLK_S_UNSUPP;
			return;
		}
		if (r.sectors > BLK_RANGE_SECTORS || !blk_in_disk(blk, r.sector, (uint64_t)r.sectors * BLOCK_SECTOR)) {
			virtio_device_warn(&blk->vdev, "%s of %u sectors at sector %llu: beyond the end of the disk",
					   zeroes ? "write-zeroes" : "discard", r.sectors,
					   (unsigned long long)r.sector);
			req->status = BLK_S_IOERR;
			return;
		}
		if (!r.sectors)
			continue;
		keep = zeroes && !(r.flags & BLK_WRITE_ZEROES_UNMAP); /* zeros, but still allocated */
		/* A raw image: one extent, the same range of the file. */
		ret = block_map(blk->img, r.sector * BLOCK_SECTOR, (uint64_t)r.sectors * BLOCK_SECTOR, true, &ext);
		if (ret < 0 || !(io = blk_io_add(req))) {
			blk_fail(blk, req, zeroes ? "write zeroes" : "discard", r.sector * BLOCK_SECTOR,
				 ret < 0 ? -ret : ENOMEM);
			return;
		}
		*io =
		    (struct blk_io){.req = req,
				    .op = BLK_IO_FALLOCATE,
				    .fd = ext.fd,
				    .offset = ext.offset,
				    .length = ext.length,
				    .mode = FALLOC_FL_KEEP_SIZE | (keep ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE)};
	}
	req->writes = true;
	req->written = 1;
}

/*
 * Checks a request and maps it into submissions (req->io), or sets its
 * status for one answered at once. A flush becomes blk->flush.
 */
static void blk_parse(struct virtio_blk *blk, struct blk_request *req)
{
	struct virtq_req *vr = &req->vreq;
	struct {
		uint32_t type, reserved;
		uint64_t sector;
	} hdr;

	if (vr->out_len < BLK_HEADER) {
		virtio_device_warn(&blk->vdev, "request %u has a %u-byte header, not %d", vr->head, vr->out_len,
				   BLK_HEADER);
		req->status = BLK_S_IOERR;
		return;
	}
	virtq_req_read(vr, 0, &hdr, sizeof(hdr));
	req->type = hdr.type;
	switch (hdr.type) {
	case BLK_T_IN:
	case BLK_T_OUT: blk_read_write(blk, req, hdr.sector); break;
	case BLK_T_FLUSH:
		if (vr->out_len != BLK_HEADER || vr->in_len != 1) {
			virtio_device_warn(&blk->vdev, "flush request %u carries data", vr->head);
			req->status = BLK_S_IOERR;
			break;
		}
		req->written = 1;
		blk->flush = req;
		break;
	case BLK_T_GET_ID: {
		uint32_t len = vr->in_len - 1 < BLK_ID_BYTES ? vr->in_len - 1 : BLK_ID_BYTES;

		if (vr->out_len != BLK_HEADER) {
			virtio_device_warn(&blk->vdev, "get-id request %u has device-readable data", vr->head);
			req->status = BLK_S_IOERR;
			break;
		}
		req->written = virtq_req_write(vr, 0, blk->serial, len) + 1;
		break;
	}
	case BLK_T_DISCARD:
	case BLK_T_WRITE_ZEROES: blk_discard(blk, req); break;
	default:
		virtio_device_warn(&blk->vdev, "request %u of unknown type %u", vr->head, hdr.type);
		req->status = BLK_S_UNSUPP;
		break;
	}
}

static void blk_start(struct virtio_blk *blk, struct blk_request *req)
{
	struct virtq_req *vr = &req->vreq;

	req->status = BLK_S_OK;
	req->writes = false;
	req->written = 0;
	req->pending = 0;
	req->niov = req->nio = 0;
	if (!vr->in_len) { /* no status byte: nothing to answer with */
		virtio_device_warn(&blk->vdev, "request %u has no device-writable status byte", vr->head);
		virtq_push(req->vq, vr, 0);
		blk->notify_due[req->vq->index] = true;
		blk_request_put(blk, req);
		return;
	}
	blk_parse(blk, req);
	if (blk->flush == req)
		return;
	if (req->status != BLK_S_OK || !req->nio) {
		blk_request_done(blk, req);
		return;
	}
	if (req->writes)
		blk->writes_in_flight++;
	/* Held while submitting: completions reaped meanwhile cannot end it. */
	req->pending++;
	for (unsigned i = 0; i < req->nio; i++)
		blk_start_io(blk, &req->io[i]);
	if (!--req->pending)
		blk_request_done(blk, req);
}

/* The barrier is reached: every write before the flush has completed. */
static void blk_flush(struct virtio_blk *blk)
{
	struct blk_request *req = blk->flush;
	int ret = block_flush(blk->img);

	blk->flush = NULL;
	if (ret < 0)
		blk_fail(blk, req, "flush", 0, -ret);
	blk_request_done(blk, req);
}

/* Pops what the queues have, while requests and the flush barrier allow.
 * Notifications stay off while it has to stop early: it comes back after
 * the next completion. */
static void blk_pop(struct virtio_blk *blk)
{
	for (unsigned q = 0; q < blk->vdev.num_queues; q++) {
		struct virtq *vq = &blk->vdev.vqs[q];

		do {
			virtq_disable_notify(vq);
			for (;;) {
				struct blk_request *req;
				int ret;

				if (blk->flush || !(req = blk_request_get(blk)))
					return;
				ret = virtq_pop(vq, &req->vreq);
				if (ret <= 0) {
					blk_request_put(blk, req);
					break;
				}
				req->vq = vq;
				blk_start(blk, req);
			}
		} while (virtq_enable_notify(vq));
	}
}

static void blk_notify(struct virtio_blk *blk)
{
	for (unsigned q = 0; q < blk->vdev.num_queues; q++) {
		if (blk->notify_due[q]) {
			blk->notify_due[q] = false;
			virtq_notify(&blk->vdev.vqs[q]);
		}
	}
}

static void *blk_io_thread(void *arg)
{
	struct virtio_blk *blk = arg;

	blk_arm_kick(blk);
	for (;;) {
		bool stopping = atomic_load(&blk->stopping);
		int ret;

		if (!stopping) {
			blk_pop(blk);
			while (blk->flush && !blk->writes_in_flight) {
				blk_flush(blk);
				blk_pop(blk);
			}
		}
		blk_notify(blk);
		if (stopping && !blk->in_flight)
			break;
		ret = io_uring_submit_and_wait(&blk->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			vmm_log("%s at %s: io_uring: %s", blk->vdev.ops->name, blk->vdev.location, strerror(-ret));
			break;
		}
		blk_reap(blk);
		blk_submit_waiting(blk);
	}
	if (blk->flush) { /* dropped with its queue */
		blk_request_put(blk, blk->flush);
		blk->flush = NULL;
	}
	return NULL;
}

/* ---- the device ------------------------------------------------------------------- */

static uint64_t blk_features(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;
	uint64_t f =
	    VIRTIO_BIT(BLK_F_SEG_MAX) | VIRTIO_BIT(BLK_F_BLK_SIZE) | VIRTIO_BIT(BLK_F_FLUSH) | VIRTIO_BIT(BLK_F_MQ);

	if (block_read_only(blk->img))
		f |= VIRTIO_BIT(BLK_F_RO);
	if (blk->discard)
		f |= VIRTIO_BIT(BLK_F_DISCARD) | VIRTIO_BIT(BLK_F_WRITE_ZEROES);
	return f;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = v >> (8 * i);
}

static uint32_t blk_config_read(struct virtio_device *dev, unsigned offset, unsigned size)
{
	struct virtio_blk *blk = dev->priv;
	uint8_t cfg[CFG_SIZE] = {0};
	uint32_t v = 0;

	put_le(cfg + CFG_CAPACITY, block_size(blk->img) / BLOCK_SECTOR, 8);
	put_le(cfg + CFG_SEG_MAX, dev->queue_max - 2, 4); /* header and status take two */
	put_le(cfg + CFG_BLK_SIZE, BLOCK_SECTOR, 4);
	put_le(cfg + CFG_NUM_QUEUES, dev->num_queues, 2);
	if (blk->discard) {
		put_le(cfg + CFG_MAX_DISCARD_SECTORS, BLK_RANGE_SECTORS, 4);
		put_le(cfg + CFG_MAX_DISCARD_SEG, BLK_RANGES_MAX, 4);
		put_le(cfg + CFG_DISCARD_ALIGN, BLK_DISCARD_ALIGN, 4);
		put_le(cfg + CFG_MAX_WRITE_ZEROES_SECTORS, BLK_RANGE_SECTORS, 4);
		put_le(cfg + CFG_MAX_WRITE_ZEROES_SEG, BLK_RANGES_MAX, 4);
		cfg[CFG_WRITE_ZEROES_MAY_UNMAP] = 1;
	}
	memcpy(&v, cfg + offset, size);
	return v;
}

static void blk_wake(struct virtio_blk *blk)
{
	uint64_t one = 1;

	if (write(blk->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vmm_log("%s at %s: cannot wake its I/O thread: %s", blk->vdev.ops->name, blk->vdev.location,
			strerror(errno));
}

static void blk_queue_notify(struct virtio_device *dev, struct virtq *vq)
{
	(void)vq;
	blk_wake(dev->priv);
}

static void blk_driver_ok(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;
	int ret;

	if (blk->running)
		return;
	atomic_store(&blk->stopping, false);
	ret = pthread_create(&blk->thread, NULL, blk_io_thread, blk);
	if (ret) {
		virtio_device_error(dev, "cannot start its I/O thread: %s", strerror(ret));
		return;
	}
	blk->running = true;
}

static void blk_reset(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;

	if (!blk->running)
		return;
	/* The queues are already gone: the thread waits for what is in
	 * flight, answers nobody and ends. */
	atomic_store(&blk->stopping, true);
	blk_wake(blk);
	pthread_join(blk->thread, NULL);
	blk->running = false;
	memset(blk->notify_due, 0, dev->num_queues * sizeof(*blk->notify_due));
}

static void blk_free(struct virtio_blk *blk)
{
	while (blk->free) {
		struct blk_request *req = blk->free;
		blk->free = req->next_free;
		free(req->iov);
		free(req->io);
		free(req);
	}
	if (blk->img) {
		int ret = block_close(blk->img);
		if (ret < 0)
			vmm_log("%s: disk image not written back: %s", blk->vdev.ops->name, strerror(-ret));
	}
	if (blk->ring_ready)
		io_uring_queue_exit(&blk->ring);
	if (blk->kick_fd >= 0)
		close(blk->kick_fd);
	virtio_device_cleanup(&blk->vdev);
	free(blk->notify_due);
	free(blk);
}

static void blk_destroy(struct virtio_device *dev)
{
	blk_free(dev->priv);
}

static const struct virtio_device_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .pci_class = PCI_CLASS_STORAGE,
    .config_size = CFG_SIZE,
    .features = blk_features,
    .config_read = blk_config_read,
    .queue_notify = blk_queue_notify,
    .driver_ok = blk_driver_ok,
    .reset = blk_reset,
    .destroy = blk_destroy,
};

/* ---- -device virtio-blk-pci,drive=ID ------------------------------------------------ */

static const struct vm_drive *blk_find_drive(const struct vm_config *cfg, const char *id)
{
	for (unsigned i = 0; i < cfg->ndrives && i < VM_MAX_DRIVES; i++)
		if (cfg->drives[i].id && !strcmp(cfg->drives[i].id, id))
			return &cfg->drives[i];
	return NULL;
}

static bool is_blk(const char *spec)
{
	size_t n = strcspn(spec, ",");

	return (n == strlen("virtio-blk-pci") && !strncmp(spec, "virtio-blk-pci", n)) ||
	       (n == strlen("virtio-blk") && !strncmp(spec, "virtio-blk", n));
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* num-queues=N, default one per vCPU (as QEMU); 0 when the value is bad. */
static unsigned blk_num_queues(const struct virtio_spec *spec)
{
	char value[16], *end;
	unsigned long n;

	if (!virtio_spec_prop(spec, "num-queues", value, sizeof(value)))
		return spec->cfg->cpus < BLK_MAX_QUEUES ? (spec->cfg->cpus ? spec->cfg->cpus : 1) : BLK_MAX_QUEUES;
	n = strtoul(value, &end, 10);
	return *value && !*end && n >= 1 && n <= BLK_MAX_QUEUES ? n : 0;
}

static int blk_check(const struct virtio_spec *spec, char *err, size_t errlen)
{
	char id[64], serial[64], why[300];
	const struct vm_drive *drive;
	struct block_image *img;

	if (!virtio_spec_prop(spec, "drive", id, sizeof(id)) || !*id) {
		snprintf(err, errlen, "%s needs drive=ID, the id of a -drive", spec->driver);
		return -EINVAL;
	}
	if (!(drive = blk_find_drive(spec->cfg, id)) || !drive->file) {
		snprintf(err, errlen, "%s: drive '%s' not found (no -drive with id=%s)", spec->driver, id, id);
		return -EINVAL;
	}
	for (unsigned i = 0; i < spec->index; i++) {
		struct virtio_spec earlier = {.props = strchrnul(spec->cfg->devices[i], ',')};
		const struct vm_drive *other;
		char other_id[64];

		if (*earlier.props)
			earlier.props++;
		if (!is_blk(spec->cfg->devices[i]) ||
		    !virtio_spec_prop(&earlier, "drive", other_id, sizeof(other_id)) ||
		    !(other = blk_find_drive(spec->cfg, other_id)))
			continue;
		if (other == drive) {
			snprintf(err, errlen, "%s: drive '%s' is already used by another device", spec->driver, id);
			return -EINVAL;
		}
		/* Its lock would refuse the second open, later and less clearly. */
		if ((!drive->read_only || !other->read_only) && same_file(drive->file, other->file)) {
			snprintf(err, errlen, "drive '%s': image %s is also drive '%s', and not both are read-only", id,
				 drive->file, other_id);
			return -EINVAL;
		}
	}
	if (virtio_spec_prop(spec, "serial", serial, sizeof(serial)) && strlen(serial) > BLK_ID_BYTES) {
		snprintf(err, errlen, "%s: serial '%s' is longer than %d characters", spec->driver, serial,
			 BLK_ID_BYTES);
		return -EINVAL;
	}
	if (!blk_num_queues(spec)) {
		virtio_spec_prop(spec, "num-queues", serial, sizeof(serial));
		snprintf(err, errlen, "%s: num-queues='%s' is not a number from 1 to %d", spec->driver, serial,
			 BLK_MAX_QUEUES);
		return -EINVAL;
	}
	/* The image now, so that what is wrong with it is said before the VM is built. */
	if (!(img = block_open(drive->file, drive->format, drive->read_only, why, sizeof(why)))) {
		snprintf(err, errlen, "drive '%s': %s", id, why);
		return -EINVAL;
	}
	block_close(img);
	return 0;
}

static int blk_create(struct vm *vm, const struct virtio_spec *spec)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	unsigned queues = blk_num_queues(spec);
	struct io_uring_params params = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 4 * BLK_RING_ENTRIES};
	const struct vm_drive *drive;
	char id[64] = "", why[300];
	int ret;

	if (!blk)
		return -ENOMEM;
	blk->kick_fd = -1;
	blk->waiting_tail = &blk->waiting;
	virtio_spec_prop(spec, "drive", id, sizeof(id));
	virtio_spec_prop(spec, "serial", blk->serial, sizeof(blk->serial));
	drive = blk_find_drive(spec->cfg, id);
	if (!drive || !queues) {
		ret = -EINVAL;
		goto fail;
	}
	blk->img = block_open(drive->file, drive->format, drive->read_only, why, sizeof(why));
	if (!blk->img) {
		vmm_log("virtio-blk: %s", why);
		ret = -EINVAL;
		goto fail;
	}
	blk->discard = !block_read_only(blk->img) && !strcmp(block_format_name(blk->img), "raw");
	blk->max_requests = queues * BLK_QUEUE_SIZE;
	blk->notify_due = calloc(queues, sizeof(*blk->notify_due));
	blk->kick_fd = eventfd(0, EFD_CLOEXEC);
	if (!blk->notify_due || blk->kick_fd < 0) {
		ret = blk->kick_fd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	ret = io_uring_queue_init_params(BLK_RING_ENTRIES, &blk->ring, &params);
	if (ret < 0) {
		vmm_log("virtio-blk: drive '%s': cannot set up io_uring: %s", id, strerror(-ret));
		goto fail;
	}
	blk->ring_ready = true;
	ret = virtio_device_init(&blk->vdev, vm, &blk_ops, blk, queues, BLK_QUEUE_SIZE);
	if (!ret)
		ret = virtio_device_add(&blk->vdev, spec);
	if (ret < 0)
		goto fail;
	return 0;
fail:
	blk_free(blk);
	return ret;
}

static const char *const blk_drivers[] = {"virtio-blk-pci", "virtio-blk", NULL};
static const char *const blk_props[] = {"drive", "serial", "num-queues", NULL};

static struct virtio_model blk_model = {
    .drivers = blk_drivers,
    .props = blk_props,
    .check = blk_check,
    .create = blk_create,
};

VIRTIO_MODEL(blk_model)
