/*
 * The kvm engine: guest code runs on the host CPU through /dev/kvm.
 *
 * KVM's in-kernel PIC, IOAPIC, LAPICs and PIT are the machine's interrupt
 * controllers and timer (irqchip_in_engine), so interrupts, HLT, INIT/SIPI
 * and the LAPIC MSRs never leave the kernel. What comes out of KVM_RUN is
 * port I/O and MMIO, which vcpu_run completes through vcpu_exit_io() and
 * re-enters, and the exits the vCPU loop must see (kick, triple fault,
 * errors).
 *
 * Kick: a signal interrupts a KVM_RUN in progress; its handler sets the
 * kvm_run's immediate_exit, which closes the window between deciding to
 * enter and entering (Documentation/virt/kvm/api.rst, "immediate_exit").
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/internal.h"

/* KVM on VMX needs three pages for a real-mode TSS and one for an identity
 * page table, outside RAM: the top of the e820-reserved hole below 4 GiB. */
#define KVM_TSS_ADDR	      0xfffbd000ul
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

#define KVM_KICK_SIGNAL SIGUSR1

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_IA32_PAT	      0x277
#define MSR_STAR	      0xc0000081
#define MSR_LSTAR	      0xc0000082
#define MSR_CSTAR	      0xc0000083
#define MSR_SFMASK	      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_TSC_AUX	      0xc0000103

#define EFER_LME	    (1ull << 8)
#define EFER_LMA	    (1ull << 10)
#define CR0_PG		    (1ull << 31)
#define XSAVE_HEADER_OFFSET 512 /* XSTATE_BV, after the legacy FXSAVE area */
#define XSTATE_X87_SSE	    3ull

/* The MSRs struct x86_state carries. */
static const struct {
	uint32_t index;
	size_t offset;
	const char *name;
} kvm_state_msrs[] = {
    {MSR_STAR, offsetof(struct x86_state, star), "STAR"},
    {MSR_LSTAR, offsetof(struct x86_state, lstar), "LSTAR"},
    {MSR_CSTAR, offsetof(struct x86_state, cstar), "CSTAR"},
    {MSR_SFMASK, offsetof(struct x86_state, fmask), "SFMASK"},
    {MSR_KERNEL_GS_BASE, offsetof(struct x86_state, kernel_gs_base), "KERNEL_GS_BASE"},
    {MSR_IA32_SYSENTER_CS, offsetof(struct x86_state, sysenter_cs), "SYSENTER_CS"},
    {MSR_IA32_SYSENTER_ESP, offsetof(struct x86_state, sysenter_esp), "SYSENTER_ESP"},
    {MSR_IA32_SYSENTER_EIP, offsetof(struct x86_state, sysenter_eip), "SYSENTER_EIP"},
    {MSR_IA32_PAT, offsetof(struct x86_state, pat), "PAT"},
    {MSR_IA32_MISC_ENABLE, offsetof(struct x86_state, misc_enable), "MISC_ENABLE"},
    {MSR_TSC_AUX, offsetof(struct x86_state, tsc_aux), "TSC_AUX"},
    {MSR_IA32_TSC, offsetof(struct x86_state, tsc), "TSC"},
};
#define KVM_STATE_MSR_COUNT (sizeof(kvm_state_msrs) / sizeof(kvm_state_msrs[0]))

/* struct x86_fxsave is the FXSAVE image, which is also the start of the
 * XSAVE area: the translation is a copy. Its tag word is the abridged one
 * (one bit per register), as in FXSAVE and in struct kvm_fpu's ftwx, so no
 * conversion to or from the full two-bit x87 tag word is needed. */
_Static_assert(sizeof(struct x86_fxsave) == 512, "x86_fxsave is the FXSAVE image");
_Static_assert(offsetof(struct x86_fxsave, mxcsr) == 24, "x86_fxsave is the FXSAVE image");
_Static_assert(offsetof(struct x86_fxsave, st) == 32, "x86_fxsave is the FXSAVE image");
_Static_assert(offsetof(struct x86_fxsave, xmm) == 160, "x86_fxsave is the FXSAVE image");
#define FXSAVE_USED_BYTES offsetof(struct x86_fxsave, reserved1)

struct kvm_engine_vm {
	int fd;
	size_t run_size;
	struct kvm_cpuid2 *cpuid;	  /* what KVM supports, edited per vCPU */
	bool msr_ok[KVM_STATE_MSR_COUNT]; /* in KVM_GET_MSR_INDEX_LIST */
	size_t xsave_size;		  /* 0: no XSAVE, KVM_GET/SET_FPU */
	bool xsave2, xcrs, tsc_deadline;
	atomic_bool irq_warned, msi_warned;
};

struct kvm_engine_vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
	void *xsave;
	atomic_bool kick_pending;
	pthread_mutex_t lock; /* thread and running, for kick */
	pthread_t thread;
	bool running;
};

/* The kvm_run of the vCPU this thread is running, for the kick signal. */
static __thread struct kvm_run *volatile kvm_thread_run;

/* Says which request failed (the caller only learns the errno) and returns
 * the negative errno. */
static int kvm_fail(const char *what)
{
	int err = errno ? errno : EIO;

	vmm_log("kvm: %s: %s", what, strerror(err));
	errno = err;
	return -err;
}

/* ---- availability --------------------------------------------------------- */

static const struct {
	int cap;
	const char *name;
} kvm_required_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
    {KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};

static char kvm_why[256];
static const char *kvm_why_not;
static pthread_once_t kvm_probe_once = PTHREAD_ONCE_INIT;

static void kvm_probe(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	size_t n, missing = 0;
	int version, vm;

	kvm_why_not = kvm_why;
	if (fd < 0) {
		snprintf(kvm_why, sizeof(kvm_why), "/dev/kvm: %s", strerror(errno));
		return;
	}
	version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		snprintf(kvm_why, sizeof(kvm_why), "/dev/kvm: KVM API version %d, Vireo needs %d", version,
			 KVM_API_VERSION);
		goto out;
	}
	n = snprintf(kvm_why, sizeof(kvm_why), "/dev/kvm: the host's KVM lacks");
	for (size_t i = 0; i < sizeof(kvm_required_caps) / sizeof(kvm_required_caps[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, kvm_required_caps[i].cap) > 0)
			continue;
		if (n < sizeof(kvm_why))
			n += snprintf(kvm_why + n, sizeof(kvm_why) - n, "%s %s", missing++ ? "," : "",
				      kvm_required_caps[i].name);
	}
	if (missing)
		goto out;
	/* Capabilities can be there while VMX/SVM is off or taken by another
	 * hypervisor: creating a VM is the real test. */
	do
		vm = ioctl(fd, KVM_CREATE_VM, 0);
	while (vm < 0 && errno == EINTR);
	if (vm < 0) {
		snprintf(kvm_why, sizeof(kvm_why), "/dev/kvm: KVM_CREATE_VM: %s", strerror(errno));
		goto out;
	}
	close(vm);
	kvm_why_not = NULL;
