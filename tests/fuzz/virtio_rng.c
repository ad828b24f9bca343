/* libFuzzer target: virtio-rng's requests, through the PCI transport (device.c). */
#include "tests/fuzz/device.h"

const char *const fuzz_devices[] = {"virtio-rng-pci"};
const unsigned fuzz_device_count = 1;
