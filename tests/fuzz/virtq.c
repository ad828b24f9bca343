/*
 * libFuzzer target: the split virtqueue parser (vmm/virtio/queue.c). The
 * input is a queue's guest-side state, laid out in a small guest's RAM:
 *
 *   byte 0      log2 of the queue size (mod 9: 1 to 256 entries)
 *   byte 1      bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 exercise
 *               notification suppression, bit 3 reset half-way
 *   bytes 2-3   the available ring's idx
 *   the rest    guest RAM from 0x1000: the descriptor table, then the
 *               available ring, then whatever the descriptors point at
 *               (indirect tables, buffers); addresses are guest-physical
 *
 * Every chain popped must map only guest RAM; the device writes all of
 * each writable part and pushes it back. Crashes, sanitizer reports and
 * the abort() below are findings.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/vmm/harness.h"
#include "vmm/virtio/virtio.h"

#define RAM	  (4ull << 20)
#define IMAGE	  0x1000ull
#define IMAGE_MAX 0x20000ull
#define USED	  0x40000ull

static struct vm *vm;
static struct virtio_device dev;
static struct virtq_req req;

static uint64_t fuzz_features(struct virtio_device *d)
{
	(void)d;
	return 0;
}

static void fuzz_queue_notify(struct virtio_device *d, struct virtq *vq)
{
	(void)d;
	(void)vq;
}

static void fuzz_nothing(struct virtio_device *d)
{
	(void)d;
}

static void fuzz_notify_queue(struct virtio_device *d, unsigned queue)
{
	(void)d;
	(void)queue;
}

static const struct virtio_device_ops fuzz_ops = {
    .name = "virtio-fuzz",
    .features = fuzz_features,
    .queue_notify = fuzz_queue_notify,
    .reset = fuzz_nothing,
};

static const struct virtio_transport_ops fuzz_transport = {
    .notify_queue = fuzz_notify_queue,
    .notify_config = fuzz_nothing,
    .reset = fuzz_nothing,
    .destroy = fuzz_nothing,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct vm_config cfg = {.cpus = 1, .memory = RAM, .serial = "none"};

	(void)argc;
	(void)argv;
	vm = test_vm_create_config(&cfg);
	if (virtio_device_init(&dev, vm, &fuzz_ops, NULL, 1, VIRTQ_MAX_SIZE) < 0)
		abort();
	dev.transport = &fuzz_transport;
	dev.offered = VIRTIO_FRAMEWORK_FEATURES;
	snprintf(dev.location, sizeof(dev.location), "fuzz");
	/* One message per device: say it once, not once per input. */
	atomic_store(&dev.warned, true);
	return 0;
}

static void check_segments(const struct virtq_req *r)
{
	uint8_t *lo = vm_memory(vm)->host, *hi = lo + RAM;

	if (r->out_num + r->in_num > VIRTQ_MAX_SIZE)
		abort();
	for (unsigned i = 0; i < r->out_num + r->in_num; i++) {
		uint8_t *p = r->iov[i].iov_base;
		if (p < lo || p > hi || r->iov[i].iov_len > (size_t)(hi - p))
			abort();
	}
}

/* Pops everything, touches both ends of each part (the bounds are what
 * check_segments vouches for; copying gigabytes would only slow the
 * fuzzer) and pushes it back. */
static void drain(struct virtq *vq)
{
	uint8_t scratch[256] = {0};

	for (unsigned n = 0; n < 2 * VIRTQ_MAX_SIZE && virtq_pop(vq, &req) > 0; n++) {
		check_segments(&req);
		virtq_req_read(&req, 0, scratch, sizeof(scratch));
		virtq_req_read(&req, req.out_len - (req.out_len > 1), scratch, 1);
		virtq_req_write(&req, 0, scratch, sizeof(scratch));
		virtq_req_write(&req, req.in_len - (req.in_len > 1), scratch, 1);
		virtq_push(vq, &req, req.in_len);
	}
	virtq_notify(vq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtq *vq = &dev.vqs[0];
	uint16_t qsize, avail_idx;
	uint8_t flags;
	size_t image;

	if (size < 4)
		return 0;
	qsize = 1u << (data[0] % 9);
	flags = data[1];
	memcpy(&avail_idx, data + 2, 2);
	image = size - 4 < IMAGE_MAX ? size - 4 : IMAGE_MAX;

	virtio_reset(&dev);
	memset(gpa_to_hva(vm, IMAGE, IMAGE_MAX), 0, IMAGE_MAX);
	memset(gpa_to_hva(vm, USED, 0x1000 + 8 * VIRTQ_MAX_SIZE), 0, 0x1000 + 8 * VIRTQ_MAX_SIZE);
	memcpy(gpa_to_hva(vm, IMAGE, image), data + 4, image);

	dev.driver_features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | (flags & 1 ? VIRTIO_BIT(VIRTIO_F_EVENT_IDX) : 0) |
			      (flags & 2 ? VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) : 0);
	virtio_set_status(&dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	vq->size = qsize;
	vq->desc_gpa = IMAGE;
	vq->avail_gpa = IMAGE + 16ull * qsize;
	vq->used_gpa = USED;
	if (virtio_queue_enable(&dev, 0) < 0)
		abort(); /* the layout above is always valid */
	/* The driver's idx, over the image's. */
	memcpy(gpa_to_hva(vm, vq->avail_gpa + 2, 2), &avail_idx, 2);
	virtio_set_status(&dev, virtio_get_status(&dev) | VIRTIO_STATUS_DRIVER_OK);

	if (flags & 4)
		virtq_disable_notify(vq);
	drain(vq);
	if (flags & 4 && virtq_enable_notify(vq))
		drain(vq);
	if (flags & 8) {
		virtio_reset(&dev);
		drain(vq); /* nothing: the queue is gone */
	}
	return 0;
}
