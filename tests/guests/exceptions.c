/*
 * Exceptions: each is raised by a short assembly snippet with a label on the
 * instruction the CPU must report, so vector, error code, RIP and CR2 are
 * compared against what the SDM and the link map say, never against a value
 * seen in an earlier run.
 */
#include "guest.h"

#define STR_(x) #x
#define STR(x)	STR_(x)

#define CR0_TS	 BIT(3)
#define DR6_BS	 BIT(14)
#define DR6_INIT 0xffff0ff0ull

/* A vector whose gate keeps DPL 0, so INT n from ring 3 must fault. */
#define VEC_DPL0 0x40
/* IA32_PKRS: bits 63:32 are reserved, and without PKS the MSR does not
 * exist, so a write with bit 40 set is #GP(0) on every CPU. */
#define MSR_PKRS 0x6e1

/* Test pages live above 4 GiB, in PML4 slot 1, away from the identity map. */
#define PF_VA(n) (0x8000000000ull + (n)*0x1000ull)
/* PML4 slot 2, made a reserved-bit violation by setting its PS bit. */
#define PML4_PS_VA 0x10000000000ull

/*
 * Every snippet is uint64_t NAME(void *arg) with arg in RDI. NAME_at labels
 * the instruction a fault reports, or for a trap the one after it.
 */
#define SNIPPET(name)                                                                                                  \
	uint64_t name(void *);                                                                                         \
	extern const char name##_at[]
SNIPPET(de_div0);
SNIPPET(de_div8);
SNIPPET(de_divq_overflow);
SNIPPET(de_idivq);
SNIPPET(de_idivl);
SNIPPET(ud_ud2);
SNIPPET(ud_lock_nop);
SNIPPET(ud_lock_reg);
SNIPPET(ud_push_es);
SNIPPET(ud_into);
SNIPPET(load_ds);
SNIPPET(load_fs);
SNIPPET(load_ss);
SNIPPET(mem_read);
SNIPPET(mem_write);
SNIPPET(wrmsr_pkrs);
SNIPPET(int0_user);
SNIPPET(int_dpl0);
SNIPPET(int3_user);
SNIPPET(bp_int3);
SNIPPET(bp_int_3);
SNIPPET(db_step);
SNIPPET(nm_sse);
SNIPPET(nm_x87);
uint64_t mem_exec(void *);

