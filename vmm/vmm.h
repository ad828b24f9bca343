/*
 * The VMM core: guest memory, the port-I/O and MMIO buses, interrupts,
 * timers, vCPUs and the engine ops table both CPU engines implement.
 *
 * The flow of a guest access to a device: the engine (a KVM exit or a dbt
 * helper) fills a struct vcpu_exit and calls vcpu_exit_io(), which dispatches
 * on the bus to the device's ops; the device may raise an interrupt line
 * (irq_set_level / msi_send), which reaches the interrupt controllers and
 * kicks the vCPU so the engine injects it at the next instruction boundary.
 */
#ifndef VIREO_VMM_H
#define VIREO_VMM_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

/* ---- architectural state, engine-neutral -------------------------------- */

struct x86_segment {
	uint64_t base;
	uint32_t limit; /* byte granular: a G=1 limit is already scaled */
	uint16_t selector;
	uint8_t type; /* descriptor type field, bits 0-3 */
	uint8_t s : 1, dpl : 2, present : 1, avl : 1, l : 1, db : 1, g : 1;
	uint8_t unusable;
};

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
};

/* The FXSAVE image: the x87, MMX and SSE state as the CPU stores it. */
struct x86_fxsave {
	uint16_t fcw, fsw;
	uint8_t ftw, reserved0; /* abridged tag: one bit per register, 1 = valid */
	uint16_t fop;
	uint64_t fip, fdp;
	uint32_t mxcsr, mxcsr_mask;
	uint8_t st[8][16]; /* ST0-ST7, 80 bits each in 16-byte slots */
	uint8_t xmm[16][16];
	uint8_t reserved1[96];
} __attribute__((aligned(16)));

enum x86_seg { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_COUNT };
enum x86_gpr { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

struct x86_state {
	uint64_t gpr[16];
	uint64_t rip, rflags;
	struct x86_segment seg[SEG_COUNT];
	struct x86_segment ldtr, tr;
	struct x86_dtable gdtr, idtr;
	uint64_t cr0, cr2, cr3, cr4, cr8, xcr0;
	uint64_t dr[8];
	uint64_t efer, star, lstar, cstar, fmask, kernel_gs_base;
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
	uint64_t tsc, tsc_aux, pat, misc_enable, apic_base;
	struct x86_fxsave fpu;
	bool halted;
};

/* ---- exits -------------------------------------------------------------- */

enum vcpu_exit_reason {
	VCPU_EXIT_PIO,      /* port I/O, completed by vcpu_exit_io() */
	VCPU_EXIT_MMIO,     /* access outside RAM, completed by vcpu_exit_io() */
	VCPU_EXIT_MSR,      /* an MSR the engine does not own (LAPIC, ...) */
	VCPU_EXIT_HLT,      /* HLT: wait for an interrupt */
	VCPU_EXIT_KICK,     /* another thread asked the vCPU to look at its requests */
	VCPU_EXIT_SHUTDOWN, /* triple fault */
	VCPU_EXIT_ERROR,    /* the engine cannot go on: exit.error says why */
};

struct vcpu_exit {
	enum vcpu_exit_reason reason;
	union {
		struct {
			uint16_t port;
			uint8_t size; /* 1, 2 or 4 */
			bool write;
			uint32_t data;
		} pio;
		struct {
			uint64_t addr;
			uint8_t size; /* 1, 2, 4 or 8 */
			bool write;
			uint64_t data;
		} mmio;
		struct {
			uint32_t index;
			bool write;
			bool fault; /* set by the VMM: the access raises #GP(0) */
			uint64_t data;
		} msr;
		struct {
			uint64_t rip;
			char message[160];
		} error;
	};
};

/* Completes a PIO, MMIO or MSR exit through the buses (reads fill data). */
void vcpu_exit_io(struct vcpu *vcpu, struct vcpu_exit *exit);

/* ---- engines ------------------------------------------------------------ */

struct engine_ops {
	const char *name;
	/* Says why the engine cannot run on this host, or NULL if it can. */
	const char *(*unavailable)(void);
	int (*vm_init)(struct vm *vm);
	void (*vm_destroy)(struct vm *vm);
	int (*vcpu_init)(struct vcpu *vcpu);
	void (*vcpu_destroy)(struct vcpu *vcpu);
	/* Runs guest code until an exit the vCPU loop must handle. */
	int (*vcpu_run)(struct vcpu *vcpu, struct vcpu_exit *exit);
	int (*get_state)(struct vcpu *vcpu, struct x86_state *state);
	int (*set_state)(struct vcpu *vcpu, const struct x86_state *state);
	/* From another thread: make vcpu_run return soon with VCPU_EXIT_KICK. */
	void (*kick)(struct vcpu *vcpu);
	/* Does the engine's own interrupt controller handle the LAPIC/IOAPIC/PIC
	 * (KVM's in-kernel irqchip)? Then irq lines go to the engine. */
	bool (*irqchip_in_engine)(struct vm *vm);
	void (*set_irq_line)(struct vm *vm, unsigned gsi, bool level);
	void (*send_msi)(struct vm *vm, uint64_t addr, uint32_t data);
	/* Guest instructions retired by the vCPU; NULL where the engine cannot count. */
	uint64_t (*instructions_retired)(struct vcpu *vcpu);
	/* ---- virtio: DMA into guest RAM ---- */
	/* Optional: something other than a vCPU (a device's DMA, a loader) wrote
	 * guest-physical [gpa, gpa + len); called through guest_memory_dirty()
	 * from any thread. The dbt engine drops translations made from it. */
	void (*memory_dirty)(struct vm *vm, uint64_t gpa, uint64_t len);
	/* ---- end virtio ---- */
};

extern const struct engine_ops dbt_engine_ops;
extern const struct engine_ops kvm_engine_ops;

/* ---- guest memory ------------------------------------------------------- */

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

/* Guest RAM lives in one memfd: [0, low_size) at guest physical 0 and, for
 * guests larger than the 32-bit window, the rest from 4 GiB up. */
#define RAM_LOW_LIMIT 0xc0000000ull /* 3 GiB: above is the PCI/APIC hole */
#define RAM_HIGH_BASE 0x100000000ull

struct guest_memory {
	int fd;
	uint8_t *host; /* the whole memfd mapping */
	uint64_t size, low_size, high_size;
};

/* The host address of [gpa, gpa + len) if it lies wholly in RAM, else NULL. */
void *gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);
/* Copies to/from guest RAM; -EFAULT if any part is not RAM. guest_write
 * tells the engine (guest_memory_dirty). */
