/*
 * The dbt interpreter as an engine: a dbt_cpu on a small machine whose
 * guest RAM holds, at the same addresses as the host run, the case's code,
 * data and stack pages (4 KiB user pages, the guard pages not present).
 * The case runs at CPL 3 in 64-bit mode, as on the host; every exception
 * and the INT3 that ends a case go through 64-bit interrupt gates (IST 1)
 * to a per-vector HLT, so the interrupted state comes back whole: the
 * general registers from the CPU, RIP, RFLAGS and RSP from the frame.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <Zydis/Zydis.h>

#include "dbt/dbt.h"
#include "diff.h"

/* The supervisor's side, in the low 2 MiB of guest RAM (one large page,
 * not user-accessible). */
#define K_GDT	      0x1000
#define K_IDT	      0x2000
#define K_TSS	      0x3000
#define K_PML4	      0x4000
#define K_PDPT	      0x5000
#define K_PD	      0x6000
#define K_PT	      0x7000
#define K_STUBS	      0x8000 /* vector v: HLT at K_STUBS + 16 * v */
#define K_IST_TOP     0x20000
#define K_LOW_SIZE    0x200000
#define K_REGION_SIZE 0x200000 /* guest RAM from DIFF_CODE; only the case pages are mapped */

/* Selectors as Linux lays them out, so the case sees the host's values. */
#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33
#define SEL_TSS	  0x40

struct interp {
	uint8_t *low, *region;
	struct dbt_env env;
	struct dbt_cpu *cpu;
	atomic_bool hint, kick;
	struct x86_state base;
	uint8_t stop[ZYDIS_MAX_INSTRUCTION_LENGTH];
	unsigned stop_len;
};

static void io(void *opaque, struct vcpu_exit *e)
{
	(void)opaque;
	switch (e->reason) {
	case VCPU_EXIT_PIO: e->pio.data = ~0u; break;
	case VCPU_EXIT_MMIO: e->mmio.data = ~0ull; break;
	case VCPU_EXIT_MSR: e->msr.fault = true; break;
	default: break;
	}
}

static int no_interrupt(void *opaque)
{
	(void)opaque;
	return -1;
}

static void accept_interrupt(void *opaque, int vector)
{
	(void)opaque;
	(void)vector;
}

static void put64(uint8_t *ram, uint64_t gpa, uint64_t v)
{
	memcpy(ram + gpa, &v, 8);
}

static int encode(ZydisMnemonic m, uint8_t *out, unsigned *len)
{
	ZydisEncoderRequest r;
	ZyanUSize n = ZYDIS_MAX_INSTRUCTION_LENGTH;
	memset(&r, 0, sizeof(r));
	r.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	r.mnemonic = m;
	if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&r, out, &n)))
		return -1;
	*len = (unsigned)n;
	return 0;
}