out:
	close(fd);
}

static const char *kvm_unavailable(void)
{
	pthread_once(&kvm_probe_once, kvm_probe);
	return kvm_why_not;
}

/* ---- kick ---------------------------------------------------------------- */

static void kvm_kick_signal(int sig)
{
	struct kvm_run *run = kvm_thread_run;

	(void)sig;
	if (run)
		*(volatile __u8 *)&run->immediate_exit = 1;
}

static int kvm_signal_err;
static pthread_once_t kvm_signal_once = PTHREAD_ONCE_INIT;

static void kvm_signal_install(void)
{
	/* SA_RESTART keeps other system calls on vCPU threads (device code
	 * runs there) from failing with EINTR; KVM_RUN itself returns -EINTR,
	 * which is never restarted, and the handler's immediate_exit would
	 * end a restarted one at once anyway. */
	struct sigaction sa = {.sa_handler = kvm_kick_signal, .sa_flags = SA_RESTART};

	sigemptyset(&sa.sa_mask);
	if (sigaction(KVM_KICK_SIGNAL, &sa, NULL) < 0)
		kvm_signal_err = -errno;
}

static void kvm_kick(struct vcpu *vcpu)
{
	struct kvm_engine_vcpu *kc = vcpu_engine_data(vcpu);

	if (!kc)
		return;
	atomic_store(&kc->kick_pending, true);
	pthread_mutex_lock(&kc->lock);
	if (kc->running) {
		if (pthread_equal(kc->thread, pthread_self()))
			/* From a device called by our own vcpu_exit_io: the
			 * next KVM_RUN completes the access and returns. */
			*(volatile __u8 *)&kc->run->immediate_exit = 1;
		else
			pthread_kill(kc->thread, KVM_KICK_SIGNAL);
	}
	pthread_mutex_unlock(&kc->lock);
}

/* ---- VM ------------------------------------------------------------------ */

/* The VMM's GSIs (vmm/irq.c) are IOAPIC pins: GSI n is pin n and, for
 * n < 16, 8259 line n, except that GSI 2 (the PIT, after the MADT's
 * IRQ0 -> GSI 2 override) is 8259 line 0; line 2 is the cascade. KVM's
 * in-kernel PIT raises GSI 0, so GSI 0 goes where GSI 2 goes. (KVM's
 * default table maps GSI n to pin n and line n for every n < 16.)
 * GSI 0 is routed last: KVM maps a pin back to the last GSI routed to it
 * when the guest acknowledges an interrupt, and the PIT waits for the
 * acknowledgement of GSI 0 before it injects the next tick. */
static int kvm_set_gsi_routing(struct kvm_engine_vm *kv)
{
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + (16 + KVM_IOAPIC_NUM_PINS) * sizeof(r->entries[0]));
	int ret = 0;

	if (!r)
		return -ENOMEM;
	for (unsigned i = 1; i <= KVM_IOAPIC_NUM_PINS; i++) {
		unsigned gsi = i % KVM_IOAPIC_NUM_PINS;
		unsigned line = gsi == 2 ? 0 : gsi;

		if (gsi < 16)
			r->entries[r->nr++] = (struct kvm_irq_routing_entry){
			    .gsi = gsi,
			    .type = KVM_IRQ_ROUTING_IRQCHIP,
			    .u.irqchip = {line < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, line % 8}};
		r->entries[r->nr++] = (struct kvm_irq_routing_entry){
		    .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP, .u.irqchip = {KVM_IRQCHIP_IOAPIC, gsi ? gsi : 2}};
	}
	if (ioctl(kv->fd, KVM_SET_GSI_ROUTING, r) < 0)
		ret = kvm_fail("KVM_SET_GSI_ROUTING");
	free(r);
	return ret;
}

static int kvm_set_memory(struct kvm_engine_vm *kv, struct guest_memory *mem)
{
	struct kvm_userspace_memory_region low = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = mem->low_size,
	    .userspace_addr = (uintptr_t)mem->host,
	};
	struct kvm_userspace_memory_region high = {
	    .slot = 1,
	    .guest_phys_addr = RAM_HIGH_BASE,
	    .memory_size = mem->high_size,
	    .userspace_addr = (uintptr_t)(mem->host + mem->low_size),
	};

	if (ioctl(kv->fd, KVM_SET_USER_MEMORY_REGION, &low) < 0)
		return kvm_fail("KVM_SET_USER_MEMORY_REGION (RAM below 4 GiB)");
	if (mem->high_size && ioctl(kv->fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)
		return kvm_fail("KVM_SET_USER_MEMORY_REGION (RAM above 4 GiB)");
	return 0;
}

static struct kvm_cpuid2 *kvm_supported_cpuid(int sys)
{
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(sys, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG) {
			kvm_fail("KVM_GET_SUPPORTED_CPUID");
			return NULL;
		}
	}
	errno = E2BIG;
	return NULL;
}

/* Which of the state MSRs KVM saves and restores on this host (TSC_AUX, for
 * one, only where the host has RDTSCP or RDPID). */
static int kvm_probe_msrs(struct kvm_engine_vm *kv, int sys)
{
	struct kvm_msr_list probe = {.nmsrs = 0}, *list;

	/* Asked with room for none, KVM says how many there are. */
	if (ioctl(sys, KVM_GET_MSR_INDEX_LIST, &probe) == 0)
		return 0;
	if (errno != E2BIG)
		return kvm_fail("KVM_GET_MSR_INDEX_LIST");
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(sys, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		free(list);
		return kvm_fail("KVM_GET_MSR_INDEX_LIST");
	}
	for (size_t i = 0; i < KVM_STATE_MSR_COUNT; i++) {
		for (uint32_t j = 0; j < list->nmsrs; j++)
			if (list->indices[j] == kvm_state_msrs[i].index)
				kv->msr_ok[i] = true;
		if (!kv->msr_ok[i])
			vmm_log("kvm: this host's KVM does not save MSR %s (0x%x): get_state reads it as 0",
				kvm_state_msrs[i].name, kvm_state_msrs[i].index);
	}
	free(list);
	return 0;
}