int guest_write(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);
int guest_read(struct vm *vm, uint64_t gpa, void *dst, uint64_t len);
/* The machine's e820 map; returns the number of entries (at most max). */
int e820_map(struct vm *vm, struct e820_entry *out, int max);
/* ---- virtio: DMA into guest RAM ---- */
/* Code outside the vCPUs (device DMA through a gpa_to_hva pointer) wrote
 * guest RAM at [gpa, gpa + len): the engine forgets what it derived from it
 * (the dbt engine's translations). Any thread; cheap when nothing was. */
void guest_memory_dirty(struct vm *vm, uint64_t gpa, uint64_t len);
/* ---- end virtio ---- */

/* ---- buses -------------------------------------------------------------- */

/* A device region's accessors. Offsets are from the region's base; sizes
 * are 1, 2, 4 or 8. The device validates everything a guest writes. */
struct bus_ops {
	uint64_t (*read)(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size);
	void (*write)(void *opaque, struct vcpu *vcpu, uint64_t offset, unsigned size, uint64_t value);
};

enum bus_kind { BUS_PIO, BUS_MMIO };
int bus_register(struct vm *vm, enum bus_kind kind, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name);
void bus_unregister(struct vm *vm, enum bus_kind kind, uint64_t base);

/* ---- interrupts --------------------------------------------------------- */

/* Sets the level of an interrupt line (GSI). Edge-triggered sources pulse it. */
void irq_set_level(struct vm *vm, unsigned gsi, bool level);
void irq_pulse(struct vm *vm, unsigned gsi);
/* An MSI write (address 0xfeexxxxx, data = vector and delivery mode). */
void msi_send(struct vm *vm, uint64_t addr, uint32_t data);

/* ---- timers ------------------------------------------------------------- */

/* A one-shot callback on the VM's clock thread, at an absolute time in
 * nanoseconds of CLOCK_MONOTONIC. Re-arming moves it; cancel drops it. */
struct vm_timer {
	void (*fire)(void *opaque);
	void *opaque;
	uint64_t deadline_ns;
	bool armed;
};
uint64_t clock_now_ns(void);
void timer_init(struct vm_timer *t, void (*fire)(void *), void *opaque);
void timer_arm(struct vm *vm, struct vm_timer *t, uint64_t deadline_ns);
void timer_cancel(struct vm *vm, struct vm_timer *t);

/* ---- VM and vCPUs ------------------------------------------------------- */

