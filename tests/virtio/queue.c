/*
 * Split virtqueues (vmm/virtio/queue.c) on a test VM's RAM, with a device
 * and a transport that only count what reaches them: well-formed rings
 * (direct, indirect, mixed, wrapping indexes, notification suppression with
 * and without EVENT_IDX) and hostile ones, each of which must be refused
 * with NEEDS_RESET and a configuration-change notification, without a
 * pointer outside guest RAM ever being handed out.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/vmm/harness.h"
#include "vmm/virtio/virtio.h"

#define QSIZE 16
#define DESC  0x10000ull
#define AVAIL 0x11000ull
#define USED  0x12000ull
#define DATA  0x100000ull   /* buffers and indirect tables */
#define RAM   (64ull << 20) /* the harness's */

static struct vm *vm;
static struct virtio_device dev;
static unsigned queue_notifications, config_notifications, resets;

static uint64_t test_features(struct virtio_device *d)
{
	(void)d;
	return 0;
}

static void test_queue_notify(struct virtio_device *d, struct virtq *vq)
{
	(void)d;
	(void)vq;
}

static void test_reset(struct virtio_device *d)
{
	(void)d;
	resets++;
}

static const struct virtio_device_ops test_ops = {
    .name = "virtio-test",
    .features = test_features,
    .queue_notify = test_queue_notify,
    .reset = test_reset,
};

static void transport_notify_queue(struct virtio_device *d, unsigned queue)
{
	(void)d;
	(void)queue;
	queue_notifications++;
}

static void transport_notify_config(struct virtio_device *d)
{
	(void)d;
	config_notifications++;
}

static void transport_nothing(struct virtio_device *d)
{
	(void)d;
}

static const struct virtio_transport_ops test_transport = {
    .notify_queue = transport_notify_queue,
    .notify_config = transport_notify_config,
    .reset = transport_nothing,
    .destroy = transport_nothing,
};

static void *hva(uint64_t gpa)
{
	return gpa_to_hva(vm, gpa, 1);
}

static void put16(uint64_t gpa, uint16_t v)
{
	memcpy(hva(gpa), &v, 2);
}

static uint16_t get16(uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, hva(gpa), 2);
	return v;
}

static uint32_t get32(uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, hva(gpa), 4);
	return v;
}

static void desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {addr, len, flags, next};
	memcpy(hva(table + 16 * i), &d, 16);
}

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc_at(DESC, i, addr, len, flags, next);
}

static uint16_t avail_idx, qsize = QSIZE;

static void avail_push(uint16_t head)
{
	put16(AVAIL + 4 + 2 * (avail_idx % qsize), head);
	avail_idx++;
	put16(AVAIL + 2, avail_idx);
}

static struct virtq *vq(void)
{
	return &dev.vqs[0];
}

/* A fresh device with the features given, DRIVER_OK, queue 0 of size
 * entries enabled. */
static void setup_size(uint64_t features, uint16_t size)
{
	virtio_reset(&dev);
	memset(hva(DESC), 0, 0x3000);
	avail_idx = 0;
	queue_notifications = config_notifications = 0;
	atomic_store(&dev.warned, false);
	dev.driver_features = features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	qsize = size;
	vq()->size = size;
	vq()->desc_gpa = DESC;
	vq()->avail_gpa = AVAIL;
	vq()->used_gpa = USED;
	if (virtio_queue_enable(&dev, 0) < 0)
		abort();
	virtio_set_status(&dev, virtio_get_status(&dev) | VIRTIO_STATUS_DRIVER_OK);
}

static void setup(uint64_t features)
{
	setup_size(features, QSIZE);
}

static bool in_ram(const struct iovec *iov)
{
	uint8_t *host = vm_memory(vm)->host;
	return (uint8_t *)iov->iov_base >= host && (uint8_t *)iov->iov_base + iov->iov_len <= host + RAM;
}

/* ---- well-formed rings ----------------------------------------------------- */

