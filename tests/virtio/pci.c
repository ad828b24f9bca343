/*
 * The virtio PCI transport and the devices on it, driven as a driver would
 * through configuration space (CF8/CFC) and the BAR: identification and
 * capabilities, feature negotiation, the status state machine and reset,
 * queue set-up, doorbells, MSI-X (masking and the PBA), INTx with the ISR,
 * the configuration access window, registers that refuse writes, and the
 * devices' requests: virtio-rng fills buffers, virtio-console writes what
 * the guest transmits to the console back end and delivers stdin.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/virtio/driver.h"

/* ---- virtio-rng over MSI-X --------------------------------------------------------- */

static void test_rng(void)
{
	struct vdev d;
	struct ring r;
	uint8_t a[64], b[64], zero[64] = {0};
	unsigned slot;

	test_check(find_device(0x1044, 0, &d), "virtio-rng found (1af4:1044)", "not on bus 0");
	slot = d.slot;
	test_check_eq("revision 1 (modern)", 1, cfg_read(slot, 0x08, 1));
	test_check_eq("subsystem vendor", 0x1af4, cfg_read(slot, 0x2c, 2));
	test_check_eq("interrupt pin INTA", 1, cfg_read(slot, 0x3d, 1));
	test_check_eq("interrupt line = _PRT's GSI", pci_intx_gsi(slot, 0), cfg_read(slot, 0x3c, 1));
	test_check(d.common && d.notify && d.isr && d.cfg_cap, "common, notify, ISR and access capabilities",
		   "common 0x%llx notify 0x%llx isr 0x%llx cfg %u", (unsigned long long)d.common,
		   (unsigned long long)d.notify, (unsigned long long)d.isr, d.cfg_cap);
	test_check_eq("no device configuration capability", 0, d.device);
	test_check_eq("MSI-X: a vector per queue and one for configuration", 2, d.msix_size);
	test_check_eq("one queue", 1, cc_read(&d, CC_NUMQ, 2));
	cc_write(&d, CC_DFSELECT, 4, 0);
	test_check_eq("offers INDIRECT_DESC and EVENT_IDX", 3u << 28, cc_read(&d, CC_DF, 4) & (3u << 28));
	cc_write(&d, CC_DFSELECT, 4, 1);
	test_check_eq("offers VERSION_1", 1, cc_read(&d, CC_DF, 4));
	cc_write(&d, CC_DFSELECT, 4, 7);
	test_check_eq("feature word 7 is empty", 0, cc_read(&d, CC_DF, 4));

	/* A legacy driver (no VERSION_1) never gets FEATURES_OK. */
	cc_write(&d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_write(&d, CC_GFSELECT, 4, 0);
	cc_write(&d, CC_GF, 4, 1u << 28);
	cc_write(&d, CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	test_check_eq("no VERSION_1: FEATURES_OK stays clear", VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
		      status(&d));
	cc_write(&d, CC_STATUS, 1, 0);
	test_check_eq("reset reads 0", 0, status(&d));

	test_check(negotiate(&d, VIRTIO_BIT(VIRTIO_F_EVENT_IDX)), "FEATURES_OK with VERSION_1 and EVENT_IDX",
		   "status 0x%x", status(&d));
	cc_write(&d, CC_NUMQ, 2, 9);
	test_check_eq("num_queues is read-only", 1, cc_read(&d, CC_NUMQ, 2));
	cc_write(&d, CC_Q_SELECT, 2, 5);
	test_check_eq("queue 5 does not exist: size 0", 0, cc_read(&d, CC_Q_SIZE, 2));
	cc_write(&d, CC_Q_ENABLE, 2, 1);
	test_check_eq("queue 5 cannot be enabled", 0, cc_read(&d, CC_Q_ENABLE, 2));
	cc_write(&d, CC_Q_SELECT, 2, 0);
	test_check_eq("queue 0's maximum size", 64, cc_read(&d, CC_Q_SIZE, 2));
	cc_write(&d, CC_MSIX, 2, 7);
	test_check_eq("a vector beyond the table reads NO_VECTOR", 0xffff, cc_read(&d, CC_MSIX, 2));
	cc_write(&d, CC_MSIX, 2, 0);
	test_check_eq("config vector 0", 0, cc_read(&d, CC_MSIX, 2));

	ring_setup(&r, &d, 0, 8, 1);
	test_check_eq("queue enabled", 1, cc_read(&d, CC_Q_ENABLE, 2));
	test_check_eq("queue vector 1", 1, cc_read(&d, CC_Q_MSIX, 2));
	cc_write(&d, CC_Q_SIZE, 2, 4);
	test_check_eq("size is fixed once enabled", 8, cc_read(&d, CC_Q_SIZE, 2));

	/* MSI-X to the LAPIC of vCPU 0: vector 0x41 for the queue, 0x42 for
	 * configuration changes. */
	test_lapic_write(vm->cpus[0], LAPIC_SVR, 0x1ff);
	msix_entry(&d, 0, 0x42, false);
	msix_entry(&d, 1, 0x41, false);
	cfg_write(slot, d.msix_cap + 2, 2, 0x8000);
	cc_write(&d, CC_STATUS, 1, status(&d) | VIRTIO_STATUS_DRIVER_OK);
	test_check_eq("DRIVER_OK", VIRTIO_STATUS_DRIVER_OK, status(&d) & VIRTIO_STATUS_DRIVER_OK);

	memset(hva(BUF_BASE), 0, 128);
	ring_desc(&r, 0, BUF_BASE, 64, VIRTQ_DESC_F_WRITE, 0);
	ring_desc(&r, 1, BUF_BASE + 64, 64, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&r, 0);
	ring_post(&r, 1);
	ring_kick(&r);
	test_check_eq("both requests used", 2, ring_used_idx(&r));
	test_check_eq("first filled", 64, ring_used_len(&r, 0));
	test_check_eq("second filled", 64, ring_used_len(&r, 1));
	memcpy(a, hva(BUF_BASE), 64);
	memcpy(b, hva(BUF_BASE + 64), 64);
	test_check(memcmp(a, zero, 64) && memcmp(b, zero, 64) && memcmp(a, b, 64), "random bytes, different each time",
		   "buffers are zero or equal");
	test_check_eq("MSI-X vector 0x41 raised", 0x41, test_take_interrupt(vm->cpus[0]));

	/* A masked vector waits in the PBA until unmasked. */
	msix_entry(&d, 1, 0x41, true);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("masked: no interrupt", -1, test_take_interrupt(vm->cpus[0]));
	test_check_eq("masked: pending bit", 2, msix_pba(&d));
	msix_entry(&d, 1, 0x41, false);
	test_check_eq("unmasked: delivered", 0x41, test_take_interrupt(vm->cpus[0]));
	test_check_eq("unmasked: pending bit clear", 0, msix_pba(&d));
	/* The function mask does the same for every vector. */
	cfg_write(slot, d.msix_cap + 2, 2, 0xc000);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("function masked: no interrupt", -1, test_take_interrupt(vm->cpus[0]));
	cfg_write(slot, d.msix_cap + 2, 2, 0x8000);
	test_check_eq("function unmasked: delivered", 0x41, test_take_interrupt(vm->cpus[0]));

	/* The configuration access window reads the BAR. */
	cfg_write(slot, d.cfg_cap + 4, 1, 0);
	cfg_write(slot, d.cfg_cap + 8, 4, CC_NUMQ);
	cfg_write(slot, d.cfg_cap + 12, 4, 2);
	test_check_eq("access window reads num_queues", 1, cfg_read(slot, d.cfg_cap + 16, 2));

	/* Wrong direction: refused without a reset. */
	ring_desc(&r, 2, BUF_BASE, 64, 0, 0);
	ring_post(&r, 2);
	ring_kick(&r);
	test_check_eq("readable buffer: completed", (uint16_t)(r.avail_idx), ring_used_idx(&r));
	test_check_eq("readable buffer: nothing written", 0, ring_used_len(&r, r.avail_idx - 1));
	test_check_eq("readable buffer: no NEEDS_RESET", 0, status(&d) & VIRTIO_STATUS_NEEDS_RESET);
	test_take_interrupt(vm->cpus[0]);

	/* Writes to what is read-only: no effect, no crash. */
	mmio_write(d.isr, 1, 0xff);
	mmio_write(d.bar + 0x2000, 4, 0x12345678);
	cc_write(&d, CC_CFGGEN, 1, 0x55);
	cc_write(&d, CC_Q_NOFF, 2, 3);
	test_check_eq("queue_notify_off is read-only", 0, cc_read(&d, CC_Q_NOFF, 2));
	test_check_eq("still no NEEDS_RESET", 0, status(&d) & VIRTIO_STATUS_NEEDS_RESET);

	/* A loop: NEEDS_RESET and a configuration interrupt. */
	ring_desc(&r, 3, BUF_BASE, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	ring_post(&r, 3);
	ring_kick(&r);
	test_check_eq("loop: NEEDS_RESET", VIRTIO_STATUS_NEEDS_RESET, status(&d) & VIRTIO_STATUS_NEEDS_RESET);
	test_check_eq("loop: configuration interrupt 0x42", 0x42, test_take_interrupt(vm->cpus[0]));
	cc_write(&d, CC_STATUS, 1, 0);
	test_check_eq("reset clears NEEDS_RESET", 0, status(&d));
	cc_write(&d, CC_Q_SELECT, 2, 0);
	test_check_eq("reset: queue disabled", 0, cc_read(&d, CC_Q_ENABLE, 2));
	test_check_eq("reset: queue size back to the maximum", 64, cc_read(&d, CC_Q_SIZE, 2));
	test_check_eq("reset: queue vector dropped", 0xffff, cc_read(&d, CC_Q_MSIX, 2));
	test_check_eq("reset: queue address dropped", 0, cc_read(&d, CC_Q_DESC, 4));

	/* The device works again after the reset. */
	negotiate(&d, 0);
	ring_setup(&r, &d, 0, 8, 1);
	cc_write(&d, CC_STATUS, 1, status(&d) | VIRTIO_STATUS_DRIVER_OK);
	ring_desc(&r, 0, BUF_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("after reset: request served", 1, ring_used_idx(&r));
	test_check_eq("after reset: interrupt", 0x41, test_take_interrupt(vm->cpus[0]));

	/* Doorbells before DRIVER_OK wait for it (3.1.1). */
	negotiate(&d, 0);
	ring_setup(&r, &d, 0, 8, 1);
	ring_desc(&r, 0, BUF_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("before DRIVER_OK: nothing used", 0, ring_used_idx(&r));
	cc_write(&d, CC_STATUS, 1, status(&d) | VIRTIO_STATUS_DRIVER_OK);
	test_check_eq("at DRIVER_OK: served", 1, ring_used_idx(&r));
	test_take_interrupt(vm->cpus[0]);
	cc_write(&d, CC_STATUS, 1, 0);
	cfg_write(slot, d.msix_cap + 2, 2, 0);
}

/* ---- virtio-rng over INTx (vectors=0) ----------------------------------------------- */

static void test_intx(void)
{
	struct vdev d;
	struct ring r;
	unsigned gsi;

	test_check(find_device(0x1044, 1, &d), "second virtio-rng found", "not on bus 0");
	test_check_eq("vectors=0: no MSI-X capability", 0, d.msix_cap);
	gsi = pci_intx_gsi(d.slot, 0);
	test_ioapic_route(vm, gsi, 0x51, 0, true);
	negotiate(&d, 0);
	ring_setup(&r, &d, 0, 8, 0);
	cc_write(&d, CC_STATUS, 1, status(&d) | VIRTIO_STATUS_DRIVER_OK);
	ring_desc(&r, 0, BUF_BASE, 16, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("INTx: request served", 1, ring_used_idx(&r));
	test_check(test_lapic_irr(vm->cpus[0], 0x51), "INTx: the GSI's vector is pending", "IRR clear");
	test_check_eq("INTx: PCI status interrupt bit", 0x08, cfg_read(d.slot, 0x06, 2) & 0x08);
	test_check_eq("INTx: ISR says queue", 1, mmio_read(d.isr, 1));
	test_check_eq("INTx: reading ISR cleared it", 0, mmio_read(d.isr, 1));
	test_check_eq("INTx: PCI status bit clear", 0, cfg_read(d.slot, 0x06, 2) & 0x08);
	test_check_eq("INTx: taken once", 0x51, test_take_interrupt(vm->cpus[0]));
	test_check_eq("INTx: line low after the EOI", -1, test_take_interrupt(vm->cpus[0]));

	/* INTX_DISABLE in the command register holds the line down. */
	cfg_write(d.slot, 0x04, 2, 0x0406);
	ring_post(&r, 0);
	ring_kick(&r);
	test_check_eq("INTx disabled: no interrupt", -1, test_take_interrupt(vm->cpus[0]));
	test_check_eq("INTx disabled: ISR still says queue", 1, mmio_read(d.isr, 1));
	cfg_write(d.slot, 0x04, 2, 0x0006);
	cc_write(&d, CC_STATUS, 1, 0);
}

/* ---- virtio-console ------------------------------------------------------------------- */

static int out_pipe[2], in_pipe[2];

/* The receive queue has used_seen entries used. */
static bool rx_used(void *arg)
{
	struct ring *r = arg;
	return ring_used_idx(r) == r->used_seen;
}

static void test_console(void)
{
	struct vdev d;
	struct ring rx, tx;
	char buf[64] = {0};
	ssize_t n;

	test_check(find_device(0x1043, 0, &d), "virtio-console found (1af4:1043)", "not on bus 0");
	test_check_eq("two queues", 2, cc_read(&d, CC_NUMQ, 2));
	test_check_eq("device configuration of 12 bytes", 12, d.device_len);
	test_check_eq("max_nr_ports 1", 1, mmio_read(d.device + 4, 4));
	cc_write(&d, CC_DFSELECT, 4, 0);
	test_check_eq("offers EMERG_WRITE", 4, cc_read(&d, CC_DF, 4) & 4);
	test_check(negotiate(&d, 4), "FEATURES_OK", "status 0x%x", status(&d));

	mmio_write(d.device + 8, 4, 'E');
	mmio_write(d.device + 0, 2, 80); /* cols is read-only */
	test_check_eq("cols stays 0", 0, mmio_read(d.device, 2));
	n = read(out_pipe[0], buf, sizeof(buf));
	test_check(n == 1 && buf[0] == 'E', "emergency write reaches the back end", "read %zd '%c'", n, buf[0]);

	ring_setup(&rx, &d, 0, 16, 0xffff);
	ring_setup(&tx, &d, 1, 16, 0xffff);
	cc_write(&d, CC_STATUS, 1, status(&d) | VIRTIO_STATUS_DRIVER_OK);

	memcpy(hva(BUF_BASE), "hello, ", 7);
	memcpy(hva(BUF_BASE + 0x100), "hvc0\n", 5);
	ring_desc(&tx, 0, BUF_BASE, 7, VIRTQ_DESC_F_NEXT, 1);
	ring_desc(&tx, 1, BUF_BASE + 0x100, 5, 0, 0);
	ring_post(&tx, 0);
	ring_kick(&tx);
	test_check_eq("transmit used", 1, ring_used_idx(&tx));
	memset(buf, 0, sizeof(buf));
	n = read(out_pipe[0], buf, sizeof(buf));
	test_check(n == 12 && !memcmp(buf, "hello, hvc0\n", 12), "transmitted bytes reach the back end",
		   "read %zd '%s'", n, buf);

	ring_desc(&rx, 0, BUF_BASE + 0x1000, 32, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&rx, 0);
	ring_kick(&rx);
	test_check(write(in_pipe[1], "ls\n", 3) == 3, "typed on stdin", "write failed");
	rx.used_seen = 1;
	test_check(test_wait(rx_used, &rx, 5000000000ull), "stdin reaches the receive queue", "nothing used");
	test_check_eq("received length", 3, ring_used_len(&rx, 0));
	test_check(!memcmp(hva(BUF_BASE + 0x1000), "ls\n", 3), "received bytes", "wrong bytes");

	/* Typed before the driver posts a buffer: held until there is one. */
	test_check(write(in_pipe[1], "x", 1) == 1, "typed ahead", "write failed");
	test_sleep_us(20000);
	ring_desc(&rx, 1, BUF_BASE + 0x1100, 32, VIRTQ_DESC_F_WRITE, 0);
	ring_post(&rx, 1);
	rx.used_seen = 2;
	ring_kick(&rx);
	test_check(test_wait(rx_used, &rx, 5000000000ull), "typed ahead: delivered on the next buffer", "used idx %u",
		   ring_used_idx(&rx));
	test_check(*(char *)hva(BUF_BASE + 0x1100) == 'x', "typed ahead: the byte", "wrong byte");
	cc_write(&d, CC_STATUS, 1, 0);
	test_check_eq("reset stops the console", 0, status(&d));
}

int main(void)
{
	static const char *const devices[] = {"virtio-rng-pci", "virtio-rng-pci,vectors=0", "virtio-serial-pci",
					      "virtconsole"};
	struct vm_config cfg = {.cpus = 1, .memory = 64ull << 20, .serial = "stdio", .ndevices = 4};
	int ret;

	memcpy(cfg.devices, devices, sizeof(devices));
	/* The console's back end: a pipe for output, stdin from another. */
	if (pipe(out_pipe) < 0 || pipe(in_pipe) < 0 || dup2(in_pipe[0], STDIN_FILENO) < 0)
		abort();
	vm = test_vm_create_config(&cfg);
	vm->console_fd = out_pipe[1];
	fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
	test_pic_init(vm, 0xff, 0xff);
	test_pit_quiet(vm);

	test_rng();
	test_intx();
	test_console();

	ret = test_finish();
	vm->console_fd = -1;
	test_vm_destroy(vm);
	return ret;
}
