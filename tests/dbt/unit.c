/*
 * Unit tests of the dbt engine: guest code from snippets.S runs on a
 * dbt_cpu over a RAM buffer (harness.c) and the resulting state, memory and
 * device accesses are checked. ALU results are compared with the host CPU
 * running the same instructions.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "harness.h"

static int failures, checks;
static const char *current;

#define CHECK(cond, ...)                                                                                               \
	do {                                                                                                           \
		checks++;                                                                                              \
		if (!(cond)) {                                                                                         \
			failures++;                                                                                    \
			printf("FAIL %s: %s:%d: ", current, __FILE__, __LINE__);                                       \
			printf(__VA_ARGS__);                                                                           \
			printf("\n");                                                                                  \
		}                                                                                                      \
	} while (0)

#define CHECK_EQ(a, b)                                                                                                 \
	do {                                                                                                           \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                                       \
		CHECK(a_ == b_, "%s == %s: 0x%" PRIx64 " != 0x%" PRIx64, #a, #b, a_, b_);                              \
	} while (0)

SNIPPET(hlt)
SNIPPET(cpuid)
SNIPPET(alu_driver)
SNIPPET(to_long)
SNIPPET(div0)
SNIPPET(ud2)
SNIPPET(noncanon)
SNIPPET(bad_sel)
SNIPPET(np_sel)
SNIPPET(store_rbx)
SNIPPET(load_rbx)
SNIPPET(jmp_rbx)
SNIPPET(pop_fault)
SNIPPET(int3)
SNIPPET(single_step)
SNIPPET(to_user)
SNIPPET(to_compat)
SNIPPET(call_then_user)
SNIPPET(user_syscall)
SNIPPET(syscall_entry)
SNIPPET(user_cli)
SNIPPET(user_in)
SNIPPET(user_touch_kernel)
SNIPPET(strings)
SNIPPET(movs_fault)
SNIPPET(atomics)
SNIPPET(lock_loop)
SNIPPET(tsc_warp)
SNIPPET(cr3_switch)
SNIPPET(fpu)
SNIPPET(movaps_misaligned)
SNIPPET(sse_div0)
SNIPPET(x87_div0)
SNIPPET(fpu_ts)
SNIPPET(fpu_driver)
SNIPPET(fxsave32)
SNIPPET(mmio)
SNIPPET(msrs)
SNIPPET(bad_msr)
SNIPPET(sti_loop)
SNIPPET(sti_hlt)
SNIPPET(cli_hlt)
SNIPPET(irq_handler)
SNIPPET(smc)
SNIPPET(smc_dma)
SNIPPET(paging)
SNIPPET(paging32)
SNIPPET(int80_32)
SNIPPET(tramp)

extern const uint8_t alu_ops_start[], alu_ops_end[];
void host_call(const void *fn, uint64_t regs[5]);

static struct harness H;

/* Loads a snippet at CODE and starts the CPU in long mode there. */
static void start_long(const uint8_t *start, const uint8_t *end, struct x86_state *s)
{
	h_load(&H, CODE, start, end);
	h_state_long(s);
	h_set(&H, s);
}

#define START(name, s) start_long(snip_##name, snip_##name##_end, s)