static void test_simple_chain(void)
{
	struct virtq_req req;

	setup(0);
	test_check_eq("empty ring pops nothing", 0, virtq_pop(vq(), &req));
	memcpy(hva(DATA), "request", 8);
	desc(3, DATA, 8, VIRTQ_DESC_F_NEXT, 7);
	desc(7, DATA + 0x1000, 100, VIRTQ_DESC_F_WRITE, 0);
	avail_push(3);
	test_check_eq("chain pops", 1, virtq_pop(vq(), &req));
	test_check_eq("chain head", 3, req.head);
	test_check_eq("one readable segment", 1, req.out_num);
	test_check_eq("one writable segment", 1, req.in_num);
	test_check_eq("readable bytes", 8, req.out_len);
	test_check_eq("writable bytes", 100, req.in_len);
	test_check(req.iov[0].iov_base == hva(DATA) && req.iov[0].iov_len == 8,
		   "readable segment maps the guest buffer", "iov %p+%zu", req.iov[0].iov_base, req.iov[0].iov_len);
	char buf[8];
	test_check_eq("virtq_req_read", 8, virtq_req_read(&req, 0, buf, sizeof(buf)));
	test_check(!memcmp(buf, "request", 8), "request bytes read", "got %.8s", buf);
	test_check_eq("virtq_req_write", 5, virtq_req_write(&req, 0, "reply", 5));
	test_check(!memcmp(hva(DATA + 0x1000), "reply", 5), "reply in guest memory", "not written");
	virtq_push(vq(), &req, 5);
	test_check_eq("used idx", 1, get16(USED + 2));
	test_check_eq("used id", 3, get32(USED + 4));
	test_check_eq("used len", 5, get32(USED + 8));
	virtq_notify(vq());
	test_check_eq("notification sent", 1, queue_notifications);
	test_check_eq("no more", 0, virtq_pop(vq(), &req));
	test_check(!(virtio_get_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "still healthy", "NEEDS_RESET");
}

static void test_written_clamped(void)
{
	struct virtq_req req;

	setup(0);
	desc(0, DATA, 16, VIRTQ_DESC_F_WRITE, 0);
	avail_push(0);
	virtq_pop(vq(), &req);
	virtq_push(vq(), &req, 1000);
	test_check_eq("used len is at most the writable bytes", 16, get32(USED + 8));
}

static void test_wrapping_indexes(void)
{
	struct virtq_req req;
	unsigned popped = 0;
	bool ok = true;

	setup(0);
	desc(0, DATA, 64, VIRTQ_DESC_F_WRITE, 0);
	/* Three laps of the 16-bit indexes, half a ring at a time. */
	for (unsigned n = 0; n < 3 * 65536 / (QSIZE / 2); n++) {
		for (unsigned k = 0; k < QSIZE / 2; k++)
			avail_push(0);
		while (virtq_pop(vq(), &req) > 0) {
			virtq_push(vq(), &req, 1);
			popped++;
		}
		ok &= get16(USED + 2) == (uint16_t)popped && avail_idx == (uint16_t)popped;
	}
	test_check(ok, "indexes wrap at 65536", "popped %u, used idx %u, avail idx %u", popped, get16(USED + 2),
		   avail_idx);
}

static void test_indirect(void)
{
	struct virtq_req req;
	uint64_t table = DATA + 0x10000;

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc_at(table, 0, DATA, 10, VIRTQ_DESC_F_NEXT, 2);
	desc_at(table, 2, DATA + 0x100, 20, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc_at(table, 1, DATA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	desc(5, table, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE /* ignored */, 0);
	avail_push(5);
	test_check_eq("indirect chain pops", 1, virtq_pop(vq(), &req));
	test_check_eq("indirect: head", 5, req.head);
	test_check_eq("indirect: readable", 1, req.out_num);
	test_check_eq("indirect: writable", 2, req.in_num);
	test_check_eq("indirect: writable bytes", 50, req.in_len);
	test_check(req.iov[1].iov_base == hva(DATA + 0x100) && req.iov[2].iov_base == hva(DATA + 0x200),
		   "indirect: segments in order", "wrong segment addresses");

	/* Direct descriptors followed by one indirect (2.7.5.3.2 says a device
	 * must take it). */
	desc(0, DATA + 0x300, 4, VIRTQ_DESC_F_NEXT, 1);
	desc(1, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc_at(table, 0, DATA, 10, VIRTQ_DESC_F_NEXT, 1);
	desc_at(table, 1, DATA + 0x100, 20, VIRTQ_DESC_F_WRITE, 0);
	avail_push(0);
	test_check_eq("direct then indirect pops", 1, virtq_pop(vq(), &req));
	test_check_eq("direct then indirect: segments", 3, req.out_num + req.in_num);
	test_check(!(virtio_get_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "direct then indirect: healthy",
		   "NEEDS_RESET");
}

static void test_suppression(void)
{
	struct virtq_req req;

	/* Without EVENT_IDX: the driver's NO_INTERRUPT flag, the device's NO_NOTIFY. */
	setup(0);
	desc(0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	put16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT);
	avail_push(0);
	virtq_pop(vq(), &req);
	virtq_push(vq(), &req, 0);
	virtq_notify(vq());
	test_check_eq("NO_INTERRUPT suppresses", 0, queue_notifications);
	put16(AVAIL, 0);
	virtq_notify(vq());
	test_check_eq("flags 0 notifies", 1, queue_notifications);
	virtq_disable_notify(vq());
	test_check_eq("disable sets NO_NOTIFY", VIRTQ_USED_F_NO_NOTIFY, get16(USED));
	test_check_eq("enable with nothing new", false, virtq_enable_notify(vq()));
	test_check_eq("enable clears NO_NOTIFY", 0, get16(USED));
	virtq_disable_notify(vq());
	avail_push(0);
	test_check_eq("enable sees what arrived while disabled", true, virtq_enable_notify(vq()));

	/* With EVENT_IDX: used_event and avail_event. */
	setup(VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
	desc(0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	put16(AVAIL + 4 + 2 * QSIZE, 1); /* used_event: tell me when entry 1 is used */
	for (int i = 0; i < 3; i++)
		avail_push(0);
	virtq_pop(vq(), &req);
	test_check_eq("avail_event follows the device", 1, get16(USED + 4 + 8 * QSIZE));
	virtq_push(vq(), &req, 0);
	virtq_notify(vq());
	test_check_eq("first notification always goes", 1, queue_notifications);
	virtq_pop(vq(), &req);
	virtq_push(vq(), &req, 0);
	virtq_notify(vq());
	test_check_eq("used idx 2 crosses used_event 1", 2, queue_notifications);
	virtq_pop(vq(), &req);
	virtq_push(vq(), &req, 0);
	virtq_notify(vq());
	test_check_eq("used idx 3 does not cross used_event 1", 2, queue_notifications);
	virtq_disable_notify(vq());
	avail_push(0);
	virtq_pop(vq(), &req);
	test_check_eq("avail_event stays while disabled", 3, get16(USED + 4 + 8 * QSIZE));
	test_check_eq("enable: nothing new", false, virtq_enable_notify(vq()));
	test_check_eq("enable moves avail_event", 4, get16(USED + 4 + 8 * QSIZE));
}

static void test_reset_drops_state(void)
{
	struct virtq_req req;

	setup(0);
	desc(0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	avail_push(0);
	virtq_pop(vq(), &req);
	virtio_reset(&dev);
	test_check_eq("reset: status 0", 0, virtio_get_status(&dev));
	test_check_eq("reset: queue disabled", false, atomic_load(&vq()->enabled));
	test_check_eq("reset: size back to the maximum", dev.queue_max, vq()->size);
	test_check_eq("reset: addresses dropped", 0, vq()->desc_gpa | vq()->avail_gpa | vq()->used_gpa);
	put16(USED + 2, 0);
	setup(0);
	virtq_push(vq(), &req, 8); /* from before the reset */
	test_check_eq("a request from before the reset is dropped", 0, get16(USED + 2));
}

/* ---- negotiation ------------------------------------------------------------- */

static void test_negotiation(void)
{
	virtio_reset(&dev);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	dev.driver_features = VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	test_check_eq("no VERSION_1: FEATURES_OK refused", VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
		      virtio_get_status(&dev));
	dev.driver_features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(40);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	test_check_eq("a feature not offered: FEATURES_OK refused", 0,
		      virtio_get_status(&dev) & VIRTIO_STATUS_FEATURES_OK);
	vq()->size = QSIZE;
	vq()->desc_gpa = DESC;
	vq()->avail_gpa = AVAIL;
	vq()->used_gpa = USED;
	test_check(virtio_queue_enable(&dev, 0) < 0, "queue enable before FEATURES_OK refused", "enabled");
	dev.driver_features = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	test_check_eq("DRIVER_OK without FEATURES_OK refused", 0, virtio_get_status(&dev) & VIRTIO_STATUS_DRIVER_OK);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	test_check_eq("VERSION_1 alone: FEATURES_OK", VIRTIO_STATUS_FEATURES_OK,
		      virtio_get_status(&dev) & VIRTIO_STATUS_FEATURES_OK);
	test_check_eq("negotiated features", VIRTIO_BIT(VIRTIO_F_VERSION_1), dev.features);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE);
	test_check_eq("clearing bits without a reset is ignored", VIRTIO_STATUS_FEATURES_OK,
		      virtio_get_status(&dev) & VIRTIO_STATUS_FEATURES_OK);
}

/* ---- hostile rings --------------------------------------------------------- */

/* After the guest's ring was laid out: the pop is refused, the device wants
 * a reset and said so, and the queue gives nothing more. */
static void expect_refused(const char *what)
{
	struct virtq_req req;
	char name[160];
	int ret = virtq_pop(vq(), &req);

	snprintf(name, sizeof(name), "%s: refused", what);
	test_check(ret == -EIO, name, "virtq_pop returned %d", ret);
	if (ret > 0)
		for (unsigned i = 0; i < req.out_num + req.in_num; i++)
			if (!in_ram(&req.iov[i]))
				test_check(false, what, "segment %u outside guest RAM", i);
	snprintf(name, sizeof(name), "%s: NEEDS_RESET", what);
	test_check(virtio_get_status(&dev) & VIRTIO_STATUS_NEEDS_RESET, name, "status 0x%x", virtio_get_status(&dev));
	snprintf(name, sizeof(name), "%s: configuration-change notification", what);
	test_check_eq(name, 1, config_notifications);
	snprintf(name, sizeof(name), "%s: logged", what);
	test_check(atomic_load(&dev.warned), name, "no message");
	snprintf(name, sizeof(name), "%s: queue stays stopped", what);
	test_check_eq(name, (uint64_t)-EIO, (uint64_t)virtq_pop(vq(), &req));
}

static void test_hostile(void)
{
	uint64_t table = DATA + 0x10000;

	setup(0);
	desc(0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	avail_push(0);
	expect_refused("loop of two");

	setup(0);
	desc(4, DATA, 8, VIRTQ_DESC_F_NEXT, 4);
	avail_push(4);
	expect_refused("descriptor pointing at itself");

	setup(0);
	for (unsigned i = 0; i < QSIZE; i++)
		desc(i, DATA, 8, VIRTQ_DESC_F_NEXT, (i + 1) % QSIZE);
	avail_push(0);
	expect_refused("loop through the whole table");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc_at(table, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc_at(table, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	desc(0, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("loop in an indirect table");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	for (unsigned i = 0; i <= QSIZE; i++)
		desc_at(table, i, DATA, 8, i < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	desc(0, table, (QSIZE + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("indirect chain longer than the queue size");

	setup(0);
	for (unsigned i = 0; i < QSIZE; i++)
		desc(i, DATA, 8, VIRTQ_DESC_F_NEXT, i + 1);
	avail_push(0);
	expect_refused("next index beyond the table");

	setup(0);
	avail_push(QSIZE);
	expect_refused("head index beyond the table");

	setup(0);
	desc(0, DATA, 8, 0, 0);
	avail_idx = QSIZE + 1;
	put16(AVAIL + 2, avail_idx);
	expect_refused("available index ahead by more than the queue size");

	setup(0);
	desc(0, RAM, 8, 0, 0);
	avail_push(0);
	expect_refused("buffer just past the end of RAM");

	setup(0);
	desc(0, RAM - 4, 8, 0, 0);
	avail_push(0);
	expect_refused("buffer straddling the end of RAM");

	setup(0);
	desc(0, PCI_MMIO_BASE, 8, 0, 0);
	avail_push(0);
	expect_refused("buffer in the PCI hole");

	setup(0);
	desc(0, 0xfffffffffffff000ull, 0x2000, 0, 0);
	avail_push(0);
	expect_refused("buffer whose end wraps around 2^64");

	setup(0);
	desc(0, DATA, 0, 0, 0);
	avail_push(0);
	expect_refused("zero-length buffer");

	setup(0);
	desc(0, DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA, 8, 0, 0);
	avail_push(0);
	expect_refused("device-readable after device-writable");

	setup(0);
	desc(0, DATA, 0xc0000000u, 0, 0);
	avail_push(0);
	expect_refused("buffer larger than RAM");

	/* 70 buffers of 60 MiB, all the same RAM: over 4 GiB in total. */
	setup_size(0, 128);
	for (unsigned i = 0; i < 70; i++)
		desc(i, DATA, 60u << 20, i < 69 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	avail_push(0);
	expect_refused("chain over 4 GiB");

	setup(0);
	desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("indirect without VIRTIO_F_INDIRECT_DESC");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc_at(table + 0x1000, 0, DATA, 8, 0, 0);
	desc_at(table, 0, table + 0x1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("indirect in indirect");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc_at(table, 0, DATA, 8, 0, 0);
	desc(0, table, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA, 8, 0, 0);
	avail_push(0);
	expect_refused("indirect with NEXT");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc(0, table, 0, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("empty indirect table");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc(0, table, 24, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("indirect table of 1.5 descriptors");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc(0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("indirect table straddling the end of RAM");

	setup(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC));
	desc_at(table, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 2);
	desc(0, table, 2 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	avail_push(0);
	expect_refused("next beyond the indirect table");

	/* The queue is usable again after a reset. */
	struct virtq_req req;
	setup(0);
	desc(0, DATA, 8, VIRTQ_DESC_F_WRITE, 0);
	avail_push(0);
	test_check_eq("after a reset the queue works", 1, virtq_pop(vq(), &req));
	test_check_eq("after a reset no NEEDS_RESET", 0, virtio_get_status(&dev) & VIRTIO_STATUS_NEEDS_RESET);
}

/* The queue's own registers, refused at queue_enable. */
static void expect_enable_refused(const char *what, uint16_t size, uint64_t d, uint64_t a, uint64_t u)
{
	char name[160];

	setup(0);
	virtio_reset(&dev);
	config_notifications = 0;
	atomic_store(&dev.warned, false);
	dev.driver_features = VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	vq()->size = size;
	vq()->desc_gpa = d;
	vq()->avail_gpa = a;
	vq()->used_gpa = u;
	snprintf(name, sizeof(name), "%s: queue_enable refused", what);
	test_check(virtio_queue_enable(&dev, 0) < 0 && !atomic_load(&vq()->enabled), name, "enabled");
	snprintf(name, sizeof(name), "%s: NEEDS_RESET", what);
	test_check(virtio_get_status(&dev) & VIRTIO_STATUS_NEEDS_RESET, name, "status 0x%x", virtio_get_status(&dev));
}

static void test_bad_registers(void)
{
	expect_enable_refused("size 0", 0, DESC, AVAIL, USED);
	expect_enable_refused("size not a power of 2", 12, DESC, AVAIL, USED);
	expect_enable_refused("size above the maximum", 2 * VIRTQ_MAX_SIZE, DESC, AVAIL, USED);
	expect_enable_refused("descriptor table misaligned", QSIZE, DESC + 8, AVAIL, USED);
	expect_enable_refused("available ring misaligned", QSIZE, DESC, AVAIL + 1, USED);
	expect_enable_refused("used ring misaligned", QSIZE, DESC, AVAIL, USED + 2);
	expect_enable_refused("descriptor table outside RAM", QSIZE, RAM - 16, AVAIL, USED);
	expect_enable_refused("used ring in the PCI hole", QSIZE, DESC, AVAIL, PCI_MMIO_BASE);
	expect_enable_refused("available ring wrapping around 2^64", QSIZE, DESC, 0xfffffffffffffffeull, USED);
}

int main(void)
{
	vm = test_vm_create(1);
	if (virtio_device_init(&dev, vm, &test_ops, NULL, 1, VIRTQ_MAX_SIZE) < 0)
		abort();
	dev.transport = &test_transport;
	dev.offered = VIRTIO_FRAMEWORK_FEATURES;
	snprintf(dev.location, sizeof(dev.location), "test");

	test_simple_chain();
	test_written_clamped();
	test_wrapping_indexes();
	test_indirect();
	test_suppression();
	test_reset_drops_state();
	test_negotiation();
	test_hostile();
	test_bad_registers();

	virtio_device_cleanup(&dev);
	test_vm_destroy(vm);
	return test_finish();
}
