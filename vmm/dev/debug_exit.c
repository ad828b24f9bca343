/* The isa-debug-exit port at 0xf4: a write of v ends the VM with status
 * (v << 1) | 1, as QEMU's device does, so test guests run on both. */
#include "vmm/internal.h"

#define DEBUG_EXIT_PORT 0xf4

static void debug_exit_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct vm *vm = opaque;
	char why[64];
	(void)vcpu;
	(void)offset;
	(void)size;

	snprintf(why, sizeof(why), "guest wrote 0x%x to the debug-exit port", (unsigned)value);
	vm_request_exit(vm, (int)(((uint32_t)value << 1) | 1), why);
}

static const struct bus_ops debug_exit_ops = {NULL, debug_exit_write};

static int debug_exit_init(struct vm *vm)
{
	return bus_register(vm, BUS_PIO, DEBUG_EXIT_PORT, 4, &debug_exit_ops, vm, "isa-debug-exit");
}

DEVICE_INIT("isa-debug-exit", DEVICE_ORDER_PLATFORM, debug_exit_init, NULL)