/* After an exception stub's HLT: the vector (RAX) and the frame at RSP. */
struct frame {
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

static struct frame exc_frame(bool has_error)
{
	struct x86_state s;
	struct frame f = {0};
	h_get(&H, &s);
	f.vector = s.gpr[RAX];
	uint64_t sp = s.gpr[RSP];
	if (has_error) {
		f.error = h_rd64(&H, sp);
		sp += 8;
	}
	f.rip = h_rd64(&H, sp);
	f.cs = h_rd64(&H, sp + 8);
	f.rflags = h_rd64(&H, sp + 16);
	f.rsp = h_rd64(&H, sp + 24);
	f.ss = h_rd64(&H, sp + 32);
	return f;
}

static void expect_exception(unsigned vector, bool has_error, uint64_t error, uint64_t rip)
{
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	struct frame f = exc_frame(has_error);
	CHECK_EQ(f.vector, vector);
	if (has_error)
		CHECK_EQ(f.error, error);
	CHECK_EQ(f.rip, rip);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_hlt(void)
{
	struct x86_state s;
	START(hlt, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 42);
	CHECK_EQ(s.rip, CODE + 8);
	CHECK(s.halted, "halted after HLT");
	/* Halted with IF clear: stays halted. */
	e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	/* The VMM wakes it by clearing halted: execution goes on after HLT. */
	s.halted = false;
	h_set(&H, &s);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(s.gpr[RAX], 43);
	CHECK(dbt_cpu_instructions(H.cpu) >= 4, "instructions counted");
	/* A kick set before the run comes back at once. */
	atomic_store(&H.kick, true);
	dbt_cpu_run(H.cpu, &e);
	CHECK_EQ(e.reason, VCPU_EXIT_KICK);
	CHECK(!atomic_load(&H.kick), "kick cleared");
}

static void test_cpuid(void)
{
	struct x86_state s;
	START(cpuid, &s);
	h_run(&H);
	char vendor[13];
	uint32_t v[3] = {(uint32_t)h_rd64(&H, DATA), (uint32_t)h_rd64(&H, DATA + 8), (uint32_t)h_rd64(&H, DATA + 16)};
	memcpy(vendor, v, 12);
	vendor[12] = 0;
	CHECK(!strcmp(vendor, "GenuineIntel"), "vendor %s", vendor);
	CHECK_EQ(h_rd64(&H, DATA + 24) >> 24 & 0xff, H.cpu_index);
	uint32_t ecx = (uint32_t)h_rd64(&H, DATA + 32), edx = (uint32_t)h_rd64(&H, DATA + 40);
	CHECK(ecx & (1u << 31), "hypervisor bit");
	CHECK(ecx & (1u << 21), "x2APIC");
	CHECK(ecx & (1u << 24), "TSC deadline");
	CHECK(ecx & (1u << 26), "XSAVE");
	CHECK(ecx & (1u << 13), "CX16");
	CHECK(!(ecx & (1u << 27)), "OSXSAVE off while CR4.OSXSAVE is");
	CHECK((edx & 0x07800000) == 0x07800000, "MMX FXSR SSE SSE2");
	uint32_t edx81 = (uint32_t)h_rd64(&H, DATA + 48);
	CHECK(edx81 & (1u << 29), "LM");
	CHECK(edx81 & (1u << 20), "NX");
	CHECK(edx81 & (1u << 26), "1 GiB pages");
	CHECK(edx81 & (1u << 27), "RDTSCP");
}

struct alu_case {
	const char *name;
	const uint8_t *fn;
	uint64_t flag_mask; /* flags the SDM defines for it */
};

#define ALU(n, mask)                                                                                                   \
	{                                                                                                              \
#n, (const uint8_t *)alu_##n, mask                                                                     \
	}
#define ALL  0x8d5ull
#define CFOF 0x801ull
extern const uint8_t alu_add64[], alu_add8[], alu_adc32[], alu_sub16[], alu_sbb64[], alu_and32[], alu_or8[],
    alu_xor64[], alu_cmp32[], alu_test8[], alu_inc32[], alu_dec16[], alu_neg64[], alu_not32[], alu_shl64[], alu_shr32[],
    alu_sar16[], alu_rol8[], alu_ror64[], alu_rcl32[], alu_rcr16[], alu_shld32[], alu_shrd64[], alu_imul64[],
    alu_mul32[], alu_imul1_64[], alu_bsf64[], alu_bsr32[], alu_popcnt64[], alu_bt64[], alu_btc32[], alu_xadd32[],
    alu_cmpxchg64[], alu_bswap64[], alu_cwde[], alu_cqo[], alu_movsx[], alu_movzx[], alu_lea[], alu_setcc[], alu_cmov[],
    alu_lahf[], alu_sahf[], alu_adc8h[], alu_neg8[], alu_rcl64_1[], alu_sar8_imm[], alu_div_ok[], alu_crc32b[],
    alu_crc32q[], alu_enter_leave[], alu_bsf32[], alu_cmpxchg32[], alu_crc32w[];

static void test_alu_differential(void)
{
	static const struct alu_case ops[] = {
	    ALU(add64, ALL),	   ALU(add8, ALL),     ALU(adc32, ALL),	    ALU(sub16, ALL),	ALU(sbb64, ALL),
	    ALU(and32, ALL),	   ALU(or8, ALL),      ALU(xor64, ALL),	    ALU(cmp32, ALL),	ALU(test8, ALL),
	    ALU(inc32, ALL),	   ALU(dec16, ALL),    ALU(neg64, ALL),	    ALU(not32, ALL),	ALU(shl64, ALL),
	    ALU(shr32, ALL),	   ALU(sar16, ALL),    ALU(rol8, ALL),	    ALU(ror64, ALL),	ALU(rcl32, ALL),
	    ALU(rcr16, ALL),	   ALU(shld32, ALL),   ALU(shrd64, ALL),    ALU(imul64, CFOF),	ALU(mul32, CFOF),
	    ALU(imul1_64, CFOF),   ALU(bsf64, ALL),    ALU(bsr32, ALL),	    ALU(popcnt64, ALL), ALU(bt64, 0x41),
	    ALU(btc32, 0x41),	   ALU(xadd32, ALL),   ALU(cmpxchg64, ALL), ALU(bswap64, ALL),	ALU(cwde, ALL),
	    ALU(cqo, ALL),	   ALU(movsx, ALL),    ALU(movzx, ALL),	    ALU(lea, ALL),	ALU(setcc, ALL),
	    ALU(cmov, ALL),	   ALU(lahf, ALL),     ALU(sahf, ALL),	    ALU(adc8h, ALL),	ALU(neg8, ALL),
	    ALU(rcl64_1, ALL),	   ALU(sar8_imm, ALL), ALU(div_ok, 0),	    ALU(crc32b, ALL),	ALU(crc32q, ALL),
	    ALU(enter_leave, ALL), ALU(bsf32, ALL),    ALU(cmpxchg32, ALL), ALU(crc32w, ALL),
	};
	static const uint64_t vals[] = {
	    0,
	    1,
	    2,
	    0x7f,
	    0x80,
	    0xff,
	    0x7fff,
	    0x8000,
	    0xffff,
	    0x7fffffff,
	    0x80000000,
	    0xffffffff,
	    0x7fffffffffffffff,
	    0x8000000000000000,
	    0xffffffffffffffff,
	    0x123456789abcdef0,
	    0x0f0f0f0f0f0f0f0f,
	};
	static const uint64_t counts[] = {0, 1, 3, 8, 15, 16, 31, 32, 33, 63, 64, 65};
	struct x86_state s;
	unsigned bad = 0;

	h_load(&H, ALU_OPS, alu_ops_start, alu_ops_end);
	START(alu_driver, &s);
	for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
			for (size_t j = 0; j < sizeof(vals) / sizeof(vals[0]); j += 2)
				for (int fl = 0; fl < 2; fl++) {
					uint64_t in[5] = {vals[i], vals[j], counts[(i + j) % 12],
							  vals[(i * 7 + j) % 17], fl ? 0x8d7 : 0x2};
					uint64_t host[5], guest[5];
					memcpy(host, in, sizeof(in));
					host_call(ops[o].fn, host);
					for (int k = 0; k < 5; k++)
						h_wr64(&H, DATA + 8 * k, in[k]);
					h_wr64(&H, DATA + 40, ALU_OPS + (uint64_t)(ops[o].fn - alu_ops_start));
					h_set(&H, &s);
					struct vcpu_exit e = h_run(&H);
					for (int k = 0; k < 5; k++)
						guest[k] = h_rd64(&H, DATA + 8 * k);
					uint64_t m = ops[o].flag_mask & 0x8d5;
					bool ok = e.reason == VCPU_EXIT_HLT && host[0] == guest[0] &&
						  host[1] == guest[1] && host[2] == guest[2] && host[3] == guest[3] &&
						  ((host[4] ^ guest[4]) & m & 0xffff) == 0;
					if (!ok && bad++ < 10)
						CHECK(ok,
						      "%s(%" PRIx64 ", %" PRIx64 ", %" PRIx64 ", %" PRIx64
						      ", fl %" PRIx64 "): host %" PRIx64 " %" PRIx64 " %" PRIx64
						      " %" PRIx64 " fl %" PRIx64 " guest %" PRIx64 " %" PRIx64
						      " %" PRIx64 " %" PRIx64 " fl %" PRIx64,
						      ops[o].name, in[0], in[1], in[2], in[3], in[4], host[0], host[1],
						      host[2], host[3], host[4], guest[0], guest[1], guest[2], guest[3],
						      guest[4]);
					checks++;
				}
	}
	CHECK(bad == 0, "%u ALU cases differ from the host", bad);
}

static void test_to_long(void)
{
	struct x86_state s;
	h_load(&H, CODE, snip_to_long, snip_to_long_end);
	h_state_prot32(&s);
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA), 0x1122334455667788);
	CHECK(s.efer & (1u << 10), "EFER.LMA");
	CHECK(s.seg[SEG_CS].l && s.seg[SEG_CS].selector == 0x08, "64-bit CS");
	CHECK_EQ(s.gpr[RSP], STACK_TOP);
	CHECK(h_rd64(&H, PML4) & 0x20, "A bit in the PML4 entry");
	CHECK(h_rd64(&H, PD + 8) & 0x60, "A and D bits in the PDE of the data page");
	CHECK(h_rd64(&H, GDT + 8) & (1ull << 40), "accessed bit in the code descriptor");
}

