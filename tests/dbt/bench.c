/*
 * The interpreter's speed on a CPU-bound loop (ALU, a load, a store, a
 * taken branch per iteration): guest instructions per second, and the same
 * loop run natively for the ratio. A benchmark, not a test: it prints and
 * never judges.
 */
#include <stdio.h>
#include <time.h>

#include "harness.h"

SNIPPET(loop_bench)
SNIPPET(sse_bench)
uint64_t bench_loop_native(uint64_t n, uint64_t *buf);

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
	struct harness h;
	struct x86_state s;

	h_init(&h, NULL, 0);
	h_load(&h, CODE, snip_loop_bench, snip_loop_bench_end);
	h_state_long(&s);
	h_set(&h, &s);
	uint64_t before = dbt_cpu_instructions(h.cpu);
	double t0 = now();
	struct vcpu_exit e = h_run(&h);
	double t1 = now();
	uint64_t n = dbt_cpu_instructions(h.cpu) - before;
	h_get(&h, &s);

	uint64_t buf = 0;
	double t2 = now();
	uint64_t native = bench_loop_native(BENCH_N, &buf);
	double t3 = now();

	double mips = (double)n / (t1 - t0) / 1e6;
	printf("%-28s %14s %10s %12s\n", "loop (6 insns/iteration)", "instructions", "seconds", "MIPS");
	printf("%-28s %14llu %10.3f %12.1f\n", "dbt interpreter", (unsigned long long)n, t1 - t0, mips);
	printf("%-28s %14llu %10.3f %12.1f\n", "native", (unsigned long long)(6ull * BENCH_N + 4), t3 - t2,
	       (6.0 * BENCH_N + 4) / (t3 - t2) / 1e6);
	printf("slowdown vs native: %.1fx; results %s\n", (t1 - t0) / (t3 - t2),
	       e.reason == VCPU_EXIT_HLT && s.gpr[RAX] == native ? "agree" : "DIFFER");

	h_load(&h, CODE, snip_sse_bench, snip_sse_bench_end);
	h_state_long(&s);
	h_set(&h, &s);
	before = dbt_cpu_instructions(h.cpu);
	t0 = now();
	h_run(&h);
	t1 = now();
	n = dbt_cpu_instructions(h.cpu) - before;
	printf("%-28s %14llu %10.3f %12.1f\n", "dbt, SSE loop (4 of 7 SSE)", (unsigned long long)n, t1 - t0,
	       (double)n / (t1 - t0) / 1e6);
	h_destroy(&h);
	return 0;
}
