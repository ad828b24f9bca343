/* The benchmark workload shared by the native and guest harnesses. */
#ifndef VIREO_BENCH_WORKLOAD_H
#define VIREO_BENCH_WORKLOAD_H

#include <stdint.h>

#define BENCH_ROUNDS 400

uint64_t bench_workload(unsigned rounds);

#endif