static void test_exceptions(void)
{
	struct x86_state s;

	current = "exceptions/#DE";
	START(div0, &s);
	expect_exception(0, false, 0, CODE + 7);

	current = "exceptions/#UD";
	START(ud2, &s);
	expect_exception(6, false, 0, CODE + 1);

	current = "exceptions/#GP non-canonical";
	START(noncanon, &s);
	expect_exception(13, true, 0, CODE + 10);

	current = "exceptions/#GP selector";
	START(bad_sel, &s);
	expect_exception(13, true, 0x50, CODE + 5);

	current = "exceptions/#NP selector";
	START(np_sel, &s);
	expect_exception(11, true, 0x40, CODE + 5);

	current = "exceptions/#PF not present";
	START(store_rbx, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x10;
	h_set(&H, &s);
	expect_exception(14, true, 2, CODE + 7);
	h_get(&H, &s);
	CHECK_EQ(s.cr2, FAULT_PAGE + 0x10);
	CHECK_EQ(exc_frame(true).rflags & 0x8d5, 0x8d5); /* flags before the faulting ADD */

	current = "exceptions/#PF read-only";
	START(store_rbx, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x1008;
	h_set(&H, &s);
	uint64_t before = h_rd64(&H, FAULT_PAGE + 0x1008);
	expect_exception(14, true, 3, CODE + 7);
	CHECK_EQ(h_rd64(&H, FAULT_PAGE + 0x1008), before);

	current = "exceptions/#PF NX";
	START(jmp_rbx, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x3000;
	h_set(&H, &s);
	expect_exception(14, true, 0x11, FAULT_PAGE + 0x3000);

	current = "exceptions/#PF reserved bit";
	START(load_rbx, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x4000;
	h_set(&H, &s);
	expect_exception(14, true, 0x9, CODE);

	current = "exceptions/#PF keeps RSP";
	START(pop_fault, &s);
	s.gpr[RBX] = FAULT_PAGE + 0xff8;
	s.gpr[RAX] = 0x1234;
	h_set(&H, &s);
	{
		/* The handler runs on IST1 so that the faulting stack is not used. */
		uint64_t gate = h_rd64(&H, IDT + 16 * 14);
		h_wr64(&H, IDT + 16 * 14, gate | (1ull << 32));
		struct vcpu_exit e = h_run(&H);
		h_wr64(&H, IDT + 16 * 14, gate);
		CHECK_EQ(e.reason, VCPU_EXIT_HLT);
		struct frame f = exc_frame(true);
		CHECK_EQ(f.vector, 14);
		CHECK_EQ(f.rip, CODE + 3);
		CHECK_EQ(f.rsp, FAULT_PAGE + 0xff8);
		h_get(&H, &s);
		CHECK(s.gpr[RSP] <= IST_TOP && s.gpr[RSP] > IST_TOP - 64, "ran on IST1: rsp %" PRIx64, s.gpr[RSP]);
	}

	current = "exceptions/#BP";
	START(int3, &s);
	expect_exception(3, false, 0, CODE + 1);

	current = "exceptions/single step";
	START(single_step, &s);
	expect_exception(1, false, 0, CODE + 15);
	h_get(&H, &s);
	CHECK(s.dr[6] & (1u << 14), "DR6.BS");

	current = "exceptions/#DF";
	{
		uint64_t gate = h_rd64(&H, IDT + 16 * 13);
		h_wr64(&H, IDT + 16 * 13, gate & ~(1ull << 47));
		START(bad_sel, &s);
		expect_exception(8, true, 0, CODE + 5);
		h_wr64(&H, IDT + 16 * 13, gate);
	}

	current = "exceptions/triple fault";
	START(ud2, &s);
	s.idtr.limit = 0;
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_SHUTDOWN);
}

static void start_user(const uint8_t *start, const uint8_t *end, struct x86_state *s)
{
	h_load(&H, USER_CODE, start, end);
	h_state_long(s);
	s->seg[SEG_CS].selector = 0x2b;
	s->seg[SEG_CS].dpl = 3;
	s->seg[SEG_SS].selector = 0x23;
	s->seg[SEG_SS].dpl = 3;
	s->rip = USER_CODE;
	s->gpr[RSP] = USER_STACK;
	s->rflags = 0x202;
	h_set(&H, s);
}

static void test_rings(void)
{
	struct x86_state s;

	current = "rings/iretq syscall int";
	h_load(&H, USER_CODE, snip_user_syscall, snip_user_syscall_end);
	h_load(&H, CODE + 0x1000, snip_syscall_entry, snip_syscall_entry_end);
	START(to_user, &s);
	s.star = (0x18ull << 48) | (0x08ull << 32);
	s.lstar = CODE + 0x1000;
	s.fmask = 0x47700;
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 0x80);
	CHECK_EQ(s.gpr[R8], 0x08);
	CHECK_EQ(s.gpr[R9], USER_STACK);
	CHECK_EQ(s.gpr[RBX], USER_STACK);
	CHECK_EQ(s.gpr[RDI], 107);
	CHECK(s.gpr[RSP] < RSP0_TOP && s.gpr[RSP] >= RSP0_TOP - 48, "stack from TSS.RSP0: %" PRIx64, s.gpr[RSP]);
	struct frame f = exc_frame(false);
	CHECK_EQ(f.cs, 0x2b);
	CHECK_EQ(f.ss, 0x23);
	CHECK_EQ(f.rsp, USER_STACK);
	CHECK(f.rflags & 0x200, "IF in the user flags");
	CHECK_EQ(s.seg[SEG_CS].selector, 0x08);
	CHECK_EQ(s.seg[SEG_SS].selector, 0);

	current = "rings/lretq to compatibility mode";
	h_load(&H, USER_CODE, snip_int80_32, snip_int80_32_end);
	START(to_compat, &s);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 0x80);
	f = exc_frame(false);
	CHECK_EQ(f.cs, 0x1b);
	CHECK_EQ(f.ss, 0x23);
	CHECK_EQ(f.rsp, USER_STACK);
	CHECK_EQ(f.rip, USER_CODE + 2);

	current = "rings/ring 3 cannot run what ring 0 ran";
	H.ram[FAULT_PAGE + 0x2000] = 0xc3; /* ret, on a supervisor page */
	dbt_invalidate_range(H.cpu, FAULT_PAGE + 0x2000, 1);
	h_load(&H, USER_CODE, snip_jmp_rbx, snip_jmp_rbx_end);
	START(call_then_user, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x2000;
	h_set(&H, &s);
	expect_exception(14, true, 0x15, FAULT_PAGE + 0x2000);
	CHECK_EQ(exc_frame(true).cs, 0x2b);

	current = "rings/cli from ring 3";
	start_user(snip_user_cli, snip_user_cli_end, &s);
	expect_exception(13, true, 0, USER_CODE);

	current = "rings/in from ring 3";
	H.nlog = 0;
	start_user(snip_user_in, snip_user_in_end, &s);
	expect_exception(13, true, 0, USER_CODE + 9);
	CHECK(H.nlog == 1 && H.log[0].reason == VCPU_EXIT_PIO && H.log[0].pio.port == 0x1234, "allowed port");

	current = "rings/#PF user on supervisor page";
	start_user(snip_user_touch_kernel, snip_user_touch_kernel_end, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x2000;
	h_set(&H, &s);
	expect_exception(14, true, 5, USER_CODE);
}

static void test_strings(void)
{
	struct x86_state s;
	current = "strings";
	uint8_t *d = H.ram + DATA;
	memset(d, 0, 0x40000);
	d[0] = 0x5a;
	for (int i = 0; i < 32; i++) {
		d[0x1000 + i] = (uint8_t)i;
		d[0x1100 + i] = (uint8_t)(i < 20 ? i : 0xee);
	}
	d[0x1000 + 40] = 'x';
	for (int i = 0; i < 3 * 4096 + 100; i++)
		d[0x10003 + i] = (uint8_t)(i * 7);
	START(strings, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	bool rep = true;
	for (int i = 0; i < 16; i++)
		rep = rep && d[i] == 0x5a;
	CHECK(rep, "overlapping MOVSB replicates");
	CHECK_EQ(h_rd64(&H, DATA + 0x100), 0x0102030405060708);
	CHECK_EQ(h_rd64(&H, DATA + 0x100 + 99 * 8), 0x0102030405060708);
	CHECK_EQ(h_rd64(&H, DATA + 0x100 + 100 * 8), 0);
	CHECK_EQ(h_rd64(&H, DATA + 0x800), 0x0102030405060708);
	CHECK_EQ(h_rd64(&H, DATA + 0x808), 0x0102030405060708);
	CHECK_EQ(h_rd64(&H, DATA + 0x2000), 11); /* mismatch at byte 20: 32 - 21 */
	CHECK_EQ(h_rd64(&H, DATA + 0x2008), 23); /* 'x' at 40: 64 - 41 */
	CHECK_EQ(h_rd64(&H, DATA + 0x2010), DATA + 0x1000 + 41);
	CHECK_EQ(h_rd64(&H, DATA + 0x2018) & 0xffff, 0x0100);
	CHECK(!memcmp(d + 0x30001, d + 0x10003, 3 * 4096 + 100), "multi-page copy");
	CHECK_EQ(s.gpr[RCX], 0);
	CHECK(!(s.rflags & 0x400), "DF clear");

	current = "strings/fault mid-copy";
	START(movs_fault, &s);
	e = h_run(&H);
	h_get(&H, &s);
	struct frame f = exc_frame(true);
	CHECK_EQ(f.vector, 14);
	CHECK_EQ(f.error, 2);
	CHECK_EQ(s.cr2, FAULT_PAGE);
	CHECK_EQ(f.rip, CODE + 20);
	/* The registers say how far it got: 8 bytes. */
	struct x86_state st;
	h_get(&H, &st);
	CHECK_EQ(st.gpr[RCX], 92);
	CHECK_EQ(st.gpr[RDI], FAULT_PAGE);
}

struct lock_thread {
	struct harness h;
	pthread_t tid;
};

static void *lock_worker(void *arg)
{
	struct lock_thread *t = arg;
	struct x86_state s;
	h_state_long(&s);
	s.gpr[RSP] = STACK_TOP - 0x1000 * t->h.cpu_index;
	h_set(&t->h, &s);
	h_run(&t->h);
	return NULL;
}

static void test_atomics(void)
{
	struct x86_state s;
	current = "atomics";
	START(atomics, &s);
	h_wr64(&H, DATA + 8, 0);
	h_wr64(&H, DATA + 16, 3);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA), 99);
	CHECK_EQ(h_rd64(&H, DATA + 0x100), 10);
	CHECK(h_rd64(&H, DATA + 0x108) & 0x40, "CMPXCHG success sets ZF");
	CHECK_EQ(h_rd64(&H, DATA + 0x110), 99);
	CHECK_EQ(h_rd64(&H, DATA + 8), 9);
	CHECK_EQ(h_rd64(&H, DATA + 16), 7);
	CHECK_EQ(h_rd64(&H, DATA + 0x118), 3);
	CHECK_EQ(h_rd64(&H, DATA + 0x40), 3);
	CHECK_EQ(h_rd64(&H, DATA + 0x48), 4);
	CHECK(h_rd64(&H, DATA + 0x120) & 0x40, "CMPXCHG16B success sets ZF");

	current = "atomics/two vCPUs";
	struct lock_thread t[2];
	h_load(&H, CODE, snip_lock_loop, snip_lock_loop_end);
	h_wr64(&H, DATA, 0);
	for (int i = 0; i < 2; i++) {
		h_init(&t[i].h, H.ram, (unsigned)i + 1);
		pthread_create(&t[i].tid, NULL, lock_worker, &t[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].tid, NULL);
		h_destroy(&t[i].h);
	}
	CHECK_EQ(h_rd64(&H, DATA), 2 * COUNTER_N);
}

static void *tsc_worker(void *arg)
{
	struct lock_thread *t = arg;
	struct x86_state s;
	h_state_long(&s);
	s.gpr[RSP] = STACK_TOP - 0x1000 * t->h.cpu_index;
	s.gpr[RDI] = COUNTER_N / 4;
	h_set(&t->h, &s);
	h_run(&t->h);
	return NULL;
}

/* The vCPUs of a guest share one TSC: set moments apart (creation, boot
 * state, SIPI) they agree exactly, and readings under a lock never go
 * backwards from one vCPU to the other. */
static void test_tsc(void)
{
	struct lock_thread t[2];
	struct x86_state s;

	current = "tsc/one clock";
	h_init(&t[0].h, H.ram, 1);
	usleep(20000);
	h_init(&t[1].h, H.ram, 2);
	h_state_long(&s);
	h_set(&t[1].h, &s);
	CHECK_EQ(dbt_cpu_tsc_offset(t[0].h.cpu), dbt_cpu_tsc_offset(t[1].h.cpu));
	h_get(&t[0].h, &s);
	usleep(20000);
	h_set(&t[1].h, &s); /* a state saved 20 ms ago, as INIT/SIPI carries it */
	CHECK_EQ(dbt_cpu_tsc_offset(t[0].h.cpu), dbt_cpu_tsc_offset(t[1].h.cpu));

	current = "tsc/no warp between vCPUs";
	h_load(&H, CODE, snip_tsc_warp, snip_tsc_warp_end);
	h_wr64(&H, DATA + 0x100, 0);
	h_wr64(&H, DATA + 0x108, 0);
	h_wr64(&H, DATA + 0x110, 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i].tid, NULL, tsc_worker, &t[i]);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].tid, NULL);
		h_destroy(&t[i].h);
	}
	CHECK_EQ(h_rd64(&H, DATA + 0x110), 0);
}

