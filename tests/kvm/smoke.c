/*
 * The kvm engine's smoke test, through the public VMM API only.
 *
 * 1. Engine ops on a one-vCPU VM: set_state/get_state round trip of every
 *    field of struct x86_state, port I/O (1/2/4 bytes, REP OUTSB, REP
 *    INSW) and MMIO (1/2/4/8 bytes) through the buses, completion of the
 *    access before vcpu_run returns, an MSI and an IOAPIC line delivered by
 *    the in-kernel irqchip, kicks (pending, from the vCPU's own device,
 *    from another thread) and a triple fault.
 * 2. A whole two-vCPU guest through vm_run, as `vireo run --engine kvm`
 *    runs it: multiboot entry, serial output, the AP started by INIT/SIPI
 *    in the in-kernel LAPIC, debug-exit status.
 *
 * Where /dev/kvm is not accessible it says why and exits 77 (skipped).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm/vmm.h"

extern const unsigned char smoke_code64_start[], smoke_code64_end[], smoke_code64_after_stop1[], smoke_code64_irq40[],
    smoke_code64_irq41[], smoke_code64_ud2[];
extern const unsigned char smoke_boot_start[], smoke_boot_end[];

/* Guest-physical layout of the engine checks (RAM is 32 MiB). */
#define GDT_ADDR  0x10000
#define IDT_ADDR  0x11000
#define PML4_ADDR 0x20000 /* then the PDPT and four page directories */
#define CODE_ADDR 0x30000
#define DATA_ADDR 0x40000
#define STACK_TOP 0x70000
#define TEST_RAM  (32ull << 20)

static int checks, failed;

__attribute__((format(printf, 3, 4))) static void check(bool ok, const char *name, const char *why, ...)
{
	va_list ap;

	checks++;
	if (ok) {
		printf("PASS %s\n", name);
		return;
	}
	failed++;
	printf("FAIL %s: ", name);
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	printf("\n");
}

static void pass(const char *name)
{
	checks++;
	printf("PASS %s\n", name);
}

static void watchdog(int sig)
{
	static const char msg[] = "FAIL kvm-smoke: no progress in 90 s (a kick or an exit was lost)\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/* ---- the test device: a port range and an MMIO page ----------------------- */

struct access {
	uint64_t offset, value;
	unsigned size;
};

struct test_device {
	struct access pio[32], mmio[32];
	unsigned npio, nmmio;
	unsigned insw_count;
	uint64_t stop, vector;
	unsigned kicks;
};

static void device_log(struct access *log, unsigned *n, uint64_t offset, unsigned size, uint64_t value)
{
	if (*n < 32)
		log[(*n)++] = (struct access){offset, value, size};
}

static uint64_t pio_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	struct test_device *d = opaque;

	(void)vcpu;
	if (offset == 4 && size == 4)
		return 0xcafef00d;
	if (offset == 10 && size == 2)
		return 0x1000 + d->insw_count++;
	return 0;
}

static void pio_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct test_device *d = opaque;

	device_log(d->pio, &d->npio, offset, size, value);
	if (offset == 12 || offset == 14) {
		if (offset == 12)
			d->stop = value;
		else
			d->vector = value;
		d->kicks++;
		kvm_engine_ops.kick(vcpu);
	}
}

static uint64_t mmio_read(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size)
{
	(void)opaque;
	(void)vcpu;
	if (offset == 0x10 && size == 4)
		return 0x89abcdef;
	if (offset == 0x18 && size == 8)
		return 0xfedcba9876543210;
	return 0;
}

static void mmio_write(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value)
{
	struct test_device *d = opaque;

	(void)vcpu;
	device_log(d->mmio, &d->nmmio, offset, size, value);
}

static const struct bus_ops pio_ops = {pio_read, pio_write};
static const struct bus_ops mmio_ops = {mmio_read, mmio_write};

static bool access_is(const struct access *a, uint64_t offset, unsigned size, uint64_t value)
{
	return a->offset == offset && a->size == size && a->value == value;
}

/* ---- guest memory ---------------------------------------------------------- */

static void put64(struct vm *vm, uint64_t gpa, uint64_t v)
{
	guest_write(vm, gpa, &v, sizeof(v));
}

