/*
 * Privilege levels: SYSCALL/SYSRET, IRETQ between rings, #GP for privileged
 * instructions in ring 3, the stacks an interrupt lands on (TSS.RSP0, IST,
 * current stack) and SWAPGS. Ring-3 code is assembly with labels, so every
 * expected RIP, RSP and stack address is known from the SDM and the link
 * map rather than from an earlier run.
 */
#include "guest.h"

#define STR_(x) #x
#define STR(x)	STR_(x)

#define USER_CS (GDT_USER_CODE | 3)
#define USER_SS (GDT_USER_DATA | 3)

#define SYS_PROBE 7
#define SYS_ARG0  0x0123456789abcdef
#define SYS_ARG1  0x1111222233334444
#define SYS_ARG2  0x7edcba9876543210

#define VEC_USER	0x40 /* gate DPL 3, no IST */
#define VEC_IST		0x41 /* gate DPL 3, IST_INDEX */
#define VEC_KERNEL	0x42 /* gate DPL 0, no IST */
#define IST_INDEX	3
#define VEC_WATCHDOG	0x50
#define CPU_FRAME_BYTES 40 /* SS, RSP, RFLAGS, CS, RIP */

/* Written by the snippets, read by the checks; not static, so the compiler
 * cannot assume only C code stores to them. */
uint64_t snip_rflags_before, snip_rflags_after, snip_rsp, snip_cr3;
uint16_t snip_cs_after, snip_ss_after;

/*
 * Every snippet is uint64_t NAME(void *arg). NAME_at labels the instruction
 * a fault reports, or for SYSCALL and INT n the one after it.
 */
#define SNIPPET(name)                                                                                                  \
	uint64_t name(void *);                                                                                         \
	extern const char name##_at[]
SNIPPET(u_syscall);
SNIPPET(u_int_user);
SNIPPET(u_int_ist);
SNIPPET(k_int_ist);
SNIPPET(k_int_kernel);
SNIPPET(k_int_kernel_aligned);
SNIPPET(u_hlt);
SNIPPET(u_cli);
SNIPPET(u_sti);
SNIPPET(u_mov_cr3);
SNIPPET(u_read_cr0);
SNIPPET(u_clts);
SNIPPET(u_in);
SNIPPET(u_out);
SNIPPET(u_rdmsr);
SNIPPET(u_wrmsr);
SNIPPET(u_invlpg);
SNIPPET(u_wbinvd);
SNIPPET(u_swapgs);
uint64_t u_popf_if(void *);