/* clang-format off */
__asm__(".pushsection .text\n"
	"de_div0:\n"
	"	movl $1, %eax\n"
	"	xorl %edx, %edx\n"
	"	xorl %ecx, %ecx\n"
	"de_div0_at:\n"
	"	divl %ecx\n"
	"	ret\n"
	"de_div8:\n"
	"	movl $7, %eax\n"
	"	xorl %ecx, %ecx\n"
	"de_div8_at:\n"
	"	divb %cl\n"
	"	ret\n"
	/* RDX:RAX = 2^64, divided by 1: the quotient does not fit. */
	"de_divq_overflow:\n"
	"	movl $1, %edx\n"
	"	xorl %eax, %eax\n"
	"	movl $1, %ecx\n"
	"de_divq_overflow_at:\n"
	"	divq %rcx\n"
	"	ret\n"
	"de_idivq:\n"
	"	movabsq $0x8000000000000000, %rax\n"
	"	cqto\n"
	"	movq $-1, %rcx\n"
	"de_idivq_at:\n"
	"	idivq %rcx\n"
	"	ret\n"
	"de_idivl:\n"
	"	movl $0x80000000, %eax\n"
	"	cltd\n"
	"	movl $-1, %ecx\n"
	"de_idivl_at:\n"
	"	idivl %ecx\n"
	"	ret\n"
	"ud_ud2:\n"
	"ud_ud2_at:\n"
	"	ud2\n"
	"	ret\n"
	/* LOCK on an instruction that cannot take it. */
	"ud_lock_nop:\n"
	"ud_lock_nop_at:\n"
	"	.byte 0xf0, 0x90\n"
	"	ret\n"
	/* LOCK ADD with a register destination. */
	"ud_lock_reg:\n"
	"ud_lock_reg_at:\n"
	"	.byte 0xf0, 0x01, 0xc0\n"
	"	ret\n"
	/* PUSH ES and INTO are invalid in 64-bit mode. */
	"ud_push_es:\n"
	"ud_push_es_at:\n"
	"	.byte 0x06\n"
	"	ret\n"
	"ud_into:\n"
	"ud_into_at:\n"
	"	.byte 0xce\n"
	"	ret\n"
	/* Segment loads of the selector in arg; a failed load changes nothing. */
	"load_ds:\n"
	"	movl %edi, %eax\n"
	"load_ds_at:\n"
	"	movl %eax, %ds\n"
	"	ret\n"
	"load_fs:\n"
	"	movl %edi, %eax\n"
	"load_fs_at:\n"
	"	movl %eax, %fs\n"
	"	ret\n"
	"load_ss:\n"
	"	movl %edi, %eax\n"
	"load_ss_at:\n"
	"	movl %eax, %ss\n"
	"	ret\n"
	/* Memory access at arg (RDI is not RSP or RBP: a DS access). */
	"mem_read:\n"
	"mem_read_at:\n"
	"	movq (%rdi), %rax\n"
	"	ret\n"
	"mem_write:\n"
	"mem_write_at:\n"
	"	movq %rdi, (%rdi)\n"
	"	ret\n"
	"mem_exec:\n"
	"	call *%rdi\n"
	"	ret\n"
	"wrmsr_pkrs:\n"
	"	movl $" STR(MSR_PKRS) ", %ecx\n"
	"	xorl %eax, %eax\n"
	"	movl $0x100, %edx\n" /* bit 40 */
	"wrmsr_pkrs_at:\n"
	"	wrmsr\n"
	"	ret\n"
	"int0_user:\n"
	"int0_user_at:\n"
	"	int $0\n"
	"	ret\n"
	"int_dpl0:\n"
	"int_dpl0_at:\n"
	"	int $" STR(VEC_DPL0) "\n"
	"	ret\n"
	"int3_user:\n"
	"int3_user_at:\n"
	"	int3\n"
	"	ret\n"
	/* Traps: the label follows the instruction, and reaching it returns a mark. */
	"bp_int3:\n"
	"	xorl %eax, %eax\n"
	"	int3\n"
	"bp_int3_at:\n"
	"	movl $0x600d, %eax\n"
	"	ret\n"
	"bp_int_3:\n" /* INT 3 in its two-byte form, CD 03 */
	"	xorl %eax, %eax\n"
	"	.byte 0xcd, 0x03\n"
	"bp_int_3_at:\n"
	"	movl $0x600d, %eax\n"
	"	ret\n"
	/* POPF sets TF: the instruction after it runs, then #DB. The closing
	 * POPF clears TF in case no #DB handler did. */
	"db_step:\n"
	"	pushfq\n"
	"	orq $" STR(RFLAGS_TF) ", (%rsp)\n"
	"	popfq\n"
	"	movl $1, %eax\n"
	"db_step_at:\n"
	"	movl $2, %eax\n"
	"	pushfq\n"
	"	andq $~" STR(RFLAGS_TF) ", (%rsp)\n"
	"	popfq\n"
	"	ret\n"
	"nm_sse:\n"
	"nm_sse_at:\n"
	"	movaps %xmm0, %xmm0\n"
	"	ret\n"
	"nm_x87:\n"
	"nm_x87_at:\n"
	"	fnop\n"
	"	ret\n"
	".popsection\n");
/* clang-format on */

struct fault {
	const char *name;
	uint64_t (*fn)(void *);
	uint64_t arg;
	bool user;
	unsigned vector;
	uint64_t error;
	const void *rip;
	uint64_t cr2;	     /* #PF only */
	uint64_t qemu_error; /* the reference's known wrong error code, if any */
};

