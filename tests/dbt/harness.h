/*
 * A dbt_cpu on a RAM buffer with a fake device model: the test harness of
 * the dbt unit tests and benchmark. Ports: 0x1234 reads 0xab..., writes are
 * logged. MMIO: a 4 KiB scratch device at MMIO_BASE; other addresses read
 * as all ones. MSR exits: APIC base reads 0xfee00900; others fault.
 */
#ifndef VIREO_TESTS_DBT_HARNESS_H
#define VIREO_TESTS_DBT_HARNESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dbt/dbt.h"
#include "layout.h"

#define SNIPPET(name) extern const uint8_t snip_##name[], snip_##name##_end[];

struct harness {
	uint8_t *ram;
	struct dbt_env env;
	struct dbt_cpu *cpu;
	atomic_bool kick, hint;
	struct vcpu_exit log[64];
	unsigned nlog;
	uint8_t mmio[4096];
	int pending;   /* vector pending_interrupt() offers once, or -1 */
	unsigned nmis; /* NMIs take_nmi() hands out */
	unsigned accepted;
	unsigned cpu_index;
};

/* RAM, a vCPU and the tables of layout.h (GDT, IDT, TSS, page tables). */
void h_init(struct harness *h, uint8_t *shared_ram, unsigned cpu_index);
void h_destroy(struct harness *h);
/* (Re)writes the GDT, IDT, TSS, exception stubs and page tables into RAM. */
void h_build_tables(uint8_t *ram);
/* Copies a snippet to gpa. */
void h_load(struct harness *h, uint64_t gpa, const uint8_t *start, const uint8_t *end);
/* Power-on-like states: long mode at CODE (CPL 0), flat 32-bit protected
 * mode at CODE, real mode at TRAMP (as after a SIPI). */
void h_state_long(struct x86_state *s);
void h_state_prot32(struct x86_state *s);
void h_state_real(struct x86_state *s);
/* Runs until HLT, shutdown or error (kicks are retried). */
struct vcpu_exit h_run(struct harness *h);
void h_get(struct harness *h, struct x86_state *s);
void h_set(struct harness *h, const struct x86_state *s);
uint64_t h_rd64(struct harness *h, uint64_t gpa);
void h_wr64(struct harness *h, uint64_t gpa, uint64_t v);

#endif