static void test_fpu(void)
{
	struct x86_state s;
	current = "fpu";
	double a = 1.5, b = 2.25, v2[2] = {1.0, 2.0}, w2[2] = {0.5, 4.0};
	uint32_t i144 = 144;
	uint8_t x[16], y[16], ctl[16];
	for (int i = 0; i < 16; i++) {
		x[i] = (uint8_t)(i * 17);
		y[i] = (uint8_t)(i % 3 ? i * 17 : 0);
		ctl[i] = (uint8_t)(i & 1 ? 15 - i : 0x80);
	}
	memcpy(H.ram + DATA, &a, 8);
	memcpy(H.ram + DATA + 8, &b, 8);
	memcpy(H.ram + DATA + 16, &i144, 4);
	memcpy(H.ram + DATA + 0x20, v2, 16);
	memcpy(H.ram + DATA + 0x30, w2, 16);
	memcpy(H.ram + DATA + 0x40, x, 16);
	memcpy(H.ram + DATA + 0x50, y, 16);
	memcpy(H.ram + DATA + 0x60, ctl, 16);
	START(fpu, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	double r;
	memcpy(&r, H.ram + DATA + 0x100, 8);
	CHECK(r == 3.75, "fld/fadd/fstp: %g", r);
	CHECK_EQ(h_rd64(&H, DATA + 0x108) & 0xffffffff, 12);
	double r2[2];
	memcpy(r2, H.ram + DATA + 0x110, 16);
	CHECK(r2[0] == 1.5 && r2[1] == 6.0, "addpd: %g %g", r2[0], r2[1]);
	memcpy(&r, H.ram + DATA + 0x120, 8);
	CHECK(r == 3.5, "cvtsi2sd/mulsd: %g", r);
	uint32_t mask = 0;
	for (int i = 0; i < 16; i++)
		if (x[i] == y[i])
			mask |= 1u << i;
	CHECK_EQ(h_rd64(&H, DATA + 0x128) & 0xffff, mask);
	uint8_t shuf[16];
	for (int i = 0; i < 16; i++)
		shuf[i] = ctl[i] & 0x80 ? 0 : x[ctl[i] & 15];
	CHECK(!memcmp(H.ram + DATA + 0x130, shuf, 16), "pshufb");
	struct x86_fxsave fx;
	memcpy(&fx, H.ram + DATA + 0x400, sizeof(fx));
	CHECK_EQ(fx.mxcsr, 0x1f80);
	CHECK_EQ(fx.fcw, 0x37f);
	CHECK(!memcmp(fx.xmm[3], shuf, 16), "FXSAVE has XMM3");
	h_get(&H, &s);
	CHECK(!memcmp(s.fpu.xmm[3], shuf, 16), "state has XMM3");

	current = "fpu/movaps misaligned";
	START(movaps_misaligned, &s);
	expect_exception(13, true, 0, CODE);

	current = "fpu/#XM";
	START(sse_div0, &s);
	expect_exception(19, false, 0, CODE + 39);
	h_get(&H, &s);
	CHECK(s.fpu.mxcsr & 4, "MXCSR.ZE set");

	current = "fpu/#MF";
	h_wr64(&H, DATA + 0x208, 0);
	START(x87_div0, &s);
	expect_exception(16, false, 0, CODE + 39);
	h_get(&H, &s);
	CHECK(s.fpu.fsw & 0x84, "FSW.ES and ZE: %x", s.fpu.fsw);
	CHECK_EQ(s.gpr[RAX], 16);

	current = "fpu/#NM";
	START(fpu_ts, &s);
	s.cr0 |= 8;
	h_set(&H, &s);
	expect_exception(7, false, 0, CODE);
}

/* ---- x87/SSE operations against the host -------------------------------------------- */

#define FPU_MEM_SIZE 1024

extern const uint8_t fpu_ops_start[], fpu_ops_end[], fpu_addps[], fpu_mulss[], fpu_cvtps2pi[], fpu_cvtpd2pi[],
    fpu_fisttp32[], fpu_fcom[], fpu_fcomi[], fpu_fdiv[], fpu_fstp32[], fpu_fninit[], fpu_fnsave[], fpu_fldenv[],
    fpu_fxrstor[], fpu_fxsave[];
void fpu_host_call(const void *fn, const struct x86_fxsave *in, struct x86_fxsave *out, void *mem);

static sigjmp_buf fpu_host_jmp;
static struct x86_fxsave fpu_host_fault;
static volatile int fpu_host_vector;

static void fpu_host_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	(void)sig;
	(void)si;
	fpu_host_vector = (int)uc->uc_mcontext.gregs[REG_TRAPNO];
	memcpy(&fpu_host_fault, uc->uc_mcontext.fpregs, sizeof(fpu_host_fault));
	siglongjmp(fpu_host_jmp, 1);
}

