/*
 * Split virtqueues (virtio 1.2, 2.7), device side. The rings live in guest
 * RAM, which the driver may change at any moment: every field is read once
 * into a local before it is checked and used, indexes are checked against
 * the table they index, and every buffer must lie wholly in guest RAM
 * (gpa_to_hva) before a pointer to it is handed out.
 *
 * Refused, with NEEDS_RESET: a head or next index outside its table; a
 * chain of more descriptors than the queue size (which is also how loops
 * end, in the ring or in an indirect table); an indirect table in an
 * indirect table, with NEXT set, without the feature, empty or not a whole
 * number of descriptors; a zero-length buffer (as QEMU refuses them); a
 * device-readable buffer after a device-writable one; a chain over 4 GiB;
 * anything outside guest RAM; an available index that moved by more than
 * the queue size.
 *
 * Ordering: the driver publishes avail->idx after the ring entries and
 * descriptors, so it is read with acquire before them; the device fills a
 * used entry and its buffers, then publishes used->idx with release; a full
 * barrier sits between publishing and reading the driver's suppression
 * fields, and between enabling notifications and re-reading avail->idx.
 */
#include <string.h>

#include "vmm/virtio/virtio.h"

/* Offsets in the available and used rings. */
#define AVAIL_FLAGS	0
#define AVAIL_IDX	2
#define AVAIL_RING(i)	(4 + 2 * (size_t)(i))
#define USED_FLAGS	0
#define USED_IDX	2
#define USED_RING(i)	(4 + 8 * (size_t)(i))
#define DESC_SIZE	16
#define CHAIN_MAX_BYTES 0xffffffffull

