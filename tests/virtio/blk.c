/*
 * virtio-blk driven as a guest driver would, through configuration space
 * and the BAR, against real raw images in a temporary directory and the
 * real io_uring I/O thread: configuration and features, reads and writes
 * whose buffers and headers are split across descriptors, many requests in
 * flight on two queues, flush, get-id, discard and write-zeroes, reads past
 * the end of a file that shrank, every refusal a hostile driver can earn
 * (out of range, partial sectors, wrong directions, a missing status byte,
 * unknown types, writes to a read-only disk), a malformed chain
 * (NEEDS_RESET), and a reset with requests in flight after which nothing
 * is written. The VM's end writes everything back (block_close).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/vmm/harness.h"
#include "vmm/virtio/virtio.h"

#define RING_BASE 0x100000ull
#define BUF_BASE  0x400000ull /* request i's buffers at BUF_BASE + REQ_AREA * i */
#define REQ_AREA  0x10000ull
#define DISK_SIZE (4ull << 20)
#define SECTOR	  512
#define TIMEOUT	  (5 * 1000000000ull)

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2 };
enum { F_SEG_MAX = 2, F_RO = 5, F_BLK_SIZE = 6, F_FLUSH = 9, F_MQ = 12, F_DISCARD = 13, F_WRITE_ZEROES = 14 };
enum {
	CC_DFSELECT = 0x00,
	CC_DF = 0x04,
	CC_GFSELECT = 0x08,
	CC_GF = 0x0c,
	CC_NUMQ = 0x12,
	CC_STATUS = 0x14,
	CC_Q_SELECT = 0x16,
	CC_Q_SIZE = 0x18,
	CC_Q_MSIX = 0x1a,
	CC_Q_ENABLE = 0x1c,
	CC_Q_NOFF = 0x1e,
	CC_Q_DESC = 0x20,
	CC_Q_AVAIL = 0x28,
	CC_Q_USED = 0x30
};

static struct vm *vm;
static char dir[] = "/tmp/vireo-blk-XXXXXX";
static char rw_path[64], ro_path[64];
static int rw_fd;

/* ---- a driver ------------------------------------------------------------------- */

static void *hva(uint64_t gpa)
{
	return gpa_to_hva(vm, gpa, 1);
}

static uint32_t cfg_read(unsigned slot, unsigned reg, unsigned size)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	return test_pio_read(vm, 0xcfc + (reg & 3), size);
}

static void cfg_write(unsigned slot, unsigned reg, unsigned size, uint32_t v)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	test_pio_write(vm, 0xcfc + (reg & 3), size, v);
}

struct vdev {
	unsigned slot;
	uint64_t common, notify, device;
	uint32_t notify_mult;
};

struct ring {
	struct vdev *d;
	unsigned index;
	uint16_t size, avail_idx, next_desc;
	uint64_t desc, avail, used, doorbell;
};

static bool find_blk(unsigned nth, struct vdev *d)
{
	memset(d, 0, sizeof(*d));
	for (unsigned slot = 0; slot < 32; slot++) {
		uint64_t bar;

		if (cfg_read(slot, 0, 4) != (0x1042u << 16 | 0x1af4) || nth--)
			continue;
		d->slot = slot;
		cfg_write(slot, 0x04, 2, 0x0006);
		bar = cfg_read(slot, 0x10, 4) & ~0xfu;
		for (unsigned at = cfg_read(slot, 0x34, 1); at; at = cfg_read(slot, at + 1, 1)) {
			if (cfg_read(slot, at, 1) != 0x09)
				continue;
			switch (cfg_read(slot, at + 3, 1)) {
			case 1: d->common = bar + cfg_read(slot, at + 8, 4); break;
			case 2:
				d->notify = bar + cfg_read(slot, at + 8, 4);
				d->notify_mult = cfg_read(slot, at + 16, 4);
				break;
			case 4: d->device = bar + cfg_read(slot, at + 8, 4); break;
			}
		}
		return true;
	}
	return false;
}

static uint64_t cc_read(struct vdev *d, unsigned reg, unsigned size)
{
	return bus_read(&vm->mmio, vm->cpus[0], d->common + reg, size);
}