/*
 * Known deviations of the reference (QEMU 7.2 TCG) from the SDM, accepted
 * beside the SDM value so the reference passes:
 * - INT n through a gate with DPL < CPL reports vector * 16 + 2; the SDM's
 *   index field is the vector, so vector * 8 + 2 (QEMU issue 1382, fixed in
 *   QEMU 8.0).
 * - a reserved-bit #PF leaves out P; the SDM says RSVD is set only with P.
 */
#define QEMU_INT_ERROR(v) (((v) << 4) | 2)
#define QEMU_RSVD_ERROR	  PF_RSVD

static void run_kernel(void *p)
{
	struct fault *c = p;
	c->fn((void *)c->arg);
}

static void run_user(void *p)
{
	struct fault *c = p;
	user_run(c->fn, (void *)c->arg);
}

static bool has_error_code(unsigned vector)
{
	return vector == VEC_DF || (vector >= VEC_TS && vector <= VEC_PF) || vector == VEC_AC;
}

static void expect_fault(struct fault *c)
{
	struct trap_record rec = {0};

	if (!trap_run(c->user ? run_user : run_kernel, c, &rec)) {
		check(false, c->name, "no exception, expected vector %u", c->vector);
		return;
	}
	/* A known deviation of the reference, listed above, passes too. */
	uint64_t error = c->qemu_error && rec.error == c->qemu_error ? c->qemu_error : c->error;

	check_eqf(c->vector, rec.vector, "%s vector", c->name);
	if (has_error_code(c->vector))
		check_eqf(error, rec.error, "%s error", c->name);
	check_eqf((uint64_t)c->rip, rec.rip, "%s rip", c->name);
	check_eqf(c->user ? GDT_USER_CODE | 3 : GDT_KERNEL_CODE, rec.cs, "%s cs", c->name);
	if (c->vector == VEC_PF)
		check_eqf(c->cr2, rec.cr2, "%s cr2", c->name);
}

static void expect_no_fault(const char *name, uint64_t (*fn)(void *), uint64_t arg, bool user)
{
	struct fault c = {.name = name, .fn = fn, .arg = arg, .user = user};
	struct trap_record rec = {0};
	bool trapped = trap_run(user ? run_user : run_kernel, &c, &rec);

	check(!trapped, name, "vector %lu error 0x%lx at 0x%lx", rec.vector, rec.error, rec.rip);
}

/* A fault reported at the snippet's own label. */
#define AT(snippet) .fn = snippet, .rip = snippet##_at
#define NCASES(a)   (sizeof(a) / sizeof((a)[0]))

static void check_de_ud(void)
{
	struct fault cases[] = {
	    {"#DE div 0", AT(de_div0), .vector = VEC_DE},
	    {"#DE div8 0", AT(de_div8), .vector = VEC_DE},
	    {"#DE divq quotient overflow", AT(de_divq_overflow), .vector = VEC_DE},
	    {"#DE idivq INT64_MIN/-1", AT(de_idivq), .vector = VEC_DE},
	    {"#DE idivl INT32_MIN/-1", AT(de_idivl), .vector = VEC_DE},
	    {"#UD ud2", AT(ud_ud2), .vector = VEC_UD},
	    {"#UD lock nop", AT(ud_lock_nop), .vector = VEC_UD},
	    {"#UD lock add reg", AT(ud_lock_reg), .vector = VEC_UD},
	    {"#UD push es in 64-bit", AT(ud_push_es), .vector = VEC_UD},
	    {"#UD into in 64-bit", AT(ud_into), .vector = VEC_UD},
	    {"#DE div 0 ring 3", AT(de_div0), .user = true, .vector = VEC_DE},
	    {"#UD ud2 ring 3", AT(ud_ud2), .user = true, .vector = VEC_UD},
	};
	for (size_t i = 0; i < NCASES(cases); i++)
		expect_fault(&cases[i]);
}

/*
 * #GP error codes. A selector error code is the selector's index and TI
 * bits with EXT and IDT (bits 0 and 1) clear, so RPL never shows. INT n
 * through a gate whose DPL is below CPL reports the vector with IDT set.
 */