/* Runs an fpu_ops function natively: the vector it raised (-1: none) and
 * the state at its end or at the exception. */
static int fpu_on_host(const uint8_t *fn, const struct x86_fxsave *in, struct x86_fxsave *out, uint8_t *mem)
{
	struct sigaction sa, old_fpe, old_segv;
	volatile int vector = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fpu_host_signal;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGFPE, &sa, &old_fpe);
	sigaction(SIGSEGV, &sa, &old_segv);
	if (sigsetjmp(fpu_host_jmp, 1) == 0) {
		fpu_host_call(fn, in, out, mem);
	} else {
		vector = fpu_host_vector;
		*out = fpu_host_fault;
		__asm__ volatile("fninit");
		__builtin_ia32_ldmxcsr(0x1f80);
	}
	sigaction(SIGFPE, &old_fpe, NULL);
	sigaction(SIGSEGV, &old_segv, NULL);
	return vector;
}

/* The same in the guest, through fpu_driver. */
static int fpu_on_guest(const uint8_t *fn, const struct x86_fxsave *in, struct x86_fxsave *out, uint8_t *mem)
{
	struct x86_state s;
	memcpy(H.ram + FPU_IMAGE, in, sizeof(*in));
	memcpy(H.ram + FPU_MEM, mem, FPU_MEM_SIZE);
	h_wr64(&H, DATA + 40, FPU_OPS + (uint64_t)(fn - fpu_ops_start));
	START(fpu_driver, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	memcpy(mem, H.ram + FPU_MEM, FPU_MEM_SIZE);
	if (e.reason != VCPU_EXIT_HLT)
		return -2;
	if (s.rip == CODE + (uint64_t)(snip_fpu_driver_end - snip_fpu_driver)) {
		memcpy(out, H.ram + FPU_IMAGE + 0x200, sizeof(*out));
		return -1;
	}
	*out = s.fpu;
	return (int)(s.gpr[RAX] & 0xff);
}

/* The host's own control words and x87 stack, which a guest's exception
 * must not disturb. */
static void host_fpu_env(uint32_t *mxcsr, uint16_t *fcw, uint16_t *tags)
{
	uint16_t env[14];
	__asm__ volatile("fnstenv %0; fldcw %0" : "=m"(env));
	*mxcsr = __builtin_ia32_stmxcsr();
	*fcw = env[0];
	*tags = env[4];
}

/* An x87 state: ST(i) = 1.5 + i, the first depth of them valid. */
static struct x86_fxsave fpu_state(uint16_t fcw, uint32_t mxcsr, unsigned top, unsigned depth)
{
	struct x86_fxsave fx;
	memset(&fx, 0, sizeof(fx));
	fx.fcw = fcw;
	fx.fsw = (uint16_t)(top << 11);
	fx.mxcsr = mxcsr;
	for (unsigned i = 0; i < 8; i++) {
		long double v = 1.5L + i;
		memcpy(fx.st[i], &v, 10);
		if (i < depth)
			fx.ftw |= (uint8_t)(1u << ((i + top) & 7));
	}
	for (unsigned x = 0; x < 16; x++)
		for (unsigned b = 0; b < 16; b++)
			fx.xmm[x][b] = (uint8_t)(x * 16 + b);
	return fx;
}

static void set_st(struct x86_fxsave *fx, unsigned i, long double v)
{
	memcpy(fx->st[i], &v, 10);
}

static void set_f32(void *p, const float *v, unsigned n)
{
	memcpy(p, v, 4 * n);
}

/* Runs fn on the host and in the guest from the same state and memory;
 * everything must agree (FXSAVE's bytes [ign, ign + ign_len) of memory
 * excepted: values that name the host, not the instruction). */
static void fpu_agree(const char *name, const uint8_t *fn, const struct x86_fxsave *in, const uint8_t *mem,
		      unsigned ign, unsigned ign_len)
{
	static uint8_t hm[FPU_MEM_SIZE] __attribute__((aligned(64))), gm[FPU_MEM_SIZE];
	static struct x86_fxsave hin __attribute__((aligned(64)));
	struct x86_fxsave h, g;
	uint32_t mx0, mx1;
	uint16_t cw0, cw1, tag0, tag1;

	current = name;
	hin = *in;
	memcpy(hm, mem, FPU_MEM_SIZE);
	memcpy(gm, mem, FPU_MEM_SIZE);
	int hv = fpu_on_host(fn, &hin, &h, hm);
	host_fpu_env(&mx0, &cw0, &tag0);
	int gv = fpu_on_guest(fn, in, &g, gm);
	host_fpu_env(&mx1, &cw1, &tag1);
	memset(hm + ign, 0, ign_len);
	memset(gm + ign, 0, ign_len);

	CHECK(hv == gv, "vector: host %d, guest %d", hv, gv);
	CHECK(h.fcw == g.fcw && h.fsw == g.fsw && h.ftw == g.ftw && h.mxcsr == g.mxcsr,
	      "host fcw %04x fsw %04x ftw %02x mxcsr %04x, guest %04x %04x %02x %04x", h.fcw, h.fsw, h.ftw, h.mxcsr,
	      g.fcw, g.fsw, g.ftw, g.mxcsr);
	for (int i = 0; i < 8; i++)
		CHECK(!memcmp(h.st[i], g.st[i], 10), "st%d", i);
	for (int i = 0; i < 16; i++)
		CHECK(!memcmp(h.xmm[i], g.xmm[i], 16), "xmm%d", i);
	for (unsigned i = 0; i < FPU_MEM_SIZE; i++)
		if (hm[i] != gm[i]) {
			CHECK(hm[i] == gm[i], "memory +%u: host %02x, guest %02x", i, hm[i], gm[i]);
			break;
		}
	CHECK(mx0 == mx1 && cw0 == cw1 && tag0 == tag1 && tag1 == 0xffff,
	      "the host's MXCSR %04x, FCW %04x and tags %04x after the guest ran; before %04x %04x %04x", mx1, cw1,
	      tag1, mx0, cw0, tag0);
}

static void test_fpu_host(void)
{
	static uint8_t mem[FPU_MEM_SIZE];
	struct x86_fxsave fx;
	const long double qnan = __builtin_nanl(""), snan = __builtin_nansl("");

	h_load(&H, FPU_OPS, fpu_ops_start, fpu_ops_end);
	memset(mem, 0x5a, sizeof(mem));

	/* SIMD exceptions fault in the host stub: the flags and state at the
	 * fault, nothing committed. */
	fx = fpu_state(0x37f, 0x1f00, 0, 0);
	set_f32(fx.xmm[0], (const float[]){__builtin_nansf(""), 1.0f, 3.0f, 1e30f}, 4);
	set_f32(mem + 16, (const float[]){1.0f, 1e-30f, 1.0f, 1e30f}, 4);
	fpu_agree("fpu/host: addps, SNaN, invalid unmasked", fpu_addps, &fx, mem, 0, 0);
	fx.mxcsr = 0x0f80;
	fpu_agree("fpu/host: addps, inexact unmasked", fpu_addps, &fx, mem, 0, 0);
	fx = fpu_state(0x37f, 0x1780, 0, 0);
	set_f32(fx.xmm[0], (const float[]){0x1p-126f}, 1);
	set_f32(mem + 16, (const float[]){0.5f}, 1);
	fpu_agree("fpu/host: mulss, exact denormal, underflow unmasked", fpu_mulss, &fx, mem, 0, 0);
	fx = fpu_state(0x37f, 0x1f00, 3, 2);
	set_f32(fx.xmm[0], (const float[]){__builtin_nanf(""), 1.0f}, 2);
	fpu_agree("fpu/host: cvtps2pi faults in MMX mode", fpu_cvtps2pi, &fx, mem, 0, 0);
	fx = fpu_state(0x37f, 0x1f80, 3, 2);
	fpu_agree("fpu/host: cvtpd2pi, misaligned m128", fpu_cvtpd2pi, &fx, mem, 0, 0);

	/* x87 exceptions under the guest's control word: results, condition
	 * codes and ES as the host leaves them, #MF at the FWAIT. */
	fx = fpu_state(0x37f, 0x1f80, 5, 3);
	set_st(&fx, 0, 2.5L);
	fpu_agree("fpu/host: fisttp m32", fpu_fisttp32, &fx, mem, 0, 0);
	fx = fpu_state(0x37e, 0x1f80, 0, 2);
	set_f32(mem + 16, (const float[]){__builtin_nanf("")}, 1);
	fpu_agree("fpu/host: fcom, NaN, invalid unmasked", fpu_fcom, &fx, mem, 0, 0);
	set_st(&fx, 1, qnan);
	fpu_agree("fpu/host: fcomi, NaN, invalid unmasked", fpu_fcomi, &fx, mem, 0, 0);
	fx = fpu_state(0x35f, 0x1f80, 0, 1);
	set_st(&fx, 0, 1.0L);
	set_f32(mem + 16, (const float[]){3.0f}, 1);
	fpu_agree("fpu/host: fdiv, inexact unmasked", fpu_fdiv, &fx, mem, 0, 0);
	fx.fcw = 0x37b;
	fx.fsw |= 0x200; /* C1, which these exceptions clear */
	set_f32(mem + 16, (const float[]){0.0f}, 1);
	fpu_agree("fpu/host: fdiv, zero divide unmasked", fpu_fdiv, &fx, mem, 0, 0);
	fx.fcw = 0x37d;
	set_f32(mem + 16, (const float[]){0x1p-149f}, 1);
	fpu_agree("fpu/host: fdiv, denormal unmasked", fpu_fdiv, &fx, mem, 0, 0);
	fx = fpu_state(0x37e, 0x1f80, 2, 2);
	set_st(&fx, 0, snan);
	memset(mem, 0x5a, sizeof(mem));
	fpu_agree("fpu/host: fstp m32, SNaN, invalid unmasked", fpu_fstp32, &fx, mem, 0, 0);
	fx.fcw = 0x377;
	set_st(&fx, 0, 1e300L);
	fpu_agree("fpu/host: fstp m32, overflow unmasked", fpu_fstp32, &fx, mem, 0, 0);

	/* TOP changes keep each physical register's contents. */
	fx = fpu_state(0x37f, 0x1f80, 5, 3);
	fpu_agree("fpu/host: fninit", fpu_fninit, &fx, mem, 0, 0);
	fx = fpu_state(0x37f, 0x1f80, 3, 4);
	fpu_agree("fpu/host: fnsave", fpu_fnsave, &fx, mem, 16 + 12, 16);
	memset(mem, 0, 16 + 28);
	memcpy(mem + 16, (const uint32_t[]){0xffff037f, 0xffff3000, 0xffff0fff}, 12);
	fpu_agree("fpu/host: fldenv", fpu_fldenv, &fx, mem, 0, 0);

	/* FXRSTOR derives ES (and B) from the flags and masks it loads. */
	fx = fpu_state(0x37f, 0x1f80, 0, 2);
	memset(mem, 0, 16 + 512);
	memcpy(mem + 16, (const uint16_t[]){0x37e, 0x0001}, 4);
	memcpy(mem + 16 + 24, (const uint32_t[]){0x1f80}, 4);
	fpu_agree("fpu/host: fxrstor, invalid pending without ES", fpu_fxrstor, &fx, mem, 0, 0);
	memcpy(mem + 16, (const uint16_t[]){0x37f, 0x8080}, 4);
	fpu_agree("fpu/host: fxrstor, ES without an exception", fpu_fxrstor, &fx, mem, 0, 0);

	/* FXSAVE leaves bytes 416-511 alone. Bytes 8-31 (FIP, FDP, MXCSR and
	 * MXCSR_MASK) hold the host's pointers and model, not compared. */
	memset(mem, 0xa5, sizeof(mem));
	fpu_agree("fpu/host: fxsave", fpu_fxsave, &fx, mem, 16 + 8, 24);

	/* Outside 64-bit mode the image has XMM0-7 only: bytes 288-511 are
	 * left alone, XMM8-15 are not loaded. */
	current = "fpu: fxsave and fxrstor in 32-bit mode";
	struct x86_state s;
	h_load(&H, CODE, snip_fxsave32, snip_fxsave32_end);
	h_state_prot32(&s);
	s.cr4 |= 0x200; /* OSFXSR */
	s.fpu = fpu_state(0x37f, 0x1f80, 0, 0);
	memset(H.ram + FPU_MEM, 0xa5, 512);
	fx = fpu_state(0x37f, 0x1f80, 0, 0);
	memset(fx.xmm, 0x3c, sizeof(fx.xmm));
	memcpy(H.ram + FPU_IMAGE, &fx, sizeof(fx));
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK(!memcmp(H.ram + FPU_MEM + 160, s.fpu.xmm, 128), "FXSAVE stores XMM0-7");
	for (unsigned i = 288; i < 512; i++)
		if (H.ram[FPU_MEM + i] != 0xa5) {
			CHECK(H.ram[FPU_MEM + i] == 0xa5, "FXSAVE wrote byte %u", i);
			break;
		}
	struct x86_state after;
	h_get(&H, &after);
	CHECK(!memcmp(after.fpu.xmm, fx.xmm, 128), "FXRSTOR loads XMM0-7");
	CHECK(!memcmp(after.fpu.xmm[8], s.fpu.xmm[8], 128), "FXRSTOR leaves XMM8-15");

	/* A SIGFPE that is not a guest's reaches whoever had it before (here
	 * the default action: the process dies of it). */
	current = "fpu: a SIGFPE of the host's own";
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		alarm(10);
		uint64_t lo = 1, hi = 0, zero = 0;
		__asm__ volatile("div %2" : "+a"(lo), "+d"(hi) : "r"(zero));
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGFPE) || (WIFEXITED(st) && WEXITSTATUS(st) != 0),
	      "the child carried on or hung: status %x", st);
}

