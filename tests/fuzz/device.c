/*
 * The device fuzzers' harness (libFuzzer). A VM with the target's devices;
 * each input is a program for a driver of the first virtio function on bus
 * 0, which starts from a reset device every time. One byte selects an
 * operation, its operands follow (little-endian):
 *
 *   0 setup  u64 features   negotiate (VERSION_1 added), set up every queue
 *                           (8 entries, rings in RAM, MSI-X on), DRIVER_OK
 *   1 write  u16 off, u8 size, u64 value   BAR 0 write (sizes 1/2/4/8)
 *   2 read   u16 off, u8 size              BAR 0 read
 *   3 config u8 reg, u8 size, u32 value    configuration space write
 *   4 poke   u16 off, u8 n, n bytes        guest RAM in the 128 KiB window, at
 *                                          2 * off: rings and buffers
 *   5 desc   u8 q, u8 i, u16 off, u16 len, u8 flags, u8 next
 *                           descriptor i of queue q, its buffer in the window
 *   6 post   u8 q, u8 head  makes a chain available
 *   7 kick   u8 q           rings queue q's doorbell, then waits a little
 *                           (at most SETTLE_NS) for the device to use what
 *                           was made available, as a driver would: devices
 *                           that complete from their own thread (virtio-blk)
 *                           are fuzzed as deterministically as the others
 *   8 data   u16 off, u8 n, n bytes   guest RAM where the descriptors point
 *                           (the window's upper 64 KiB), e.g. a frame to send
 *
 * The device must survive whatever the program does, and never touch
 * memory outside guest RAM (ASan watches the rest of the process).
 */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/device.h"
#include "tests/vmm/harness.h"
#include "vmm/virtio/virtio.h"

#define RAM	    (4ull << 20)
#define WINDOW	    0x100000ull
#define WINDOW_SIZE 0x20000ull
#define RINGS	    WINDOW /* queue q: descriptors at + 0x1000 q, avail + 0x400, used + 0x800 */
#define BUFFERS	    (WINDOW + 0x10000)
#define QSIZE	    8
#define MAX_QUEUES  8
#define BAR_SIZE    0x8000
#define SETTLE_NS   20000000ull

static struct vm *vm;
static unsigned slot, numq, msix_cap;
static uint64_t msix_table;
static uint32_t bar0;
static uint64_t notify, notify_mult;
static uint16_t avail_idx[MAX_QUEUES];

static uint32_t cfg_read(unsigned reg, unsigned size)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	return test_pio_read(vm, 0xcfc + (reg & 3), size);
}

static void cfg_write(unsigned reg, unsigned size, uint32_t v)
{
	test_pio_write(vm, 0xcf8, 4, 0x80000000u | slot << 11 | (reg & 0xfc));
	test_pio_write(vm, 0xcfc + (reg & 3), size, v);
}

static void bar_write(uint64_t off, unsigned size, uint64_t v)
{
	bus_write(&vm->mmio, vm->cpus[0], bar0 + off, size, v);
}

static uint64_t bar_read(uint64_t off, unsigned size)
{
	return bus_read(&vm->mmio, vm->cpus[0], bar0 + off, size);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct vm_config cfg = {.cpus = 1, .memory = RAM, .serial = "none"};
	unsigned at, n = 0;

	(void)argc;
	(void)argv;
	if (fuzz_device_count > VM_MAX_DEVICES)
		abort();
	memcpy(cfg.devices, fuzz_devices, fuzz_device_count * sizeof(fuzz_devices[0]));
	cfg.ndevices = fuzz_device_count;
	if (fuzz_configure)
		fuzz_configure(&cfg);
	vm = test_vm_create_config(&cfg);
	for (slot = 0; slot < 32 && (cfg_read(0, 4) & 0xffff) != 0x1af4; slot++)
		;
	if (slot == 32)
		abort();
	bar0 = cfg_read(0x10, 4) & ~0xfu;
	for (at = cfg_read(0x34, 1); at && n < 48; at = cfg_read(at + 1, 1), n++) {
		if (cfg_read(at, 1) == 0x11) {
			msix_cap = at;
			msix_table = cfg_read(at + 4, 4) & ~7u;
		}
		if (cfg_read(at, 1) == 0x09 && cfg_read(at + 3, 1) == 2) {
			notify = cfg_read(at + 8, 4);
			notify_mult = cfg_read(at + 16, 4);
		}
	}
	test_lapic_write(vm->cpus[0], LAPIC_SVR, 0x1ff);
	return 0;
}

