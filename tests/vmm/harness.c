#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "tests/vmm/harness.h"

#define TEST_MEMORY (64ull << 20)
#define LAPIC_PAGE  0xfee00000ull
#define IOAPIC_PAGE 0xfec00000ull

static atomic_uint kicks[MAX_CPUS];
static unsigned passed, failed;

static const char *stub_unavailable(void)
{
	return NULL;
}

static int stub_vm_init(struct vm *vm)
{
	(void)vm;
	return 0;
}

static void stub_vm_destroy(struct vm *vm)
{
	(void)vm;
}

static int stub_vcpu_init(struct vcpu *vcpu)
{
	(void)vcpu;
	return 0;
}

static void stub_vcpu_destroy(struct vcpu *vcpu)
{
	(void)vcpu;
}

static int stub_vcpu_run(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	(void)vcpu;
	(void)exit;
	return -ENOSYS;
}

/* Like the dbt engine's, the stub's guest TSC runs at the host's rate from
 * 0 when the VM was made. */
static uint64_t tsc_offset;

uint64_t test_guest_tsc(void)
{
	return __rdtsc() - tsc_offset;
}

static int stub_state(struct vcpu *vcpu, struct x86_state *state)
{
	(void)vcpu;
	memset(state, 0, sizeof(*state));
	state->tsc = test_guest_tsc();
	return 0;
}

static int stub_set_state(struct vcpu *vcpu, const struct x86_state *state)
{
	(void)vcpu;
	(void)state;
	return 0;
}

static void stub_kick(struct vcpu *vcpu)
{
	atomic_fetch_add(&kicks[vcpu->index], 1);
}

static bool stub_irqchip_in_engine(struct vm *vm)
{
	(void)vm;
	return false;
}

static const struct engine_ops stub_engine_ops = {
    .name = "test",
    .unavailable = stub_unavailable,
    .vm_init = stub_vm_init,
    .vm_destroy = stub_vm_destroy,
    .vcpu_init = stub_vcpu_init,
    .vcpu_destroy = stub_vcpu_destroy,
    .vcpu_run = stub_vcpu_run,
    .get_state = stub_state,
    .set_state = stub_set_state,
    .kick = stub_kick,
    .irqchip_in_engine = stub_irqchip_in_engine,
};

struct vm *test_vm_create(unsigned cpus)
{
	struct vm_config cfg = {.cpus = cpus, .memory = TEST_MEMORY, .serial = "none"};

	return test_vm_create_config(&cfg);
}

struct vm *test_vm_create_config(const struct vm_config *cfg)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	unsigned cpus = cfg->cpus;
	char err[256];
	int ret;

	if (!vm || !cpus || cpus > MAX_CPUS)
		abort();
	vm->cfg = *cfg;
	vm->console_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	clock_init(vm);
	bus_init(&vm->pio, "port");
	bus_init(&vm->mmio, "MMIO");
	vm->engine = &stub_engine_ops;
	tsc_offset = __rdtsc();
	if (netdevs_check(cfg, err, sizeof(err)) < 0 || virtio_devices_check(cfg, err, sizeof(err)) < 0 ||
	    memory_init(vm, cfg->memory, err, sizeof(err)) < 0 || netdevs_open(vm, err, sizeof(err)) < 0 ||
	    devices_init(vm, err, sizeof(err)) < 0) {
		fprintf(stderr, "test VM: %s\n", err);
		exit(1);
	}
	for (unsigned i = 0; i < cpus; i++) {
		vm->ncpus = i + 1;
		ret = vcpu_create(vm, i);
		if (ret < 0) {
			fprintf(stderr, "test VM: vCPU %u: %s\n", i, strerror(-ret));
			exit(1);
		}
	}
	ret = clock_start(vm);
	if (ret < 0) {
		fprintf(stderr, "test VM: clock thread: %s\n", strerror(-ret));
		exit(1);
	}
	return vm;
}

void test_vm_destroy(struct vm *vm)
{
	vm_destroy(vm);
}

unsigned test_kicks(struct vcpu *vcpu)
{
	return atomic_load(&kicks[vcpu->index]);
}

uint64_t test_pio_read(struct vm *vm, uint16_t port, unsigned size)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_PIO, .pio = {.port = port, .size = size, .write = false}};
	vcpu_exit_io(vm->cpus[0], &e);
	return e.pio.data;
}

void test_pio_write(struct vm *vm, uint16_t port, unsigned size, uint64_t value)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_PIO,
			      .pio = {.port = port, .size = size, .write = true, .data = value}};
	vcpu_exit_io(vm->cpus[0], &e);
}

uint8_t test_inb(struct vm *vm, uint16_t port)
{
	return test_pio_read(vm, port, 1);
}

void test_outb(struct vm *vm, uint16_t port, uint8_t value)
{
	test_pio_write(vm, port, 1, value);
}

uint32_t test_mmio_read32(struct vm *vm, struct vcpu *vcpu, uint64_t addr)
{
	return bus_read(&vm->mmio, vcpu, addr, 4);
}

void test_mmio_write32(struct vm *vm, struct vcpu *vcpu, uint64_t addr, uint32_t value)
{
	bus_write(&vm->mmio, vcpu, addr, 4, value);
}

