/*
 * Declarations shared inside vmm/: the VM and vCPU structures, the device
 * registry, and the interfaces between the PC devices (interrupt
 * controllers, timers). Nothing outside vmm/ includes this file.
 */
#ifndef VIREO_VMM_INTERNAL_H
#define VIREO_VMM_INTERNAL_H

#include <errno.h>
#include <stdio.h>

#include "vmm/vmm.h"

#define MAX_CPUS 64

/* ---- buses -------------------------------------------------------------- */

struct bus_region {
	uint64_t base, len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_region *regions; /* sorted by base, never overlapping */
	unsigned count, cap;
	const char *what; /* "port" or "MMIO", for messages */
	bool warned_unassigned;
};

int bus_init(struct bus *bus, const char *what);
void bus_destroy(struct bus *bus);
/* Dispatches one access; unassigned reads return all ones. */
uint64_t bus_read(struct bus *bus, struct vcpu *vcpu, uint64_t addr, unsigned size);
void bus_write(struct bus *bus, struct vcpu *vcpu, uint64_t addr, unsigned size, uint64_t value);

/* ---- timers ------------------------------------------------------------- */

struct clock {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vm_timer **timers;
	unsigned count, cap;
	bool stop, running;
};

void clock_init(struct vm *vm);
int clock_start(struct vm *vm);
void clock_stop(struct vm *vm);
void clock_destroy(struct vm *vm);
/* Drops every timer (devices are being rebuilt); the thread must be stopped. */
void clock_clear(struct vm *vm);

int memory_init(struct vm *vm, uint64_t size, char *err, size_t errlen);
void memory_destroy(struct vm *vm);

/* ---- devices ------------------------------------------------------------ */

/* A device registers itself with DEVICE_INIT at the end of its file; the VM
 * runs every init in order (lower first) when it is created. */
struct device_init {
	const char *name;
	int order;
	bool irqchip; /* PIC, PIT, IOAPIC, LAPIC: left out when the engine has its own */
	int (*init)(struct vm *vm);
	void (*exit)(struct vm *vm);
	/* ---- virtio: back-end threads ---- */
	/* Optional: called once the vCPUs have stopped, before they and the
	 * interrupt controllers are torn down (reset, power-off). A device whose
	 * back-end threads raise interrupts or touch guest RAM stops them here. */
	void (*stop)(struct vm *vm);
	/* ---- end virtio ---- */
	struct device_init *next;
};
void device_register(struct device_init *d);
int devices_init(struct vm *vm, char *err, size_t errlen);
void devices_stop(struct vm *vm); /* virtio: runs every stop hook */
void devices_exit(struct vm *vm);

enum {
	DEVICE_ORDER_IRQCHIP = 10, /* PIC, IOAPIC, LAPICs: others raise lines into them */
	DEVICE_ORDER_PLATFORM = 20,
	DEVICE_ORDER_PCI = 30,
	DEVICE_ORDER_VIRTIO = 40, /* virtio: devices on the PCI bus the user asked for */
	DEVICE_ORDER_FIRMWARE = 90, /* ACPI tables describe what came before */
};