static void kvm_vm_free(struct kvm_engine_vm *kv)
{
	if (kv->fd >= 0)
		close(kv->fd);
	free(kv->cpuid);
	free(kv);
}

static int kvm_vm_setup(struct vm *vm, struct kvm_engine_vm *kv, int sys)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	uint64_t identity_map = KVM_IDENTITY_MAP_ADDR;
	int ret;

	do
		kv->fd = ioctl(sys, KVM_CREATE_VM, 0);
	while (kv->fd < 0 && errno == EINTR);
	if (kv->fd < 0)
		return kvm_fail("KVM_CREATE_VM");
	ret = ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ret < (int)sizeof(struct kvm_run))
		return ret < 0 ? kvm_fail("KVM_GET_VCPU_MMAP_SIZE") : -EINVAL;
	kv->run_size = ret;
	/* These three must come before the first vCPU. */
	if (ioctl(kv->fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		return kvm_fail("KVM_SET_TSS_ADDR");
	if (ioctl(kv->fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0)
		return kvm_fail("KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(kv->fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return kvm_fail("KVM_CREATE_IRQCHIP");
	ret = kvm_set_gsi_routing(kv);
	if (ret < 0)
		return ret;
	/* The dummy speaker port makes 0x61 (PIT channel 2 gate and output,
	 * which guests use to calibrate the TSC) part of the in-kernel PIT. */
	if (ioctl(kv->fd, KVM_CREATE_PIT2, &pit) < 0)
		return kvm_fail("KVM_CREATE_PIT2");
	ret = kvm_set_memory(kv, vm_memory(vm));
	if (ret < 0)
		return ret;
	kv->cpuid = kvm_supported_cpuid(sys);
	if (!kv->cpuid)
		return -errno;
	ret = kvm_probe_msrs(kv, sys);
	if (ret < 0)
		return ret;
	/* XSAVE2 gives the size of the whole area (more than 4 KiB once a
	 * dynamic feature such as AMX is enabled); plain XSAVE is 4 KiB. */
	ret = ioctl(kv->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (ret > 0) {
		kv->xsave2 = true;
		kv->xsave_size = ret;
	} else if (ioctl(kv->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0) {
		kv->xsave_size = sizeof(struct kvm_xsave);
	}
	kv->xcrs = ioctl(kv->fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	kv->tsc_deadline = ioctl(kv->fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	return 0;
}

static int kvm_vm_init(struct vm *vm)
{
	struct kvm_engine_vm *kv;
	int sys, ret;

	pthread_once(&kvm_signal_once, kvm_signal_install);
	if (kvm_signal_err)
		return kvm_signal_err;
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->fd = -1;
	sys = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (sys < 0) {
		ret = kvm_fail("/dev/kvm");
		free(kv);
		return ret;
	}
	ret = kvm_vm_setup(vm, kv, sys);
	close(sys);
	if (ret < 0) {
		kvm_vm_free(kv);
		return ret;
	}
	vm_set_engine_data(vm, kv);
	return 0;
}

static void kvm_vm_destroy(struct vm *vm)
{
	struct kvm_engine_vm *kv = vm_engine_data(vm);

	if (!kv)
		return;
	kvm_vm_free(kv);
	vm_set_engine_data(vm, NULL);
}

static bool kvm_irqchip_in_engine(struct vm *vm)
{
	(void)vm;
	return true;
}

static void kvm_set_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	struct kvm_engine_vm *kv = vm_engine_data(vm);
	struct kvm_irq_level irq = {.irq = gsi, .level = level};

	if (ioctl(kv->fd, KVM_IRQ_LINE, &irq) < 0 && !atomic_exchange(&kv->irq_warned, true))
		vmm_log("kvm: KVM_IRQ_LINE for GSI %u: %s", gsi, strerror(errno));
}

static void kvm_send_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_engine_vm *kv = vm_engine_data(vm);
	struct kvm_msi msi = {.address_lo = (uint32_t)addr, .address_hi = addr >> 32, .data = data};

	/* 0 means the guest blocked it (no LAPIC accepts it): dropped, as on
	 * hardware. */
	if (ioctl(kv->fd, KVM_SIGNAL_MSI, &msi) < 0 && !atomic_exchange(&kv->msi_warned, true))
		vmm_log("kvm: KVM_SIGNAL_MSI to 0x%llx, data 0x%x: %s", (unsigned long long)addr, data,
			strerror(errno));
}

/* ---- vCPU ---------------------------------------------------------------- */

static struct kvm_cpuid_entry2 *kvm_cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == function && c->entries[i].index == index)
			return &c->entries[i];
	return NULL;
}

/* Leaf 0xb or 0x1f: an SMT level of one thread, a core level of ncpus. */
static uint32_t kvm_cpuid_add_topology(struct kvm_cpuid2 *c, uint32_t n, uint32_t function, unsigned index,
				       unsigned shift, unsigned ncpus)
{
	for (uint32_t sub = 0; sub < 3; sub++) {
		struct kvm_cpuid_entry2 *e = &c->entries[n++];

		*e = (struct kvm_cpuid_entry2){
		    .function = function, .index = sub, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .edx = index};
		if (sub == 0) {
			e->ebx = 1;
			e->ecx = 1u << 8;
		} else if (sub == 1) {
			e->eax = shift;
			e->ebx = ncpus;
			e->ecx = 2u << 8 | 1;
		} else {
			e->ecx = sub; /* level type 0: the end */
		}
	}
	return n;
}

/* Topology: ncpus single-threaded cores in one package, APIC ID = index.
 * c has room for six more entries. */
static void kvm_cpuid_edit(struct kvm_cpuid2 *c, const struct kvm_engine_vm *kv, unsigned index, unsigned ncpus)
{
	struct kvm_cpuid_entry2 *leaf0 = kvm_cpuid_find(c, 0, 0);
	uint32_t max_leaf = leaf0 ? leaf0->eax : 0;
	bool amd = leaf0 && leaf0->ebx == 0x68747541; /* "Auth" */
	bool has_1f = kvm_cpuid_find(c, 0x1f, 0) != NULL;
	unsigned shift = 0;
	uint32_t n = 0;

	while ((1u << shift) < ncpus)
		shift++;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 e = c->entries[i];

		switch (e.function) {
		case 0xb:
		case 0x1f: continue; /* rebuilt below */
		case 1:
			e.ebx = (e.ebx & 0xffff) | (1u << shift) << 16 | index << 24;
			e.edx = ncpus > 1 ? e.edx | 1u << 28 : e.edx & ~(1u << 28); /* HTT */
			e.ecx |= 1u << 31;					    /* hypervisor */
			if (kv->tsc_deadline)
				e.ecx |= 1u << 24;
			break;
		case 4:
			if (e.eax & 0x1f)
				e.eax = (e.eax & 0x03ffffff) | ((1u << shift) - 1) << 26;
			break;
		case 0x80000008:
			if (amd)
				e.ecx = (e.ecx & ~0xf0ffu) | shift << 12 | (ncpus - 1);
			break;
		case 0x8000001e:
			e.eax = index;
			e.ebx = (e.ebx & ~0xffffu) | (index & 0xff);
			e.ecx &= ~0x7ffu;
			break;
		}
		c->entries[n++] = e;
	}
	if (max_leaf >= 0xb)
		n = kvm_cpuid_add_topology(c, n, 0xb, index, shift, ncpus);
	if (max_leaf >= 0x1f && has_1f)
		n = kvm_cpuid_add_topology(c, n, 0x1f, index, shift, ncpus);
	c->nent = n;
}

static int kvm_vcpu_set_cpuid(struct vcpu *vcpu, struct kvm_engine_vcpu *kc, struct kvm_engine_vm *kv)
{
	size_t size = sizeof(*kv->cpuid) + (kv->cpuid->nent + 6) * sizeof(kv->cpuid->entries[0]);
	struct kvm_cpuid2 *c = calloc(1, size);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, kv->cpuid, sizeof(*c) + kv->cpuid->nent * sizeof(c->entries[0]));
	kvm_cpuid_edit(c, kv, vcpu_index(vcpu), vcpu_vm(vcpu)->cfg.cpus);
	if (ioctl(kc->fd, KVM_SET_CPUID2, c) < 0)
		ret = kvm_fail("KVM_SET_CPUID2");
	free(c);
	return ret;
}

static void kvm_vcpu_free(struct kvm_engine_vcpu *kc)
{
	if (kc->run && kc->run != MAP_FAILED)
		munmap(kc->run, kc->run_size);
	if (kc->fd >= 0)
		close(kc->fd);
	free(kc->xsave);
	pthread_mutex_destroy(&kc->lock);
	free(kc);
}

static int kvm_vcpu_init(struct vcpu *vcpu)
{
	struct kvm_engine_vm *kv = vm_engine_data(vcpu_vm(vcpu));
	struct kvm_engine_vcpu *kc = calloc(1, sizeof(*kc));
	int ret;

	if (!kc)
		return -ENOMEM;
	pthread_mutex_init(&kc->lock, NULL);
	kc->run_size = kv->run_size;
	/* The vCPU id is the initial APIC ID; id 0 is the BSP, the others wait
	 * for INIT/SIPI in the in-kernel LAPIC. */
	kc->fd = ioctl(kv->fd, KVM_CREATE_VCPU, (unsigned long)vcpu_index(vcpu));
	if (kc->fd < 0) {
		ret = kvm_fail("KVM_CREATE_VCPU");
		goto fail;
	}
	kc->run = mmap(NULL, kc->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kc->fd, 0);
	if (kc->run == MAP_FAILED) {
		ret = kvm_fail("mmap of kvm_run");
		goto fail;
	}
	if (kv->xsave_size) {
		kc->xsave = calloc(1, kv->xsave_size);
		if (!kc->xsave) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	ret = kvm_vcpu_set_cpuid(vcpu, kc, kv);
	if (ret < 0)
		goto fail;
	vcpu_set_engine_data(vcpu, kc);
	return 0;
fail:
	kvm_vcpu_free(kc);
	return ret;
}

static void kvm_vcpu_destroy(struct vcpu *vcpu)
{
	struct kvm_engine_vcpu *kc = vcpu_engine_data(vcpu);

	if (!kc)
		return;
	kvm_vcpu_free(kc);
	vcpu_set_engine_data(vcpu, NULL);
}

/* ---- run ----------------------------------------------------------------- */

static const char *const kvm_exit_names[] = {
    [KVM_EXIT_UNKNOWN] = "UNKNOWN",
    [KVM_EXIT_EXCEPTION] = "EXCEPTION",
    [KVM_EXIT_IO] = "IO",
    [KVM_EXIT_HYPERCALL] = "HYPERCALL",
    [KVM_EXIT_DEBUG] = "DEBUG",
    [KVM_EXIT_HLT] = "HLT",
    [KVM_EXIT_MMIO] = "MMIO",
    [KVM_EXIT_IRQ_WINDOW_OPEN] = "IRQ_WINDOW_OPEN",
    [KVM_EXIT_SHUTDOWN] = "SHUTDOWN",
    [KVM_EXIT_FAIL_ENTRY] = "FAIL_ENTRY",
    [KVM_EXIT_INTR] = "INTR",
    [KVM_EXIT_SET_TPR] = "SET_TPR",
    [KVM_EXIT_TPR_ACCESS] = "TPR_ACCESS",
    [KVM_EXIT_NMI] = "NMI",
    [KVM_EXIT_INTERNAL_ERROR] = "INTERNAL_ERROR",
    [KVM_EXIT_SYSTEM_EVENT] = "SYSTEM_EVENT",
    [KVM_EXIT_IOAPIC_EOI] = "IOAPIC_EOI",
    [KVM_EXIT_HYPERV] = "HYPERV",
    [KVM_EXIT_X86_RDMSR] = "X86_RDMSR",
    [KVM_EXIT_X86_WRMSR] = "X86_WRMSR",
    [KVM_EXIT_DIRTY_RING_FULL] = "DIRTY_RING_FULL",
    [KVM_EXIT_AP_RESET_HOLD] = "AP_RESET_HOLD",
    [KVM_EXIT_X86_BUS_LOCK] = "X86_BUS_LOCK",
    [KVM_EXIT_XEN] = "XEN",
    [KVM_EXIT_NOTIFY] = "NOTIFY",
};

static const char *kvm_exit_name(uint32_t reason)
{
	if (reason < sizeof(kvm_exit_names) / sizeof(kvm_exit_names[0]) && kvm_exit_names[reason])
		return kvm_exit_names[reason];
	return "?";
}

/* Ends vcpu_run with VCPU_EXIT_ERROR; the vCPU loop names vCPU and RIP. */
__attribute__((format(printf, 3, 4))) static int kvm_exit_error(struct kvm_engine_vcpu *kc, struct vcpu_exit *exit,
								const char *fmt, ...)
{
	struct kvm_regs regs;
	va_list ap;

	exit->reason = VCPU_EXIT_ERROR;
	va_start(ap, fmt);
	vsnprintf(exit->error.message, sizeof(exit->error.message), fmt, ap);
	va_end(ap);
	exit->error.rip = ioctl(kc->fd, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
	return 0;
}

/* One IN/OUT, or a string one (INS/OUTS, possibly REP) with count elements
 * of size bytes at data_offset in the kvm_run mapping, all on one port. */
static int kvm_exit_pio(struct vcpu *vcpu, struct kvm_engine_vcpu *kc, struct vcpu_exit *exit)
{
	struct kvm_run *run = kc->run;
	unsigned size = run->io.size;
	uint64_t bytes = (uint64_t)run->io.count * size;
	uint8_t *p;

	if ((size != 1 && size != 2 && size != 4) || run->io.data_offset > kc->run_size ||
	    bytes > kc->run_size - run->io.data_offset)
		return kvm_exit_error(kc, exit, "KVM_EXIT_IO on port 0x%x of %u x %u bytes at offset 0x%llx",
				      run->io.port, run->io.count, size, (unsigned long long)run->io.data_offset);
	p = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, p += size) {
		struct vcpu_exit io = {.reason = VCPU_EXIT_PIO};

		io.pio.port = run->io.port;
		io.pio.size = size;
		io.pio.write = run->io.direction == KVM_EXIT_IO_OUT;
		if (io.pio.write)
			memcpy(&io.pio.data, p, size);
		vcpu_exit_io(vcpu, &io);
		if (!io.pio.write)
			memcpy(p, &io.pio.data, size);
	}
	return 1;
}

/* KVM splits accesses into pieces of at most 8 bytes; one that is not 1, 2,
 * 4 or 8 bytes (a piece of an unaligned or wide access) goes byte by byte. */
static int kvm_exit_mmio(struct vcpu *vcpu, struct kvm_engine_vcpu *kc, struct vcpu_exit *exit)
{
	struct kvm_run *run = kc->run;
	uint32_t len = run->mmio.len;
	unsigned step = len == 1 || len == 2 || len == 4 || len == 8 ? len : 1;

	if (len == 0 || len > 8)
		return kvm_exit_error(kc, exit, "KVM_EXIT_MMIO of %u bytes at 0x%llx", len,
				      (unsigned long long)run->mmio.phys_addr);
	for (uint32_t off = 0; off < len; off += step) {
		struct vcpu_exit io = {.reason = VCPU_EXIT_MMIO};

		io.mmio.addr = run->mmio.phys_addr + off;
		io.mmio.size = step;
		io.mmio.write = run->mmio.is_write;
		if (io.mmio.write)
			memcpy(&io.mmio.data, run->mmio.data + off, step);
		vcpu_exit_io(vcpu, &io);
		if (!io.mmio.write)
			memcpy(run->mmio.data + off, &io.mmio.data, step);
	}
	return 1;
}

static int kvm_exit_internal_error(struct kvm_engine_vcpu *kc, struct vcpu_exit *exit)
{
	static const char *const what[] = {"?", "emulation failure", "simultaneous exceptions", "event delivery",
					   "unexpected exit reason"};
	struct kvm_run *run = kc->run;
	uint32_t sub = run->internal.suberror;
	const char *name = sub < sizeof(what) / sizeof(what[0]) ? what[sub] : "?";
	char detail[100] = "";
	size_t n = 0;

	if (sub == KVM_INTERNAL_ERROR_EMULATION &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		unsigned len = run->emulation_failure.insn_size;

		n = snprintf(detail, sizeof(detail), ", instruction");
		for (unsigned i = 0; i < len && i < 15 && n < sizeof(detail); i++)
			n += snprintf(detail + n, sizeof(detail) - n, " %02x", run->emulation_failure.insn_bytes[i]);
	} else {
		for (uint32_t i = 0; i < run->internal.ndata && i < 4 && n < sizeof(detail); i++)
			n += snprintf(detail + n, sizeof(detail) - n, "%s0x%llx", i ? " " : ", data ",
				      (unsigned long long)run->internal.data[i]);
	}
	return kvm_exit_error(kc, exit, "KVM internal error %u (%s)%s", sub, name, detail);
}

static int kvm_exit_system_event(struct vcpu *vcpu, struct kvm_engine_vcpu *kc, struct vcpu_exit *exit)
{
	struct vm *vm = vcpu_vm(vcpu);

	switch (kc->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_exit(vm, VM_EXIT_POWEROFF, "guest powered off");
		exit->reason = VCPU_EXIT_KICK;
		return 0;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_reset(vm);
		exit->reason = VCPU_EXIT_KICK;
		return 0;
	case KVM_SYSTEM_EVENT_WAKEUP: return 1;
	case KVM_SYSTEM_EVENT_CRASH: return kvm_exit_error(kc, exit, "guest crashed (KVM system event CRASH)");
	default: return kvm_exit_error(kc, exit, "KVM system event %u", kc->run->system_event.type);
	}
}

/* Returns 1 to re-enter the guest, 0 when exit is filled in. */
static int kvm_handle_exit(struct vcpu *vcpu, struct kvm_engine_vcpu *kc, struct vcpu_exit *exit)
{
	struct kvm_run *run = kc->run;
	unsigned long long hw;

	switch (run->exit_reason) {
	case KVM_EXIT_IO: return kvm_exit_pio(vcpu, kc, exit);
	case KVM_EXIT_MMIO: return kvm_exit_mmio(vcpu, kc, exit);
	case KVM_EXIT_HLT: exit->reason = VCPU_EXIT_HLT; return 0;
	case KVM_EXIT_SHUTDOWN: exit->reason = VCPU_EXIT_SHUTDOWN; return 0;
	case KVM_EXIT_INTR: exit->reason = VCPU_EXIT_KICK; return 0;
	case KVM_EXIT_SYSTEM_EVENT: return kvm_exit_system_event(vcpu, kc, exit);
	case KVM_EXIT_FAIL_ENTRY:
		hw = run->fail_entry.hardware_entry_failure_reason;
		return kvm_exit_error(kc, exit,
				      "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x%llx%s on host CPU %u", hw,
				      hw == 0x80000021 || hw == ~0ull ? " (invalid guest state)"
				      : hw == 0x80000022	      ? " (MSR loading)"
								      : "",
				      run->fail_entry.cpu);
	case KVM_EXIT_INTERNAL_ERROR: return kvm_exit_internal_error(kc, exit);
	case KVM_EXIT_UNKNOWN:
		return kvm_exit_error(kc, exit, "KVM_EXIT_UNKNOWN: hardware exit reason 0x%llx",
				      (unsigned long long)run->hw.hardware_exit_reason);
	case KVM_EXIT_EXCEPTION:
		return kvm_exit_error(kc, exit, "KVM_EXIT_EXCEPTION: vector %u, error code 0x%x", run->ex.exception,
				      run->ex.error_code);
	default:
		return kvm_exit_error(kc, exit, "unexpected KVM exit reason %u (KVM_EXIT_%s)", run->exit_reason,
				      kvm_exit_name(run->exit_reason));
	}
}

static int kvm_vcpu_run(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	struct kvm_engine_vcpu *kc = vcpu_engine_data(vcpu);
	struct kvm_run *run = kc->run;
	sigset_t kick;
	int ret = 0;

	/* A kick that comes after the clearing below either finds running
	 * set and signals (the handler sets immediate_exit again, or the
	 * signal is pending at KVM_RUN), or is seen in kick_pending. */
	kvm_thread_run = run;
	*(volatile __u8 *)&run->immediate_exit = 0;
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	pthread_mutex_lock(&kc->lock);
	kc->thread = pthread_self();
	kc->running = true;
	pthread_mutex_unlock(&kc->lock);

	if (atomic_exchange(&kc->kick_pending, false)) {
		exit->reason = VCPU_EXIT_KICK;
		goto out;
	}
	/* Every return below comes right after KVM_RUN, so a port or MMIO
	 * access is always complete when the state is read. */
	for (;;) {
		if (ioctl(kc->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				atomic_store(&kc->kick_pending, false);
				exit->reason = VCPU_EXIT_KICK;
				break;
			}
			/* An AP woken in the wait for SIPI: enter again. */
			if (errno == EAGAIN)
				continue;
			ret = -errno;
			break;
		}
		ret = kvm_handle_exit(vcpu, kc, exit);
		if (ret <= 0)
			break;
	}
out:
	pthread_mutex_lock(&kc->lock);
	kc->running = false;
	pthread_mutex_unlock(&kc->lock);
	kvm_thread_run = NULL;
	return ret;
}

/* ---- state --------------------------------------------------------------- */

static void kvm_segment_get(struct x86_segment *d, const struct kvm_segment *k)
{
	*d = (struct x86_segment){
	    .base = k->base,
	    .limit = k->limit,
	    .selector = k->selector,
	    .type = k->type & 15,
	    .s = k->s & 1,
	    .dpl = k->dpl & 3,
	    .present = k->present & 1,
	    .avl = k->avl & 1,
	    .l = k->l & 1,
	    .db = k->db & 1,
	    .g = k->g & 1,
	    .unusable = k->unusable,
	};
}

static void kvm_segment_set(struct kvm_segment *k, const struct x86_segment *d)
{
	*k = (struct kvm_segment){
	    .base = d->base,
	    .limit = d->limit,
	    .selector = d->selector,
	    .type = d->type,
	    .present = d->present,
	    .dpl = d->dpl,
	    .db = d->db,
	    .s = d->s,
	    .l = d->l,
	    .g = d->g,
	    .avl = d->avl,
	    .unusable = d->unusable || !d->present,
	};
	/* A loaded code or data segment's cached type has its accessed bit
	 * set, and VM entry insists on it; a state built by hand may not. */
	if (k->s && !k->unusable)
		k->type |= 1;
}

static void kvm_sregs_get(struct x86_state *s, const struct kvm_sregs *sr)
{
	const struct kvm_segment *seg[SEG_COUNT] = {
	    [SEG_ES] = &sr->es, [SEG_CS] = &sr->cs, [SEG_SS] = &sr->ss,
	    [SEG_DS] = &sr->ds, [SEG_FS] = &sr->fs, [SEG_GS] = &sr->gs,
	};

	for (int i = 0; i < SEG_COUNT; i++)
		kvm_segment_get(&s->seg[i], seg[i]);
	kvm_segment_get(&s->ldtr, &sr->ldt);
	kvm_segment_get(&s->tr, &sr->tr);
	s->gdtr = (struct x86_dtable){sr->gdt.base, sr->gdt.limit};
	s->idtr = (struct x86_dtable){sr->idt.base, sr->idt.limit};
	s->cr0 = sr->cr0;
	s->cr2 = sr->cr2;
	s->cr3 = sr->cr3;
	s->cr4 = sr->cr4;
	s->cr8 = sr->cr8;
	s->efer = sr->efer;
	s->apic_base = sr->apic_base;
}

/* sr holds KVM's current values: what x86_state does not carry (a pending
 * interrupt in interrupt_bitmap) stays as it is. */
static void kvm_sregs_set(struct kvm_sregs *sr, const struct x86_state *s)
{
	struct kvm_segment *seg[SEG_COUNT] = {
	    [SEG_ES] = &sr->es, [SEG_CS] = &sr->cs, [SEG_SS] = &sr->ss,
	    [SEG_DS] = &sr->ds, [SEG_FS] = &sr->fs, [SEG_GS] = &sr->gs,
	};

	for (int i = 0; i < SEG_COUNT; i++)
		kvm_segment_set(seg[i], &s->seg[i]);
	kvm_segment_set(&sr->ldt, &s->ldtr);
	kvm_segment_set(&sr->tr, &s->tr);
	/* VM entry needs a usable busy TSS in TR, which a CPU only looks at on
	 * a task switch or (long mode) an interrupt; boot states often leave
	 * it zero. Make it what reset leaves there. */
	if (sr->tr.unusable || (sr->tr.type != 3 && sr->tr.type != 11)) {
		sr->tr.type = 11;
		sr->tr.present = 1;
		sr->tr.s = 0;
		sr->tr.unusable = 0;
		if (!sr->tr.limit)
			sr->tr.limit = 0xffff;
	}
	sr->gdt = (struct kvm_dtable){.base = s->gdtr.base, .limit = s->gdtr.limit};
	sr->idt = (struct kvm_dtable){.base = s->idtr.base, .limit = s->idtr.limit};
	sr->cr0 = s->cr0;
	sr->cr2 = s->cr2;
	sr->cr3 = s->cr3;
	sr->cr4 = s->cr4;
	sr->cr8 = s->cr8;
	/* LMA is the CPU's own: LME with paging on. KVM refuses a mismatch. */
	sr->efer = s->efer & ~EFER_LMA;
	if ((s->efer & EFER_LME) && (s->cr0 & CR0_PG))
		sr->efer |= EFER_LMA;
	/* 0 is "not given" (a hand-built state): a real one always has the
	 * base address, and disabling the LAPIC would cut the vCPU off. */
	if (s->apic_base)
		sr->apic_base = s->apic_base;
}

static int kvm_fpu_get(struct kvm_engine_vm *kv, struct kvm_engine_vcpu *kc, struct x86_state *s)
{
	struct kvm_fpu fpu;

	if (kv->xsave_size) {
		if (ioctl(kc->fd, kv->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, kc->xsave) < 0)
			return kvm_fail("KVM_GET_XSAVE");
		memcpy(&s->fpu, kc->xsave, FXSAVE_USED_BYTES);
		s->fpu.reserved0 = 0;
		return 0;
	}
	if (ioctl(kc->fd, KVM_GET_FPU, &fpu) < 0)
		return kvm_fail("KVM_GET_FPU");
	s->fpu.fcw = fpu.fcw;
	s->fpu.fsw = fpu.fsw;
	s->fpu.ftw = fpu.ftwx;
	s->fpu.fop = fpu.last_opcode;
	s->fpu.fip = fpu.last_ip;
	s->fpu.fdp = fpu.last_dp;
	s->fpu.mxcsr = fpu.mxcsr;
	memcpy(s->fpu.st, fpu.fpr, sizeof(s->fpu.st));
	memcpy(s->fpu.xmm, fpu.xmm, sizeof(s->fpu.xmm));
	return 0;
}

static int kvm_fpu_set(struct kvm_engine_vm *kv, struct kvm_engine_vcpu *kc, const struct x86_state *s)
{
	struct kvm_fpu fpu = {
	    .fcw = s->fpu.fcw,
	    .fsw = s->fpu.fsw,
	    .ftwx = s->fpu.ftw,
	    .last_opcode = s->fpu.fop,
	    .last_ip = s->fpu.fip,
	    .last_dp = s->fpu.fdp,
	    .mxcsr = s->fpu.mxcsr,
	};

	if (kv->xsave_size) {
		uint8_t *area = kc->xsave;
		uint64_t xstate_bv;
		uint32_t mxcsr_mask;

		/* Read first: the AVX and later components stay as they are. */
		if (ioctl(kc->fd, kv->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, area) < 0)
			return kvm_fail("KVM_GET_XSAVE");
		memcpy(&mxcsr_mask, area + offsetof(struct x86_fxsave, mxcsr_mask), sizeof(mxcsr_mask));
		memcpy(area, &s->fpu, FXSAVE_USED_BYTES);
		memcpy(area + offsetof(struct x86_fxsave, mxcsr_mask), &mxcsr_mask, sizeof(mxcsr_mask));
		/* Mark x87 and SSE as not in their initial state, or the kernel
		 * would ignore what was just written there. */
		memcpy(&xstate_bv, area + XSAVE_HEADER_OFFSET, sizeof(xstate_bv));
		xstate_bv |= XSTATE_X87_SSE;
		memcpy(area + XSAVE_HEADER_OFFSET, &xstate_bv, sizeof(xstate_bv));
		if (ioctl(kc->fd, KVM_SET_XSAVE, area) < 0)
			return kvm_fail("KVM_SET_XSAVE");
		return 0;
	}
	memcpy(fpu.fpr, s->fpu.st, sizeof(fpu.fpr));
	memcpy(fpu.xmm, s->fpu.xmm, sizeof(fpu.xmm));
	if (ioctl(kc->fd, KVM_SET_FPU, &fpu) < 0)
		return kvm_fail("KVM_SET_FPU");
	return 0;
}

/* Reads (in == NULL) into out, or writes from in, the state MSRs KVM keeps. */
static int kvm_msrs_io(struct kvm_engine_vm *kv, struct kvm_engine_vcpu *kc, const struct x86_state *in,
		       struct x86_state *out)
{
	union {
		struct kvm_msrs msrs;
		uint8_t bytes[sizeof(struct kvm_msrs) + KVM_STATE_MSR_COUNT * sizeof(struct kvm_msr_entry)];
	} buf;
	size_t which[KVM_STATE_MSR_COUNT];
	uint32_t n = 0;
	int done;

	memset(&buf, 0, sizeof(buf));
	for (size_t i = 0; i < KVM_STATE_MSR_COUNT; i++) {
		if (!kv->msr_ok[i])
			continue;
		which[n] = i;
		buf.msrs.entries[n].index = kvm_state_msrs[i].index;
		if (in)
			memcpy(&buf.msrs.entries[n].data, (const uint8_t *)in + kvm_state_msrs[i].offset,
			       sizeof(uint64_t));
		n++;
	}
	buf.msrs.nmsrs = n;
	done = ioctl(kc->fd, in ? KVM_SET_MSRS : KVM_GET_MSRS, &buf.msrs);
	if (done < 0)
		return kvm_fail(in ? "KVM_SET_MSRS" : "KVM_GET_MSRS");
	if ((uint32_t)done < n) {
		vmm_log("kvm: KVM_%s_MSRS: KVM refused MSR %s (0x%x) = 0x%llx", in ? "SET" : "GET",
			kvm_state_msrs[which[done]].name, kvm_state_msrs[which[done]].index,
			(unsigned long long)buf.msrs.entries[done].data);
		return -EINVAL;
	}
	for (uint32_t j = 0; out && j < n; j++)
		memcpy((uint8_t *)out + kvm_state_msrs[which[j]].offset, &buf.msrs.entries[j].data, sizeof(uint64_t));
	return 0;
}

static int kvm_get_state(struct vcpu *vcpu, struct x86_state *s)
{
	struct kvm_engine_vm *kv = vm_engine_data(vcpu_vm(vcpu));
	struct kvm_engine_vcpu *kc = vcpu_engine_data(vcpu);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_debugregs dbg;
	struct kvm_mp_state mp;
	int ret;

	memset(s, 0, sizeof(*s));
	if (ioctl(kc->fd, KVM_GET_REGS, &regs) < 0)
		return kvm_fail("KVM_GET_REGS");
	s->gpr[RAX] = regs.rax;
	s->gpr[RCX] = regs.rcx;
	s->gpr[RDX] = regs.rdx;
	s->gpr[RBX] = regs.rbx;
	s->gpr[RSP] = regs.rsp;
	s->gpr[RBP] = regs.rbp;
	s->gpr[RSI] = regs.rsi;
	s->gpr[RDI] = regs.rdi;
	s->gpr[R8] = regs.r8;
	s->gpr[R9] = regs.r9;
	s->gpr[R10] = regs.r10;
	s->gpr[R11] = regs.r11;
	s->gpr[R12] = regs.r12;
	s->gpr[R13] = regs.r13;
	s->gpr[R14] = regs.r14;
	s->gpr[R15] = regs.r15;
	s->rip = regs.rip;
	s->rflags = regs.rflags;

	if (ioctl(kc->fd, KVM_GET_SREGS, &sregs) < 0)
		return kvm_fail("KVM_GET_SREGS");
	kvm_sregs_get(s, &sregs);

	ret = kvm_fpu_get(kv, kc, s);
	if (ret < 0)
		return ret;
	s->xcr0 = 1; /* x87 only: the reset value, and all there is without XSAVE */
	if (kv->xcrs) {
		struct kvm_xcrs xcrs;

		if (ioctl(kc->fd, KVM_GET_XCRS, &xcrs) < 0)
			return kvm_fail("KVM_GET_XCRS");
		for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
			if (xcrs.xcrs[i].xcr == 0)
				s->xcr0 = xcrs.xcrs[i].value;
	}

	ret = kvm_msrs_io(kv, kc, NULL, s);
	if (ret < 0)
		return ret;

	if (ioctl(kc->fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		return kvm_fail("KVM_GET_DEBUGREGS");
	for (int i = 0; i < 4; i++)
		s->dr[i] = dbg.db[i];
	s->dr[6] = dbg.dr6;
	s->dr[7] = dbg.dr7;

	if (ioctl(kc->fd, KVM_GET_MP_STATE, &mp) < 0)
		return kvm_fail("KVM_GET_MP_STATE");
	s->halted = mp.mp_state == KVM_MP_STATE_HALTED;
	return 0;
}

static int kvm_set_state(struct vcpu *vcpu, const struct x86_state *s)
{
	struct kvm_engine_vm *kv = vm_engine_data(vcpu_vm(vcpu));
	struct kvm_engine_vcpu *kc = vcpu_engine_data(vcpu);
	struct kvm_regs regs = {
	    .rax = s->gpr[RAX],
	    .rbx = s->gpr[RBX],
	    .rcx = s->gpr[RCX],
	    .rdx = s->gpr[RDX],
	    .rsi = s->gpr[RSI],
	    .rdi = s->gpr[RDI],
	    .rsp = s->gpr[RSP],
	    .rbp = s->gpr[RBP],
	    .r8 = s->gpr[R8],
	    .r9 = s->gpr[R9],
	    .r10 = s->gpr[R10],
	    .r11 = s->gpr[R11],
	    .r12 = s->gpr[R12],
	    .r13 = s->gpr[R13],
	    .r14 = s->gpr[R14],
	    .r15 = s->gpr[R15],
	    .rip = s->rip,
	    .rflags = s->rflags | 2, /* bit 1 is always set */
	};
	struct kvm_sregs sregs;
	struct kvm_debugregs dbg = {
	    .db = {s->dr[0], s->dr[1], s->dr[2], s->dr[3]},
	    .dr6 = s->dr[6] ? s->dr[6] : 0xffff0ff0,
	    .dr7 = s->dr[7] | 0x400,
	};
	struct kvm_mp_state mp;
	int ret;

	/* Control registers and EFER first: what the rest may hold (XCR0,
	 * MSRs) is checked against the mode. */
	if (ioctl(kc->fd, KVM_GET_SREGS, &sregs) < 0)
		return kvm_fail("KVM_GET_SREGS");
	kvm_sregs_set(&sregs, s);
	if (ioctl(kc->fd, KVM_SET_SREGS, &sregs) < 0)
		return kvm_fail("KVM_SET_SREGS");
	if (ioctl(kc->fd, KVM_SET_REGS, &regs) < 0)
		return kvm_fail("KVM_SET_REGS");

	if (kv->xcrs) {
		struct kvm_xcrs xcrs = {.nr_xcrs = 1, .xcrs = {{.xcr = 0, .value = s->xcr0 ? s->xcr0 : 1}}};

		if (ioctl(kc->fd, KVM_SET_XCRS, &xcrs) < 0)
			return kvm_fail("KVM_SET_XCRS");
	}
	ret = kvm_fpu_set(kv, kc, s);
	if (ret < 0)
		return ret;

	ret = kvm_msrs_io(kv, kc, s, NULL);
	if (ret < 0)
		return ret;

	if (ioctl(kc->fd, KVM_SET_DEBUGREGS, &dbg) < 0)
		return kvm_fail("KVM_SET_DEBUGREGS");

	/* An AP that waits for INIT/SIPI keeps waiting: the in-kernel LAPIC
	 * starts it when the guest asks. A running vCPU runs or halts. */
	if (ioctl(kc->fd, KVM_GET_MP_STATE, &mp) < 0)
		return kvm_fail("KVM_GET_MP_STATE");
	if (mp.mp_state == KVM_MP_STATE_RUNNABLE || mp.mp_state == KVM_MP_STATE_HALTED) {
		uint32_t want = s->halted ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;

		if (mp.mp_state != want) {
			mp.mp_state = want;
			if (ioctl(kc->fd, KVM_SET_MP_STATE, &mp) < 0)
				return kvm_fail("KVM_SET_MP_STATE");
		}
	}
	return 0;
}

const struct engine_ops kvm_engine_ops = {
    .name = "kvm",
    .unavailable = kvm_unavailable,
    .vm_init = kvm_vm_init,
    .vm_destroy = kvm_vm_destroy,
    .vcpu_init = kvm_vcpu_init,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_run = kvm_vcpu_run,
    .get_state = kvm_get_state,
    .set_state = kvm_set_state,
    .kick = kvm_kick,
    .irqchip_in_engine = kvm_irqchip_in_engine,
    .set_irq_line = kvm_set_irq_line,
    .send_msi = kvm_send_msi,
};