static void idt_gate(struct vm *vm, unsigned vector, uint64_t handler)
{
	uint64_t lo = (handler & 0xffff) | 0x08ull << 16 | 0x8eull << 40 | ((handler >> 16) & 0xffff) << 48;

	put64(vm, IDT_ADDR + 16 * vector, lo);
	put64(vm, IDT_ADDR + 16 * vector + 8, handler >> 32);
}

static uint64_t code_addr(const unsigned char *label)
{
	return CODE_ADDR + (uint64_t)(label - smoke_code64_start);
}

/* Flat 64-bit GDT, an IDT with vectors 0x40/0x41, the first 4 GiB
 * identity-mapped by 2 MiB pages, the code, and "hello" for OUTSB. */
static void guest_setup(struct vm *vm)
{
	put64(vm, GDT_ADDR, 0);
	put64(vm, GDT_ADDR + 8, 0x00af9b000000ffffull);	 /* 0x08: 64-bit code */
	put64(vm, GDT_ADDR + 16, 0x00cf93000000ffffull); /* 0x10: data */
	idt_gate(vm, 0x40, code_addr(smoke_code64_irq40));
	idt_gate(vm, 0x41, code_addr(smoke_code64_irq41));
	put64(vm, PML4_ADDR, (PML4_ADDR + 0x1000) | 3);
	for (uint64_t i = 0; i < 4; i++) {
		uint64_t pd = PML4_ADDR + 0x2000 + i * 0x1000;

		put64(vm, PML4_ADDR + 0x1000 + 8 * i, pd | 3);
		for (uint64_t j = 0; j < 512; j++)
			put64(vm, pd + 8 * j, (i << 30 | j << 21) | 0x83);
	}
	guest_write(vm, CODE_ADDR, smoke_code64_start, smoke_code64_end - smoke_code64_start);
	guest_write(vm, DATA_ADDR + 0x100, "hello", 5);
}

static struct x86_segment segment(uint16_t selector, uint8_t type, bool code)
{
	return (struct x86_segment){.base = 0,
				    .limit = 0xffffffff,
				    .selector = selector,
				    .type = type,
				    .s = 1,
				    .present = 1,
				    .l = code,
				    .db = !code,
				    .g = 1};
}

/* A 64-bit state with a distinct value in every field, ready to run the
 * code at CODE_ADDR. */
static void test_state(struct x86_state *s, uint64_t port, uint64_t mmio)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 16; i++)
		s->gpr[i] = 0x1111111111111111ull * (i + 1);
	s->gpr[RSP] = STACK_TOP;
	s->gpr[R8] = port;
	s->gpr[R9] = mmio;
	s->gpr[R10] = DATA_ADDR;
	s->rip = CODE_ADDR;
	s->rflags = 0x8d7; /* arithmetic flags set, IF clear */
	for (int i = 0; i < SEG_COUNT; i++)
		s->seg[i] = segment(0x10, 3, false);
	s->seg[SEG_CS] = segment(0x08, 11, true);
	s->seg[SEG_FS].base = 0x7f0012345000ull;
	s->seg[SEG_GS].base = 0xffff800000001000ull;
	s->ldtr = (struct x86_segment){.unusable = 1};
	s->tr = (struct x86_segment){.base = 0x15000, .limit = 0x67, .selector = 0x18, .type = 11, .present = 1};
	s->gdtr = (struct x86_dtable){GDT_ADDR, 23};
	s->idtr = (struct x86_dtable){IDT_ADDR, 256 * 16 - 1};
	s->cr0 = 0x80010033; /* PG WP NE ET MP PE */
	s->cr2 = 0x12345678;
	s->cr3 = PML4_ADDR;
	s->cr4 = 0x620; /* OSXMMEXCPT OSFXSR PAE */
	s->xcr0 = 3;
	s->dr[0] = 0x1000;
	s->dr[1] = 0x2000;
	s->dr[2] = 0x3000;
	s->dr[3] = 0x4000;
	s->dr[6] = 0xffff0ff0;
	s->dr[7] = 0x400;
	s->efer = 0xd01; /* NXE LMA LME SCE */
	s->star = 0x0013000800000000ull;
	s->lstar = 0xffffffff81000000ull;
	s->cstar = 0xffffffff81000100ull;
	s->fmask = 0x47700;
	s->kernel_gs_base = 0xffff888000000000ull;
	s->sysenter_cs = 0x10;
	s->sysenter_esp = 0xffffffff82000000ull;
	s->sysenter_eip = 0xffffffff81000200ull;
	s->tsc = 1ull << 40;
	s->tsc_aux = 7;
	s->pat = 0x0007040600070406ull;
	s->misc_enable = 1;
	s->apic_base = 0xfee00900; /* enabled, BSP */
	s->fpu.fcw = 0x027f;
	s->fpu.fsw = 0x4000;
	s->fpu.ftw = 0x81;
	s->fpu.fop = 0x0123;
	s->fpu.fip = 0x00007f0000001234ull;
	s->fpu.fdp = 0x00007f0000005678ull;
	s->fpu.mxcsr = 0x3f80;
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 10; j++)
			s->fpu.st[i][j] = (uint8_t)(i * 16 + j + 1);
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++)
			s->fpu.xmm[i][j] = (uint8_t)(0xa0 + (i ^ j) + i * 3);
}