static void cc_write(struct vdev *d, unsigned reg, unsigned size, uint64_t v)
{
	bus_write(&vm->mmio, vm->cpus[0], d->common + reg, size, v);
}

static uint64_t dev_cfg(struct vdev *d, unsigned off, unsigned size)
{
	return bus_read(&vm->mmio, vm->cpus[0], d->device + off, size);
}

static uint64_t offered(struct vdev *d)
{
	cc_write(d, CC_DFSELECT, 4, 0);
	uint64_t f = cc_read(d, CC_DF, 4);
	cc_write(d, CC_DFSELECT, 4, 1);
	return f | (uint64_t)cc_read(d, CC_DF, 4) << 32;
}

static uint8_t status(struct vdev *d)
{
	return cc_read(d, CC_STATUS, 1);
}

static void ring_setup(struct ring *r, struct vdev *d, unsigned index, uint16_t size)
{
	uint64_t base = RING_BASE + 0x10000 * d->slot + 0x4000 * index;

	*r = (struct ring){
	    .d = d, .index = index, .size = size, .desc = base, .avail = base + 0x1000, .used = base + 0x2000};
	memset(hva(base), 0, 0x3000);
	cc_write(d, CC_Q_SELECT, 2, index);
	cc_write(d, CC_Q_SIZE, 2, size);
	cc_write(d, CC_Q_DESC, 8, r->desc);
	cc_write(d, CC_Q_AVAIL, 8, r->avail);
	cc_write(d, CC_Q_USED, 8, r->used);
	cc_write(d, CC_Q_MSIX, 2, 0xffff);
	cc_write(d, CC_Q_ENABLE, 2, 1);
	r->doorbell = d->notify + (uint64_t)d->notify_mult * cc_read(d, CC_Q_NOFF, 2);
}

