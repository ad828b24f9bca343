/*
 * virtio-console driven as an OS drives it (virtio_guest.h), port 0 only
 * (VIRTIO_CONSOLE_F_MULTIPORT is not accepted, so the device is a single
 * console, hvc0 to Linux): its device configuration readable, the receive
 * and transmit queues set up with MSI-X, a line transmitted (it reaches the
 * console back end, which is this output on Vireo and nowhere on QEMU,
 * whose virtconsole has no chardev here), a receive buffer posted that
 * stays unused because nothing is typed.
 *
 * Runs with -device virtio-serial-pci -device virtconsole on QEMU and on
 * Vireo.
 */
#include "virtio_guest.h"

#define VIRTIO_ID_CONSOLE     3
#define CONSOLE_F_MULTIPORT   1
#define CONSOLE_F_EMERG_WRITE 2
#define VECTOR_RX	      0x61
#define VECTOR_TX	      0x62
#define SPURIOUS	      0xff
#define CFG_MAX_NR_PORTS      4

static struct vg_queue rx, tx;
static char rx_buf[64];
static const char line[] = "INFO hvc0: a line through the virtio console\n";
static volatile uint64_t rx_interrupts, tx_interrupts;

static void rx_irq(struct trap_frame *f)
{
	(void)f;
	rx_interrupts++;
	lapic_eoi();
}

static void tx_irq(struct trap_frame *f)
{
	(void)f;
	tx_interrupts++;
	lapic_eoi();
}

static void spurious_irq(struct trap_frame *f)
{
	(void)f;
}

void main(void)
{
	struct vg_dev d = {0};
	uint64_t offered;

	if (!vg_find(&d, VIRTIO_ID_CONSOLE)) {
		check(false, "virtio-console on bus 0", "none (-device virtio-serial-pci -device virtconsole?)");
		return;
	}
	check(d.common && d.notify && d.isr && d.device, "virtio capabilities: common, notify, ISR, device",
	      "common 0x%lx notify 0x%lx isr 0x%lx device 0x%lx", d.common, d.notify, d.isr, d.device);
	check(d.device_len >= 8, "device configuration holds max_nr_ports", "%u bytes", d.device_len);
	check(d.msix_cap != 0, "MSI-X capability", "none");
	if (!d.common || !d.notify || !d.device || !d.msix_cap)
		return;
	offered = vg_negotiate(&d, 0);
	printf("INFO features offered 0x%lx (multiport %lu, emergency write %lu), max_nr_ports %u\n", offered,
	       offered >> CONSOLE_F_MULTIPORT & 1, offered >> CONSOLE_F_EMERG_WRITE & 1,
	       vg_rd32(d.device + CFG_MAX_NR_PORTS));
	check(vg_rd16(d.common + VG_NUMQ) >= 2, "at least two queues", "%u", vg_rd16(d.common + VG_NUMQ));
	vg_wr16(d.common + VG_MSIX, VG_NO_VECTOR);
	if (!vg_queue_setup(&d, &rx, 0, 0) || !vg_queue_setup(&d, &tx, 1, 1))
		return;
	vg_msix_route(&d, 0, VECTOR_RX);
	vg_msix_route(&d, 1, VECTOR_TX);
	vg_msix_enable(&d);
	trap_set_handler(VECTOR_RX, rx_irq);
	trap_set_handler(VECTOR_TX, tx_irq);
	trap_set_handler(SPURIOUS, spurious_irq);
	pic_disable();
	lapic_enable(SPURIOUS);
	irq_enable();

	rx.desc[0] = (struct vg_desc){(uint64_t)rx_buf, sizeof(rx_buf), VG_DESC_F_WRITE, 0};
	vg_queue_post(&rx, 0);
	vg_driver_ok(&d);

	/* The line in two descriptors, as a driver splitting a write would. */
	tx.desc[0] = (struct vg_desc){(uint64_t)line, 10, VG_DESC_F_NEXT, 1};
	tx.desc[1] = (struct vg_desc){(uint64_t)line + 10, sizeof(line) - 1 - 10, 0, 0};
	vg_queue_post(&tx, 0);
	check(vg_queue_wait(&tx, 1), "transmit buffer used", "used idx %u after %u ms", tx.used.idx, VG_WAIT_MS);
	check_eq("transmit: its head", 0, tx.used.ring[0].id);
	check_eq("transmit: nothing written back", 0, tx.used.ring[0].len);
	check(vg_wait_count(&tx_interrupts, 1), "transmit interrupt through the LAPIC", "none after %u ms", VG_WAIT_MS);
	pit_wait_ticks(10 * VG_MS_TICKS);
	check_eq("nothing typed: receive buffer unused", 0, rx.used.idx);
	check_eq("nothing typed: no receive interrupt", 0, rx_interrupts);

	irq_disable();
	vg_wr8(d.common + VG_STATUS, 0);
	check_eq("reset at the end: status reads 0", 0, vg_rd8(d.common + VG_STATUS));
}
