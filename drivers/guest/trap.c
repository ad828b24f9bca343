/* GDT's TSS, the IDT, exception reporting, trap_run recovery and SYSCALL. */
#include "guest.h"

struct idt_gate {
	uint16_t offset_lo, selector;
	uint8_t ist, type_attr;
	uint16_t offset_mid;
	uint32_t offset_hi, reserved;
} __attribute__((packed));

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap_base;
} __attribute__((packed));

#define IST_STACK_SIZE 8192

extern uint64_t gdt[GDT_ENTRIES];
extern char trap_stubs[], trap_run_landing[], syscall_entry[];
extern uint64_t trap_try_rsp;
extern struct trap_record *trap_try_rec;

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_handler handlers[256];
static struct tss tss __attribute__((aligned(16)));
static uint8_t ist_stacks[7][IST_STACK_SIZE] __attribute__((aligned(16)));
static uint8_t rsp0_stack[16384] __attribute__((aligned(16)));
static syscall_handler user_syscall;

static void idt_set_gate(unsigned v, uint64_t addr, unsigned dpl, unsigned ist)
{
	idt[v] = (struct idt_gate){
		.offset_lo = addr & 0xffff,
		.selector = GDT_KERNEL_CODE,
		.ist = ist,
		.type_attr = 0x8e | (dpl << 5), /* present, 64-bit interrupt gate */
		.offset_mid = (addr >> 16) & 0xffff,
		.offset_hi = addr >> 32,
	};
}

static uint64_t gate_offset(unsigned v)
{
	return idt[v].offset_lo | ((uint64_t)idt[v].offset_mid << 16) | ((uint64_t)idt[v].offset_hi << 32);
}

void idt_set_dpl(unsigned vector, unsigned dpl)
{
	idt_set_gate(vector, gate_offset(vector), dpl, idt[vector].ist);
}

void idt_set_ist(unsigned vector, unsigned ist)
{
	idt_set_gate(vector, gate_offset(vector), (idt[vector].type_attr >> 5) & 3, ist);
}

void ist_stack_bounds(unsigned ist, uint64_t *lo, uint64_t *hi)
{
	*lo = (uint64_t)ist_stacks[ist - 1];
	*hi = *lo + IST_STACK_SIZE;
}

void rsp0_stack_bounds(uint64_t *lo, uint64_t *hi)
{
	*lo = (uint64_t)rsp0_stack;
	*hi = *lo + sizeof(rsp0_stack);
}

void trap_set_handler(unsigned vector, trap_handler h)
{
	handlers[vector & 255] = h;
}

void syscall_set_handler(syscall_handler h)
{
	user_syscall = h;
}

static void tss_init(void)
{
	uint64_t base = (uint64_t)&tss;
	uint64_t limit = sizeof(tss) - 1;

	tss.rsp[0] = (uint64_t)rsp0_stack + sizeof(rsp0_stack);
	for (int i = 0; i < 7; i++)
		tss.ist[i] = (uint64_t)ist_stacks[i] + IST_STACK_SIZE;
	tss.iomap_base = sizeof(tss); /* no I/O bitmap: ring 3 port I/O faults */

	/* 64-bit available TSS descriptor, two GDT slots. */
	gdt[GDT_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[GDT_TSS / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" ::"r"(GDT_TSS));
}

void trap_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)idt};

	for (unsigned v = 0; v < 256; v++)
		idt_set_gate(v, (uint64_t)trap_stubs + 16 * v, 0, 0);
	__asm__ volatile("lidt %0" ::"m"(idtr));
	tss_init();

	wrmsr(MSR_STAR, ((uint64_t)(GDT_USER_CODE32 | 3) << 48) | ((uint64_t)GDT_KERNEL_CODE << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_FMASK, RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC);
}

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "coprocessor overrun",
	"#TS", "#NP", "#SS", "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM",
	"#VE", "#CP",
};

void trap_dispatch(struct trap_frame *f)
{
	if (handlers[f->vector]) {
		handlers[f->vector](f);
		return;
	}
	if (f->vector < 32 && trap_try_rsp) {
		*trap_try_rec = (struct trap_record){
			.vector = f->vector,
			.error = f->error,
			.rip = f->rip,
			.cr2 = read_cr2(),
			.cs = f->cs,
			.rsp = f->rsp,
		};
		f->rip = (uint64_t)trap_run_landing;
		f->cs = GDT_KERNEL_CODE;
		f->ss = GDT_KERNEL_DATA;
		f->rsp = trap_try_rsp;
		f->rflags = 0x2;
		return;
	}
	const char *name = f->vector < 32 && exception_names[f->vector] ? exception_names[f->vector] : "interrupt";
	printf("FAIL unexpected %s: vector %lu error 0x%lx at RIP 0x%lx CS 0x%lx CR2 0x%lx\n", name,
	       f->vector, f->error, f->rip, f->cs, read_cr2());
	guest_checks_failed++;
	guest_finish();
}

__attribute__((noreturn)) void user_return(uint64_t value);

void syscall_dispatch(struct syscall_frame *f)
{
	f->cs = read_cs();
	if (f->rax == SYS_USER_EXIT)
		user_return(f->rdi);
	if (!user_syscall) {
		printf("FAIL unexpected system call %lu from RIP 0x%lx\n", f->rax, f->rcx);
		guest_checks_failed++;
		guest_finish();
	}
	f->rax = user_syscall(f);
}
