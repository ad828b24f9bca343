/*
 * The transport-independent part of a virtio device: status and its state
 * machine (2.1, 3.1), feature negotiation (2.2), reset, NEEDS_RESET; and the
 * device models, which the -device specs of the VM's configuration name.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio/virtio.h"

#define DRIVER_STATUS_BITS                                                                                             \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK |      \
	 VIRTIO_STATUS_FAILED)

/* ---- messages ------------------------------------------------------------ */

static void virtio_vlog(struct virtio_device *dev, const char *fmt, va_list ap, const char *tail)
{
	char why[300];

	if (atomic_exchange(&dev->warned, true))
		return;
	vsnprintf(why, sizeof(why), fmt, ap);
	vmm_log("%s at %s: %s%s (further errors of this device are not shown)", dev->ops->name, dev->location, why,
		tail);
}

void virtio_device_error(struct virtio_device *dev, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	virtio_vlog(dev, fmt, ap, "; the device needs a reset");
	va_end(ap);
	if (atomic_exchange(&dev->needs_reset, true))
		return;
	if (__atomic_load_n(&dev->status, __ATOMIC_ACQUIRE) & VIRTIO_STATUS_DRIVER_OK)
		virtio_config_changed(dev);
}

void virtio_device_warn(struct virtio_device *dev, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	virtio_vlog(dev, fmt, ap, "");
	va_end(ap);
}

void virtio_config_changed(struct virtio_device *dev)
{
	atomic_fetch_add(&dev->config_generation, 1);
	dev->transport->notify_config(dev);
}

/* ---- the device ---------------------------------------------------------- */

int virtio_device_init(struct virtio_device *dev, struct vm *vm, const struct virtio_device_ops *ops, void *priv,
		       unsigned num_queues, uint16_t queue_max)
{
	memset(dev, 0, sizeof(*dev));
	if (!num_queues || !queue_max || queue_max > VIRTQ_MAX_SIZE || (queue_max & (queue_max - 1)))
		return -EINVAL;
	dev->ops = ops;
	dev->vm = vm;
	dev->priv = priv;
	dev->num_queues = num_queues;
	dev->queue_max = queue_max;
	snprintf(dev->location, sizeof(dev->location), "(unplugged)");
	dev->vqs = calloc(num_queues, sizeof(*dev->vqs));
	if (!dev->vqs)
		return -ENOMEM;
	for (unsigned i = 0; i < num_queues; i++)
		virtq_init(&dev->vqs[i], dev, i);
	return 0;
}

void virtio_device_cleanup(struct virtio_device *dev)
{
	for (unsigned i = 0; dev->vqs && i < dev->num_queues; i++)
		virtq_destroy(&dev->vqs[i]);
	free(dev->vqs);
	dev->vqs = NULL;
}

uint8_t virtio_get_status(struct virtio_device *dev)
{
	return __atomic_load_n(&dev->status, __ATOMIC_ACQUIRE) |
	       (atomic_load(&dev->needs_reset) ? VIRTIO_STATUS_NEEDS_RESET : 0);
}

void virtio_reset(struct virtio_device *dev)
{
	/* Queues first: a completion racing with the device's reset finds its
	 * generation gone and is dropped. */
	for (unsigned i = 0; i < dev->num_queues; i++)
		virtq_reset(&dev->vqs[i]);
	dev->ops->reset(dev);
	dev->transport->reset(dev);
	dev->driver_features = dev->features = 0;
	__atomic_store_n(&dev->status, 0, __ATOMIC_RELEASE);
	atomic_store(&dev->needs_reset, false);
}

/* FEATURES_OK is granted when the driver took only what was offered,
 * VERSION_1 among it, and the device agrees. */
static bool virtio_features_acceptable(struct virtio_device *dev)
{
	uint64_t f = dev->driver_features;

	if (f & ~dev->offered) {
		virtio_device_warn(dev, "the driver accepted features 0x%llx that were not offered",
				   (unsigned long long)(f & ~dev->offered));
		return false;
	}
	if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		virtio_device_warn(dev, "the driver did not accept VIRTIO_F_VERSION_1: the device has no legacy "
					"interface");
		return false;
	}
	return !dev->ops->features_ok || dev->ops->features_ok(dev, f);
}

