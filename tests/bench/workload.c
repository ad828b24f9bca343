/*
 * A CPU-bound workload that the benchmark runs natively, in a Vireo guest and
 * in a QEMU guest: integer arithmetic, loads and stores, branches, calls and
 * returns, multiplication and division. No floating point, no system calls,
 * so the same C runs freestanding in a guest and in a host process.
 */
#include <stdint.h>

#include "tests/bench/workload.h"

static uint8_t sieve[65536];
static uint32_t array[512];

static unsigned count_primes(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < sizeof(sieve); i++)
		sieve[i] = i >= 2;
	for (unsigned i = 2; i * i < sizeof(sieve); i++)
		if (sieve[i])
			for (unsigned j = i * i; j < sizeof(sieve); j += i)
				sieve[j] = 0;
	for (unsigned i = 0; i < sizeof(sieve); i++)
		n += sieve[i];
	return n;
}

static uint64_t fnv_hash(const uint8_t *p, unsigned len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (unsigned i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void insertion_sort(uint32_t *a, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint32_t v = a[i];
		unsigned j = i;
		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
}

__attribute__((noinline)) static uint64_t fib(unsigned n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static uint64_t divisions(uint64_t seed)
{
	uint64_t acc = 0;
	for (uint64_t i = 1; i < 2000; i++)
		acc += (seed * i) / (i | 1) + (seed % (i + 7));
	return acc;
}

uint64_t bench_workload(unsigned rounds)
{
	uint64_t sum = 0, seed = 12345;

	for (unsigned r = 0; r < rounds; r++) {
		sum += count_primes();
		sum ^= fnv_hash(sieve, sizeof(sieve));
		for (unsigned i = 0; i < 512; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			array[i] = seed >> 33;
		}
		insertion_sort(array, 512);
		sum += array[0] + array[511];
		sum += fib(20);
		sum += divisions(seed);
	}
	return sum;
}