/* Names every field of got that differs from want (tsc may only advance). */
static void state_diff(const struct x86_state *want, const struct x86_state *got, char *out, size_t len)
{
	static const char *const seg_names[SEG_COUNT] = {"es", "cs", "ss", "ds", "fs", "gs"};
	size_t n = 0;

#define DIFF(cond, ...)                                                                                                \
	do {                                                                                                           \
		if ((cond) && n < len)                                                                                 \
			n += snprintf(out + n, len - n, __VA_ARGS__);                                                  \
	} while (0)
#define DIFF_FIELD(f) DIFF(want->f != got->f, " " #f "=0x%llx", (unsigned long long)got->f)
#define DIFF_SEG(name, a, b)                                                                                           \
	DIFF((a).base != (b).base || (a).limit != (b).limit || (a).selector != (b).selector || (a).type != (b).type || \
		 (a).s != (b).s || (a).dpl != (b).dpl || (a).present != (b).present || (a).l != (b).l ||               \
		 (a).db != (b).db || (a).g != (b).g || (a).avl != (b).avl || (a).unusable != (b).unusable,             \
	     " %s={base 0x%llx limit 0x%x sel 0x%x type %u s%u dpl%u p%u l%u db%u g%u avl%u unusable %u}", name,       \
	     (unsigned long long)(b).base, (b).limit, (b).selector, (b).type, (b).s, (b).dpl, (b).present, (b).l,      \
	     (b).db, (b).g, (b).avl, (b).unusable)

	out[0] = 0;
	for (int i = 0; i < 16; i++)
		DIFF(want->gpr[i] != got->gpr[i], " gpr[%d]=0x%llx", i, (unsigned long long)got->gpr[i]);
	DIFF_FIELD(rip);
	DIFF_FIELD(rflags);
	for (int i = 0; i < SEG_COUNT; i++)
		DIFF_SEG(seg_names[i], want->seg[i], got->seg[i]);
	DIFF_SEG("ldtr", want->ldtr, got->ldtr);
	DIFF_SEG("tr", want->tr, got->tr);
	DIFF_FIELD(gdtr.base);
	DIFF_FIELD(gdtr.limit);
	DIFF_FIELD(idtr.base);
	DIFF_FIELD(idtr.limit);
	DIFF_FIELD(cr0);
	DIFF_FIELD(cr2);
	DIFF_FIELD(cr3);
	DIFF_FIELD(cr4);
	DIFF_FIELD(cr8);
	DIFF_FIELD(xcr0);
	for (int i = 0; i < 8; i++)
		DIFF(want->dr[i] != got->dr[i], " dr%d=0x%llx", i, (unsigned long long)got->dr[i]);
	DIFF_FIELD(efer);
	DIFF_FIELD(star);
	DIFF_FIELD(lstar);
	DIFF_FIELD(cstar);
	DIFF_FIELD(fmask);
	DIFF_FIELD(kernel_gs_base);
	DIFF_FIELD(sysenter_cs);
	DIFF_FIELD(sysenter_esp);
	DIFF_FIELD(sysenter_eip);
	DIFF(got->tsc < want->tsc || got->tsc - want->tsc > 100000000000ull, " tsc=0x%llx",
	     (unsigned long long)got->tsc);
	DIFF_FIELD(tsc_aux);
	DIFF_FIELD(pat);
	DIFF_FIELD(misc_enable);
	DIFF_FIELD(apic_base);
	DIFF_FIELD(fpu.fcw);
	DIFF_FIELD(fpu.fsw);
	DIFF_FIELD(fpu.ftw);
	DIFF_FIELD(fpu.fop);
	DIFF_FIELD(fpu.fip);
	DIFF_FIELD(fpu.fdp);
	DIFF_FIELD(fpu.mxcsr);
	DIFF(memcmp(want->fpu.st, got->fpu.st, sizeof(want->fpu.st)) != 0, " fpu.st");
	DIFF(memcmp(want->fpu.xmm, got->fpu.xmm, sizeof(want->fpu.xmm)) != 0, " fpu.xmm");
	DIFF_FIELD(halted);
#undef DIFF_SEG
#undef DIFF_FIELD
#undef DIFF
}