static int build_machine(struct interp *in)
{
	uint8_t *ram = in->low;
	static const uint64_t gdt[] = {
	    0,
	    0,
	    0x00af9a000000ffff, /* 0x10 kernel code, 64-bit */
	    0x00cf92000000ffff, /* 0x18 kernel data */
	    0x00cffa000000ffff, /* 0x20 user code, 32-bit */
	    0x00cff2000000ffff, /* 0x28 user data */
	    0x00affa000000ffff, /* 0x30 user code, 64-bit */
	    0,
	};
	memcpy(ram + K_GDT, gdt, sizeof(gdt));
	uint64_t tss_limit = 0x67;
	put64(ram, K_GDT + SEL_TSS, tss_limit | ((uint64_t)(K_TSS & 0xffffff) << 16) | (0x89ull << 40));
	put64(ram, K_GDT + SEL_TSS + 8, 0);

	uint8_t hlt[ZYDIS_MAX_INSTRUCTION_LENGTH];
	unsigned hlt_len;
	if (encode(ZYDIS_MNEMONIC_HLT, hlt, &hlt_len) || encode(ZYDIS_MNEMONIC_INT3, in->stop, &in->stop_len))
		return -EINVAL;
	for (unsigned v = 0; v < 256; v++) {
		uint64_t addr = K_STUBS + 16 * v;
		unsigned dpl = v == 3 ? 3 : 0; /* INT3 from ring 3 */
		uint64_t lo = (addr & 0xffff) | ((uint64_t)SEL_KCODE << 16) | (1ull << 32) /* IST1 */ |
			      ((uint64_t)(0x8e | (dpl << 5)) << 40) | ((addr >> 16 & 0xffff) << 48);
		put64(ram, K_IDT + 16 * v, lo);
		put64(ram, K_IDT + 16 * v + 8, addr >> 32);
		memcpy(ram + addr, hlt, hlt_len);
	}
	memset(ram + K_TSS, 0, 0x68);
	put64(ram, K_TSS + 4, K_IST_TOP);  /* RSP0 */
	put64(ram, K_TSS + 36, K_IST_TOP); /* IST1 */
	uint16_t iomap = 0x68;		   /* past the limit: no I/O bitmap */
	memcpy(ram + K_TSS + 0x66, &iomap, 2);

	put64(ram, K_PML4, K_PDPT | 7);
	put64(ram, K_PDPT, K_PD | 7);
	put64(ram, K_PD, 0x83); /* [0, 2 MiB): supervisor, writable, large */
	put64(ram, K_PD + 8 * (DIFF_CODE >> 21), K_PT | 7);
	put64(ram, K_PT + 8 * ((DIFF_CODE >> 12) & 511), DIFF_CODE | 5);		  /* user, read-only */
	put64(ram, K_PT + 8 * ((DIFF_DATA >> 12) & 511), DIFF_DATA | 7 | (1ull << 63));	  /* user, writable, NX */
	put64(ram, K_PT + 8 * ((DIFF_STACK >> 12) & 511), DIFF_STACK | 7 | (1ull << 63)); /* user, writable, NX */

	struct x86_state *s = &in->base;
	memset(s, 0, sizeof(*s));
	s->seg[SEG_CS] = (struct x86_segment){
	    .limit = 0xffffffff, .selector = SEL_UCODE, .type = 0xb, .s = 1, .dpl = 3, .present = 1, .l = 1, .g = 1};
	s->seg[SEG_SS] = (struct x86_segment){
	    .limit = 0xffffffff, .selector = SEL_UDATA, .type = 0x3, .s = 1, .dpl = 3, .present = 1, .db = 1, .g = 1};
	for (int i = 0; i < SEG_COUNT; i++)
		if (i != SEG_CS && i != SEG_SS)
			s->seg[i] = (struct x86_segment){.type = 0x3, .s = 1, .dpl = 3, .unusable = 1};
	s->ldtr = (struct x86_segment){.unusable = 1};
	s->tr = (struct x86_segment){.base = K_TSS, .limit = 0x67, .selector = SEL_TSS, .type = 0xb, .present = 1};
	s->gdtr = (struct x86_dtable){.base = K_GDT, .limit = sizeof(gdt) + 15};
	s->idtr = (struct x86_dtable){.base = K_IDT, .limit = 0xfff};
	s->cr0 = 0x80050033; /* PG AM WP NE ET MP PE, as Linux */
	s->cr3 = K_PML4;
	s->cr4 = 0x620;	 /* OSXMMEXCPT OSFXSR PAE */
	s->efer = 0xd01; /* NXE LMA LME SCE */
	s->xcr0 = 1;
	s->pat = 0x0007040600070406ull;
	s->fpu.fcw = 0x37f;
	s->fpu.mxcsr = 0x1f80;
	return 0;
}