static uint16_t ring_load(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static uint16_t ring_load_acquire(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static void ring_store(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

void virtq_init(struct virtq *vq, struct virtio_device *dev, unsigned index)
{
	memset(vq, 0, sizeof(*vq));
	vq->dev = dev;
	vq->index = index;
	vq->size = dev->queue_max;
	pthread_mutex_init(&vq->lock, NULL);
}

void virtq_destroy(struct virtq *vq)
{
	pthread_mutex_destroy(&vq->lock);
}

/* Called with the lock held: the queue stops until the device is reset. */
static int virtq_refuse(struct virtq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int virtq_refuse(struct virtq *vq, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vq->broken = true;
	virtio_device_error(vq->dev, "queue %u: %s", vq->index, why);
	return -EIO;
}

int virtq_enable(struct virtq *vq, uint16_t max, bool event_idx, bool indirect)
{
	struct vm *vm = vq->dev->vm;
	uint16_t n;
	int ret = 0;

	pthread_mutex_lock(&vq->lock);
	n = vq->size;
	if (atomic_load(&vq->enabled))
		goto out;
	if (!n || n > max || (n & (n - 1))) {
		ret = virtq_refuse(vq, "size %u is not a power of 2 up to %u", n, max);
		goto out;
	}
	if (vq->desc_gpa % 16 || vq->avail_gpa % 2 || vq->used_gpa % 4) {
		ret = virtq_refuse(vq, "rings at 0x%llx/0x%llx/0x%llx are not aligned to 16/2/4",
				   (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
				   (unsigned long long)vq->used_gpa);
		goto out;
	}
	/* The event fields are part of the areas whether or not EVENT_IDX is used. */
	vq->desc = gpa_to_hva(vm, vq->desc_gpa, (uint64_t)DESC_SIZE * n);
	vq->avail = gpa_to_hva(vm, vq->avail_gpa, AVAIL_RING(n) + 2);
	vq->used = gpa_to_hva(vm, vq->used_gpa, USED_RING(n) + 2);
	if (!vq->desc || !vq->avail || !vq->used) {
		ret = virtq_refuse(vq, "rings at 0x%llx/0x%llx/0x%llx (size %u) are not all in guest RAM",
				   (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
				   (unsigned long long)vq->used_gpa, n);
		vq->desc = vq->avail = vq->used = NULL;
		goto out;
	}
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->last_avail = vq->used_idx = 0;
	vq->signalled_valid = false;
	vq->notify_off = false;
	vq->broken = false;
	atomic_store_explicit(&vq->enabled, true, memory_order_release);
out:
	pthread_mutex_unlock(&vq->lock);
	return ret;
}

void virtq_reset(struct virtq *vq)
{
	pthread_mutex_lock(&vq->lock);
	atomic_store(&vq->enabled, false);
	vq->broken = false;
	vq->generation++;
	vq->size = vq->dev->queue_max;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->desc = vq->avail = vq->used = NULL;
	vq->last_avail = vq->used_idx = 0;
	vq->signalled_valid = false;
	vq->notify_off = false;
	pthread_mutex_unlock(&vq->lock);
}

/* Follows the chain from head into req; the lock is held. */
static int virtq_walk(struct virtq *vq, uint16_t head, struct virtq_req *req)
{
	struct vm *vm = vq->dev->vm;
	const uint8_t *table = vq->desc;
	uint32_t table_len = vq->size, i = head;
	unsigned count = 0;
	uint64_t out_len = 0, in_len = 0;
	bool in_indirect = false;

	req->out_num = req->in_num = 0;
	for (;;) {
		struct virtq_desc d;
		void *p;

		if (i >= table_len)
			return virtq_refuse(vq, "descriptor %u is outside its %s of %u", i,
					    in_indirect ? "indirect table" : "table", table_len);
		memcpy(&d, table + (size_t)DESC_SIZE * i, sizeof(d));

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return virtq_refuse(vq, "indirect descriptor %u without VIRTIO_F_INDIRECT_DESC", i);
			if (in_indirect)
				return virtq_refuse(vq, "indirect descriptor %u inside an indirect table", i);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return virtq_refuse(vq, "indirect descriptor %u has NEXT set too", i);
			if (!d.len || d.len % DESC_SIZE)
				return virtq_refuse(
				    vq, "indirect table of %u bytes is not a whole number of descriptors", d.len);
			table = gpa_to_hva(vm, d.addr, d.len);
			if (!table)
				return virtq_refuse(vq, "indirect table at 0x%llx (%u bytes) is not in guest RAM",
						    (unsigned long long)d.addr, d.len);
			table_len = d.len / DESC_SIZE;
			in_indirect = true;
			i = 0;
			continue;
		}

		/* Every chain fits in the queue size (2.7.5.3.1): this also ends
		 * loops, in the ring's table or in an indirect one. */
		if (++count > vq->size)
			return virtq_refuse(vq, "chain from head %u is longer than the queue size %u (a loop?)", head,
					    vq->size);
		if (!d.len)
			return virtq_refuse(vq, "descriptor %u has a zero-length buffer", i);
		if (d.flags & VIRTQ_DESC_F_WRITE) {
			in_len += d.len;
		} else {
			if (req->in_num)
				return virtq_refuse(vq, "device-readable descriptor %u after a device-writable one", i);
			out_len += d.len;
		}
		if (out_len + in_len > CHAIN_MAX_BYTES)
			return virtq_refuse(vq, "chain from head %u is longer than 4 GiB", head);
		p = gpa_to_hva(vm, d.addr, d.len);
		if (!p)
			return virtq_refuse(vq, "buffer at 0x%llx (%u bytes) is not in guest RAM",
					    (unsigned long long)d.addr, d.len);
		req->iov[req->out_num + req->in_num] = (struct iovec){p, d.len};
		req->gpa[req->out_num + req->in_num] = d.addr;
		if (d.flags & VIRTQ_DESC_F_WRITE)
			req->in_num++;
		else
			req->out_num++;

		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		i = d.next;
	}
	req->out_len = out_len;
	req->in_len = in_len;
	return 0;
}

int virtq_pop(struct virtq *vq, struct virtq_req *req)
{
	uint16_t avail_idx, pending, head;
	int ret = 0;

	pthread_mutex_lock(&vq->lock);
	if (!atomic_load_explicit(&vq->enabled, memory_order_acquire))
		goto out;
	if (vq->broken) {
		ret = -EIO;
		goto out;
	}
	avail_idx = ring_load_acquire(vq->avail + AVAIL_IDX);
	pending = avail_idx - vq->last_avail;
	if (pending > vq->size) {
		ret = virtq_refuse(vq, "available index moved from %u to %u, more than the queue size %u",
				   vq->last_avail, avail_idx, vq->size);
		goto out;
	}
	if (!pending)
		goto out;
	head = ring_load(vq->avail + AVAIL_RING(vq->last_avail & (vq->size - 1)));
	ret = virtq_walk(vq, head, req);
	if (ret < 0)
		goto out;
	req->head = head;
	req->generation = vq->generation;
	vq->last_avail++;
	/* Ask to be told when the driver makes the next entry available. */
	if (vq->event_idx && !vq->notify_off)
		ring_store(vq->used + USED_RING(vq->size), vq->last_avail);
	ret = 1;
out:
	pthread_mutex_unlock(&vq->lock);
	return ret;
}

void virtq_push(struct virtq *vq, const struct virtq_req *req, uint32_t written)
{
	virtq_push_many(vq, &req, &written, 1);
}

void virtq_push_many(struct virtq *vq, const struct virtq_req *const *reqs, const uint32_t *written, unsigned n)
{
	struct vm *vm = vq->dev->vm;

	/* Before the driver can see the buffers: the dbt engine must not run
	 * code it translated from what was there before. A request dropped by
	 * a reset may have been written too (a disk read that completed). */
	for (unsigned r = 0; r < n; r++)
		for (unsigned i = reqs[r]->out_num; i < reqs[r]->out_num + reqs[r]->in_num; i++)
			guest_memory_dirty(vm, reqs[r]->gpa[i], reqs[r]->iov[i].iov_len);
	pthread_mutex_lock(&vq->lock);
	for (unsigned r = 0; r < n; r++) {
		const struct virtq_req *req = reqs[r];
		uint32_t elem[2] = {req->head, written[r] < req->in_len ? written[r] : req->in_len};

		if (!atomic_load(&vq->enabled) || req->generation != vq->generation)
			continue;
		memcpy(vq->used + USED_RING(vq->used_idx & (vq->size - 1)), elem, sizeof(elem));
		vq->used_idx++;
	}
	if (atomic_load(&vq->enabled))
		__atomic_store_n((uint16_t *)(vq->used + USED_IDX), vq->used_idx, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
}

void virtq_notify(struct virtq *vq)
{
	struct virtio_device *dev = vq->dev;
	bool send;

	pthread_mutex_lock(&vq->lock);
	if (!atomic_load(&vq->enabled)) {
		pthread_mutex_unlock(&vq->lock);
		return;
	}
	atomic_thread_fence(memory_order_seq_cst);
	if (vq->event_idx) {
		uint16_t old = vq->signalled_used, new = vq->used_idx;
		uint16_t event = ring_load(vq->avail + AVAIL_RING(vq->size));

		/* vring_need_event: did used->idx step past used_event? */
		send = !vq->signalled_valid || (uint16_t)(new - event - 1) < (uint16_t)(new - old);
		vq->signalled_valid = true;
		vq->signalled_used = new;
	} else {
		send = !(ring_load(vq->avail + AVAIL_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	pthread_mutex_unlock(&vq->lock);
	if (send)
		dev->transport->notify_queue(dev, vq->index);
}

void virtq_disable_notify(struct virtq *vq)
{
	pthread_mutex_lock(&vq->lock);
	if (atomic_load(&vq->enabled)) {
		vq->notify_off = true;
		/* With EVENT_IDX, avail_event simply stops following last_avail. */
		if (!vq->event_idx)
			ring_store(vq->used + USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
	}
	pthread_mutex_unlock(&vq->lock);
}

bool virtq_enable_notify(struct virtq *vq)
{
	bool more = false;

	pthread_mutex_lock(&vq->lock);
	if (atomic_load(&vq->enabled) && !vq->broken) {
		vq->notify_off = false;
		if (vq->event_idx)
			ring_store(vq->used + USED_RING(vq->size), vq->last_avail);
		else
			ring_store(vq->used + USED_FLAGS, 0);
		atomic_thread_fence(memory_order_seq_cst);
		more = ring_load_acquire(vq->avail + AVAIL_IDX) != vq->last_avail;
	}
	pthread_mutex_unlock(&vq->lock);
	return more;
}

static size_t virtq_copy(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk;

		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - offset;
		if (chunk > len - done)
			chunk = len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + offset, (uint8_t *)buf + done, chunk);
		else
			memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + offset, chunk);
		done += chunk;
		offset = 0;
	}
	return done;
}

size_t virtq_req_read(const struct virtq_req *req, size_t offset, void *dst, size_t len)
{
	return virtq_copy(req->iov, req->out_num, offset, dst, len, false);
}

size_t virtq_req_write(const struct virtq_req *req, size_t offset, const void *src, size_t len)
{
	return virtq_copy(req->iov + req->out_num, req->in_num, offset, (void *)src, len, true);
}