/* ---- engine checks ----------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct later_kick {
	struct vcpu *vcpu;
	unsigned delay_ms;
};

static void *kick_later(void *arg)
{
	struct later_kick *k = arg;
	struct timespec ts = {k->delay_ms / 1000, (k->delay_ms % 1000) * 1000000l};

	nanosleep(&ts, NULL);
	kvm_engine_ops.kick(k->vcpu);
	return NULL;
}

static const char *exit_name(enum vcpu_exit_reason r)
{
	static const char *const names[] = {"PIO", "MMIO", "MSR", "HLT", "KICK", "SHUTDOWN", "ERROR"};

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

/* Runs the vCPU once; says what came out if it is not want. */
static bool run_expect(struct vcpu *vcpu, enum vcpu_exit_reason want, const char *name)
{
	struct vcpu_exit exit;
	int ret;

	memset(&exit, 0, sizeof(exit));
	ret = kvm_engine_ops.vcpu_run(vcpu, &exit);
	if (ret < 0) {
		check(false, name, "vcpu_run failed: %s", strerror(-ret));
		return false;
	}
	if (exit.reason != want) {
		if (exit.reason == VCPU_EXIT_ERROR)
			check(false, name, "exit ERROR, want %s: %s at RIP 0x%llx", exit_name(want), exit.error.message,
			      (unsigned long long)exit.error.rip);
		else
			check(false, name, "exit %s, want %s", exit_name(exit.reason), exit_name(want));
		return false;
	}
	return true;
}

static int register_device(struct vm *vm, enum bus_kind kind, const uint64_t *bases, size_t nbases, uint64_t len,
			   const struct bus_ops *ops, void *opaque, uint64_t *base)
{
	for (size_t i = 0; i < nbases; i++) {
		if (bus_register(vm, kind, bases[i], len, ops, opaque, "kvm-smoke") == 0) {
			*base = bases[i];
			return 0;
		}
	}
	return -EEXIST;
}

