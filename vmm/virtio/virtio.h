/*
 * The virtio framework (virtio 1.2): devices, the PCI transport and split
 * virtqueues. Nothing outside vmm/ includes this file.
 *
 *   device model (vmm/dev/virtio_*.c)   fills a struct virtio_device_ops and
 *                                       registers a struct virtio_model
 *   core.c                              status, features, reset, NEEDS_RESET,
 *                                       the models and the VM's devices
 *   pci.c                               the modern PCI transport with MSI-X
 *   queue.c                             split virtqueues: pop a request as
 *                                       iovecs into guest RAM, push it back
 *
 * Every index, length and address the guest hands over is checked once, in
 * queue.c or the transport, where it enters. A protocol violation puts the
 * device in NEEDS_RESET (virtio_device_error) and its queues stop; other
 * devices go on. docs/virtio.md explains how to write a device.
 */
#ifndef VIREO_VMM_VIRTIO_H
#define VIREO_VMM_VIRTIO_H

#include <sys/uio.h>

#include "vmm/internal.h"

/* Device types (virtio 1.2, 5). */
enum {
	VIRTIO_ID_NET = 1,
	VIRTIO_ID_BLOCK = 2,
	VIRTIO_ID_CONSOLE = 3,
	VIRTIO_ID_RNG = 4,
};

/* Feature bits the framework owns (6); devices own bits 0-23. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32
#define VIRTIO_BIT(n)	       (1ull << (n))
/* What every device offers on top of its own features. VERSION_1 is also
 * required: a driver that does not accept it (a legacy driver) never gets
 * FEATURES_OK. */
#define VIRTIO_FRAMEWORK_FEATURES                                                                                      \
	(VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_VERSION_1))

/* Device status (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER	  0x02
#define VIRTIO_STATUS_DRIVER_OK	  0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

/* The largest queue any device offers: bounds a request's segments. */
#define VIRTQ_MAX_SIZE 256

/* Split ring layout (2.7). */
#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	   1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct virtio_device;

/* ---- virtqueues (queue.c) ------------------------------------------------ */

/*
 * One split virtqueue. The transport sets size and the three addresses
 * while the queue is disabled, then calls virtq_enable, which checks them;
 * the rest belongs to queue.c, under lock. Any thread may pop, push and
 * notify: the lock serialises them (a device's vCPU-side notify handler and
 * its back end's completion thread, say).
 */
struct virtq {
	struct virtio_device *dev;
	unsigned index;
	pthread_mutex_t lock;
	/* Set by the transport while disabled (the guest's values, unchecked). */
	uint16_t size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* The ring in host memory, valid while enabled. */
	atomic_bool enabled;
	bool broken;	 /* refused the guest's ring: nothing more until reset */
	bool notify_off; /* the device asked the driver not to ring */
	bool event_idx, indirect;
	uint8_t *desc, *avail, *used;
	uint16_t last_avail; /* the next available entry to take */
	uint16_t used_idx;   /* the next used entry to fill */
	uint16_t signalled_used;
	bool signalled_valid;
	uint32_t generation; /* bumped by reset: requests of an older one are dropped */
};

/*
 * A request: one descriptor chain taken from the available ring, its
 * buffers mapped to host memory. Device-readable segments come first
 * (out_num of them), then device-writable ones (in_num). Zero-length
 * descriptors give no segment. Devices keep a request as long as they need
 * it (several in flight, completed from another thread) and hand it back
 * with virtq_push.
 */
struct virtq_req {
	uint16_t head;
	uint16_t out_num, in_num;
	uint32_t out_len, in_len; /* bytes in each direction; the chain is below 4 GiB */
	uint32_t generation;
	struct iovec iov[VIRTQ_MAX_SIZE];
	uint64_t gpa[VIRTQ_MAX_SIZE]; /* where each segment is in the guest */
};

void virtq_init(struct virtq *vq, struct virtio_device *dev, unsigned index);
void virtq_destroy(struct virtq *vq);
/* Checks size (a power of 2, at most max) and that the three areas are
 * aligned and lie in guest RAM, then starts the queue empty. On refusal the
 * device is in NEEDS_RESET and -EINVAL comes back. */
int virtq_enable(struct virtq *vq, uint16_t max, bool event_idx, bool indirect);
/* Forgets everything: disabled, empty, a new generation. */
void virtq_reset(struct virtq *vq);