static void test_devices(void)
{
	struct x86_state s;
	current = "mmio and pio";
	H.nlog = 0;
	memset(H.mmio, 0, sizeof(H.mmio));
	START(mmio, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA) & 0xffffffff, 0xdeadbeef);
	CHECK(H.nlog >= 7, "%u exits", H.nlog);
	if (H.nlog >= 7) {
		CHECK(H.log[0].reason == VCPU_EXIT_MMIO && H.log[0].mmio.write &&
			  H.log[0].mmio.addr == MMIO_BASE + 0x10 && H.log[0].mmio.size == 4 &&
			  H.log[0].mmio.data == 0xdeadbeef,
		      "MMIO write");
		CHECK(H.log[1].reason == VCPU_EXIT_MMIO && !H.log[1].mmio.write && H.log[1].mmio.size == 4,
		      "MMIO read");
		CHECK(H.log[2].mmio.size == 8 && H.log[2].mmio.data == ~0ull, "8-byte MMIO write");
		CHECK(H.log[3].mmio.addr == RAM_END && H.log[3].mmio.size == 4 && H.log[3].mmio.write &&
			  H.log[3].mmio.data == 0x11223344,
		      "split write: MMIO half at %llx", (unsigned long long)H.log[3].mmio.addr);
		CHECK(H.log[4].mmio.addr == RAM_END && !H.log[4].mmio.write, "split read");
		CHECK(H.log[5].reason == VCPU_EXIT_PIO && H.log[5].pio.port == 0x80 && H.log[5].pio.write &&
			  H.log[5].pio.size == 1 && H.log[5].pio.data == 0x12,
		      "OUT");
		CHECK(H.log[6].reason == VCPU_EXIT_PIO && H.log[6].pio.port == 0x1234 && !H.log[6].pio.write &&
			  H.log[6].pio.size == 4,
		      "IN");
	}
	uint32_t low;
	memcpy(&low, H.ram + RAM_END - 4, 4);
	CHECK_EQ(low, 0x55667788);
	CHECK_EQ(h_rd64(&H, DATA + 8), 0xffffffff55667788);
	CHECK_EQ(h_rd64(&H, DATA + 16) & 0xffffffff, 0xabcdef12);

	current = "msrs";
	START(msrs, &s);
	e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA) & 0xffffffff, 0xd01);
	CHECK_EQ(h_rd64(&H, DATA + 8) & 0xffffffff, 0xfee00900);
	CHECK_EQ(h_rd64(&H, DATA + 16) & 0xffffffff, 1);

	current = "msrs/#GP";
	START(bad_msr, &s);
	expect_exception(13, true, 0, CODE + 12);
}