/* clang-format off */
__asm__(".pushsection .text\n"
	/* Ring 3: three arguments in, the result back in RAX; then CS and SS
	 * as SYSRET left them. R11 and RCX are clobbered by SYSCALL. */
	"u_syscall:\n"
	"	pushfq\n"
	"	popq %rcx\n"
	"	movq %rcx, snip_rflags_before(%rip)\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	movl $" STR(SYS_PROBE) ", %eax\n"
	"	movabsq $" STR(SYS_ARG0) ", %rdi\n"
	"	movabsq $" STR(SYS_ARG1) ", %rsi\n"
	"	movabsq $" STR(SYS_ARG2) ", %rdx\n"
	"	syscall\n"
	"u_syscall_at:\n"
	"	pushfq\n"
	"	popq %rcx\n"
	"	movq %rcx, snip_rflags_after(%rip)\n"
	"	movw %cs, snip_cs_after(%rip)\n"
	"	movw %ss, snip_ss_after(%rip)\n"
	"	ret\n"
	/* INT n from ring 3; returns CS as IRETQ left it. */
	"u_int_user:\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	int $" STR(VEC_USER) "\n"
	"u_int_user_at:\n"
	"	xorl %eax, %eax\n"
	"	movw %cs, %ax\n"
	"	ret\n"
	"u_int_ist:\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	int $" STR(VEC_IST) "\n"
	"u_int_ist_at:\n"
	"	xorl %eax, %eax\n"
	"	movw %cs, %ax\n"
	"	ret\n"
	/* Ring 0. The stack is 8 bytes off 16 at entry; the aligned variant
	 * moves it, since the CPU aligns RSP down to 16 before pushing. */
	"k_int_ist:\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	int $" STR(VEC_IST) "\n"
	"k_int_ist_at:\n"
	"	ret\n"
	"k_int_kernel:\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	int $" STR(VEC_KERNEL) "\n"
	"k_int_kernel_at:\n"
	"	ret\n"
	"k_int_kernel_aligned:\n"
	"	subq $8, %rsp\n"
	"	movq %rsp, snip_rsp(%rip)\n"
	"	int $" STR(VEC_KERNEL) "\n"
	"k_int_kernel_aligned_at:\n"
	"	addq $8, %rsp\n"
	"	ret\n"
	/* Privileged in ring 3. Operands are chosen to be harmless should the
	 * instruction wrongly succeed. */
	"u_hlt:\n"
	"u_hlt_at:\n"
	"	hlt\n"
	"	ret\n"
	"u_cli:\n"
	"u_cli_at:\n"
	"	cli\n"
	"	ret\n"
	"u_sti:\n"
	"u_sti_at:\n"
	"	sti\n"
	"	ret\n"
	"u_mov_cr3:\n"
	"	movq snip_cr3(%rip), %rax\n"
	"u_mov_cr3_at:\n"
	"	movq %rax, %cr3\n"
	"	ret\n"
	"u_read_cr0:\n"
	"u_read_cr0_at:\n"
	"	movq %cr0, %rax\n"
	"	ret\n"
	"u_clts:\n"
	"u_clts_at:\n"
	"	clts\n"
	"	ret\n"
	"u_in:\n"
	"u_in_at:\n"
	"	inb $0x80, %al\n"
	"	ret\n"
	"u_out:\n"
	"u_out_at:\n"
	"	outb %al, $0x80\n"
	"	ret\n"
	"u_rdmsr:\n"
	"	movl $" STR(MSR_EFER) ", %ecx\n"
	"u_rdmsr_at:\n"
	"	rdmsr\n"
	"	ret\n"
	"u_wrmsr:\n"
	"	movl $" STR(MSR_KERNEL_GS_BASE) ", %ecx\n"
	"	xorl %eax, %eax\n"
	"	xorl %edx, %edx\n"
	"u_wrmsr_at:\n"
	"	wrmsr\n"
	"	ret\n"
	"u_invlpg:\n"
	"u_invlpg_at:\n"
	"	invlpg (%rsp)\n"
	"	ret\n"
	"u_wbinvd:\n"
	"u_wbinvd_at:\n"
	"	wbinvd\n"
	"	ret\n"
	"u_swapgs:\n"
	"u_swapgs_at:\n"
	"	swapgs\n"
	"	ret\n"
	/* POPF with CPL > IOPL leaves IF alone and does not fault. */
	"u_popf_if:\n"
	"	pushfq\n"
	"	andq $~" STR(RFLAGS_IF) ", (%rsp)\n"
	"	popfq\n"
	"	pushfq\n"
	"	popq %rax\n"
	"	ret\n"
	".popsection\n");
/* clang-format on */

/* ---- SYSCALL / SYSRET --------------------------------------------------- */

static struct syscall_frame sys_seen;
static uint64_t sys_handler_rflags;
static unsigned sys_calls;

static uint64_t sys_result(uint64_t a, uint64_t b, uint64_t c)
{
	return (a ^ b) + c * 3;
}

static uint64_t probe_syscall(struct syscall_frame *f)
{
	sys_seen = *f;
	sys_handler_rflags = read_rflags();
	sys_calls++;
	return sys_result(f->rdi, f->rsi, f->rdx);
}

static uint64_t user_usys(void *arg)
{
	(void)arg;
	return usys(SYS_PROBE, 1, 2, 3) + usys(SYS_PROBE, 40, 2, 0);
}

