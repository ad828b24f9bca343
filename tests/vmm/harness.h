/*
 * A VM with no guest and a stub engine, for driving the device models
 * through the buses as a vCPU would, and a few checks in the spirit of the
 * guest runtime: one line per check, "PASS name" or "FAIL name: why".
 */
#ifndef VIREO_TESTS_VMM_HARNESS_H
#define VIREO_TESTS_VMM_HARNESS_H

#include "vmm/internal.h"

/* The VM: RAM, buses, clock thread, every registered device, cpus vCPUs. */
struct vm *test_vm_create(unsigned cpus);
/* The same from a configuration: cpus, memory, serial and -device specs
 * (the console back end stays closed: console_fd is -1). */
struct vm *test_vm_create_config(const struct vm_config *cfg);
void test_vm_destroy(struct vm *vm);

/* How often the stub engine was asked to kick the vCPU. */
unsigned test_kicks(struct vcpu *vcpu);
/* What RDTSC reads in the stub engine's guests. */
uint64_t test_guest_tsc(void);

uint8_t test_inb(struct vm *vm, uint16_t port);
void test_outb(struct vm *vm, uint16_t port, uint8_t value);
uint64_t test_pio_read(struct vm *vm, uint16_t port, unsigned size);
void test_pio_write(struct vm *vm, uint16_t port, unsigned size, uint64_t value);
uint32_t test_mmio_read32(struct vm *vm, struct vcpu *vcpu, uint64_t addr);
void test_mmio_write32(struct vm *vm, struct vcpu *vcpu, uint64_t addr, uint32_t value);

/* LAPIC registers of a vCPU through the xAPIC page. */
uint32_t test_lapic_read(struct vcpu *vcpu, unsigned reg);
void test_lapic_write(struct vcpu *vcpu, unsigned reg, uint32_t value);
bool test_lapic_irr(struct vcpu *vcpu, uint8_t vector);
bool test_lapic_isr(struct vcpu *vcpu, uint8_t vector);
/* Takes the vCPU's highest deliverable interrupt as the engine would and
 * ends it with an EOI; returns its vector or -1. */
int test_take_interrupt(struct vcpu *vcpu);

uint32_t test_ioapic_read(struct vm *vm, unsigned reg);
void test_ioapic_write(struct vm *vm, unsigned reg, uint32_t value);
/* Routes IOAPIC pin to vector on APIC ID dest; level: level-triggered. */
void test_ioapic_route(struct vm *vm, unsigned pin, uint8_t vector, uint8_t dest, bool level);

/* Parks PIT channel 0 in mode 1, where its gate never triggers it: IRQ0
 * stays high and quiet, out of the way of other tests. */
void test_pit_quiet(struct vm *vm);

/* Remaps the 8259s to 0x20/0x28 and sets their masks. */
void test_pic_init(struct vm *vm, uint8_t master_mask, uint8_t slave_mask);

/* Random hostile accesses to a bus range: no crash, no hang. */
void test_fuzz_pio(struct vm *vm, uint16_t base, unsigned len, unsigned rounds);
void test_fuzz_mmio(struct vm *vm, struct vcpu *vcpu, uint64_t base, unsigned len, unsigned rounds);

uint64_t test_now_ns(void);
void test_sleep_us(unsigned us);
/* Polls cond(arg) until true or timeout; returns whether it came true. */
bool test_wait(bool (*cond)(void *arg), void *arg, uint64_t timeout_ns);

void test_check(bool ok, const char *name, const char *why_fmt, ...) __attribute__((format(printf, 3, 4)));
void test_check_eq(const char *name, uint64_t expected, uint64_t got);
/* Prints the summary; the process's exit status. */
int test_finish(void);

enum {
	LAPIC_ID = 0x20,
	LAPIC_VERSION = 0x30,
	LAPIC_TPR = 0x80,
	LAPIC_PPR = 0xa0,
	LAPIC_EOI = 0xb0,
	LAPIC_LDR = 0xd0,
	LAPIC_DFR = 0xe0,
	LAPIC_SVR = 0xf0,
	LAPIC_ISR = 0x100,
	LAPIC_TMR = 0x180,
	LAPIC_IRR = 0x200,
	LAPIC_ESR = 0x280,
	LAPIC_ICR_LO = 0x300,
	LAPIC_ICR_HI = 0x310,
	LAPIC_LVT_TIMER = 0x320,
	LAPIC_LVT_LINT0 = 0x350,
	LAPIC_LVT_LINT1 = 0x360,
	LAPIC_LVT_ERROR = 0x370,
	LAPIC_TIMER_INIT = 0x380,
	LAPIC_TIMER_CURRENT = 0x390,
	LAPIC_TIMER_DIVIDE = 0x3e0,
};

#endif