uint32_t test_lapic_read(struct vcpu *vcpu, unsigned reg)
{
	return test_mmio_read32(vcpu->vm, vcpu, LAPIC_PAGE + reg);
}

void test_lapic_write(struct vcpu *vcpu, unsigned reg, uint32_t value)
{
	test_mmio_write32(vcpu->vm, vcpu, LAPIC_PAGE + reg, value);
}

bool test_lapic_irr(struct vcpu *vcpu, uint8_t vector)
{
	return test_lapic_read(vcpu, LAPIC_IRR + 0x10 * (vector / 32)) & (1u << (vector % 32));
}

bool test_lapic_isr(struct vcpu *vcpu, uint8_t vector)
{
	return test_lapic_read(vcpu, LAPIC_ISR + 0x10 * (vector / 32)) & (1u << (vector % 32));
}

int test_take_interrupt(struct vcpu *vcpu)
{
	int v = vcpu_pending_interrupt(vcpu);
	bool fault = false;

	if (v >= 0) {
		vcpu_accept_interrupt(vcpu, v);
		if (lapic_msr_read(vcpu, 0x1b, &fault) & (1u << 10))
			lapic_msr_write(vcpu, 0x80b, 0, &fault);
		else
			test_lapic_write(vcpu, LAPIC_EOI, 0);
	}
	return v;
}

uint32_t test_ioapic_read(struct vm *vm, unsigned reg)
{
	test_mmio_write32(vm, vm->cpus[0], IOAPIC_PAGE, reg);
	return test_mmio_read32(vm, vm->cpus[0], IOAPIC_PAGE + 0x10);
}

void test_ioapic_write(struct vm *vm, unsigned reg, uint32_t value)
{
	test_mmio_write32(vm, vm->cpus[0], IOAPIC_PAGE, reg);
	test_mmio_write32(vm, vm->cpus[0], IOAPIC_PAGE + 0x10, value);
}

void test_ioapic_route(struct vm *vm, unsigned pin, uint8_t vector, uint8_t dest, bool level)
{
	test_ioapic_write(vm, 0x11 + 2 * pin, (uint32_t)dest << 24);
	test_ioapic_write(vm, 0x10 + 2 * pin, vector | (level ? 1u << 15 : 0));
}

void test_pic_init(struct vm *vm, uint8_t master_mask, uint8_t slave_mask)
{
	test_outb(vm, 0x20, 0x11);
	test_outb(vm, 0xa0, 0x11);
	test_outb(vm, 0x21, 0x20);
	test_outb(vm, 0xa1, 0x28);
	test_outb(vm, 0x21, 0x04);
	test_outb(vm, 0xa1, 0x02);
	test_outb(vm, 0x21, 0x01);
	test_outb(vm, 0xa1, 0x01);
	test_outb(vm, 0x21, master_mask);
	test_outb(vm, 0xa1, slave_mask);
}

void test_pit_quiet(struct vm *vm)
{
	test_outb(vm, 0x43, 0x32);
	test_outb(vm, 0x40, 0x00);
	test_outb(vm, 0x40, 0x00);
}

static const unsigned sizes[] = {1, 2, 4, 8};

void test_fuzz_pio(struct vm *vm, uint16_t base, unsigned len, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		unsigned size = sizes[rand() % 3];
		uint16_t port = base + rand() % len;
		if (rand() & 1)
			test_pio_write(vm, port, size, (uint64_t)rand() << 16 ^ rand());
		else
			test_pio_read(vm, port, size);
	}
}

void test_fuzz_mmio(struct vm *vm, struct vcpu *vcpu, uint64_t base, unsigned len, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		unsigned size = sizes[rand() % 4];
		uint64_t addr = base + (rand() % len & ~(uint64_t)(size - 1));
		/* Mostly register-aligned: those are the interesting ones. */
		if (rand() % 4)
			addr &= ~0xfull;
		if (rand() & 1)
			bus_write(&vm->mmio, vcpu, addr, size, (uint64_t)rand() << 32 ^ rand());
		else
			bus_read(&vm->mmio, vcpu, addr, size);
	}
}

uint64_t test_now_ns(void)
{
	return clock_now_ns();
}

void test_sleep_us(unsigned us)
{
	struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool test_wait(bool (*cond)(void *arg), void *arg, uint64_t timeout_ns)
{
	uint64_t end = test_now_ns() + timeout_ns;
	do {
		if (cond(arg))
			return true;
		test_sleep_us(200);
	} while (test_now_ns() < end);
	return cond(arg);
}

void test_check(bool ok, const char *name, const char *why_fmt, ...)
{
	va_list ap;

	if (ok) {
		passed++;
		printf("PASS %s\n", name);
		return;
	}
	failed++;
	printf("FAIL %s: ", name);
	va_start(ap, why_fmt);
	vprintf(why_fmt, ap);
	va_end(ap);
	printf("\n");
}

void test_check_eq(const char *name, uint64_t expected, uint64_t got)
{
	test_check(expected == got, name, "expected 0x%llx got 0x%llx", (unsigned long long)expected,
		   (unsigned long long)got);
}

int test_finish(void)
{
	printf("DONE %u checks, %u failed\n", passed + failed, failed);
	return failed || !passed;
}
