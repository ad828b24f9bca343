/* The workload as a guest: prints the checksum and the TSC cycles it took. */
#include "guest.h"
#include "tests/bench/workload.h"

void main(void)
{
	uint64_t start = rdtsc();
	uint64_t sum = bench_workload(BENCH_ROUNDS);
	printf("checksum 0x%lx cycles %lu\n", sum, rdtsc() - start);
	check_pass("workload ran");
}
