/*
 * virtio-rng driven as an OS drives it (virtio_guest.h): found on bus 0
 * through CF8/CFC, its virtio capabilities read, VIRTIO_F_VERSION_1
 * negotiated, queue 0 set up with an MSI-X vector to this CPU's LAPIC;
 * buffers posted, the doorbell rung, the used ring polled and the interrupt
 * taken. The bytes must look random: not all zero, different across two
 * requests.
 *
 * Runs with -device virtio-rng-pci on QEMU (a transitional device there,
 * 1af4:1005, its modern registers in a 64-bit BAR) and on Vireo (modern
 * only, 1af4:1044), checking only what the specification promises for both.
 */
#include "virtio_guest.h"

#define VIRTIO_ID_RNG 4
#define VECTOR	      0x60
#define SPURIOUS      0xff
#define BUF_SIZE      64

static struct vg_queue queue;
static uint8_t buffers[2][BUF_SIZE] __attribute__((aligned(64)));
static volatile uint64_t interrupts;

static void rng_irq(struct trap_frame *f)
{
	(void)f;
	interrupts++;
	lapic_eoi();
}

static void spurious_irq(struct trap_frame *f)
{
	(void)f;
}

static void request(unsigned b)
{
	queue.desc[b] = (struct vg_desc){(uint64_t)buffers[b], BUF_SIZE, VG_DESC_F_WRITE, 0};
	vg_queue_post(&queue, b);
}

static bool all_zero(const uint8_t *p, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

void main(void)
{
	struct vg_dev d = {0};
	uint32_t len0, len1;

	if (!vg_find(&d, VIRTIO_ID_RNG)) {
		check(false, "virtio-rng on bus 0",
		      "no 1af4:1044 or 1af4:10xx with subsystem 4 (-device virtio-rng-pci?)");
		return;
	}
	check(d.common && d.notify && d.isr, "virtio capabilities: common, notify, ISR",
	      "common 0x%lx notify 0x%lx isr 0x%lx", d.common, d.notify, d.isr);
	check(d.msix_cap != 0, "MSI-X capability", "none");
	if (!d.common || !d.notify || !d.msix_cap)
		return;
	vg_negotiate(&d, 0);
	check_eq("one queue", 1, vg_rd16(d.common + VG_NUMQ));
	vg_wr16(d.common + VG_MSIX, VG_NO_VECTOR);
	if (!vg_queue_setup(&d, &queue, 0, 0))
		return;
	vg_msix_route(&d, 0, VECTOR);
	vg_msix_enable(&d);
	trap_set_handler(VECTOR, rng_irq);
	trap_set_handler(SPURIOUS, spurious_irq);
	pic_disable();
	lapic_enable(SPURIOUS);
	irq_enable();
	vg_driver_ok(&d);

	request(0);
	check(vg_queue_wait(&queue, 1), "first request used", "used idx %u after %u ms", queue.used.idx, VG_WAIT_MS);
	len0 = queue.used.ring[0].len;
	check_eq("first request: its head", 0, queue.used.ring[0].id);
	check(len0 > 0 && len0 <= BUF_SIZE, "first request: bytes written", "len %u", len0);
	check(vg_wait_count(&interrupts, 1), "MSI-X interrupt through the LAPIC", "none after %u ms", VG_WAIT_MS);

	request(1);
	check(vg_queue_wait(&queue, 2), "second request used", "used idx %u", queue.used.idx);
	len1 = queue.used.ring[1].len;
	check(len1 > 0 && len1 <= BUF_SIZE, "second request: bytes written", "len %u", len1);
	check(vg_wait_count(&interrupts, 2), "second MSI-X interrupt", "%lu interrupts", interrupts);

	check(!all_zero(buffers[0], len0) && !all_zero(buffers[1], len1), "random bytes are not all zero",
	      "a buffer is all zero");
	check(memcmp(buffers[0], buffers[1], len0 < len1 ? len0 : len1) != 0, "two requests give different bytes",
	      "the same bytes twice");
	printf("INFO %u and %u random bytes, first %02x %02x %02x %02x\n", len0, len1, buffers[0][0], buffers[0][1],
	       buffers[0][2], buffers[0][3]);

	irq_disable();
	vg_wr8(d.common + VG_STATUS, 0);
	check_eq("reset at the end: status reads 0", 0, vg_rd8(d.common + VG_STATUS));
	vg_wr16(d.common + VG_Q_SELECT, 0);
	check_eq("reset disabled the queue", 0, vg_rd16(d.common + VG_Q_ENABLE));
}
