/*
 * The device fuzzers' common part: a VM with the devices a target names,
 * driven through configuration space and BAR 0 of its first virtio
 * function by a small program the input spells (device.c says how).
 */
#ifndef VIREO_TESTS_FUZZ_DEVICE_H
#define VIREO_TESTS_FUZZ_DEVICE_H

#include <stddef.h>
#include <stdint.h>

/* Set by each target: the -device specs of its VM. */
extern const char *const fuzz_devices[];
extern const unsigned fuzz_device_count;
/* Optional, defined by a target whose devices need more than -device specs
 * (virtio-blk's drives, virtio-net's back ends): completes the VM's
 * configuration. */
struct vm_config;
void fuzz_configure(struct vm_config *cfg) __attribute__((weak));

#endif