#define DEVICE_DEFINE(dev_name, dev_order, is_irqchip, init_fn, exit_fn, stop_fn)                         \
	static struct device_init device_init_##init_fn = {                                               \
		.name = dev_name, .order = dev_order, .irqchip = is_irqchip, .init = init_fn, .exit = exit_fn, \
		.stop = stop_fn};                                                                         \
	__attribute__((constructor)) static void device_register_##init_fn(void)                         \
	{                                                                                                 \
		device_register(&device_init_##init_fn);                                                  \
	}
#define DEVICE_INIT(name, order, init_fn, exit_fn) DEVICE_DEFINE(name, order, false, init_fn, exit_fn, NULL)
/* A device KVM's in-kernel irqchip replaces (irqchip_in_engine). */
#define DEVICE_INIT_IRQCHIP(name, order, init_fn, exit_fn) DEVICE_DEFINE(name, order, true, init_fn, exit_fn, NULL)
/* virtio: a device with back-end threads, which stop_fn stops. */
#define DEVICE_INIT_STOP(name, order, init_fn, exit_fn, stop_fn) \
	DEVICE_DEFINE(name, order, false, init_fn, exit_fn, stop_fn)

/* Slots in vm->devices for devices whose state other code looks up. */
enum {
	DEVICE_SLOT_UART,
	DEVICE_SLOT_PIT,
	DEVICE_SLOT_RTC,
	DEVICE_SLOT_PCI,
	DEVICE_SLOT_ACPI,
	DEVICE_SLOT_VIRTIO, /* virtio: vmm/virtio/core.c's list of devices */
	DEVICE_SLOT_HPET,
	DEVICE_SLOT_COUNT = 16
};

/* Interfaces between the PC devices. */
struct lapic;
struct ioapic;
struct pic;

/* The LAPIC of each vCPU. */
int lapic_create(struct vcpu *vcpu);
void lapic_destroy(struct vcpu *vcpu);
int lapic_pending_vector(struct lapic *lapic);
void lapic_accept_vector(struct lapic *lapic, int vector);
/* Delivers an interrupt message (from the IOAPIC, an MSI or an IPI). */
void lapic_deliver(struct vm *vm, uint32_t dest, bool logical, unsigned mode, uint8_t vector, bool level);
uint64_t lapic_msr_read(struct vcpu *vcpu, uint32_t index, bool *fault);
void lapic_msr_write(struct vcpu *vcpu, uint32_t index, uint64_t value, bool *fault);

void ioapic_set_irq(struct vm *vm, unsigned pin, bool level);
void ioapic_eoi(struct vm *vm, uint8_t vector);
void pic_set_irq(struct vm *vm, unsigned line, bool level);
/* The 8259's INTR output as the LAPIC's LINT0 (ExtINT) sees it: the vector
 * an INTA cycle would return now, or -1, without side effects; and the INTA
 * cycle itself. */
int pic_pending_vector(struct vm *vm);
int pic_acknowledge(struct vm *vm);

/* The serial console's host side (console.c): output to stdout or a file,
 * input from stdin. console_read takes what input there is without
 * waiting; console_has_input says whether any may still come. */
int console_open(struct vm *vm, char *err, size_t errlen);
void console_close(struct vm *vm);
int console_write(struct vm *vm, const void *buf, size_t len);
bool console_has_input(struct vm *vm);
size_t console_read(struct vm *vm, void *buf, size_t len);

/* ---- network back ends (netdev.c) ------------------------------------------- */

struct net_backend;
/* Checks cfg's -netdev specs (each valid, ids unique). */
int netdevs_check(const struct vm_config *cfg, char *err, size_t errlen);
/* Opens them all (vm_create), closes them (vm_destroy). */
int netdevs_open(struct vm *vm, char *err, size_t errlen);
void netdevs_close(struct vm *vm);
/* The open back end with this id, or NULL. */
struct net_backend *vm_netdev(struct vm *vm, const char *id);

/* ---- PCI ---------------------------------------------------------------- */

/* Bus 0 behind the host bridge (vmm/dev/pci.c). Configuration through ports
 * 0xcf8/0xcfc and through ECAM; BARs decode only inside the bridge's windows,
 * which the DSDT describes. */
#define PCI_ECAM_BASE 0xe0000000ull
#define PCI_ECAM_SIZE 0x100000ull /* bus 0 only */
#define PCI_MMIO_BASE 0xc0000000ull
#define PCI_MMIO_SIZE 0x20000000ull
#define PCI_IO_BASE 0xc000
#define PCI_IO_SIZE 0x4000
#define PCI_CONFIG_SIZE 4096
#define PCI_BARS 6

enum pci_bar_kind { PCI_BAR_NONE, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_bar {
	enum pci_bar_kind kind; /* a MEM64 BAR uses the next BAR's dword too */
	uint64_t size;          /* a power of two, at least 16 (I/O: 4, at most 256) */
	bool prefetchable;
	const struct bus_ops *ops; /* offsets from the BAR's address */
	void *opaque;
	uint64_t addr; /* kept by pci.c: where it decodes, 0 when it does not */
};

/* A function on bus 0. The device fills config (IDs, class, capabilities)
 * and wmask/w1cmask for its own registers, and describes its BARs, before
 * pci_register; the bridge owns the command, status and BAR registers. */
struct pci_device {
	const char *name;
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];   /* bits a guest may write */
	uint8_t w1cmask[PCI_CONFIG_SIZE]; /* bits a guest clears by writing 1 */
	struct pci_bar bar[PCI_BARS];
	/* Optional hooks, called under the bridge's lock with offset and size
	 * within one dword: config_read returns what the guest sees given what
	 * config holds; config_write runs after the write has been applied. */
	uint32_t (*config_read)(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value);
	void (*config_write)(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value);
	void *opaque;
	struct vm *vm;     /* set by pci_register */
	unsigned slot;     /* set by pci_register */
	unsigned cap_next; /* kept by pci_add_capability */
};

/* Puts dev in the next free slot of bus 0 and gives its BARs addresses in
 * the windows (decoding stays off until the guest enables it). PCI devices
 * init after DEVICE_ORDER_PCI. Returns the slot or a negative errno. */
int pci_register(struct vm *vm, struct pci_device *dev);
/* Links a capability of len bytes (its 2-byte header included) into dev's
 * list before pci_register; returns its offset in config or -ENOSPC. */
int pci_add_capability(struct pci_device *dev, uint8_t id, unsigned len);
/* Little-endian access to dev->config for device code (no hooks). */
uint32_t pci_config_get(const struct pci_device *dev, unsigned offset, unsigned size);
void pci_config_set(struct pci_device *dev, unsigned offset, unsigned size, uint32_t value);

/* ---- virtio: PCI INTx routing ---- */
/* Interrupt pin (0 = INTA) of the function in slot raises this GSI, IOAPIC
 * inputs 16-23, level-triggered and active low: the DSDT's _PRT says the
 * same to the guest, and the Interrupt Line register holds it too. */
#define PCI_INTX_GSI_BASE  16
#define PCI_INTX_GSI_COUNT 8
static inline unsigned pci_intx_gsi(unsigned slot, unsigned pin)
{
	return PCI_INTX_GSI_BASE + (slot + pin) % PCI_INTX_GSI_COUNT;
}

/* vmm/virtio/core.c: checks the -device specs of cfg before anything is
 * built; fills err with one line naming a spec no model takes. */
int virtio_devices_check(const struct vm_config *cfg, char *err, size_t errlen);
/* ---- end virtio ---- */

/* ---- HPET --------------------------------------------------------------- */

/* The event timer block of vmm/dev/hpet.c, which the ACPI HPET table
 * describes: its address and the low half of its capabilities register. */
#define HPET_BASE 0xfed00000ull
#define HPET_SIZE 0x400
uint32_t hpet_timer_block_id(void);

/* ---- ACPI hardware ------------------------------------------------------ */

/* The fixed-feature registers of vmm/dev/power.c, which the FADT and DSDT
 * (vmm/dev/acpi.c) describe. Byte accesses to 0xcf9, inside the bridge's
 * CONFIG_ADDRESS dword, are the reset control register: pci.c passes them on. */
#define ACPI_PM1_EVT_PORT 0x600 /* PM1a_STS, PM1a_EN */
#define ACPI_PM1_CNT_PORT 0x604
#define ACPI_PM_TMR_PORT 0x608 /* 32 bits at 3.579545 MHz */
#define ACPI_SCI_IRQ 9
#define ACPI_SLP_TYP_S5 0 /* QEMU's value, so outw(0x604, 0x2000) powers off on both */
#define RESET_CONTROL_PORT 0xcf9
#define RESET_CONTROL_VALUE 0x06 /* SYS_RST | RST_CPU */
uint8_t reset_control_read(struct vm *vm);
void reset_control_write(struct vm *vm, uint8_t value);

/* ---- loaders ------------------------------------------------------------ */

struct boot_info {
	struct x86_state bsp; /* the entry state */
	uint64_t image_end;   /* first guest-physical byte after what was loaded */
};

/* Low guest memory the loaders use for boot structures. */
#define BOOT_GDT 0x1000
#define BOOT_PML4 0x2000 /* PML4, PDPT and four page directories */
#define BOOT_INFO 0x8000 /* multiboot info, memory map, module list, strings */
#define BOOT_INFO_END 0x10000

#define MULTIBOOT_MAGIC 0x1badb002
#define MULTIBOOT_BOOT_MAGIC 0x2badb002

/* A loaded ELF image: where it runs and where it ends. */
struct elf_image {
	uint64_t entry, start, end;
};
/* Loads the PT_LOAD segments of an ELF32 or ELF64 x86 image at their
 * physical addresses, checking every offset and size against the file and
 * guest RAM. */
int elf_load(struct vm *vm, const uint8_t *image, size_t size, struct elf_image *out, char *err, size_t errlen);
uint8_t *loader_read_file(const char *path, uint64_t max, size_t *size, char *err, size_t errlen);
/* Writes the multiboot v1 information structure; returns its address. */
int multiboot_info_build(struct vm *vm, const char *cmdline, const char *modules, uint64_t image_end,
			 bool page_align_modules, uint64_t *info, char *err, size_t errlen);
void x86_state_flat64(struct vm *vm, struct x86_state *s, uint64_t entry);

/* Guesses the kind of image and loads it (multiboot, Linux bzImage, ELF64). */
int loader_load(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline, struct boot_info *bi,
		char *err, size_t errlen);
int loader_multiboot(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, const char *modules,
		     struct boot_info *bi, char *err, size_t errlen);
int loader_elf64(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, struct boot_info *bi,
		 char *err, size_t errlen);
/* The Linux/x86 boot protocol: a bzImage entered at its 64-bit entry point. */
bool linux_is_bzimage(const uint8_t *image, size_t size);
int loader_linux(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, const char *initrd,
		 struct boot_info *bi, char *err, size_t errlen);
/* The state multiboot and other flat 32-bit protocols define. */
void x86_state_flat32(struct x86_state *s, uint64_t entry);

/* ---- vCPUs ------------------------------------------------------------- */

int vcpu_create(struct vm *vm, unsigned index);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu);
void vcpu_join(struct vcpu *vcpu);
void x86_state_sipi(struct x86_state *s, unsigned index, int vector);