/* Takes the next available chain: 1 with req filled, 0 when there is none
 * (or the queue is disabled), -EIO when the ring is malformed: the device
 * is then in NEEDS_RESET and the queue gives nothing more. */
int virtq_pop(struct virtq *vq, struct virtq_req *req);
/* Returns a request to the driver with the number of bytes written into its
 * writable segments (at most in_len). The writable segments are reported
 * to the engine as written (guest_memory_dirty), even for a request from
 * before a reset, which is dropped. */
void virtq_push(struct virtq *vq, const struct virtq_req *req, uint32_t written);
/* The same for n requests at once: the driver sees all of them in one
 * used->idx update, never some (virtio-net's mergeable receive buffers of
 * one frame). */
void virtq_push_many(struct virtq *vq, const struct virtq_req *const *reqs, const uint32_t *written, unsigned n);
/* Sends the used-buffer notification unless the driver suppressed it
 * (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX). Call
 * once after a batch of pushes. */
void virtq_notify(struct virtq *vq);
/* Available-buffer notification suppression, for devices that poll: while
 * disabled the driver is asked not to ring the doorbell. Enabling returns
 * true when buffers arrived meanwhile, so the device pops again:
 *	do {
 *		virtq_disable_notify(vq);
 *		while (virtq_pop(vq, &req) > 0)
 *			...
 *	} while (virtq_enable_notify(vq));
 */
void virtq_disable_notify(struct virtq *vq);
bool virtq_enable_notify(struct virtq *vq);

/* Copies between a request's segments and host memory, starting offset
 * bytes into the readable (read) or writable (write) part; returns how many
 * bytes were copied. */
size_t virtq_req_read(const struct virtq_req *req, size_t offset, void *dst, size_t len);
size_t virtq_req_write(const struct virtq_req *req, size_t offset, const void *src, size_t len);

/* ---- devices (core.c) ----------------------------------------------------- */

/*
 * What a device model provides. The transport calls these with its register
 * lock held, one at a time, from vCPU threads; queue_notify comes without
 * it (the doorbell path), possibly from several vCPUs at once.
 */
struct virtio_device_ops {
	const char *name;     /* "virtio-rng": messages */
	uint16_t device_id;   /* VIRTIO_ID_*: the PCI device ID is 0x1040 + this */
	uint32_t pci_class;   /* PCI class code: base class, subclass, interface */
	uint32_t config_size; /* bytes of device-specific configuration, 0 for none */
	/* The device's own feature bits (0-23 and device-specific high bits). */
	uint64_t (*features)(struct virtio_device *dev);
	/* Optional: refuses a set of features the driver accepted, which then
	 * keeps FEATURES_OK clear. The framework already refused features not
	 * offered and a set without VERSION_1. */
	bool (*features_ok)(struct virtio_device *dev, uint64_t features);
	/* Device configuration, offset and size (1, 2 or 4) checked against
	 * config_size. A NULL config_write makes the configuration read-only:
	 * writes are ignored and logged once. */
	uint32_t (*config_read)(struct virtio_device *dev, unsigned offset, unsigned size);
	void (*config_write)(struct virtio_device *dev, unsigned offset, unsigned size, uint32_t value);
	/* The driver rang the doorbell of an enabled queue after DRIVER_OK. */
	void (*queue_notify)(struct virtio_device *dev, struct virtq *vq);
	/* Optional: the driver set DRIVER_OK; start the back end. */
	void (*driver_ok)(struct virtio_device *dev);
	/* Stop the back end and drop the device's state: once it returns the
	 * device touches neither guest memory nor interrupts until the driver
	 * sets DRIVER_OK again. Also called when the VM stops. */
	void (*reset)(struct virtio_device *dev);
	/* Frees the device (the VM is going away; reset came first). */
	void (*destroy)(struct virtio_device *dev);
};

/* How a device reaches the guest: interrupts, through its transport. */
struct virtio_transport_ops {
	void (*notify_queue)(struct virtio_device *dev, unsigned queue);
	void (*notify_config)(struct virtio_device *dev);
	void (*reset)(struct virtio_device *dev); /* the transport's own state */
	void (*destroy)(struct virtio_device *dev);
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	struct vm *vm;
	void *priv;	   /* the device model's */
	char location[32]; /* "00:03.0": messages */
	unsigned num_queues;
	uint16_t queue_max; /* largest size of each queue, a power of 2 */
	struct virtq *vqs;