static void check_gp(void)
{
	uint64_t beyond = GDT_ENTRIES * 8; /* first selector past the GDT limit */
	uint64_t noncanon_lo = 0x0000800000000000, noncanon_hi = 0xffff7ffffffff000;
	struct fault cases[] = {
	    {"#GP ds beyond gdt", AT(load_ds), .arg = beyond, .vector = VEC_GP, .error = beyond},
	    {"#GP ds beyond gdt rpl 3", AT(load_ds), .arg = (beyond + 8) | 3, .vector = VEC_GP, .error = beyond + 8},
	    {"#GP fs beyond gdt", AT(load_fs), .arg = beyond, .vector = VEC_GP, .error = beyond},
	    {"#GP ds tss selector", AT(load_ds), .arg = GDT_TSS, .vector = VEC_GP, .error = GDT_TSS},
	    {"#GP ss rpl != cpl", AT(load_ss), .arg = GDT_USER_DATA | 3, .vector = VEC_GP, .error = GDT_USER_DATA},
	    {"#GP read non-canonical", AT(mem_read), .arg = noncanon_lo, .vector = VEC_GP},
	    {"#GP write non-canonical", AT(mem_write), .arg = noncanon_hi, .vector = VEC_GP},
	    {"#GP ring 3 read non-canonical", AT(mem_read), .arg = noncanon_lo, .user = true, .vector = VEC_GP},
	    {"#GP wrmsr pkrs reserved bits", AT(wrmsr_pkrs), .vector = VEC_GP},
	    {"#GP int 0 dpl 0 from ring 3", AT(int0_user), .user = true, .vector = VEC_GP, .error = (VEC_DE << 3) | 2},
	    {"#GP int dpl 0 from ring 3", AT(int_dpl0), .user = true, .vector = VEC_GP, .error = (VEC_DPL0 << 3) | 2,
	     .qemu_error = QEMU_INT_ERROR(VEC_DPL0)},
	    {"#GP int3 dpl 0 from ring 3", AT(int3_user), .user = true, .vector = VEC_GP, .error = (VEC_BP << 3) | 2,
	     .qemu_error = QEMU_INT_ERROR(VEC_BP)},
	};
	for (size_t i = 0; i < NCASES(cases); i++)
		expect_fault(&cases[i]);
	/* The failed loads left the segment registers usable. */
	expect_no_fault("ds still loadable", load_ds, GDT_KERNEL_DATA, false);
}

static void *map_test_page(uint64_t va, uint64_t flags)
{
	void *page = page_alloc();
	paging_map(va, (uint64_t)page, 4096, flags);
	return page;
}

static unsigned phys_addr_bits(void)
{
	/* Without leaf 0x80000008 the SDM gives 36 for PAE-capable CPUs. */
	if (cpuid(0x80000000, 0).eax < 0x80000008)
		return 36;
	return cpuid(0x80000008, 0).eax & 0xff;
}