static void test_engine(const char *image)
{
	static const uint64_t port_bases[] = {0x5000, 0x5100, 0x6000, 0x7000};
	static const uint64_t mmio_bases[] = {0xd0000000, 0x10000000, 0x20000000, 0xe8000000};
	struct vm_config cfg = {
	    .kernel = image, .cmdline = "", .memory = TEST_RAM, .cpus = 1, .engine = "kvm", .serial = "none"};
	struct test_device dev = {0};
	struct x86_state s, got;
	uint64_t port, mmio, v64;
	uint32_t v32;
	uint16_t words[3];
	char err[256], diff[1024];
	struct vm *vm;
	struct vcpu *vcpu;
	pthread_t thread;
	double t0;
	int ret;

	vm = vm_create(&cfg, err, sizeof(err));
	check(vm != NULL, "engine-vm-create", "vm_create: %s", err);
	if (!vm)
		return;
	vcpu = vm_cpu(vm, 0);
	check(kvm_engine_ops.irqchip_in_engine(vm), "engine-irqchip", "irqchip_in_engine is false");

	ret = kvm_engine_ops.get_state(vcpu, &got);
	check(ret == 0 && got.gpr[RAX] == 0x2badb002 && (got.cr0 & 1) && !(got.cr0 & 0x80000000), "engine-boot-state",
	      "get_state %d, EAX 0x%llx CR0 0x%llx after the multiboot loader", ret, (unsigned long long)got.gpr[RAX],
	      (unsigned long long)got.cr0);

	if (register_device(vm, BUS_PIO, port_bases, 4, 16, &pio_ops, &dev, &port) < 0 ||
	    register_device(vm, BUS_MMIO, mmio_bases, 4, 0x1000, &mmio_ops, &dev, &mmio) < 0) {
		check(false, "engine-devices", "no free port or MMIO range for the test device");
		goto out;
	}
	guest_setup(vm);

	test_state(&s, port, mmio);
	s.halted = true;
	ret = kvm_engine_ops.set_state(vcpu, &s);
	check(ret == 0, "engine-set-state", "set_state: %s", strerror(-ret));
	ret = kvm_engine_ops.get_state(vcpu, &got);
	state_diff(&s, &got, diff, sizeof(diff));
	check(ret == 0 && !diff[0], "engine-state-roundtrip", "get_state %d; differs in%s", ret, diff);
	s.halted = false;
	ret = kvm_engine_ops.set_state(vcpu, &s);
	check(ret == 0, "engine-set-state-running", "set_state: %s", strerror(-ret));

	if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-io")) {
		bool pio_ok = dev.npio == 9 && access_is(&dev.pio[0], 0, 1, 0x11) &&
			      access_is(&dev.pio[1], 0, 2, 0x2233) && access_is(&dev.pio[2], 0, 4, 0x44556677) &&
			      access_is(&dev.pio[8], 12, 1, 1);

		for (unsigned i = 0; pio_ok && i < 5; i++)
			pio_ok = access_is(&dev.pio[3 + i], 8, 1, (uint8_t) "hello"[i]);
		check(pio_ok, "engine-pio-out", "%u port writes logged, first 0x%llx/%u/0x%llx", dev.npio,
		      (unsigned long long)dev.pio[0].offset, dev.pio[0].size, (unsigned long long)dev.pio[0].value);
		guest_read(vm, DATA_ADDR, &v32, sizeof(v32));
		check(v32 == 0xcafef00d, "engine-pio-in", "IN EAX read 0x%x", v32);
		guest_read(vm, DATA_ADDR + 0x200, words, sizeof(words));
		check(words[0] == 0x1000 && words[1] == 0x1001 && words[2] == 0x1002, "engine-pio-rep-insw",
		      "REP INSW stored %#x %#x %#x", words[0], words[1], words[2]);
		check(dev.nmmio == 4 && access_is(&dev.mmio[0], 0, 1, 0x5a) && access_is(&dev.mmio[1], 2, 2, 0x1234) &&
			  access_is(&dev.mmio[2], 4, 4, 0xdeadbeef) &&
			  access_is(&dev.mmio[3], 8, 8, 0x0123456789abcdef),
		      "engine-mmio-write", "%u MMIO writes logged", dev.nmmio);
		guest_read(vm, DATA_ADDR + 8, &v32, sizeof(v32));
		guest_read(vm, DATA_ADDR + 16, &v64, sizeof(v64));
		check(v32 == 0x89abcdef && v64 == 0xfedcba9876543210, "engine-mmio-read",
		      "4-byte read 0x%x, 8-byte read 0x%llx", v32, (unsigned long long)v64);
		ret = kvm_engine_ops.get_state(vcpu, &got);
		check(ret == 0 && got.rip == code_addr(smoke_code64_after_stop1) && got.gpr[R8] == port,
		      "engine-io-complete", "RIP 0x%llx after the stopping OUT, want 0x%llx",
		      (unsigned long long)got.rip, (unsigned long long)code_addr(smoke_code64_after_stop1));
	}

	if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-ready") && dev.stop == 2) {
		kvm_engine_ops.send_msi(vm, 0xfee00000, 0x40);
		if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-msi"))
			check(dev.vector == 0x40, "engine-msi", "vector 0x%llx reported, want 0x40",
			      (unsigned long long)dev.vector);
		kvm_engine_ops.set_irq_line(vm, 9, true);
		kvm_engine_ops.set_irq_line(vm, 9, false);
		if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-irq-line"))
			check(dev.vector == 0x41, "engine-irq-line", "vector 0x%llx reported, want 0x41",
			      (unsigned long long)dev.vector);
	} else {
		check(false, "engine-ready", "the guest did not reach its interrupt loop (stop %llu)",
		      (unsigned long long)dev.stop);
	}

	/* The guest now halts with interrupts on: only a kick brings it out. */
	kvm_engine_ops.kick(vcpu);
	t0 = now_s();
	if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-kick-pending"))
		check(now_s() - t0 < 1, "engine-kick-pending", "took %.1f s", now_s() - t0);
	{
		struct later_kick k = {vcpu, 200};
		unsigned kicks = dev.kicks;

		pthread_create(&thread, NULL, kick_later, &k);
		t0 = now_s();
		if (run_expect(vcpu, VCPU_EXIT_KICK, "engine-kick-thread"))
			check(now_s() - t0 >= 0.1 && dev.kicks == kicks, "engine-kick-thread",
			      "returned after %.3f s, %u device exits", now_s() - t0, dev.kicks - kicks);
		pthread_join(thread, NULL);
	}

	test_state(&s, port, mmio);
	s.rip = code_addr(smoke_code64_ud2);
	s.rflags = 2;
	s.idtr.limit = 0; /* #UD -> #GP -> #DF -> shutdown */
	ret = kvm_engine_ops.set_state(vcpu, &s);
	if (ret < 0)
		check(false, "engine-triple-fault", "set_state: %s", strerror(-ret));
	else if (run_expect(vcpu, VCPU_EXIT_SHUTDOWN, "engine-triple-fault"))
		pass("engine-triple-fault");