/* ---- the VM ------------------------------------------------------------- */

struct vcpu {
	struct vm *vm;
	unsigned index;
	pthread_t thread;
	void *engine_data;
	struct lapic *lapic;
	atomic_bool interrupt_hint;
	atomic_uint wake_seq; /* bumped by vcpu_wake; HLT waits for a change */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool init_pending, wait_for_sipi;
	int sipi_vector;
	uint64_t exits[VCPU_EXIT_ERROR + 1];
};

struct vm {
	struct vm_config cfg;
	const struct engine_ops *engine;
	void *engine_data;
	bool engine_ready;      /* engine->vm_init succeeded */
	bool irqchip_in_engine; /* the engine models PIC, PIT, IOAPIC and LAPICs */
	struct guest_memory mem;
	struct bus pio, mmio;
	struct clock clock;
	struct vcpu *cpus[MAX_CPUS];
	unsigned ncpus;
	struct boot_info boot;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool exit_requested, reset_requested;
	int exit_status;
	char exit_reason[200];

	/* devices with cross-device interfaces */
	struct ioapic *ioapic;
	struct pic *pic;
	int console_fd;
	void *devices[DEVICE_SLOT_COUNT]; /* other devices' state, owned by their files */
	struct net_backend *netdevs[VM_MAX_NETDEVS]; /* net: cfg.netdevs, open (netdev.c) */
};

#endif