/* #PF: error code bits P, W, U, RSVD and I, and CR2 = the address. */
static void check_pf(void)
{
	bool nx = cpu_has_nx();
	unsigned pa_bits = phys_addr_bits();
	uint64_t rw = PF_VA(0), ro = PF_VA(1), sup = PF_VA(2), rsvd = PF_VA(3), noexec = PF_VA(4), absent = PF_VA(5),
		 user_ro = PF_VA(6), exec = PF_VA(7);

	uint64_t *rw_page = map_test_page(rw, PTE_P | PTE_W);
	map_test_page(ro, PTE_P);
	map_test_page(sup, PTE_P | PTE_W);
	map_test_page(user_ro, PTE_P | PTE_U);
	*(uint8_t *)map_test_page(noexec, PTE_P | PTE_W | (nx ? PTE_NX : 0)) = 0xc3; /* ret */
	*(uint8_t *)map_test_page(exec, PTE_P | PTE_W) = 0xc3;

	expect_no_fault("#PF none: write rw page", mem_write, rw, false);
	check_eq("#PF none: write reached the page", rw, *rw_page);
	expect_no_fault("#PF none: read rw page", mem_read, rw, false);
	expect_no_fault("#PF none: user reads user page", mem_read, user_ro, true);
	expect_no_fault("#PF none: execute executable page", mem_exec, exec, false);

	struct fault cases[] = {
	    {"#PF read not present", AT(mem_read), .arg = absent, .vector = VEC_PF, .cr2 = absent},
	    {"#PF write not present", AT(mem_write), .arg = absent, .vector = VEC_PF, .error = PF_W, .cr2 = absent},
	    {"#PF write read-only", AT(mem_write), .arg = ro, .vector = VEC_PF, .error = PF_P | PF_W, .cr2 = ro},
	    {"#PF user read supervisor", AT(mem_read), .arg = sup, .user = true, .vector = VEC_PF, .error = PF_P | PF_U,
	     .cr2 = sup},
	    {"#PF user write supervisor", AT(mem_write), .arg = sup, .user = true, .vector = VEC_PF,
	     .error = PF_P | PF_W | PF_U, .cr2 = sup},
	    {"#PF user write read-only", AT(mem_write), .arg = user_ro, .user = true, .vector = VEC_PF,
	     .error = PF_P | PF_W | PF_U, .cr2 = user_ro},
	    {"#PF user read not present", AT(mem_read), .arg = absent, .user = true, .vector = VEC_PF, .error = PF_U,
	     .cr2 = absent},
	    /* I is reported only with EFER.NXE, which the runtime sets when NX exists. */
	    {"#PF fetch not present", .fn = mem_exec, .rip = (void *)absent, .arg = absent, .vector = VEC_PF,
	     .error = nx ? PF_I : 0, .cr2 = absent},
	    {"#PF pml4e.ps reserved", AT(mem_read), .arg = PML4_PS_VA, .vector = VEC_PF, .error = PF_P | PF_RSVD,
	     .cr2 = PML4_PS_VA, .qemu_error = QEMU_RSVD_ERROR},
	};
	uint64_t *pml4 = (uint64_t *)(read_cr3() & PTE_ADDR_MASK);
	pml4[PML4_PS_VA >> 39] = (uint64_t)page_alloc() | PTE_P | PTE_W | PTE_PS;
	invlpg(PML4_PS_VA);
	for (size_t i = 0; i < NCASES(cases); i++)
		expect_fault(&cases[i]);
	pml4[PML4_PS_VA >> 39] = 0;
	invlpg(PML4_PS_VA);

	/* An address bit at or above MAXPHYADDR is reserved. */
	if (pa_bits < 52) {
		paging_map(rsvd, (uint64_t)page_alloc() | (1ull << pa_bits), 4096, PTE_P | PTE_W);
		expect_fault(&(struct fault){"#PF pte address above maxphyaddr", AT(mem_read), .arg = rsvd,
					     .vector = VEC_PF, .error = PF_P | PF_RSVD, .cr2 = rsvd,
					     .qemu_error = QEMU_RSVD_ERROR});
	}
	if (nx)
		expect_fault(&(struct fault){"#PF fetch from nx page", .fn = mem_exec, .rip = (void *)noexec,
					     .arg = noexec, .vector = VEC_PF, .error = PF_P | PF_I, .cr2 = noexec});
}

static struct trap_frame seen_frame;
static unsigned seen_calls;
static uint64_t seen_dr6;

static void record_trap(struct trap_frame *f)
{
	seen_frame = *f;
	seen_calls++;
}

static void record_step(struct trap_frame *f)
{
	record_trap(f);
	__asm__ volatile("mov %%dr6, %0" : "=r"(seen_dr6));
	f->rflags &= ~RFLAGS_TF;
}