#define VM_MAX_DEVICES 32 /* virtio: -device specs per VM */
/* ---- block: disk images ---- */
#define VM_MAX_DRIVES 16

/* A -drive: a disk image that a block device names (drive=ID). */
struct vm_drive {
	const char *id;
	const char *file;
	const char *format; /* "raw", "qcow2", or NULL to probe */
	bool read_only;
};
/* ---- end block ---- */

#define VM_MAX_NETDEVS 8  /* net: -netdev specs per VM */

struct vm_config {
	const char *kernel, *initrd, *cmdline;
	uint64_t memory;
	unsigned cpus;
	const char *engine; /* "dbt", "kvm" or "auto" */
	const char *serial; /* "stdio" or "file:PATH" */
	bool no_reboot;
	bool stats; /* print counters when the VM ends */
	/* ---- virtio: devices the user asked for ---- */
	/* -device specs as QEMU spells them ("virtio-rng-pci", "virtconsole,id=c0"),
	 * in command-line order; vm_create refuses one no device model takes. */
	const char *devices[VM_MAX_DEVICES];
	unsigned ndevices;
	/* ---- end virtio ---- */
	/* ---- block: the -drive images, which -device specs use ---- */
	struct vm_drive drives[VM_MAX_DRIVES];
	unsigned ndrives;
	/* ---- end block ---- */
	/* ---- net: network back ends ---- */
	/* -netdev specs ("tap,id=n0,ifname=tap0", "user,id=n0"), opened by
	 * vm_create and kept across guest resets; a -device virtio-net-pci names
	 * one with netdev=ID. */
	const char *netdevs[VM_MAX_NETDEVS];
	unsigned nnetdevs;
	/* ---- end net ---- */
};

/* Exit statuses of vm_run. A guest's debug-exit write of v gives (v << 1) | 1,
 * as on QEMU's isa-debug-exit, so these are all even. */
#define VM_EXIT_POWEROFF 0
#define VM_EXIT_TRIPLE_FAULT 2  /* or a reset when no_reboot is set */
#define VM_EXIT_ENGINE_ERROR 4  /* the CPU engine met something it cannot run */
#define VM_EXIT_SETUP_ERROR 125 /* bad arguments, or the VM could not be created */

struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen);
/* Prints per-vCPU counters (instructions, exits by kind) after a run. */
void vm_print_stats(struct vm *vm, double seconds);
/* Runs the VM until power-off, debug exit, a triple fault or an error.
 * Returns the process exit status; on failure *err says why. */
int vm_run(struct vm *vm, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

/* Requests from devices: end the VM with a status (debug exit, power-off),
 * or reset it. Safe from any thread. */
void vm_request_exit(struct vm *vm, int status, const char *why);
void vm_request_reset(struct vm *vm);

unsigned vm_cpu_count(struct vm *vm);
struct vcpu *vm_cpu(struct vm *vm, unsigned index);
struct vm *vcpu_vm(struct vcpu *vcpu);
unsigned vcpu_index(struct vcpu *vcpu);
/* Engine-private per-VM and per-vCPU data. */
void *vm_engine_data(struct vm *vm);
void vm_set_engine_data(struct vm *vm, void *data);
void *vcpu_engine_data(struct vcpu *vcpu);
void vcpu_set_engine_data(struct vcpu *vcpu, void *data);
struct guest_memory *vm_memory(struct vm *vm);

/* Wakes a vCPU that waits in HLT and makes a running one exit (kick). */
void vcpu_wake(struct vcpu *vcpu);

/* Interrupt delivery to the engine (when the VMM models the LAPIC): the
 * highest-priority vector the LAPIC would deliver now, or -1; and its
 * acceptance (IRR -> ISR) when the engine takes it. */
int vcpu_pending_interrupt(struct vcpu *vcpu);
void vcpu_accept_interrupt(struct vcpu *vcpu, int vector);
/* Set whenever something may have made an interrupt deliverable: engines
 * poll it cheaply at instruction boundaries. */
atomic_bool *vcpu_interrupt_hint(struct vcpu *vcpu);
/* INIT and SIPI from another vCPU's LAPIC (SMP start-up). */
bool vcpu_take_init_sipi(struct vcpu *vcpu, bool *init, int *sipi_vector);
/* An NMI (IPI, IOAPIC or MSI in NMI mode): true once per NMI. It sets the
 * hint too; engines take it whatever RFLAGS.IF says. */
bool vcpu_take_nmi(struct vcpu *vcpu);

/* ---- logging ------------------------------------------------------------ */

/* One line to stderr, prefixed "vireo: ". */
void vmm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