out:
	vm_destroy(vm);
}

/* ---- a whole guest through the VMM core ------------------------------------ */

static void test_boot(const char *image, const char *serial_path)
{
	char serial[300], err[256], out[4096];
	struct vm_config cfg = {.kernel = image,
				.cmdline = "",
				.memory = TEST_RAM,
				.cpus = 2,
				.engine = "kvm",
				.serial = serial,
				.no_reboot = true};
	struct vm *vm;
	FILE *f;
	size_t n = 0;
	int status;

	snprintf(serial, sizeof(serial), "file:%s", serial_path);
	vm = vm_create(&cfg, err, sizeof(err));
	check(vm != NULL, "boot-vm-create", "vm_create: %s", err);
	if (!vm)
		return;
	status = vm_run(vm, err, sizeof(err));
	vm_destroy(vm);
	f = fopen(serial_path, "r");
	if (f) {
		n = fread(out, 1, sizeof(out) - 1, f);
		fclose(f);
	}
	out[n] = 0;
	printf("---- guest output ----\n%s---- end (vm_run status %d: %s) ----\n", out, status, err);
	check(strstr(out, "PASS kvm-boot\n") != NULL, "boot-serial", "no 'PASS kvm-boot' on the serial port");
	check(strstr(out, "PASS kvm-smp\n") != NULL, "boot-smp", "the AP did not start (INIT/SIPI in the LAPIC)");
	check(status == 1, "boot-debug-exit", "vm_run returned %d, want 1 (debug exit with 0): %s", status, err);
}

static int write_image(char *path)
{
	int fd = mkstemp(path);
	size_t len = smoke_boot_end - smoke_boot_start;

	if (fd < 0)
		return -errno;
	if (write(fd, smoke_boot_start, len) != (ssize_t)len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int main(void)
{
	const char *why = kvm_engine_ops.unavailable();
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char image[256], serial[256];
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (why) {
		printf("SKIP: /dev/kvm is not accessible here (%s)\n", why);
		return 77;
	}
	signal(SIGALRM, watchdog);
	alarm(90);
	snprintf(image, sizeof(image), "%s/kvm-smoke-XXXXXX", tmp);
	snprintf(serial, sizeof(serial), "%s/kvm-smoke-serial-XXXXXX", tmp);
	if (write_image(image) < 0 || (fd = mkstemp(serial)) < 0) {
		printf("FAIL kvm-smoke: cannot write temporary files in %s: %s\n", tmp, strerror(errno));
		return 1;
	}
	close(fd);
	test_engine(image);
	test_boot(image, serial);
	unlink(image);
	unlink(serial);
	printf("DONE %d checks, %d failed\n", checks, failed);
	return failed ? 1 : 0;
}
