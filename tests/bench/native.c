/* The workload as a host process: prints the checksum and the seconds. */
#include <stdio.h>
#include <time.h>

#include "tests/bench/workload.h"

int main(void)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	uint64_t sum = bench_workload(BENCH_ROUNDS);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("checksum 0x%llx seconds %.6f\n", (unsigned long long)sum,
	       (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
