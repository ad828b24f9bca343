/* libFuzzer target: virtio-blk's requests, through the PCI transport
 * (device.c), on a 1 MiB raw image in memory (a memfd) and the device's
 * io_uring I/O thread. Completions come from that thread, so a request may
 * still run when the next operation does; the reset that starts every input
 * waits for it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/fuzz/device.h"
#include "vmm/vmm.h"

const char *const fuzz_devices[] = {"virtio-blk-pci,drive=d0,num-queues=2,serial=fuzz"};
const unsigned fuzz_device_count = 1;

void fuzz_configure(struct vm_config *cfg)
{
	static char path[64];
	int fd = memfd_create("vireo-fuzz-disk", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	cfg->drives[0] = (struct vm_drive){.id = "d0", .file = path, .format = "raw"};
	cfg->ndrives = 1;
}
