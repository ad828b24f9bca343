/* libFuzzer target: virtio-net's transmit, receive and control requests,
 * through the PCI transport (device.c), on a slirp back end that reaches
 * nothing outside its virtual network (restrict=on): what the guest sends
 * goes through libslirp, and what slirp answers comes back into the
 * receive buffers from the device's receive thread. */
#include "tests/fuzz/device.h"
#include "vmm/vmm.h"

const char *const fuzz_devices[] = {"virtio-net-pci,netdev=n0"};
const unsigned fuzz_device_count = 1;

void fuzz_configure(struct vm_config *cfg)
{
	cfg->netdevs[0] = "user,id=n0,restrict=on,ipv6=off";
	cfg->nnetdevs = 1;
}
