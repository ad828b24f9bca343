/*
 * virtio-rng (virtio 1.2, 5.4): one request queue; each buffer the driver
 * posts comes back filled from the host's getrandom(2).
 *   -device virtio-rng-pci      (or virtio-rng)
 */
#include <stdlib.h>
#include <sys/random.h>

#include "vmm/virtio/virtio.h"

#define RNG_QUEUE_SIZE	 64
#define RNG_REQUEST_MAX	 65536 /* bytes filled per request: the device may fill less (5.4.6.2) */
#define PCI_CLASS_OTHERS 0xff0000

struct virtio_rng {
	struct virtio_device vdev;
};

static uint64_t rng_features(struct virtio_device *dev)
{
	(void)dev;
	return 0;
}

/* Fills up to len bytes of p; returns how many. */
static size_t rng_fill(uint8_t *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom(p + done, len - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += n;
	}
	return done;
}

static void rng_queue_notify(struct virtio_device *dev, struct virtq *vq)
{
	struct virtq_req *req = malloc(sizeof(*req));

	if (!req)
		return;
	while (virtq_pop(vq, req) > 0) {
		uint32_t written = 0;

		/* 5.4.6.1: the driver posts device-writable buffers only. */
		if (req->out_num)
			virtio_device_warn(dev, "request %u has device-readable buffers", req->head);
		else
			for (unsigned i = 0; i < req->in_num && written < RNG_REQUEST_MAX; i++) {
				struct iovec *iov = &req->iov[req->out_num + i];
				size_t want =
				    iov->iov_len < RNG_REQUEST_MAX - written ? iov->iov_len : RNG_REQUEST_MAX - written;
				size_t got = rng_fill(iov->iov_base, want);

				written += got;
				if (got < want)
					break;
			}
		virtq_push(vq, req, written);
	}
	virtq_notify(vq);
	free(req);
}

static void rng_reset(struct virtio_device *dev)
{
	(void)dev;
}

static void rng_destroy(struct virtio_device *dev)
{
	struct virtio_rng *rng = dev->priv;

	virtio_device_cleanup(dev);
	free(rng);
}

static const struct virtio_device_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .pci_class = PCI_CLASS_OTHERS,
    .features = rng_features,
    .queue_notify = rng_queue_notify,
    .reset = rng_reset,
    .destroy = rng_destroy,
};

static int rng_create(struct vm *vm, const struct virtio_spec *spec)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	if (!rng)
		return -ENOMEM;
	ret = virtio_device_init(&rng->vdev, vm, &rng_ops, rng, 1, RNG_QUEUE_SIZE);
	if (!ret)
		ret = virtio_device_add(&rng->vdev, spec);
	if (ret < 0) {
		virtio_device_cleanup(&rng->vdev);
		free(rng);
	}
	return ret;
}

static const char *const rng_drivers[] = {"virtio-rng-pci", "virtio-rng", NULL};

static struct virtio_model rng_model = {
    .drivers = rng_drivers,
    .create = rng_create,
};

VIRTIO_MODEL(rng_model)