	/* Status and features, changed by the driver under the transport's
	 * register lock; needs_reset is set from any thread. */
	uint8_t status;
	atomic_bool needs_reset;
	uint64_t offered;	  /* the device's features | VIRTIO_FRAMEWORK_FEATURES */
	uint64_t driver_features; /* what the driver wrote */
	uint64_t features;	  /* negotiated: valid from FEATURES_OK */
	atomic_uint config_generation;
	atomic_bool warned; /* one message per device */

	const struct virtio_transport_ops *transport;
	void *transport_data;
	struct virtio_device *next; /* the VM's devices */
};

/* Sets dev up with num_queues queues of at most queue_max entries. */
int virtio_device_init(struct virtio_device *dev, struct vm *vm, const struct virtio_device_ops *ops, void *priv,
		       unsigned num_queues, uint16_t queue_max);
/* Frees what virtio_device_init allocated. */
void virtio_device_cleanup(struct virtio_device *dev);

static inline bool virtio_has_feature(const struct virtio_device *dev, unsigned bit)
{
	return dev->features & VIRTIO_BIT(bit);
}

/* The status the driver reads: its own bits and NEEDS_RESET. */
uint8_t virtio_get_status(struct virtio_device *dev);
/* A status write from the driver: 0 resets; otherwise the driver may only
 * add bits, and FEATURES_OK / DRIVER_OK are granted only when valid. */
void virtio_set_status(struct virtio_device *dev, uint8_t status);
void virtio_reset(struct virtio_device *dev);
/* The transport's queue_enable: checks the queue's registers. */
int virtio_queue_enable(struct virtio_device *dev, unsigned queue);
/* The doorbell: calls the device's queue_notify if the queue runs. */
void virtio_queue_notify(struct virtio_device *dev, unsigned queue);

/* The driver broke the protocol: logs the first time for this device, sets
 * NEEDS_RESET and, after DRIVER_OK, sends a configuration-change
 * notification, as 2.1.2 asks. */
void virtio_device_error(struct virtio_device *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A bad request the device refuses without needing a reset (a wrong
 * direction, a short buffer): logs the first time for this device. */
void virtio_device_warn(struct virtio_device *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The device changed its configuration: new generation, notification. */
void virtio_config_changed(struct virtio_device *dev);

/* ---- device models and -device specs (core.c) ---------------------------- */

/* One -device spec, split at its first comma. */
struct virtio_spec {
	char driver[40];
	const char *props; /* "name=value,..." or "" */
	const struct vm_config *cfg;
	unsigned index; /* in cfg->devices */
};

/* The value of property name ("" for "name" alone); false if absent. */
bool virtio_spec_prop(const struct virtio_spec *spec, const char *name, char *value, size_t len);

/*
 * A device model: the -device names it takes and how to make the device.
 * It registers itself with VIRTIO_MODEL at the end of its file.
 */
struct virtio_model {
	const char *const *drivers; /* NULL-terminated */
	/* Properties it takes on top of the transport's (id, vectors,
	 * disable-legacy); NULL-terminated, or NULL. */
	const char *const *props;
	/* Optional: checks a spec's values and its place among the specs
	 * before it (which precede it on the command line). */
	int (*check)(const struct virtio_spec *spec, char *err, size_t errlen);
	/* Makes the device and adds it with virtio_device_add. */
	int (*create)(struct vm *vm, const struct virtio_spec *spec);
	struct virtio_model *next;
};

void virtio_model_register(struct virtio_model *model);
#define VIRTIO_MODEL(model)                                                                                            \
	__attribute__((constructor)) static void virtio_model_register_##model(void)                                   \
	{                                                                                                              \
		virtio_model_register(&model);                                                                         \
	}

/* Plugs dev into the PCI bus (spec's transport properties) and adds it to the
 * VM's devices; on failure dev is left to the caller to free. */
int virtio_device_add(struct virtio_device *dev, const struct virtio_spec *spec);
/* The VM's most recent device with these ops, or NULL. */
struct virtio_device *virtio_device_last(struct vm *vm, const struct virtio_device_ops *ops);

/* ---- the PCI transport (pci.c) ------------------------------------------- */

/* Properties of -device specs that the transport takes. */
extern const char *const virtio_pci_props[];
int virtio_pci_check(const struct virtio_spec *spec, char *err, size_t errlen);
int virtio_pci_plug(struct virtio_device *dev, const struct virtio_spec *spec);

#endif