static int interp_open(void **ctx, char *err, size_t errlen)
{
	struct interp *in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->low = mmap(NULL, K_LOW_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	in->region = mmap(NULL, K_REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (in->low == MAP_FAILED || in->region == MAP_FAILED) {
		snprintf(err, errlen, "guest RAM: %s", strerror(errno));
		return -ENOMEM;
	}
	if (build_machine(in)) {
		snprintf(err, errlen, "the encoder refuses HLT or INT3");
		return -EINVAL;
	}
	in->env = (struct dbt_env){
	    .ram = {{.gpa = 0, .size = K_LOW_SIZE, .host = in->low},
		    {.gpa = DIFF_CODE, .size = K_REGION_SIZE, .host = in->region}},
	    .ram_count = 2,
	    .io = io,
	    .pending_interrupt = no_interrupt,
	    .accept_interrupt = accept_interrupt,
	    .interrupt_hint = &in->hint,
	    .kick = &in->kick,
	    .opaque = in,
	    .cpu_index = 0,
	    .cpu_count = 1,
	};
	in->cpu = dbt_cpu_create(&in->env);
	if (!in->cpu) {
		snprintf(err, errlen, "dbt_cpu_create failed");
		return -ENOMEM;
	}
	*ctx = in;
	return 0;
}

static uint64_t rd64(const struct interp *in, uint64_t gpa)
{
	uint64_t v;
	memcpy(&v, in->low + gpa, 8);
	return v;
}

static void interp_run(void *ctx, const struct diff_case *c, struct diff_result *r)
{
	struct interp *in = ctx;
	uint8_t *code = in->region + (DIFF_CODE - DIFF_CODE);
	struct x86_state s = in->base;
	struct vcpu_exit e;

	memset(code, 0xcc, DIFF_PAGE);
	memcpy(code, c->code, c->code_len);
	memcpy(code + c->code_len, in->stop, in->stop_len);
	memcpy(in->region + (DIFF_DATA - DIFF_CODE), c->data, DIFF_PAGE);
	memcpy(in->region + (DIFF_STACK - DIFF_CODE), c->stack, DIFF_PAGE);
	dbt_invalidate_range(in->cpu, DIFF_CODE, DIFF_REGION_SIZE);

	memcpy(s.gpr, c->init.gpr, sizeof(s.gpr));
	s.rip = DIFF_CODE;
	s.rflags = c->init.rflags | 0x202;
	s.fpu = c->init.fpu;
	dbt_cpu_set_state(in->cpu, &s);
	do
		dbt_cpu_run(in->cpu, &e);
	while (e.reason == VCPU_EXIT_KICK);
	dbt_cpu_get_state(in->cpu, &s);

	memset(r, 0, offsetof(struct diff_result, st));
	memcpy(r->data, in->region + (DIFF_DATA - DIFF_CODE), DIFF_PAGE);
	memcpy(r->stack, in->region + (DIFF_STACK - DIFF_CODE), DIFF_PAGE);
	memcpy(r->st.gpr, s.gpr, sizeof(s.gpr));
	r->st.fpu = s.fpu;
	r->st.rip = s.rip;
	r->st.rflags = s.rflags;

	if (e.reason == VCPU_EXIT_ERROR) {
		r->status = DIFF_ERROR;
		snprintf(r->message, sizeof(r->message), "engine error at 0x%llx: %s", (unsigned long long)e.error.rip,
			 e.error.message);
		return;
	}
	uint64_t stub = s.rip - 1 - K_STUBS;
	if (e.reason != VCPU_EXIT_HLT || s.rip <= K_STUBS || stub >= 256 * 16 || stub % 16) {
		r->status = DIFF_ERROR;
		snprintf(r->message, sizeof(r->message), "unexpected exit %d at rip 0x%llx", (int)e.reason,
			 (unsigned long long)s.rip);
		return;
	}
	/* The frame: [error code,] RIP, CS, RFLAGS, RSP, SS. */
	uint64_t sp = s.gpr[RSP];
	bool has_error = sp == K_IST_TOP - 48;
	if (!has_error && sp != K_IST_TOP - 40) {
		r->status = DIFF_ERROR;
		snprintf(r->message, sizeof(r->message), "vector %llu: frame at 0x%llx", (unsigned long long)stub / 16,
			 (unsigned long long)sp);
		return;
	}
	r->vector = (uint8_t)(stub / 16);
	if (has_error) {
		r->error_code = (uint32_t)rd64(in, sp);
		sp += 8;
	}
	r->st.rip = rd64(in, sp);
	r->st.rflags = rd64(in, sp + 16);
	r->st.gpr[RSP] = rd64(in, sp + 24);
	r->fault_addr = s.cr2;
	if (r->vector == 3 && r->st.rip == DIFF_CODE + c->code_len + in->stop_len) {
		r->status = DIFF_STOP;
		r->st.rip = DIFF_CODE + c->code_len;
		r->fault_addr = 0;
		return;
	}
	r->status = DIFF_FAULT;
	snprintf(r->message, sizeof(r->message), "vector %u", r->vector);
}

static void interp_close(void *ctx)
{
	struct interp *in = ctx;
	dbt_cpu_destroy(in->cpu);
	munmap(in->low, K_LOW_SIZE);
	munmap(in->region, K_REGION_SIZE);
	free(in);
}

const struct diff_engine diff_engine_interp = {
    .name = "interp",
    .open = interp_open,
    .run = interp_run,
    .close = interp_close,
};