static void *kicker(void *arg)
{
	usleep(100000);
	atomic_store((atomic_bool *)arg, true);
	return NULL;
}

static void test_interrupts(void)
{
	struct x86_state s;
	current = "interrupts/delivery and kick";
	h_load(&H, IRQ_HANDLER, snip_irq_handler, snip_irq_handler_end);
	h_wr64(&H, DATA + 0x300, 0);
	START(sti_loop, &s);
	H.pending = 0x40;
	H.accepted = 0;
	atomic_store(&H.hint, true);
	pthread_t t;
	pthread_create(&t, NULL, kicker, &H.kick);
	struct vcpu_exit e;
	dbt_cpu_run(H.cpu, &e);
	pthread_join(t, NULL);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_KICK);
	CHECK_EQ(H.accepted, 1);
	CHECK_EQ(h_rd64(&H, DATA + 0x300), 1);
	CHECK_EQ(h_rd64(&H, DATA + 0x308), STACK_TOP - 40);
	CHECK(s.gpr[RBX] > 1000, "the loop ran on: %" PRIu64, s.gpr[RBX]);
	CHECK(s.rflags & 0x200, "IF");

	/* The hint is taken while IF is clear, the interrupt is still pending
	 * at the HLT in STI's shadow: it wakes the HLT at once. Returning
	 * VCPU_EXIT_HLT instead would put the vCPU to sleep with no wake-up
	 * to come (a Linux guest's idle loop lost its timer ticks so). */
	current = "interrupts/sti; hlt with an interrupt pending";
	h_wr64(&H, DATA + 0x300, 0);
	START(sti_hlt, &s);
	H.pending = 0x40;
	H.accepted = 0;
	atomic_store(&H.hint, true);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(H.accepted, 1);
	CHECK_EQ(h_rd64(&H, DATA + 0x300), 1);
	CHECK_EQ(h_rd64(&H, DATA + 0x308), STACK_TOP - 40);
	CHECK_EQ(s.gpr[RCX], 77);
	CHECK_EQ(s.rip, CODE + 8);

	current = "interrupts/sti; hlt with nothing pending";
	START(sti_hlt, &s);
	H.pending = -1;
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.rip, CODE + 2);
	CHECK(s.halted, "halted");
	H.pending = 0x40;
	atomic_store(&H.hint, true);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA + 0x300), 2);
	CHECK_EQ(s.gpr[RCX], 77);
}

static void test_nmi(void)
{
	struct x86_state s;
	current = "interrupts/NMI with IF clear";
	START(cli_hlt, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT); /* halted, IF clear */
	H.nmis = 1;
	atomic_store(&H.hint, true);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 2);
	CHECK_EQ(H.nmis, 0);
	struct frame f = exc_frame(false);
	CHECK_EQ(f.rip, CODE + 2);

	current = "interrupts/NMI blocked until IRET";
	H.nmis = 1;
	atomic_store(&H.hint, true);
	e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(H.nmis, 1);
	H.nmis = 0;
}

/* Jump-cache entries are by RIP: after a CR3 write the same RIP runs the
 * code of the new address space; a global page runs the same in both. */
static void test_cr3_switch(void)
{
	const uint64_t as[2] = {0x40000, 0x44000}, code[2] = {0x48000, 0x49000}, shared = 0x4a000;
	const uint64_t x = 0x8000000000ull, xg = x + 0x1000;
	const uint8_t add1[] = {0x83, 0xc0, 0x01, 0xc3}, add16[] = {0x83, 0xc0, 0x10, 0xc3};
	const uint8_t add256[] = {0x05, 0x00, 0x01, 0x00, 0x00, 0xc3};
	struct x86_state s;

	current = "jump cache/CR3 writes";
	memcpy(H.ram + code[0], add1, sizeof(add1));
	memcpy(H.ram + code[1], add16, sizeof(add16));
	memcpy(H.ram + shared, add256, sizeof(add256));
	for (int i = 0; i < 2; i++) {
		uint64_t pml4 = as[i], pdpt = pml4 + 0x1000, pd = pml4 + 0x2000, pt = pml4 + 0x3000;
		memcpy(H.ram + pml4, H.ram + PML4, 4096);
		memset(H.ram + pdpt, 0, 3 * 4096);
		h_wr64(&H, pml4 + 8, pdpt | 3);
		h_wr64(&H, pdpt, pd | 3);
		h_wr64(&H, pd, pt | 3);
		h_wr64(&H, pt, code[i] | 3);
		h_wr64(&H, pt + 8, shared | 3 | 0x100); /* global */
	}
	START(cr3_switch, &s);
	s.cr3 = as[0];
	s.gpr[RBX] = as[1];
	s.gpr[RDX] = as[0];
	s.gpr[RCX] = x;
	s.gpr[RSI] = xg;
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 1 + 256 + 16 + 256 + 1);
}

static void test_smc(void)
{
	struct x86_state s;
	current = "self-modifying code";
	START(smc, &s);
	h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(s.gpr[RAX], 0x12345678);

	current = "dbt_invalidate_range";
	START(smc_dma, &s);
	h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(s.gpr[RAX], 1);
	H.ram[CODE + 1] = 2;
	dbt_invalidate_range(H.cpu, CODE, 16);
	s.rip = CODE;
	s.halted = false;
	h_set(&H, &s);
	h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(s.gpr[RAX], 2);
}

static void test_paging(void)
{
	struct x86_state s;
	current = "paging/invlpg";
	h_wr64(&H, FAULT_PAGE + 0x5000, 0xaaaa);
	h_wr64(&H, FAULT_PAGE + 0x6000, 0xbbbb);
	h_wr64(&H, PT + 5 * 8, (FAULT_PAGE + 0x5000) | 7);
	START(paging, &s);
	s.gpr[RBX] = FAULT_PAGE + 0x5000;
	s.gpr[RDI] = PT + 5 * 8;
	s.gpr[RCX] = (FAULT_PAGE + 0x6000) | 7;
	h_set(&H, &s);
	h_run(&H);
	CHECK_EQ(h_rd64(&H, DATA), 0xaaaa);
	CHECK_EQ(h_rd64(&H, DATA + 8), 0xaaaa);
	CHECK_EQ(h_rd64(&H, DATA + 16), 0xbbbb);
	h_wr64(&H, PT + 5 * 8, (FAULT_PAGE + 0x5000) | 7);

	current = "paging/1 GiB page";
	h_wr64(&H, PDPT + 8 * 4, 0x87); /* [4 GiB, 5 GiB) -> [0, 1 GiB) */
	h_wr64(&H, DATA + 0x500, 0x600d);
	START(load_rbx, &s);
	s.gpr[RBX] = (4ull << 30) + DATA + 0x500;
	h_set(&H, &s);
	h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(s.gpr[RAX], 0x600d);
	CHECK(h_rd64(&H, PDPT + 8 * 4) & 0x20, "A bit on the 1 GiB entry");
	h_wr64(&H, PDPT + 8 * 4, 0);
}