void virtio_set_status(struct virtio_device *dev, uint8_t status)
{
	uint8_t old = dev->status;

	if (!status) {
		virtio_reset(dev);
		return;
	}
	status &= DRIVER_STATUS_BITS;
	if (old & ~status) {
		virtio_device_warn(dev, "the driver cleared status bits 0x%x without a reset", old & ~status);
		return;
	}
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		if (virtio_features_acceptable(dev))
			dev->features = dev->driver_features;
		else
			status &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_device_warn(dev, "the driver set DRIVER_OK without FEATURES_OK");
		status &= ~VIRTIO_STATUS_DRIVER_OK;
	}
	__atomic_store_n(&dev->status, status, __ATOMIC_RELEASE);
	if ((status & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (dev->ops->driver_ok)
			dev->ops->driver_ok(dev);
		/* Doorbells rung before DRIVER_OK were ignored (3.1.1): look now. */
		for (unsigned i = 0; i < dev->num_queues; i++)
			if (atomic_load(&dev->vqs[i].enabled))
				dev->ops->queue_notify(dev, &dev->vqs[i]);
	}
}

int virtio_queue_enable(struct virtio_device *dev, unsigned queue)
{
	if (queue >= dev->num_queues)
		return -EINVAL;
	if (!(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_device_warn(dev, "queue %u enabled before FEATURES_OK", queue);
		return -EINVAL;
	}
	return virtq_enable(&dev->vqs[queue], dev->queue_max, virtio_has_feature(dev, VIRTIO_F_EVENT_IDX),
			    virtio_has_feature(dev, VIRTIO_F_INDIRECT_DESC));
}

void virtio_queue_notify(struct virtio_device *dev, unsigned queue)
{
	struct virtq *vq;

	if (queue >= dev->num_queues) {
		virtio_device_warn(dev, "doorbell of queue %u, which does not exist", queue);
		return;
	}
	vq = &dev->vqs[queue];
	if (!atomic_load_explicit(&vq->enabled, memory_order_acquire) ||
	    !(__atomic_load_n(&dev->status, __ATOMIC_ACQUIRE) & VIRTIO_STATUS_DRIVER_OK))
		return;
	dev->ops->queue_notify(dev, vq);
}

/* ---- -device specs and models --------------------------------------------- */

static struct virtio_model *models;

void virtio_model_register(struct virtio_model *model)
{
	model->next = models;
	models = model;
}

static bool name_in(const char *name, size_t len, const char *const *list)
{
	for (; list && *list; list++)
		if (strlen(*list) == len && !strncmp(*list, name, len))
			return true;
	return false;
}

static struct virtio_model *virtio_model_find(const char *driver)
{
	for (struct virtio_model *m = models; m; m = m->next)
		if (name_in(driver, strlen(driver), m->drivers))
			return m;
	return NULL;
}

static int virtio_spec_parse(const struct vm_config *cfg, unsigned index, struct virtio_spec *spec)
{
	const char *s = cfg->devices[index] ? cfg->devices[index] : "";
	const char *comma = strchr(s, ',');
	size_t n = comma ? (size_t)(comma - s) : strlen(s);

	memset(spec, 0, sizeof(*spec));
	if (n >= sizeof(spec->driver))
		n = sizeof(spec->driver) - 1;
	memcpy(spec->driver, s, n);
	spec->props = comma ? comma + 1 : "";
	spec->cfg = cfg;
	spec->index = index;
	return n ? 0 : -EINVAL;
}

bool virtio_spec_prop(const struct virtio_spec *spec, const char *name, char *value, size_t len)
{
	size_t want = strlen(name);

	for (const char *p = spec->props; *p;) {
		const char *end = strchrnul(p, ','), *eq = memchr(p, '=', end - p);
		size_t n = eq ? (size_t)(eq - p) : (size_t)(end - p);

		if (n == want && !strncmp(p, name, n)) {
			size_t vlen = eq ? (size_t)(end - eq - 1) : 0;
			if (len) {
				if (vlen >= len)
					vlen = len - 1;
				memcpy(value, eq ? eq + 1 : "", vlen);
				value[vlen] = 0;
			}
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

int virtio_devices_check(const struct vm_config *cfg, char *err, size_t errlen)
{
	if (cfg->ndevices > VM_MAX_DEVICES) {
		snprintf(err, errlen, "too many devices: at most %d", VM_MAX_DEVICES);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->ndevices; i++) {
		struct virtio_spec spec;
		struct virtio_model *m;
		int ret;

		if (virtio_spec_parse(cfg, i, &spec) < 0 || !(m = virtio_model_find(spec.driver))) {
			snprintf(err, errlen, "unsupported device '%s'", spec.driver);
			return -EINVAL;
		}
		for (const char *p = spec.props; *p;) {
			const char *end = strchrnul(p, ','), *eq = memchr(p, '=', end - p);
			size_t n = eq ? (size_t)(eq - p) : (size_t)(end - p);

			if (!name_in(p, n, m->props) && !name_in(p, n, virtio_pci_props)) {
				snprintf(err, errlen, "device '%s' has no property '%.*s'", spec.driver, (int)n, p);
				return -EINVAL;
			}
			p = *end ? end + 1 : end;
		}
		ret = virtio_pci_check(&spec, err, errlen);
		if (!ret && m->check)
			ret = m->check(&spec, err, errlen);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- the VM's devices ------------------------------------------------------ */

struct virtio_devices {
	struct virtio_device *first, *last;
};

static struct virtio_devices *virtio_devices_of(struct vm *vm)
{
	return vm->devices[DEVICE_SLOT_VIRTIO];
}

int virtio_device_add(struct virtio_device *dev, const struct virtio_spec *spec)
{
	struct virtio_devices *list = virtio_devices_of(dev->vm);
	int ret;

	if (!list)
		return -ENODEV;
	dev->offered = dev->ops->features(dev) | VIRTIO_FRAMEWORK_FEATURES;
	ret = virtio_pci_plug(dev, spec);
	if (ret < 0)
		return ret;
	if (list->last)
		list->last->next = dev;
	else
		list->first = dev;
	list->last = dev;
	return 0;
}

struct virtio_device *virtio_device_last(struct vm *vm, const struct virtio_device_ops *ops)
{
	struct virtio_devices *list = virtio_devices_of(vm);
	struct virtio_device *found = NULL;

	for (struct virtio_device *d = list ? list->first : NULL; d; d = d->next)
		if (d->ops == ops)
			found = d;
	return found;
}

static int virtio_init(struct vm *vm)
{
	struct virtio_devices *list = calloc(1, sizeof(*list));

	if (!list)
		return -ENOMEM;
	vm->devices[DEVICE_SLOT_VIRTIO] = list;
	for (unsigned i = 0; i < vm->cfg.ndevices && i < VM_MAX_DEVICES; i++) {
		struct virtio_spec spec;
		struct virtio_model *m;
		int ret;

		if (virtio_spec_parse(&vm->cfg, i, &spec) < 0 || !(m = virtio_model_find(spec.driver))) {
			vmm_log("unsupported device '%s'", spec.driver);
			return -EINVAL;
		}
		ret = m->create(vm, &spec);
		if (ret < 0) {
			vmm_log("device '%s' could not be created: %s", vm->cfg.devices[i], strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* The vCPUs have stopped: each device stops its back end, as on a reset. */
static void virtio_stop(struct vm *vm)
{
	struct virtio_devices *list = virtio_devices_of(vm);

	for (struct virtio_device *d = list ? list->first : NULL; d; d = d->next)
		virtio_reset(d);
}

static void virtio_exit(struct vm *vm)
{
	struct virtio_devices *list = virtio_devices_of(vm);

	if (!list)
		return;
	for (struct virtio_device *d = list->first, *next; d; d = next) {
		next = d->next;
		d->transport->destroy(d);
		d->ops->destroy(d);
	}
	free(list);
	vm->devices[DEVICE_SLOT_VIRTIO] = NULL;
}

DEVICE_INIT_STOP("virtio", DEVICE_ORDER_VIRTIO, virtio_init, virtio_exit, virtio_stop)