static void setup(uint64_t features)
{
	features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	bar_write(0x14, 1, 0);
	bar_write(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	bar_write(0x08, 4, 0);
	bar_write(0x0c, 4, (uint32_t)features);
	bar_write(0x08, 4, 1);
	bar_write(0x0c, 4, features >> 32);
	bar_write(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	bar_write(0x10, 2, 0);
	for (unsigned q = 0; q < numq; q++) {
		uint64_t base = RINGS + 0x1000 * q;
		bar_write(0x16, 2, q);
		bar_write(0x18, 2, QSIZE);
		bar_write(0x20, 8, base);
		bar_write(0x28, 8, base + 0x400);
		bar_write(0x30, 8, base + 0x800);
		bar_write(0x1a, 2, q + 1);
		bar_write(0x1c, 2, 1);
	}
	if (msix_cap) {
		for (unsigned v = 0; v <= numq; v++) {
			bar_write(msix_table + 16 * v, 4, 0xfee00000);
			bar_write(msix_table + 16 * v + 8, 4, 0x40 + v);
			bar_write(msix_table + 16 * v + 12, 4, 0);
		}
		cfg_write(msix_cap + 2, 2, 0x8000);
	}
	bar_write(0x14, 1, bar_read(0x14, 1) | VIRTIO_STATUS_DRIVER_OK);
}

struct settle {
	unsigned q;
};

/* Queue q's used ring, where setup put it, has caught up with what was
 * posted; or the device stopped running. */
static bool settled(void *arg)
{
	unsigned q = ((struct settle *)arg)->q;
	uint16_t used =
	    __atomic_load_n((uint16_t *)gpa_to_hva(vm, RINGS + 0x1000 * q + 0x800 + 2, 2), __ATOMIC_ACQUIRE);
	uint8_t status = bar_read(0x14, 1);

	return used == avail_idx[q] ||
	       (status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) != VIRTIO_STATUS_DRIVER_OK;
}

/* Reads n operand bytes, or fails at the end of the input. */
static bool take(const uint8_t **p, const uint8_t *end, void *out, size_t n)
{
	if ((size_t)(end - *p) < n)
		return false;
	memcpy(out, *p, n);
	*p += n;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	uint8_t op;

	/* A clean machine: the BAR where it was, decoding on, MSI-X off, the
	 * device reset, the window zeroed. */
	cfg_write(0x10, 4, bar0);
	cfg_write(0x04, 2, 0x0006);
	if (msix_cap)
		cfg_write(msix_cap + 2, 2, 0);
	bar_write(0x14, 1, 0);
	numq = bar_read(0x12, 2);
	if (numq > MAX_QUEUES)
		numq = MAX_QUEUES;
	memset(avail_idx, 0, sizeof(avail_idx));
	memset(gpa_to_hva(vm, WINDOW, WINDOW_SIZE), 0, WINDOW_SIZE);
	while (vcpu_pending_interrupt(vm->cpus[0]) >= 0)
		test_take_interrupt(vm->cpus[0]);

	while (take(&p, end, &op, 1)) {
		uint64_t v64 = 0;
		uint32_t v32 = 0;
		uint16_t off = 0, len = 0;
		uint8_t sz = 0, q = 0, i = 0, n = 0, flags = 0, next = 0;

		switch (op % 9) {
		case 0:
			if (!take(&p, end, &v64, 8))
				return 0;
			setup(v64);
			break;
		case 1:
			if (!take(&p, end, &off, 2) || !take(&p, end, &sz, 1) || !take(&p, end, &v64, 8))
				return 0;
			bar_write(off % BAR_SIZE, 1u << (sz % 4), v64);
			break;
		case 2:
			if (!take(&p, end, &off, 2) || !take(&p, end, &sz, 1))
				return 0;
			bar_read(off % BAR_SIZE, 1u << (sz % 4));
			break;
		case 3:
			if (!take(&p, end, &i, 1) || !take(&p, end, &sz, 1) || !take(&p, end, &v32, 4))
				return 0;
			sz = 1u << (sz % 3);
			cfg_write(i & ~(sz - 1u), sz, v32);
			break;
		case 4:
			if (!take(&p, end, &off, 2) || !take(&p, end, &n, 1) || (size_t)(end - p) < n)
				return 0;
			memcpy(gpa_to_hva(vm, WINDOW + 2u * off % (WINDOW_SIZE - 256), n), p, n);
			p += n;
			break;
		case 5: {
			struct virtq_desc d;
			if (!take(&p, end, &q, 1) || !take(&p, end, &i, 1) || !take(&p, end, &off, 2) ||
			    !take(&p, end, &len, 2) || !take(&p, end, &flags, 1) || !take(&p, end, &next, 1))
				return 0;
			d = (struct virtq_desc){BUFFERS + off % 0x10000, len, flags, next};
			memcpy(gpa_to_hva(vm, RINGS + 0x1000 * (q % MAX_QUEUES) + 16 * (i % QSIZE), 16), &d, 16);
			break;
		}
		case 6: {
			uint64_t avail;
			uint16_t head;
			if (!take(&p, end, &q, 1) || !take(&p, end, &i, 1))
				return 0;
			q %= MAX_QUEUES;
			head = i;
			avail = RINGS + 0x1000 * q + 0x400;
			memcpy(gpa_to_hva(vm, avail + 4 + 2 * (avail_idx[q] % QSIZE), 2), &head, 2);
			avail_idx[q]++;
			memcpy(gpa_to_hva(vm, avail + 2, 2), &avail_idx[q], 2);
			break;
		}
		case 7:
			if (!take(&p, end, &q, 1))
				return 0;
			bar_write(notify + notify_mult * (q % MAX_QUEUES), 2, q);
			if (q % MAX_QUEUES < numq)
				test_wait(settled, &(struct settle){q % MAX_QUEUES}, SETTLE_NS);
			break;
		case 8:
			if (!take(&p, end, &off, 2) || !take(&p, end, &n, 1) || (size_t)(end - p) < n)
				return 0;
			memcpy(gpa_to_hva(vm, BUFFERS + off % (0x10000 - 256), n), p, n);
			p += n;
			break;
		}
	}
	return 0;
}