static void check_syscall(void)
{
	syscall_set_handler(probe_syscall);
	uint64_t ret = user_run(u_syscall, NULL);
	check_eq("syscall handler ran once", 1, sys_calls);
	check_eq("syscall lands in ring 0", GDT_KERNEL_CODE, sys_seen.cs);
	check_eq("syscall number in rax", SYS_PROBE, sys_seen.rax);
	check_eq("syscall arg rdi", SYS_ARG0, sys_seen.rdi);
	check_eq("syscall arg rsi", SYS_ARG1, sys_seen.rsi);
	check_eq("syscall arg rdx", SYS_ARG2, sys_seen.rdx);
	check_eq("syscall rcx = user return rip", (uint64_t)u_syscall_at, sys_seen.rcx);
	check_eq("syscall r11 = user rflags", snip_rflags_before, sys_seen.r11);
	check_eq("syscall user rsp kept", snip_rsp, sys_seen.rsp);
	check(snip_rflags_before & RFLAGS_IF, "syscall user rflags had IF", "rflags 0x%lx", snip_rflags_before);
	check_eq("syscall fmask cleared IF in ring 0", 0, sys_handler_rflags & RFLAGS_IF);
	check_eq("sysret returns the result in rax", sys_result(SYS_ARG0, SYS_ARG1, SYS_ARG2), ret);
	check_eq("sysret cs rpl 3", USER_CS, snip_cs_after);
	check_eq("sysret ss rpl 3", USER_SS, snip_ss_after);
	check_eq("sysret restores rflags from r11", snip_rflags_before, snip_rflags_after);

	sys_calls = 0;
	ret = user_run(user_usys, NULL);
	check_eq("usys from C: two calls", 2, sys_calls);
	check_eq("usys from C: results", sys_result(1, 2, 3) + sys_result(40, 2, 0), ret);
	syscall_set_handler(NULL);
}

/* ---- user_run and privileged instructions ------------------------------- */

static uint64_t user_value(void *arg)
{
	return (uint64_t)arg * 3 + 1;
}

static uint64_t user_selectors(void *arg)
{
	uint16_t ss;

	(void)arg;
	__asm__ volatile("mov %%ss, %0" : "=r"(ss));
	return read_cs() | (uint64_t)ss << 16;
}

struct user_call {
	uint64_t (*fn)(void *);
	uint64_t ret;
};

static void run_user(void *p)
{
	struct user_call *c = p;
	c->ret = user_run(c->fn, NULL);
}

static void expect_gp0(const char *name, uint64_t (*fn)(void *), const char *at)
{
	struct user_call c = {fn, 0};
	struct trap_record rec = {0};

	if (!trap_run(run_user, &c, &rec)) {
		check(false, name, "no exception in ring 3");
		return;
	}
	check_eqf(VEC_GP, rec.vector, "%s: vector", name);
	check_eqf(0, rec.error, "%s: error", name);
	check_eqf((uint64_t)at, rec.rip, "%s: rip", name);
	check_eqf(USER_CS, rec.cs, "%s: cs", name);
}

/* A ring-3 HLT that wrongly halted (IF is set in ring 3) would wait for
 * ever; a LAPIC timer interrupt wakes it, so the check fails instead. */
static void watchdog_tick(struct trap_frame *f)
{
	(void)f;
	lapic_eoi();
}

static void watchdog(bool on)
{
	if (on) {
		trap_set_handler(VEC_WATCHDOG, watchdog_tick);
		lapic_enable(0xff);
		lapic_write(LAPIC_TIMER_DIVIDE, 0xb); /* divide by 1 */
		lapic_write(LAPIC_LVT_TIMER, VEC_WATCHDOG);
		lapic_write(LAPIC_TIMER_INIT, 100000000);
	} else {
		lapic_write(LAPIC_TIMER_INIT, 0);
		lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_WATCHDOG);
	}
}