static void expect_trap(const char *name, uint64_t (*fn)(void *), unsigned vector, const char *after)
{
	seen_calls = 0;
	uint64_t mark = fn(NULL);
	check_eqf(1, seen_calls, "%s handler ran once", name);
	check_eqf(vector, seen_frame.vector, "%s vector", name);
	check_eqf((uint64_t)after, seen_frame.rip, "%s rip after instruction", name);
	check_eqf(GDT_KERNEL_CODE, seen_frame.cs, "%s cs", name);
	check_eqf(0x600d, mark, "%s execution continued", name);
}

/* #BP and single-step #DB are traps: the frame's RIP is the next instruction. */
static void check_traps(void)
{
	trap_set_handler(VEC_BP, record_trap);
	expect_trap("#BP int3", bp_int3, VEC_BP, bp_int3_at);
	expect_trap("#BP int 3", bp_int_3, VEC_BP, bp_int_3_at);
	trap_set_handler(VEC_BP, NULL);

	trap_set_handler(VEC_DB, record_step);
	__asm__ volatile("mov %0, %%dr6" ::"r"(DR6_INIT));
	seen_calls = 0;
	uint64_t mark = db_step(NULL);
	trap_set_handler(VEC_DB, NULL);
	check_eq("#DB single-step handler ran once", 1, seen_calls);
	check_eq("#DB single-step vector", VEC_DB, seen_frame.vector);
	check_eq("#DB single-step rip after instruction", (uint64_t)db_step_at, seen_frame.rip);
	check_eq("#DB single-step dr6.bs", DR6_BS, seen_dr6 & DR6_BS);
	check_eq("#DB single-step code ran to the end", 2, mark);
	check_eq("#DB single-step tf clear after", 0, read_rflags() & RFLAGS_TF);
	__asm__ volatile("mov %0, %%dr6" ::"r"(DR6_INIT));
}

/* CR0.TS makes SSE and x87 instructions raise #NM until it is cleared. */
static void check_nm(void)
{
	write_cr0(read_cr0() | CR0_TS);
	expect_fault(&(struct fault){"#NM sse with cr0.ts", AT(nm_sse), .vector = VEC_NM});
	expect_fault(&(struct fault){"#NM x87 with cr0.ts", AT(nm_x87), .vector = VEC_NM});
	__asm__ volatile("clts");
	check_eq("#NM clts cleared cr0.ts", 0, read_cr0() & CR0_TS);
	expect_no_fault("#NM none: sse without cr0.ts", nm_sse, 0, false);
	expect_no_fault("#NM none: x87 without cr0.ts", nm_x87, 0, false);
}

/* trap_run inside trap_run: the inner one catches its fault, then the outer
 * one catches a fault raised after the inner returned. */
static struct trap_record inner_rec;
static bool inner_trapped, outer_ran_on;

static void nested_inner(void *arg)
{
	(void)arg;
	ud_ud2(NULL);
}

static void nested_outer(void *arg)
{
	(void)arg;
	inner_trapped = trap_run(nested_inner, NULL, &inner_rec);
	de_div0(NULL);
	outer_ran_on = true;
}

static void count_call(void *arg)
{
	++*(unsigned *)arg;
}

static void check_nested(void)
{
	struct trap_record outer = {0};
	unsigned calls = 0;

	check(!trap_run(count_call, &calls, &outer), "trap_run without fault returns false", "it returned true");
	check_eq("trap_run without fault ran fn once", 1, calls);

	bool outer_trapped = trap_run(nested_outer, NULL, &outer);
	check(inner_trapped, "nested inner trapped", "inner trap_run returned false");
	check_eq("nested inner vector", VEC_UD, inner_rec.vector);
	check_eq("nested inner rip", (uint64_t)ud_ud2_at, inner_rec.rip);
	check(outer_trapped && !outer_ran_on, "nested outer trapped", "outer trap_run returned %d", outer_trapped);
	check_eq("nested outer vector", VEC_DE, outer.vector);
	check_eq("nested outer rip", (uint64_t)de_div0_at, outer.rip);
}

void main(void)
{
	check_de_ud();
	check_gp();
	check_pf();
	check_traps();
	check_nm();
	check_nested();
}
