/* libFuzzer target: virtio-console's requests and configuration, through
 * the PCI transport (device.c). Output goes nowhere (-serial none). */
#include "tests/fuzz/device.h"

const char *const fuzz_devices[] = {"virtio-serial-pci", "virtconsole"};
const unsigned fuzz_device_count = 2;
