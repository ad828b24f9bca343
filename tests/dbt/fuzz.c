/*
 * Hostile guest code: random bytes run in long mode, 32-bit protected mode
 * and real mode. Whatever they do (write the page tables, the IDT, fault in
 * a loop, spin, touch MMIO and ports), the host must not crash, hang or
 * leave guest RAM: each run ends with HLT, a triple fault, an engine error
 * or a kick from a watchdog. Usage: dbt-fuzz [iterations [seed]];
 * DBT_FUZZ_VERBOSE=1 prints why each engine error happened.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static atomic_bool *watch_kick;
static atomic_uint watch_gen;

static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		unsigned g = atomic_load(&watch_gen);
		usleep(2000);
		if (g == atomic_load(&watch_gen))
			atomic_store(watch_kick, true);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned iterations = argc > 1 ? (unsigned)atoi(argv[1]) : 3000;
	rng_state = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x9e3779b97f4a7c15ull;
	bool verbose = getenv("DBT_FUZZ_VERBOSE") != NULL;
	struct harness h;
	unsigned reasons[8] = {0};
	pthread_t t;

	h_init(&h, NULL, 0);
	watch_kick = &h.kick;
	pthread_create(&t, NULL, watchdog, NULL);
	for (unsigned it = 0; it < iterations; it++) {
		struct x86_state s;
		uint8_t code[4096];
		for (size_t i = 0; i < sizeof(code); i += 8) {
			uint64_t r = rng();
			memcpy(code + i, &r, 8);
		}
		/* Some runs get mostly plausible opcodes: prefixes, 0F maps, x87, SSE. */
		if (it % 3 == 0)
			for (size_t i = 0; i < sizeof(code); i += 4)
				code[i] = (const uint8_t[]){0x0f, 0x66, 0xf3, 0xdd, 0xd9, 0x48, 0xf0, 0x8b}[rng() % 8];
		h_build_tables(h.ram);
		unsigned mode = it % 4;
		if (mode == 3) {
			h_state_real(&s);
			h_load(&h, TRAMP, code, code + sizeof(code));
		} else {
			if (mode == 2)
				h_state_prot32(&s);
			else
				h_state_long(&s);
			h_load(&h, CODE, code, code + sizeof(code));
		}
		for (int r = 0; r < 16; r++)
			s.gpr[r] = r == RSP ? s.gpr[RSP] : (rng() % 3 == 0 ? rng() : DATA + (rng() & 0xffff));
		h.pending = (rng() & 7) == 0 ? 0x40 : -1;
		h.nmis = (rng() & 15) == 0;
		atomic_store(&h.hint, true);
		h_set(&h, &s);
		atomic_fetch_add(&watch_gen, 1);
		struct vcpu_exit e;
		dbt_cpu_run(h.cpu, &e);
		atomic_fetch_add(&watch_gen, 1);
		atomic_store(&h.kick, false);
		reasons[e.reason & 7]++;
		if (e.reason == VCPU_EXIT_ERROR && verbose)
			printf("error: %s at 0x%llx\n", e.error.message, (unsigned long long)e.error.rip);
		h.nlog = 0;
	}
	printf("PASS %u random programs: %u halt, %u shutdown, %u kick, %u error\n", iterations, reasons[VCPU_EXIT_HLT],
	       reasons[VCPU_EXIT_SHUTDOWN], reasons[VCPU_EXIT_KICK], reasons[VCPU_EXIT_ERROR]);
	h_destroy(&h);
	return 0;
}