/* Negotiates features (VERSION_1 added), sets up nq queues, DRIVER_OK. */
static void start(struct vdev *d, uint64_t features, struct ring *rings, unsigned nq, uint16_t size)
{
	features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	cc_write(d, CC_STATUS, 1, 0);
	cc_write(d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_write(d, CC_GFSELECT, 4, 0);
	cc_write(d, CC_GF, 4, (uint32_t)features);
	cc_write(d, CC_GFSELECT, 4, 1);
	cc_write(d, CC_GF, 4, features >> 32);
	cc_write(d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++)
		ring_setup(&rings[q], d, q, size);
	cc_write(d, CC_STATUS, 1, status(d) | VIRTIO_STATUS_DRIVER_OK);
}

static void ring_desc(struct ring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc desc = {addr, len, flags, next};
	memcpy(hva(r->desc + 16 * (i % r->size)), &desc, 16);
}

static uint16_t used_idx(struct ring *r)
{
	return __atomic_load_n((uint16_t *)hva(r->used + 2), __ATOMIC_ACQUIRE);
}

static uint32_t used_len(struct ring *r, uint16_t n)
{
	uint32_t v;
	memcpy(&v, hva(r->used + 4 + 8 * (n % r->size) + 4), 4);
	return v;
}

static void post(struct ring *r, uint16_t head)
{
	uint16_t idx;

	memcpy(hva(r->avail + 4 + 2 * (r->avail_idx % r->size)), &head, 2);
	idx = ++r->avail_idx;
	__atomic_store_n((uint16_t *)hva(r->avail + 2), idx, __ATOMIC_RELEASE);
}

static void kick(struct ring *r)
{
	bus_write(&vm->mmio, vm->cpus[0], r->doorbell, 2, r->index);
}

static bool all_used(void *arg)
{
	struct ring *r = arg;
	return used_idx(r) == r->avail_idx;
}

static bool wait_used(struct ring *r)
{
	return test_wait(all_used, r, TIMEOUT);
}

/* ---- requests ---------------------------------------------------------------------- */

/*
 * One request in area n: the header in two descriptors (8 + 8 bytes), the
 * data in nseg descriptors of equal size (device-writable when writable),
 * the status byte in its own. Returns the head; the data is at req_data(n).
 */
static uint64_t req_base(unsigned n)
{
	return BUF_BASE + REQ_AREA * n;
}

static uint8_t *req_data(unsigned n)
{
	return gpa_to_hva(vm, req_base(n) + 0x100, REQ_AREA - 0x100);
}

static uint8_t req_status(unsigned n)
{
	return *(uint8_t *)hva(req_base(n) + 0x80);
}

static uint16_t request(struct ring *r, unsigned n, uint32_t type, uint64_t sector, uint32_t len, unsigned nseg,
			bool writable)
{
	uint64_t base = req_base(n);
	uint32_t hdr[4] = {type, 0, (uint32_t)sector, (uint32_t)(sector >> 32)};
	uint16_t head = r->next_desc, i = head;

	memcpy(hva(base), hdr, 16);
	*(uint8_t *)hva(base + 0x80) = 0xee;
	ring_desc(r, i, base, 8, VIRTQ_DESC_F_NEXT, (i + 1) % r->size);
	i = (i + 1) % r->size;
	ring_desc(r, i, base + 8, 8, VIRTQ_DESC_F_NEXT, (i + 1) % r->size);
	for (unsigned s = 0; s < nseg && len; s++) {
		i = (i + 1) % r->size;
		ring_desc(r, i, base + 0x100 + s * (len / nseg), len / nseg,
			  VIRTQ_DESC_F_NEXT | (writable ? VIRTQ_DESC_F_WRITE : 0), (i + 1) % r->size);
	}
	i = (i + 1) % r->size;
	ring_desc(r, i, base + 0x80, 1, VIRTQ_DESC_F_WRITE, 0);
	r->next_desc = (i + 1) % r->size;
	post(r, head);
	return head;
}

/* Sends one request and waits for it; returns its status byte. */
static uint8_t one(struct ring *r, uint32_t type, uint64_t sector, uint32_t len, unsigned nseg, bool writable)
{
	request(r, 0, type, sector, len, nseg, writable);
	kick(r);
	if (!wait_used(r))
		return 0xff;
	return req_status(0);
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static bool file_is(int fd, uint64_t offset, const uint8_t *want, size_t len)
{
	uint8_t *buf = malloc(len);
	bool same = pread(fd, buf, len, offset) == (ssize_t)len && !memcmp(buf, want, len);

	free(buf);
	return same;
}

/* ---- the tests ------------------------------------------------------------------------ */

static void test_config(struct vdev *d, struct vdev *ro)
{
	uint64_t f = offered(d);

	test_check_eq("capacity in sectors", DISK_SIZE / SECTOR, dev_cfg(d, 0, 4) | dev_cfg(d, 4, 4) << 32);
	test_check_eq("seg_max = queue size - 2", 254, dev_cfg(d, 12, 4));
	test_check_eq("blk_size 512", 512, dev_cfg(d, 20, 4));
	test_check_eq("num_queues from num-queues=2", 2, dev_cfg(d, 34, 2));
	test_check_eq("two queues in the common configuration", 2, cc_read(d, CC_NUMQ, 2));
	test_check(f & VIRTIO_BIT(F_SEG_MAX) && f & VIRTIO_BIT(F_BLK_SIZE) && f & VIRTIO_BIT(F_FLUSH) &&
		       f & VIRTIO_BIT(F_MQ) && !(f & VIRTIO_BIT(F_RO)),
		   "offers SEG_MAX, BLK_SIZE, FLUSH, MQ, not RO", "features 0x%llx", (unsigned long long)f);
	test_check(f & VIRTIO_BIT(F_DISCARD) && f & VIRTIO_BIT(F_WRITE_ZEROES),
		   "a raw image offers DISCARD and WRITE_ZEROES", "features 0x%llx", (unsigned long long)f);
	test_check_eq("max_discard_seg", 16, dev_cfg(d, 40, 4));
	test_check_eq("write_zeroes_may_unmap", 1, dev_cfg(d, 56, 1));
	f = offered(ro);
	test_check(f & VIRTIO_BIT(F_RO) && !(f & VIRTIO_BIT(F_DISCARD)), "read-only: RO, no DISCARD", "features 0x%llx",
		   (unsigned long long)f);
	test_check_eq("read-only: one queue by default (one vCPU)", 1, dev_cfg(ro, 34, 2));
}

static void test_read_write(struct ring *q0, struct ring *q1)
{
	uint8_t want[16384];

	/* What the image holds, through three descriptors of data. */
	pread(rw_fd, want, 12288, 8 * SECTOR);
	memset(req_data(0), 0, 12288);
	test_check_eq("read 12 KiB at sector 8: OK", S_OK, one(q0, T_IN, 8, 12288, 3, true));
	test_check(!memcmp(req_data(0), want, 12288), "read: the image's bytes", "differ");
	test_check_eq("read: used length = data + status", 12288 + 1, used_len(q0, q0->avail_idx - 1));

	/* Written through the second queue, in one descriptor and in four. */
	fill(req_data(0), 8192, 1);
	test_check_eq("write 8 KiB at sector 100: OK", S_OK, one(q1, T_OUT, 100, 8192, 1, false));
	test_check(file_is(rw_fd, 100 * SECTOR, req_data(0), 8192), "write: in the image", "differs");
	fill(req_data(0), 16384, 2);
	test_check_eq("write 16 KiB in four descriptors: OK", S_OK, one(q1, T_OUT, 1000, 16384, 4, false));
	test_check(file_is(rw_fd, 1000 * SECTOR, req_data(0), 16384), "write in four: in the image", "differs");
	memcpy(want, req_data(0), 16384);
	memset(req_data(0), 0, 16384);
	test_check_eq("read it back in eight: OK", S_OK, one(q0, T_IN, 1000, 16384, 8, true));
	test_check(!memcmp(req_data(0), want, 16384), "read back: what was written", "differs");

	/* The last sector is in; one more is not. */
	test_check_eq("read of the last sector: OK", S_OK, one(q0, T_IN, DISK_SIZE / SECTOR - 1, 512, 1, true));
	test_check_eq("read past the end: IOERR", S_IOERR, one(q0, T_IN, DISK_SIZE / SECTOR - 1, 1024, 1, true));
	test_check_eq("write past the end: IOERR", S_IOERR, one(q0, T_OUT, DISK_SIZE / SECTOR, 512, 1, false));
	test_check_eq("sector 2^63: IOERR", S_IOERR, one(q0, T_IN, 1ull << 63, 512, 1, true));
	test_check_eq("sector that wraps: IOERR", S_IOERR, one(q0, T_IN, ~0ull / 512 + 1, 512, 1, true));
	test_check_eq("read of 100 bytes: IOERR", S_IOERR, one(q0, T_IN, 0, 100, 1, true));
	test_check_eq("zero-length read: OK", S_OK, one(q0, T_IN, 0, 0, 0, true));
}

static void test_many(struct ring *q0, struct ring *q1)
{
	enum { N = 48 };
	bool ok = true;

	/* Many writes in flight on both queues, then as many reads. */
	for (unsigned n = 0; n < N; n++) {
		fill(req_data(n), 4096, 100 + n);
		request(n % 2 ? q1 : q0, n, T_OUT, 2048 + 8 * n, 4096, 2, false);
	}
	kick(q0);
	kick(q1);
	test_check(wait_used(q0) && wait_used(q1), "48 writes in flight: all used", "used %u/%u", used_idx(q0),
		   used_idx(q1));
	for (unsigned n = 0; n < N; n++)
		ok &= req_status(n) == S_OK && file_is(rw_fd, (2048 + 8 * n) * SECTOR, req_data(n), 4096);
	test_check(ok, "48 writes: OK and in the image", "a write is missing");
	for (unsigned n = 0; n < N; n++) {
		memset(req_data(n), 0, 4096);
		request(n % 2 ? q0 : q1, n, T_IN, 2048 + 8 * n, 4096, 1, true);
	}
	kick(q0);
	kick(q1);
	test_check(wait_used(q0) && wait_used(q1), "48 reads in flight: all used", "used %u/%u", used_idx(q0),
		   used_idx(q1));
	ok = true;
	for (unsigned n = 0; n < N; n++) {
		uint8_t want[4096];
		fill(want, 4096, 100 + n);
		ok &= req_status(n) == S_OK && !memcmp(req_data(n), want, 4096);
	}
	test_check(ok, "48 reads: OK, the data written", "a read differs");
}

static void test_flush_id_discard(struct ring *q0)
{
	char id[32];
	struct {
		uint64_t sector;
		uint32_t sectors, flags;
	} range[2];
	uint8_t zero[4096] = {0};

	fill(req_data(1), 4096, 9);
	request(q0, 1, T_OUT, 300, 4096, 1, false);
	request(q0, 2, T_FLUSH, 0, 0, 0, false);
	kick(q0);
	test_check(wait_used(q0), "write then flush: both used", "used %u", used_idx(q0));
	test_check(req_status(1) == S_OK && req_status(2) == S_OK, "write then flush: OK", "%u %u", req_status(1),
		   req_status(2));
	test_check(file_is(rw_fd, 300 * SECTOR, req_data(1), 4096), "flushed write: in the image", "differs");
	test_check_eq("flush with data: IOERR", S_IOERR, one(q0, T_FLUSH, 0, 512, 1, false));

	memset(req_data(0), 0xaa, 32);
	test_check_eq("get-id: OK", S_OK, one(q0, T_GET_ID, 0, 20, 1, true));
	memcpy(id, req_data(0), 20);
	id[20] = 0;
	test_check(!strcmp(id, "vireo-test-disk") && !req_data(0)[19], "get-id: the serial, NUL-padded", "'%s'", id);
	test_check_eq("get-id: used length", 21, used_len(q0, q0->avail_idx - 1));

	/* Discard and write-zeroes: fallocate; the ranges read as zeros. */
	fill(req_data(0), 8192, 5);
	one(q0, T_OUT, 4000, 8192, 1, false);
	range[0] = (typeof(range[0])){4000, 8, 0};
	range[1] = (typeof(range[1])){4008, 8, 1};
	memcpy(req_data(0), range, sizeof(range));
	test_check_eq("write-zeroes of two ranges: OK", S_OK, one(q0, T_WRITE_ZEROES, 0, 32, 1, false));
	test_check(file_is(rw_fd, 4000 * SECTOR, zero, 4096) && file_is(rw_fd, 4008 * SECTOR, zero, 4096),
		   "write-zeroes: zeros in the image", "not zero");
	fill(req_data(0), 4096, 6);
	one(q0, T_OUT, 4100, 4096, 1, false);
	range[0] = (typeof(range[0])){4100, 8, 0};
	memcpy(req_data(0), range, 16);
	test_check_eq("discard: OK", S_OK, one(q0, T_DISCARD, 0, 16, 1, false));
	range[0].flags = 1;
	memcpy(req_data(0), range, 16);
	test_check_eq("discard with the unmap flag: UNSUPP", S_UNSUPP, one(q0, T_DISCARD, 0, 16, 1, false));
	range[0] = (typeof(range[0])){DISK_SIZE / SECTOR - 4, 8, 0};
	memcpy(req_data(0), range, 16);
	test_check_eq("discard past the end: IOERR", S_IOERR, one(q0, T_DISCARD, 0, 16, 1, false));
	test_check_eq("discard of 10 bytes of ranges: IOERR", S_IOERR, one(q0, T_DISCARD, 0, 10, 1, false));
}

static void test_hostile(struct vdev *d, struct ring *q0)
{
	uint16_t head;

	test_check_eq("read with device-readable data: IOERR", S_IOERR, one(q0, T_IN, 0, 512, 1, false));
	/* A write whose data is device-writable. */
	test_check_eq("write with device-writable data: IOERR", S_IOERR, one(q0, T_OUT, 0, 512, 1, true));
	test_check_eq("get-id with device-readable data: IOERR", S_IOERR, one(q0, T_GET_ID, 0, 20, 1, false));
	test_check_eq("unknown type 77: UNSUPP", S_UNSUPP, one(q0, 77, 0, 0, 0, false));

	/* A 12-byte header. */
	head = q0->next_desc;
	ring_desc(q0, head, req_base(0), 12, VIRTQ_DESC_F_NEXT, (head + 1) % q0->size);
	ring_desc(q0, head + 1, req_base(0) + 0x80, 1, VIRTQ_DESC_F_WRITE, 0);
	q0->next_desc = (head + 2) % q0->size;
	*(uint8_t *)hva(req_base(0) + 0x80) = 0xee;
	post(q0, head);
	kick(q0);
	test_check(wait_used(q0) && req_status(0) == S_IOERR, "short header: IOERR", "status %u", req_status(0));

	/* No status byte at all: used with nothing written. */
	head = q0->next_desc;
	ring_desc(q0, head, req_base(0), 16, 0, 0);
	q0->next_desc = (head + 1) % q0->size;
	post(q0, head);
	kick(q0);
	test_check(wait_used(q0), "no status byte: used", "not used");
	test_check_eq("no status byte: length 0", 0, used_len(q0, q0->avail_idx - 1));
	test_check_eq("refusals: no NEEDS_RESET", 0, status(d) & VIRTIO_STATUS_NEEDS_RESET);

	/* A descriptor loop: the framework puts the device in NEEDS_RESET. */
	head = q0->next_desc;
	ring_desc(q0, head, req_base(0), 16, VIRTQ_DESC_F_NEXT, head);
	post(q0, head);
	kick(q0);
	for (int i = 0; i < 500 && !(status(d) & VIRTIO_STATUS_NEEDS_RESET); i++)
		test_sleep_us(1000);
	test_check_eq("a loop: NEEDS_RESET", VIRTIO_STATUS_NEEDS_RESET, status(d) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_read_only(struct vdev *ro)
{
	struct ring q;
	struct stat before, after;
	uint8_t want[4096];
	int fd = open(ro_path, O_RDONLY);

	fstat(fd, &before);
	start(ro, VIRTIO_BIT(F_FLUSH), &q, 1, 64);
	pread(fd, want, 4096, 0);
	test_check_eq("read-only disk: read OK", S_OK, one(&q, T_IN, 0, 4096, 1, true));
	test_check(!memcmp(req_data(0), want, 4096), "read-only disk: the image's bytes", "differ");
	fill(req_data(0), 4096, 42);
	test_check_eq("read-only disk: write IOERR", S_IOERR, one(&q, T_OUT, 0, 4096, 1, false));
	test_check_eq("read-only disk: discard IOERR", S_IOERR, one(&q, T_DISCARD, 0, 16, 1, false));
	test_check_eq("read-only disk: flush OK", S_OK, one(&q, T_FLUSH, 0, 0, 0, false));
	fstat(fd, &after);
	test_check(file_is(fd, 0, want, 4096) && before.st_mtime == after.st_mtime, "read-only disk: image unchanged",
		   "changed");
	cc_write(ro, CC_STATUS, 1, 0);
	close(fd);
}

static void test_shrunk(struct ring *q0)
{
	uint8_t zero[4096] = {0};

	/* Another process cut the file short: reads past its end are zeros. */
	test_check(ftruncate(rw_fd, DISK_SIZE - 2048) == 0, "image truncated under the device", "ftruncate");
	memset(req_data(0), 0xaa, 4096);
	test_check_eq("read across the new end: OK", S_OK, one(q0, T_IN, DISK_SIZE / SECTOR - 8, 4096, 1, true));
	test_check(!memcmp(req_data(0) + 2048, zero, 2048), "past the end: zeros", "not zero");
	test_check(ftruncate(rw_fd, DISK_SIZE) == 0, "image grown back", "ftruncate");
}

/* A reset while requests are in flight: once it returns, neither the
 * buffers nor the used ring change. */
static void test_reset_in_flight(struct vdev *d, struct ring *rings)
{
	enum { N = 32, LEN = 32768 }; /* 7 descriptors each: 112 of each queue's 128 */
	uint8_t *snap = malloc(N * LEN);
	uint8_t used[0x1000];

	start(d, VIRTIO_BIT(F_FLUSH) | VIRTIO_BIT(F_MQ), rings, 2, 128);
	for (unsigned n = 0; n < N; n++) {
		memset(req_data(n), 0x55, LEN);
		request(&rings[n % 2], n, n % 3 ? T_IN : T_OUT, 64 * n, LEN, 4, n % 3);
	}
	kick(&rings[0]);
	kick(&rings[1]);
	cc_write(d, CC_STATUS, 1, 0);
	test_check_eq("reset with requests in flight: status 0", 0, status(d));
	for (unsigned n = 0; n < N; n++)
		memcpy(snap + n * LEN, req_data(n), LEN);
	memcpy(used, hva(rings[0].used), sizeof(used));
	test_sleep_us(100000);
	bool same = !memcmp(used, hva(rings[0].used), sizeof(used));
	for (unsigned n = 0; n < N; n++)
		same &= !memcmp(snap + n * LEN, req_data(n), LEN);
	test_check(same, "after reset: nothing written to guest memory", "a buffer or the used ring changed");
	free(snap);

	/* And the device works again. */
	start(d, VIRTIO_BIT(F_FLUSH) | VIRTIO_BIT(F_MQ), rings, 2, 128);
	test_check_eq("after reset: read OK", S_OK, one(&rings[1], T_IN, 0, 512, 1, true));
	cc_write(d, CC_STATUS, 1, 0);
}

static int make_image(const char *path, unsigned seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint8_t *buf = malloc(DISK_SIZE);

	fill(buf, DISK_SIZE, seed);
	if (fd < 0 || pwrite(fd, buf, DISK_SIZE, 0) != (ssize_t)DISK_SIZE)
		abort();
	free(buf);
	return fd;
}

int main(void)
{
	struct vm_config cfg = {.cpus = 1, .memory = 64ull << 20, .serial = "none"};
	struct vdev d, ro;
	struct ring rings[2];
	uint8_t last[4096];
	int ret;

	if (!mkdtemp(dir))
		abort();
	snprintf(rw_path, sizeof(rw_path), "%s/rw.img", dir);
	snprintf(ro_path, sizeof(ro_path), "%s/ro.img", dir);
	rw_fd = make_image(rw_path, 1);
	close(make_image(ro_path, 2));
	cfg.drives[0] = (struct vm_drive){.id = "d0", .file = rw_path, .format = "raw"};
	cfg.drives[1] = (struct vm_drive){.id = "d1", .file = ro_path, .read_only = true};
	cfg.ndrives = 2;
	cfg.devices[0] = "virtio-blk-pci,drive=d0,serial=vireo-test-disk,num-queues=2";
	cfg.devices[1] = "virtio-blk,drive=d1";
	cfg.ndevices = 2;
	vm = test_vm_create_config(&cfg);

	test_check(find_blk(0, &d) && find_blk(1, &ro), "two virtio-blk functions (1af4:1042)", "not on bus 0");
	test_check_eq("PCI class: mass storage", 0x01, cfg_read(d.slot, 0x0b, 1));
	test_config(&d, &ro);

	start(&d,
	      VIRTIO_BIT(F_SEG_MAX) | VIRTIO_BIT(F_FLUSH) | VIRTIO_BIT(F_MQ) | VIRTIO_BIT(F_DISCARD) |
		  VIRTIO_BIT(F_WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX),
	      rings, 2, 256);
	test_read_write(&rings[0], &rings[1]);
	test_many(&rings[0], &rings[1]);
	test_flush_id_discard(&rings[0]);
	test_shrunk(&rings[0]);
	test_hostile(&d, &rings[0]);
	test_read_only(&ro);
	test_reset_in_flight(&d, rings);

	/* Written at the end, without a flush: the VM's end writes it back. */
	start(&d, 0, rings, 1, 64);
	fill(req_data(0), 4096, 77);
	memcpy(last, req_data(0), 4096);
	test_check_eq("last write: OK", S_OK, one(&rings[0], T_OUT, 5000, 4096, 1, false));
	test_vm_destroy(vm);
	test_check(file_is(rw_fd, 5000 * SECTOR, last, 4096), "after the VM: the last write is in the image",
		   "differs");

	ret = test_finish();
	close(rw_fd);
	unlink(rw_path);
	unlink(ro_path);
	rmdir(dir);
	return ret;
}