/* Legacy paging modes from 32-bit protected mode: 2-level with a 4 MiB
 * page and a 4 KiB page, and PAE with a 2 MiB page. */
static void test_paging_legacy(void)
{
	struct x86_state s;
	const uint32_t pd = 0x20000, pt = 0x21000, pdpt = 0x22000, pae_pd = 0x23000;
	uint32_t v;

	current = "paging/32-bit";
	memset(H.ram + pd, 0, 0x4000);
	v = 0x87; /* 4 MiB page at 0: P W U PS */
	memcpy(H.ram + pd, &v, 4);
	v = pt | 7;
	memcpy(H.ram + pd + 4, &v, 4); /* [4 MiB, 8 MiB) through a page table */
	v = 0x605000 | 7;
	memcpy(H.ram + pt + 4 * 3, &v, 4); /* 0x403000 -> 0x605000 */
	h_wr64(&H, 0x605000, 0x1234567887654321);
	h_load(&H, CODE, snip_paging32, snip_paging32_end);
	h_state_prot32(&s);
	s.gpr[RBX] = pd;
	s.gpr[RCX] = 0x10; /* PSE */
	s.gpr[RDI] = 0x403000;
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA), 0x1234567887654321);
	uint32_t pte;
	memcpy(&pte, H.ram + pt + 12, 4);
	CHECK(pte & 0x20, "A bit in the 32-bit PTE");

	current = "paging/PAE";
	memset(H.ram + pdpt, 0, 32);
	memset(H.ram + pae_pd, 0, 4096);
	h_wr64(&H, pdpt, pae_pd | 1);
	h_wr64(&H, pae_pd, 0x87); /* [0, 4 MiB): code, data, stack */
	h_wr64(&H, pae_pd + 8, 0x200000 | 0x87);
	h_wr64(&H, pae_pd + 8 * 3, 0x600000 | 0x87); /* [6 MiB, 8 MiB) -> itself */
	h_wr64(&H, pae_pd + 8 * 2, 0x600000 | 0x87); /* [4 MiB, 6 MiB) -> [6 MiB, ...) */
	h_load(&H, CODE, snip_paging32, snip_paging32_end);
	h_state_prot32(&s);
	s.gpr[RBX] = pdpt;
	s.gpr[RCX] = 0x20; /* PAE */
	s.gpr[RDI] = 0x405000;
	h_set(&H, &s);
	e = h_run(&H);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA), 0x1234567887654321);
}

/* 32-bit protected mode: 8-byte IDT gates, and a ring 3 to ring 0 INT
 * through a 32-bit TSS. */
static void test_prot32_interrupts(void)
{
	struct x86_state s;
	const uint32_t idt = 0x24000, tss = 0x25000;
	uint32_t v;

	current = "protected mode/#UD";
	for (unsigned i = 0; i < 256; i++) {
		uint64_t addr = EXC_STUBS + 16 * i;
		unsigned dpl = i == 0x80 ? 3 : 0;
		h_wr64(&H, idt + 8 * i,
		       (addr & 0xffff) | (0x48ull << 16) | ((uint64_t)(0x8e | dpl << 5) << 40) | ((addr >> 16) << 48));
	}
	memset(H.ram + tss, 0, 0x68);
	v = RSP0_TOP;
	memcpy(H.ram + tss + 4, &v, 4);
	v = 0x10;
	memcpy(H.ram + tss + 8, &v, 4);
	h_load(&H, CODE, snip_ud2, snip_ud2_end);
	h_state_prot32(&s);
	s.idtr = (struct x86_dtable){.base = idt, .limit = 0x7ff};
	s.tr = (struct x86_segment){.base = tss, .limit = 0x67, .selector = 0x30, .type = 0xb, .present = 1};
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 6);
	CHECK_EQ(s.gpr[RSP], STACK_TOP - 12);
	CHECK_EQ(h_rd64(&H, s.gpr[RSP]) & 0xffffffff, CODE + 1);
	CHECK_EQ(h_rd64(&H, s.gpr[RSP] + 4) & 0xffff, 0x48);

	current = "protected mode/INT from ring 3";
	h_load(&H, USER_CODE, snip_int80_32, snip_int80_32_end);
	h_state_prot32(&s);
	s.idtr = (struct x86_dtable){.base = idt, .limit = 0x7ff};
	s.tr = (struct x86_segment){.base = tss, .limit = 0x67, .selector = 0x30, .type = 0xb, .present = 1};
	s.seg[SEG_CS].selector = 0x1b;
	s.seg[SEG_CS].dpl = 3;
	for (int i = SEG_ES; i <= SEG_GS; i++)
		if (i != SEG_CS) {
			s.seg[i].selector = 0x23;
			s.seg[i].dpl = 3;
		}
	s.rip = USER_CODE;
	s.gpr[RSP] = USER_STACK;
	s.rflags = 0x202;
	h_set(&H, &s);
	e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(s.gpr[RAX], 0x80);
	CHECK_EQ(s.gpr[RSP], RSP0_TOP - 20);
	CHECK_EQ(s.seg[SEG_SS].selector, 0x10);
	CHECK_EQ(s.seg[SEG_CS].selector, 0x48);
	uint32_t f[5];
	memcpy(f, H.ram + RSP0_TOP - 20, 20);
	CHECK_EQ(f[0], USER_CODE + 2);
	CHECK_EQ(f[1], 0x1b);
	CHECK(f[2] & 0x200, "IF in the saved EFLAGS");
	CHECK_EQ(f[3], USER_STACK);
	CHECK_EQ(f[4], 0x23);
	CHECK(!(s.rflags & 0x200), "interrupt gate clears IF");
}

static void test_real_mode(void)
{
	struct x86_state s;
	current = "real-mode trampoline";
	h_load(&H, TRAMP, snip_tramp, snip_tramp_end);
	h_wr64(&H, DATA, 0);
	h_state_real(&s);
	h_set(&H, &s);
	struct vcpu_exit e = h_run(&H);
	h_get(&H, &s);
	CHECK_EQ(e.reason, VCPU_EXIT_HLT);
	CHECK_EQ(h_rd64(&H, DATA) & 0xffffffff, 0xcafe);
	CHECK_EQ(s.seg[SEG_CS].selector, 0x08);
	CHECK(s.seg[SEG_CS].db && (s.cr0 & 1), "32-bit protected mode");
	CHECK_EQ(s.seg[SEG_SS].selector, 0x10);
}

int main(void)
{
	h_init(&H, NULL, 3);
	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
	    {"hlt", test_hlt},
	    {"cpuid", test_cpuid},
	    {"alu", test_alu_differential},
	    {"exceptions", test_exceptions},
	    {"rings", test_rings},
	    {"strings", test_strings},
	    {"atomics", test_atomics},
	    {"tsc", test_tsc},
	    {"fpu", test_fpu},
	    {"fpu against the host", test_fpu_host},
	    {"devices", test_devices},
	    {"interrupts", test_interrupts},
	    {"nmi", test_nmi},
	    {"smc", test_smc},
	    {"jump cache", test_cr3_switch},
	    {"paging", test_paging},
	    {"legacy paging", test_paging_legacy},
	    {"protected-mode interrupts", test_prot32_interrupts},
	    {"real mode", test_real_mode},
	    {"to long mode", test_to_long},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = failures;
		current = tests[i].name;
		tests[i].fn();
		printf("%s %s\n", failures == before ? "PASS" : "FAIL", tests[i].name);
	}
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