static void check_user(void)
{
	check_eq("user_run returns ring 3's value", 0x1234 * 3 + 1, user_run(user_value, (void *)0x1234));
	check_eq("ring 3 cs and ss", USER_CS | (uint64_t)USER_SS << 16, user_run(user_selectors, NULL));
	check_eq("ring 0 cs after user_run", GDT_KERNEL_CODE, read_cs());

	uint64_t flags = user_run(u_popf_if, NULL);
	check(flags & RFLAGS_IF, "ring 3 popf leaves IF", "rflags 0x%lx", flags);
	check_eq("ring 3 iopl is 0", 0, flags & RFLAGS_IOPL);

	snip_cr3 = read_cr3();
	watchdog(true);
	expect_gp0("#GP ring 3 hlt", u_hlt, u_hlt_at);
	watchdog(false);
	expect_gp0("#GP ring 3 cli", u_cli, u_cli_at);
	expect_gp0("#GP ring 3 sti", u_sti, u_sti_at);
	expect_gp0("#GP ring 3 mov to cr3", u_mov_cr3, u_mov_cr3_at);
	expect_gp0("#GP ring 3 mov from cr0", u_read_cr0, u_read_cr0_at);
	expect_gp0("#GP ring 3 clts", u_clts, u_clts_at);
	expect_gp0("#GP ring 3 in, iopl 0", u_in, u_in_at);
	expect_gp0("#GP ring 3 out, iopl 0", u_out, u_out_at);
	expect_gp0("#GP ring 3 rdmsr", u_rdmsr, u_rdmsr_at);
	expect_gp0("#GP ring 3 wrmsr", u_wrmsr, u_wrmsr_at);
	expect_gp0("#GP ring 3 invlpg", u_invlpg, u_invlpg_at);
	expect_gp0("#GP ring 3 wbinvd", u_wbinvd, u_wbinvd_at);
	expect_gp0("#GP ring 3 swapgs", u_swapgs, u_swapgs_at);
}

/* ---- interrupt stacks and IRETQ ----------------------------------------- */

static struct {
	uint64_t frame_rip_at; /* where the CPU pushed RIP */
	uint64_t rip, cs, rflags, rsp, ss, handler_cs;
	unsigned calls;
} seen;

static void record_interrupt(struct trap_frame *f)
{
	seen.frame_rip_at = (uint64_t)&f->rip;
	seen.rip = f->rip;
	seen.cs = f->cs;
	seen.rflags = f->rflags;
	seen.rsp = f->rsp;
	seen.ss = f->ss;
	seen.handler_cs = read_cs();
	seen.calls++;
}

/*
 * In 64-bit mode the CPU aligns the new RSP down to 16 and pushes SS, RSP,
 * RFLAGS, CS, RIP, so RIP lands CPU_FRAME_BYTES below the aligned top.
 */
static void check_landing(const char *name, uint64_t lo, uint64_t hi, uint64_t top, const char *rip, bool user)
{
	uint64_t frame = seen.frame_rip_at;
	char within[96];

	snprintf(within, sizeof(within), "%s: frame within the stack", name);
	check_eqf(1, seen.calls, "%s: handler ran once", name);
	check(frame >= lo && frame + CPU_FRAME_BYTES <= hi, within, "frame at 0x%lx outside [0x%lx, 0x%lx)", frame, lo,
	      hi);
	check_eqf((top & ~15ull) - CPU_FRAME_BYTES, frame, "%s: frame address", name);
	check_eqf((uint64_t)rip, seen.rip, "%s: pushed rip", name);
	check_eqf(user ? USER_CS : GDT_KERNEL_CODE, seen.cs, "%s: pushed cs", name);
	check_eqf(user ? USER_SS : GDT_KERNEL_DATA, seen.ss, "%s: pushed ss", name);
	check_eqf(snip_rsp, seen.rsp, "%s: pushed rsp", name);
	check_eqf(GDT_KERNEL_CODE, seen.handler_cs, "%s: handler in ring 0", name);
}

static void check_stacks(void)
{
	uint64_t rsp0_lo, rsp0_hi, ist_lo, ist_hi;

	rsp0_stack_bounds(&rsp0_lo, &rsp0_hi);
	ist_stack_bounds(IST_INDEX, &ist_lo, &ist_hi);
	trap_set_handler(VEC_USER, record_interrupt);
	trap_set_handler(VEC_IST, record_interrupt);
	trap_set_handler(VEC_KERNEL, record_interrupt);
	idt_set_dpl(VEC_USER, 3);
	idt_set_dpl(VEC_IST, 3);
	idt_set_ist(VEC_IST, IST_INDEX);

	/* Ring 3 -> ring 0 on TSS.RSP0, and IRETQ back to ring 3. */
	seen.calls = 0;
	uint64_t cs = user_run(u_int_user, NULL);
	check_landing("int from ring 3 on rsp0", rsp0_lo, rsp0_hi, rsp0_hi, u_int_user_at, true);
	check(seen.rflags & RFLAGS_IF, "int from ring 3: pushed IF", "rflags 0x%lx", seen.rflags);
	check_eq("iretq back to ring 3 cs", USER_CS, cs);

	/* IST wins over both RSP0 and the current stack. */
	seen.calls = 0;
	cs = user_run(u_int_ist, NULL);
	check_landing("int from ring 3 on ist", ist_lo, ist_hi, ist_hi, u_int_ist_at, true);
	check_eq("iretq from ist back to ring 3 cs", USER_CS, cs);

	seen.calls = 0;
	k_int_ist(NULL);
	check_landing("int from ring 0 on ist", ist_lo, ist_hi, ist_hi, k_int_ist_at, false);

	/* Without IST a ring-0 interrupt stays on the current stack, just
	 * below the RSP it interrupted. */
	seen.calls = 0;
	k_int_kernel(NULL);
	check_landing("int from ring 0 on current stack", snip_rsp - 4096, snip_rsp, snip_rsp, k_int_kernel_at, false);
	seen.calls = 0;
	k_int_kernel_aligned(NULL);
	check_landing("int from ring 0 on current stack, aligned", snip_rsp - 4096, snip_rsp, snip_rsp,
		      k_int_kernel_aligned_at, false);

	idt_set_ist(VEC_IST, 0);
	idt_set_dpl(VEC_IST, 0);
	idt_set_dpl(VEC_USER, 0);
	trap_set_handler(VEC_USER, NULL);
	trap_set_handler(VEC_IST, NULL);
	trap_set_handler(VEC_KERNEL, NULL);
}

/* ---- SWAPGS ------------------------------------------------------------- */

static const uint64_t gs_word_user = 0x5553455247530000, gs_word_kernel = 0x4b45524e47530000;

static void check_swapgs(void)
{
	uint64_t user = (uint64_t)&gs_word_user, kernel = (uint64_t)&gs_word_kernel, via_gs;

	wrmsr(MSR_GS_BASE, user);
	wrmsr(MSR_KERNEL_GS_BASE, kernel);
	__asm__ volatile("swapgs; movq %%gs:0, %0" : "=r"(via_gs)::"memory");
	check_eq("swapgs: gs base now kernel", kernel, rdmsr(MSR_GS_BASE));
	check_eq("swapgs: kernel gs base now user", user, rdmsr(MSR_KERNEL_GS_BASE));
	check_eq("swapgs: gs:0 reads the new base", gs_word_kernel, via_gs);
	__asm__ volatile("swapgs; movq %%gs:0, %0" : "=r"(via_gs)::"memory");
	check_eq("swapgs twice: gs base back", user, rdmsr(MSR_GS_BASE));
	check_eq("swapgs twice: kernel gs base back", kernel, rdmsr(MSR_KERNEL_GS_BASE));
	check_eq("swapgs twice: gs:0 reads the old base", gs_word_user, via_gs);
	wrmsr(MSR_GS_BASE, 0);
	wrmsr(MSR_KERNEL_GS_BASE, 0);
}

void main(void)
{
	check_syscall();
	check_user();
	check_stacks();
	check_swapgs();
}
