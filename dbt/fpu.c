/*
 * x87, MMX and SSE..SSE4.2 by host execution. Guest and host are the same
 * ISA, so an arithmetic instruction is run on the host CPU: Zydis re-encodes
 * it with its memory operand pointed at a buffer (filled from, and written
 * back to, guest memory through the MMU) and its general registers renamed
 * to R8/R9; a small generated stub loads the guest's x87/SSE state with
 * FXRSTOR, runs the instruction and FXSAVEs the result, then puts the host's
 * control words back.
 *
 * The stub runs under the guest's own FCW and MXCSR, unmasked exceptions
 * included, so the host decides everything an exception changes. An x87
 * exception only marks itself pending (ES) for the next waiting instruction,
 * and the stub ends with non-waiting ones (FXSAVE, FNINIT): it runs to its
 * end, and what it saved (the result stored or not, the condition codes,
 * ES) is the guest's. A SIMD exception faults in the stub (#XM, SIGFPE):
 * the handler takes the state at the fault from the signal frame and
 * resumes the stub at its epilogue, which puts the host's control words
 * back; nothing the instruction would have written is committed, and the
 * guest gets #XM (or #UD without CR4.OSXMMEXCPT).
 *
 * Control and state-management instructions (FNSTSW/FNSTCW/FLDCW/FNCLEX/
 * FNINIT, FNSTENV/FLDENV/FNSAVE/FRSTOR, FXSAVE/FXRSTOR, XSAVE/XRSTOR,
 * LDMXCSR/STMXCSR, MASKMOVQ/MASKMOVDQU) are done in C.
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "dbt/internal.h"

#define STUB_CODE_SIZE (1u << 20)
#define STUB_MAX       8192
#define STUB_BYTES     512 /* the most one stub can take */

enum { FK_X87, FK_MMX, FK_SSE };

/* What a stub works on. x87 and MMX instructions load and save the whole
 * image (fx); SSE ones move only the XMM registers they use, from the
 * guest's state (passed beside ctx) into fx.xmm, and MXCSR into fx.mxcsr.
 * After a SIMD exception fx is the image at the fault. */
struct fpu_ctx {
	struct x86_fxsave fx;
	uint64_t rax, rcx, rdx, r8, r9, flags;
	const struct fpu_stub *stub; /* the one running, for the SIGFPE handler */
	uint32_t host_mxcsr;
	uint16_t host_fcw;
	uint8_t faulted; /* set by the SIGFPE handler */
	uint8_t pad[1];
	uint8_t mem[64] __attribute__((aligned(16)));
} __attribute__((aligned(64)));

struct fpu_stub {
	void (*fn)(struct fpu_ctx *ctx, const struct x86_fxsave *guest);
	uint16_t landing;   /* the epilogue, from fn: where a stub that faulted goes on */
	uint16_t xmm_write; /* SSE: registers to copy back */
	uint16_t mem_size;
	uint16_t fop;
	uint8_t kind;
	uint8_t mem_read, mem_write;
	uint8_t align;
	uint8_t ngpr;
	uint8_t gpr[2], gpr_size[2], gpr_write[2];
	uint8_t flags_in, flags_out;
	uint8_t x87_mem; /* the memory operand is an x87 data operand (FDP) */
};

/* ---- SIMD exceptions in a stub ---------------------------------------------------- */

/* The stub this thread is running, if any; read by the SIGFPE handler. */
static __thread struct fpu_ctx *volatile fpu_running __attribute__((tls_model("initial-exec")));
static __thread bool fpu_thread_ready __attribute__((tls_model("initial-exec")));
static struct sigaction fpu_prev_fpe;
static pthread_once_t fpu_fpe_once = PTHREAD_ONCE_INIT;

/*
 * A SIGFPE from inside the running stub is the guest instruction's #XM: keep
 * the state at the fault and go on at the stub's epilogue (sigreturn puts
 * the faulting state back; the epilogue loads the host's MXCSR and FCW).
 * Only memory of this thread's stub context is touched. Any other SIGFPE is
 * passed to whoever handled it before us.
 */
static void fpu_sigfpe(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct fpu_ctx *ctx = fpu_running;

	if (ctx && si->si_code > 0 && uc->uc_mcontext.fpregs) {
		uintptr_t fn = (uintptr_t)ctx->stub->fn, rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
		if (rip - fn < ctx->stub->landing) {
			memcpy(&ctx->fx, uc->uc_mcontext.fpregs, sizeof(ctx->fx));
			ctx->faulted = 1;
			uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(fn + ctx->stub->landing);
			return;
		}
	}
	if (fpu_prev_fpe.sa_flags & SA_SIGINFO) {
		fpu_prev_fpe.sa_sigaction(sig, si, ucv);
	} else if (fpu_prev_fpe.sa_handler != SIG_DFL && fpu_prev_fpe.sa_handler != SIG_IGN) {
		fpu_prev_fpe.sa_handler(sig);
	} else {
		/* The default action, as if we had not been here. */
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

static void fpu_fpe_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fpu_sigfpe;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGFPE, NULL, &fpu_prev_fpe);
	sigaction(SIGFPE, &sa, NULL);
}

/* A synchronous signal the thread blocks kills the process instead. */
static void fpu_thread_init(void)
{
	sigset_t fpe;
	sigemptyset(&fpe);
	sigaddset(&fpe, SIGFPE);
	pthread_sigmask(SIG_UNBLOCK, &fpe, NULL);
	fpu_thread_ready = true;
}

static inline void fpu_call(struct dbt_cpu *cpu, const struct fpu_stub *st, struct fpu_ctx *ctx)
{
	if (unlikely(!fpu_thread_ready))
		fpu_thread_init();
	ctx->stub = st;
	fpu_running = ctx;
	st->fn(ctx, &cpu->s.fpu);
	fpu_running = NULL;
}

int fpu_init(struct dbt_cpu *cpu)
{
	cpu->stub_code =
	    mmap(NULL, STUB_CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cpu->stub_code == MAP_FAILED) {
		cpu->stub_code = NULL;
		return -1;
	}
	cpu->stub_code_size = STUB_CODE_SIZE;
	cpu->stubs = calloc(STUB_MAX, sizeof(*cpu->stubs));
	cpu->fx_scratch = aligned_alloc(64, sizeof(struct fpu_ctx));
	if (!cpu->stubs || !cpu->fx_scratch)
		return -1;
	memset(cpu->fx_scratch, 0, sizeof(struct fpu_ctx));
	cpu->max_stubs = STUB_MAX;
	pthread_once(&fpu_fpe_once, fpu_fpe_install);
	return 0;
}

void fpu_destroy(struct dbt_cpu *cpu)
{
	if (cpu->stub_code)
		munmap(cpu->stub_code, cpu->stub_code_size);
	free(cpu->stubs);
	free(cpu->fx_scratch);
}

void fpu_reset_stubs(struct dbt_cpu *cpu)
{
	cpu->nstubs = 0;
	cpu->stub_code_used = 0;
}

bool fpu_has_room(struct dbt_cpu *cpu)
{
	return cpu->nstubs + BLOCK_MAX_INSNS <= cpu->max_stubs &&
	       cpu->stub_code_used + BLOCK_MAX_INSNS * STUB_BYTES <= cpu->stub_code_size;
}

void fpu_sanitize(struct x86_fxsave *fx)
{
	fx->mxcsr &= 0xffff;
	fx->mxcsr_mask = 0xffff;
}

/* ---- checks ----------------------------------------------------------------------- */

static void fpu_check(struct dbt_cpu *cpu, int kind, bool waiting)
{
	uint64_t cr0 = cpu->s.cr0;
	switch (kind) {
	case FK_X87:
		if (cr0 & (CR0_EM | CR0_TS))
			dbt_raise(cpu, EXC_NM, NO_ERROR);
		break;
	case FK_MMX:
		if (cr0 & CR0_EM)
			raise_ud(cpu);
		if (cr0 & CR0_TS)
			dbt_raise(cpu, EXC_NM, NO_ERROR);
		break;
	default:
		if ((cr0 & CR0_EM) || !(cpu->s.cr4 & CR4_OSFXSR))
			raise_ud(cpu);
		if (cr0 & CR0_TS)
			dbt_raise(cpu, EXC_NM, NO_ERROR);
		return;
	}
	if (waiting && (cpu->s.fpu.fsw & 0x80) && (cr0 & CR0_NE))
		dbt_raise(cpu, EXC_MF, NO_ERROR);
}

/* FIP/FDP/FOP after an x87 instruction that is not a control instruction.
 * In legacy modes the selector sits above the offset, as in the 32-bit
 * FXSAVE image. */
static void x87_pointers(struct dbt_cpu *cpu, const struct dinsn *d, const struct fpu_stub *st, uint64_t ea)
{
	struct x86_fxsave *g = &cpu->s.fpu;
	bool m64 = cpu->mode == MODE_LONG64;
	g->fop = st->fop;
	g->fip = m64 ? d->rip : ((uint64_t)cpu->s.seg[SEG_CS].selector << 32) | (uint32_t)d->rip;
	if (st->x87_mem)
		g->fdp = m64 ? ea : ((uint64_t)cpu->s.seg[d->seg].selector << 32) | (uint32_t)ea;
}

/* ---- host execution ---------------------------------------------------------------- */

/* Reads the memory operand into the buffer: one page and RAM is the common
 * case; anything else goes through the MMU's buffer copy. */
static void fpu_mem_read(struct dbt_cpu *cpu, uint64_t lin, uint8_t *buf, unsigned size, unsigned acc)
{
	uint8_t *p = tlb_host(cpu, lin, size, TLB_READ);
	if (likely(p))
		memcpy(buf, p, size);
	else
		mem_read_buf(cpu, lin, buf, size, acc);
}

static void fpu_mem_write(struct dbt_cpu *cpu, uint64_t lin, const uint8_t *buf, unsigned size, unsigned acc)
{
	uint8_t *p = tlb_host(cpu, lin, size, TLB_WRITE);
	if (likely(p))
		memcpy(p, buf, size);
	else
		mem_write_buf(cpu, lin, buf, size, acc);
}

/* ES and B from the exception flags and their masks, as the hardware
 * derives them whenever it loads FSW or FCW. */
static void update_es(struct x86_fxsave *g)
{
	if (g->fsw & ~g->fcw & 0x3f)
		g->fsw |= 0x8080;
	else
		g->fsw &= ~0x8080;
}

/* The guest's image for an x87/MMX stub, its exception flags clear so that
 * the host sees nothing pending (a pending exception was raised as #MF
 * before we got here, unless CR0.NE is clear); x87_commit ORs them back. */
static void x87_load(struct fpu_ctx *ctx, const struct x86_fxsave *g)
{
	memcpy(&ctx->fx, g, offsetof(struct x86_fxsave, reserved1));
	ctx->fx.fsw &= ~0x80ffu;
}

/* Takes the image the host left; FCW and the pointers stay the guest's. */
static void x87_commit(struct x86_fxsave *g, const struct x86_fxsave *fx)
{
	uint16_t fcw = g->fcw, sticky = g->fsw & 0x7f, fop = g->fop;
	uint64_t fip = g->fip, fdp = g->fdp;
	memcpy(g, fx, offsetof(struct x86_fxsave, reserved1));
	g->fcw = fcw;
	g->fsw |= sticky;
	update_es(g);
	g->mxcsr_mask = 0xffff;
	g->fop = fop;
	g->fip = fip;
	g->fdp = fdp;
}

/*
 * Did the x87 instruction store its memory operand? Always, unless it
 * raised an unmasked exception, which may suppress the store; the host
 * knows whether it does. The operand is write-only, so the stub runs again
 * over other bytes: a store leaves the same bytes both times.
 */
static bool x87_stored(struct dbt_cpu *cpu, const struct fpu_stub *st, struct fpu_ctx *ctx)
{
	const struct x86_fxsave *g = &cpu->s.fpu;
	uint8_t first[sizeof(ctx->mem)];

	if (st->mem_read || !(ctx->fx.fsw & ~g->fcw & 0x3f))
		return true;
	memcpy(first, ctx->mem, st->mem_size);
	for (unsigned i = 0; i < st->mem_size; i++)
		ctx->mem[i] = (uint8_t)~first[i];
	x87_load(ctx, g);
	fpu_call(cpu, st, ctx);
	bool stored = !memcmp(first, ctx->mem, st->mem_size);
	memcpy(ctx->mem, first, st->mem_size);
	return stored;
}

/* The instruction raised an unmasked SIMD exception: the state at the fault
 * (MXCSR's flags; an MMX instruction has switched the x87 unit to MMX mode),
 * then #XM, or #UD without CR4.OSXMMEXCPT. */
__attribute__((noreturn)) static void fpu_fault(struct dbt_cpu *cpu, const struct fpu_stub *st, struct fpu_ctx *ctx)
{
	ctx->faulted = 0;
	if (st->kind == FK_SSE)
		cpu->s.fpu.mxcsr = ctx->fx.mxcsr & 0xffff;
	else
		x87_commit(&cpu->s.fpu, &ctx->fx);
	if (cpu->s.cr4 & CR4_OSXMMEXCPT)
		dbt_raise(cpu, EXC_XM, NO_ERROR);
	raise_ud(cpu);
}

HANDLER(h_fpu)
{
	const struct fpu_stub *st = &cpu->stubs[d->aux];
	struct fpu_ctx *ctx = cpu->fx_scratch;
	struct x86_fxsave *g = &cpu->s.fpu;
	unsigned acc = seg_acc(d->seg);
	uint64_t lin = 0, ea = 0;

	fpu_check(cpu, st->kind, true);
	if (st->mem_size) {
		ea = d_ea(cpu, d);
		lin = seg_lin(cpu, d->seg, ea, st->mem_size, st->mem_write);
		if (st->align && (lin & (st->align - 1)))
			raise_gp(cpu, 0);
		if (st->mem_read)
			fpu_mem_read(cpu, lin, ctx->mem, st->mem_size, acc);
		if (st->mem_write && !tlb_host(cpu, lin, st->mem_size, TLB_WRITE))
			mem_probe_write(cpu, lin, st->mem_size, acc);
	}
	ctx->rax = cpu->gpr[RAX];
	ctx->rcx = cpu->gpr[RCX];
	ctx->rdx = cpu->gpr[RDX];
	ctx->r8 = st->ngpr > 0 ? reg_get(cpu, st->gpr[0], st->gpr_size[0]) : 0;
	ctx->r9 = st->ngpr > 1 ? reg_get(cpu, st->gpr[1], st->gpr_size[1]) : 0;
	ctx->flags = (cpu->rflags & FL_ARITH) | FL_FIXED;

	if (st->kind == FK_SSE) {
		fpu_call(cpu, st, ctx);
		if (unlikely(ctx->faulted))
			fpu_fault(cpu, st, ctx);
		if (st->mem_write)
			fpu_mem_write(cpu, lin, ctx->mem, st->mem_size, acc);
		for (unsigned m = st->xmm_write, n; m; m &= m - 1) {
			n = (unsigned)__builtin_ctz(m);
			memcpy(g->xmm[n], ctx->fx.xmm[n], 16);
		}
		g->mxcsr = ctx->fx.mxcsr & 0xffff;
	} else {
		x87_load(ctx, g);
		fpu_call(cpu, st, ctx);
		if (unlikely(ctx->faulted))
			fpu_fault(cpu, st, ctx);
		if (st->mem_write && x87_stored(cpu, st, ctx))
			fpu_mem_write(cpu, lin, ctx->mem, st->mem_size, acc);
		x87_commit(g, &ctx->fx);
		if (st->kind == FK_X87)
			x87_pointers(cpu, d, st, ea);
	}

	cpu->gpr[RAX] = ctx->rax;
	cpu->gpr[RCX] = ctx->rcx;
	cpu->gpr[RDX] = ctx->rdx;
	if (st->ngpr > 0 && st->gpr_write[0])
		reg_set(cpu, st->gpr[0], st->gpr_size[0], ctx->r8);
	if (st->ngpr > 1 && st->gpr_write[1])
		reg_set(cpu, st->gpr[1], st->gpr_size[1], ctx->r9);
	if (st->flags_out)
		set_arith(cpu, ctx->flags);
}

/* ---- stub generation ------------------------------------------------------------------ */

static uint8_t *emit(uint8_t *p, const uint8_t *bytes, unsigned n)
{
	memcpy(p, bytes, n);
	return p + n;
}

/* An instruction [r11 + disp32] (or [r10 + disp32]) given its prefix and
 * opcode bytes and ModRM with mod=10 and rm already set. */
static uint8_t *emit_r11(uint8_t *p, const uint8_t *op, unsigned n, uint32_t disp)
{
	p = emit(p, op, n);
	memcpy(p, &disp, 4);
	return p + 4;
}

#define OFF(f) ((uint32_t)offsetof(struct fpu_ctx, f))

static const struct {
	uint8_t rex, modrm;
	uint32_t off;
} gpr_slots[5] = {
    {0x49, 0x83, OFF(rax)}, {0x49, 0x8b, OFF(rcx)}, {0x49, 0x93, OFF(rdx)},
    {0x4d, 0x83, OFF(r8)},  {0x4d, 0x8b, OFF(r9)},
};

/* Is this SSE instruction's 128-bit memory operand allowed to be unaligned? */
static bool sse_unaligned_ok(ZydisMnemonic m)
{
	switch (m) {
	case ZYDIS_MNEMONIC_MOVUPS:
	case ZYDIS_MNEMONIC_MOVUPD:
	case ZYDIS_MNEMONIC_MOVDQU:
	case ZYDIS_MNEMONIC_LDDQU:
	case ZYDIS_MNEMONIC_PCMPESTRI:
	case ZYDIS_MNEMONIC_PCMPESTRM:
	case ZYDIS_MNEMONIC_PCMPISTRI:
	case ZYDIS_MNEMONIC_PCMPISTRM: return true;
	default: return false;
	}
}

static bool build_stub(struct dbt_cpu *cpu, struct fpu_stub *st, const ZydisDecodedInstruction *in,
		       const ZydisDecodedOperand *ops)
{
	ZydisEncoderRequest req;
	uint8_t insn[ZYDIS_MAX_INSTRUCTION_LENGTH];
	ZyanUSize ilen = sizeof(insn);

	if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(in, ops, in->operand_count_visible, &req)))
		return false;
	req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	req.prefixes &= ~(ZYDIS_ATTRIB_HAS_SEGMENT | ZYDIS_ATTRIB_HAS_ADDRESSSIZE | ZYDIS_ATTRIB_HAS_LOCK);
	req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_NONE;
	for (int i = 0; i < req.operand_count && i < in->operand_count_visible; i++) {
		ZydisEncoderOperand *o = &req.operands[i];
		const ZydisDecodedOperand *dop = &ops[i];
		if (o->type == ZYDIS_OPERAND_TYPE_MEMORY) {
			if (st->mem_size || dop->size / 8 > sizeof(((struct fpu_ctx *)0)->mem))
				return false;
			st->mem_size = dop->size / 8;
			st->mem_read =
			    (dop->actions & (ZYDIS_OPERAND_ACTION_READ | ZYDIS_OPERAND_ACTION_CONDREAD)) != 0;
			st->mem_write =
			    (dop->actions & (ZYDIS_OPERAND_ACTION_WRITE | ZYDIS_OPERAND_ACTION_CONDWRITE)) != 0;
			if (dop->actions & ZYDIS_OPERAND_ACTION_CONDWRITE)
				st->mem_read = 1; /* a write that may not happen keeps the old bytes */
			o->mem.base = ZYDIS_REGISTER_R11;
			o->mem.index = ZYDIS_REGISTER_NONE;
			o->mem.scale = 0;
			o->mem.displacement = OFF(mem);
		} else if (o->type == ZYDIS_OPERAND_TYPE_REGISTER) {
			ZydisRegisterClass k = ZydisRegisterGetClass(o->reg.value);
			if (k < ZYDIS_REGCLASS_GPR8 || k > ZYDIS_REGCLASS_GPR64)
				continue;
			if (st->ngpr == 2)
				return false;
			int id = ZydisRegisterGetId(o->reg.value);
			unsigned size = dop->size / 8;
			if (k == ZYDIS_REGCLASS_GPR8)
				st->gpr[st->ngpr] = (uint8_t)(id < 4   ? id * 8
							      : id < 8 ? (id - 4) * 8 + 1
								       : (id - 4) * 8);
			else
				st->gpr[st->ngpr] = (uint8_t)id;
			st->gpr_size[st->ngpr] = (uint8_t)size;
			st->gpr_write[st->ngpr] = (dop->actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
			o->reg.value = ZydisRegisterEncode(k, (uint8_t)(8 + st->ngpr));
			st->ngpr++;
		}
	}
	if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, insn, &ilen)))
		return false;

	/* The re-encoded instruction must be the same operation. */
	ZydisDecoder dec;
	ZydisDecodedInstruction check;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, insn, ilen, &check)) ||
	    check.mnemonic != in->mnemonic || check.length != ilen)
		return false;

	if (in->cpu_flags) {
		st->flags_in = in->cpu_flags->tested != 0;
		st->flags_out = (in->cpu_flags->modified | in->cpu_flags->set_0 | in->cpu_flags->set_1 |
				 in->cpu_flags->undefined) != 0;
	}
	/* CVTPD2PI and CVTTPD2PI name an MMX register and follow the SSE rule. */
	if (st->mem_size == 16 && st->kind != FK_X87 && !sse_unaligned_ok(in->mnemonic))
		st->align = 16;

	/* SSE: which XMM registers to load (read or partly written) and store. */
	uint16_t xmm_load = 0;
	for (int i = 0; i < in->operand_count; i++) {
		if (ops[i].type != ZYDIS_OPERAND_TYPE_REGISTER ||
		    ZydisRegisterGetClass(ops[i].reg.value) != ZYDIS_REGCLASS_XMM)
			continue;
		uint16_t bit = (uint16_t)(1u << ZydisRegisterGetId(ops[i].reg.value));
		xmm_load |= bit;
		if (ops[i].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)
			st->xmm_write |= bit;
	}

	/* The epilogue, from st->landing on, only puts the host's control words
	 * back: a stub whose instruction faulted goes on there. */
	uint8_t *start = cpu->stub_code + cpu->stub_code_used, *p = start;
	static const uint8_t mov_r11_rdi[] = {0x49, 0x89, 0xfb}, mov_r10_rsi[] = {0x49, 0x89, 0xf2};
	p = emit(p, mov_r11_rdi, sizeof(mov_r11_rdi));
	p = emit_r11(p, (const uint8_t[]){0x41, 0x0f, 0xae, 0x9b}, 4, OFF(host_mxcsr)); /* stmxcsr */
	if (st->kind == FK_SSE) {
		p = emit(p, mov_r10_rsi, sizeof(mov_r10_rsi));
		p = emit_r11(p, (const uint8_t[]){0x41, 0x0f, 0xae, 0x92}, 4, /* ldmxcsr [r10 + mxcsr] */
			     (uint32_t)offsetof(struct x86_fxsave, mxcsr));
		for (unsigned n = 0; n < 16; n++) /* movdqa xmmN, [r10 + xmm[n]] */
			if (xmm_load & (1u << n))
				p = emit_r11(p,
					     (const uint8_t[]){0x66, (uint8_t)(0x41 | (n >= 8 ? 4 : 0)), 0x0f, 0x6f,
							       (uint8_t)(0x82 | ((n & 7) << 3))},
					     5, (uint32_t)offsetof(struct x86_fxsave, xmm[n]));
	} else {
		p = emit_r11(p, (const uint8_t[]){0x41, 0xd9, 0xbb}, 3, OFF(host_fcw)); /* fnstcw */
		p = emit_r11(p, (const uint8_t[]){0x49, 0x0f, 0xae, 0x8b}, 4, OFF(fx)); /* fxrstor64 */
	}
	for (int i = 0; i < 5; i++) /* mov reg, [r11+x] */
		p = emit_r11(p, (const uint8_t[]){gpr_slots[i].rex, 0x8b, gpr_slots[i].modrm}, 3, gpr_slots[i].off);
	if (st->flags_in) {
		p = emit_r11(p, (const uint8_t[]){0x41, 0xff, 0xb3}, 3, OFF(flags)); /* push [r11+x] */
		*p++ = 0x9d;							     /* popfq */
	}
	p = emit(p, insn, (unsigned)ilen);
	if (st->flags_out) {
		*p++ = 0x9c;							     /* pushfq */
		p = emit_r11(p, (const uint8_t[]){0x41, 0x8f, 0x83}, 3, OFF(flags)); /* pop [r11+x] */
	}
	for (int i = 0; i < 5; i++) /* mov [r11+x], reg */
		p = emit_r11(p, (const uint8_t[]){gpr_slots[i].rex, 0x89, gpr_slots[i].modrm}, 3, gpr_slots[i].off);
	if (st->kind == FK_SSE) {
		for (unsigned n = 0; n < 16; n++) /* movdqa [r11 + fx.xmm[n]], xmmN */
			if (st->xmm_write & (1u << n))
				p = emit_r11(p,
					     (const uint8_t[]){0x66, (uint8_t)(0x41 | (n >= 8 ? 4 : 0)), 0x0f, 0x7f,
							       (uint8_t)(0x83 | ((n & 7) << 3))},
					     5, OFF(fx.xmm[n]));
		p = emit_r11(p, (const uint8_t[]){0x41, 0x0f, 0xae, 0x9b}, 4, OFF(fx.mxcsr)); /* stmxcsr */
		st->landing = (uint16_t)(p - start);
	} else {
		p = emit_r11(p, (const uint8_t[]){0x49, 0x0f, 0xae, 0x83}, 4, OFF(fx)); /* fxsave64 */
		st->landing = (uint16_t)(p - start);
		p = emit(p, (const uint8_t[]){0xdb, 0xe3}, 2);				/* fninit */
		p = emit_r11(p, (const uint8_t[]){0x41, 0xd9, 0xab}, 3, OFF(host_fcw)); /* fldcw */
	}
	p = emit_r11(p, (const uint8_t[]){0x41, 0x0f, 0xae, 0x93}, 4, OFF(host_mxcsr)); /* ldmxcsr */
	*p++ = 0xc3;
	st->fn = (void (*)(struct fpu_ctx *, const struct x86_fxsave *))(void *)start;
	cpu->stub_code_used += ((size_t)(p - start) + 15) & ~(size_t)15;
	return true;
}

/* ---- software instructions ------------------------------------------------------------- */

HANDLER(h_fnstsw)
{
	fpu_check(cpu, FK_X87, false);
	if (d->flags & DI_MEM)
		d_write(cpu, d, 2, cpu->s.fpu.fsw);
	else
		reg_set(cpu, RAX, 2, cpu->s.fpu.fsw);
}

HANDLER(h_fnstcw)
{
	fpu_check(cpu, FK_X87, false);
	d_write(cpu, d, 2, cpu->s.fpu.fcw);
}

HANDLER(h_fldcw)
{
	fpu_check(cpu, FK_X87, true);
	cpu->s.fpu.fcw = (uint16_t)((d_read(cpu, d, 2) & 0x1f3f) | 0x40);
	update_es(&cpu->s.fpu);
}

HANDLER_UNUSED(h_fnclex)
{
	fpu_check(cpu, FK_X87, false);
	cpu->s.fpu.fsw &= ~0x80ffu;
}

/* Sets TOP. The image holds the registers in ST order, so they rotate:
 * each physical register keeps its contents. */
static void x87_set_top(struct x86_fxsave *g, unsigned top)
{
	unsigned k = (top - ((g->fsw >> 11) & 7)) & 7;
	if (k) {
		uint8_t st[8][16];
		for (unsigned i = 0; i < 8; i++)
			memcpy(st[i], g->st[(i + k) & 7], 16);
		memcpy(g->st, st, sizeof(st));
	}
	g->fsw = (uint16_t)((g->fsw & ~0x3800u) | (top << 11));
}

static void fninit(struct x86_fxsave *g)
{
	x87_set_top(g, 0);
	g->fcw = 0x37f;
	g->fsw = 0;
	g->ftw = 0;
	g->fop = 0;
	g->fip = 0;
	g->fdp = 0;
}

HANDLER_UNUSED(h_fninit)
{
	fpu_check(cpu, FK_X87, false);
	fninit(&cpu->s.fpu);
}

HANDLER_UNUSED(h_fwait)
{
	if ((cpu->s.cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP))
		dbt_raise(cpu, EXC_NM, NO_ERROR);
	if ((cpu->s.fpu.fsw & 0x80) && (cpu->s.cr0 & CR0_NE))
		dbt_raise(cpu, EXC_MF, NO_ERROR);
}

/* The full tag word from the abridged one and the register contents. */
static uint16_t full_tag(const struct x86_fxsave *g)
{
	unsigned top = (g->fsw >> 11) & 7;
	uint16_t tag = 0;
	for (unsigned p = 0; p < 8; p++) {
		unsigned t;
		if (!((g->ftw >> p) & 1)) {
			t = 3;
		} else {
			const uint8_t *r = g->st[(p - top) & 7];
			uint64_t mant;
			uint16_t exp;
			memcpy(&mant, r, 8);
			memcpy(&exp, r + 8, 2);
			exp &= 0x7fff;
			if (exp == 0x7fff || (exp == 0 && mant) || (exp && !(mant >> 63)))
				t = 2;
			else if (exp == 0 && !mant)
				t = 1;
			else
				t = 0;
		}
		tag |= (uint16_t)(t << (2 * p));
	}
	return tag;
}

static uint8_t abridged_tag(uint16_t full)
{
	uint8_t t = 0;
	for (unsigned p = 0; p < 8; p++)
		if (((full >> (2 * p)) & 3) != 3)
			t |= (uint8_t)(1u << p);
	return t;
}

/* FNSTENV/FLDENV/FNSAVE/FRSTOR (cc 0-3), protected-mode formats: 28 bytes
 * (14 with a 16-bit operand size) of environment, then ST0-ST7. */
HANDLER(h_fenv)
{
	struct x86_fxsave *g = &cpu->s.fpu;
	bool store = d->cc == 0 || d->cc == 2, regs = d->cc >= 2, small = d->osz == 2;
	unsigned env = small ? 14 : 28, len = env + (regs ? 80 : 0);
	uint8_t buf[108];
	unsigned acc = seg_acc(d->seg);

	fpu_check(cpu, FK_X87, !store);
	uint64_t lin = seg_lin(cpu, d->seg, d_ea(cpu, d), len, store);
	if (store) {
		uint32_t w[7];
		uint32_t cs_fop = (uint32_t)((g->fip >> 32) & 0xffff) | ((uint32_t)(g->fop & 0x7ff) << 16);
		w[0] = 0xffff0000u | g->fcw;
		w[1] = 0xffff0000u | g->fsw;
		w[2] = 0xffff0000u | full_tag(g);
		w[3] = (uint32_t)g->fip;
		w[4] = cs_fop;
		w[5] = (uint32_t)g->fdp;
		w[6] = 0xffff0000u | (uint32_t)((g->fdp >> 32) & 0xffff);
		if (small) {
			uint16_t h[7];
			for (int i = 0; i < 7; i++)
				h[i] = (uint16_t)w[i];
			memcpy(buf, h, 14);
		} else {
			memcpy(buf, w, 28);
		}
		if (regs)
			for (int i = 0; i < 8; i++)
				memcpy(buf + env + 10 * i, g->st[i], 10);
		mem_write_buf(cpu, lin, buf, len, acc);
		if (regs)
			fninit(g);
		else
			g->fcw |= 0x3f;
		return;
	}
	mem_read_buf(cpu, lin, buf, len, acc);
	uint32_t w[7];
	if (small) {
		uint16_t h[7];
		memcpy(h, buf, 14);
		for (int i = 0; i < 7; i++)
			w[i] = h[i];
	} else {
		memcpy(w, buf, 28);
	}
	g->fcw = (uint16_t)((w[0] & 0x1f3f) | 0x40);
	x87_set_top(g, (w[1] >> 11) & 7);
	g->fsw = (uint16_t)w[1];
	g->ftw = abridged_tag((uint16_t)w[2]);
	g->fip = (uint32_t)w[3] | ((uint64_t)(w[4] & 0xffff) << 32);
	g->fop = (uint16_t)((w[4] >> 16) & 0x7ff);
	g->fdp = (uint32_t)w[5] | ((uint64_t)(w[6] & 0xffff) << 32);
	if (regs)
		for (int i = 0; i < 8; i++) {
			memcpy(g->st[i], buf + env + 10 * i, 10);
			memset(g->st[i] + 10, 0, 6);
		}
	update_es(g);
}

static void fxsave_check(struct dbt_cpu *cpu)
{
	if (cpu->s.cr0 & (CR0_TS | CR0_EM))
		dbt_raise(cpu, EXC_NM, NO_ERROR);
}

/* What FXSAVE writes of its 512 bytes and FXRSTOR loads: the x87 and SSE
 * state, bytes 0-415, or 0-287 outside 64-bit mode, which has XMM0-7 only.
 * The rest is left alone, but the whole area must be accessible. */
static unsigned fx_state_size(const struct dbt_cpu *cpu)
{
	return cpu->mode == MODE_LONG64 ? offsetof(struct x86_fxsave, reserved1) : offsetof(struct x86_fxsave, xmm[8]);
}

HANDLER(h_fxsave)
{
	unsigned acc = seg_acc(d->seg);
	fxsave_check(cpu);
	uint64_t lin = seg_lin(cpu, d->seg, d_ea(cpu, d), 512, true);
	if (lin & 15)
		raise_gp(cpu, 0);
	mem_probe_write(cpu, lin, 512, acc);
	mem_write_buf(cpu, lin, &cpu->s.fpu, fx_state_size(cpu), acc);
}

static void mxcsr_check(struct dbt_cpu *cpu, uint32_t v)
{
	if (v & ~0xffffu)
		raise_gp(cpu, 0);
}

HANDLER(h_fxrstor)
{
	struct x86_fxsave fx;
	fxsave_check(cpu);
	uint64_t lin = seg_lin(cpu, d->seg, d_ea(cpu, d), 512, false);
	if (lin & 15)
		raise_gp(cpu, 0);
	mem_read_buf(cpu, lin, &fx, sizeof(fx), seg_acc(d->seg));
	mxcsr_check(cpu, fx.mxcsr);
	memcpy(&cpu->s.fpu, &fx, fx_state_size(cpu));
	fpu_sanitize(&cpu->s.fpu);
	update_es(&cpu->s.fpu);
}

static uint64_t xsave_rfbm(struct dbt_cpu *cpu)
{
	if (!(cpu->s.cr4 & CR4_OSXSAVE))
		raise_ud(cpu);
	if (cpu->s.cr0 & CR0_TS)
		dbt_raise(cpu, EXC_NM, NO_ERROR);
	return ((cpu->gpr[RDX] << 32) | (uint32_t)cpu->gpr[RAX]) & cpu->s.xcr0;
}

HANDLER(h_xsave)
{
	uint64_t rfbm = xsave_rfbm(cpu);
	uint64_t lin = seg_lin(cpu, d->seg, d_ea(cpu, d), 576, true);
	unsigned acc = seg_acc(d->seg);
	uint8_t buf[576];
	if (lin & 63)
		raise_gp(cpu, 0);
	mem_read_buf(cpu, lin, buf, sizeof(buf), acc);
	const uint8_t *fx = (const uint8_t *)&cpu->s.fpu;
	if (rfbm & 1) {
		memcpy(buf, fx, 24);
		memcpy(buf + 32, fx + 32, 128);
	}
	if (rfbm & 2) {
		memcpy(buf + 24, fx + 24, 8);
		memcpy(buf + 160, fx + 160, 256);
	}
	uint64_t bv;
	memcpy(&bv, buf + 512, 8);
	bv = (bv & ~rfbm) | (rfbm & 3);
	memcpy(buf + 512, &bv, 8);
	mem_write_buf(cpu, lin, buf, sizeof(buf), acc);
}

HANDLER(h_xrstor)
{
	uint64_t rfbm = xsave_rfbm(cpu);
	uint64_t lin = seg_lin(cpu, d->seg, d_ea(cpu, d), 576, false);
	uint8_t buf[576];
	struct x86_fxsave *g = &cpu->s.fpu;
	if (lin & 63)
		raise_gp(cpu, 0);
	mem_read_buf(cpu, lin, buf, sizeof(buf), seg_acc(d->seg));
	uint64_t bv, comp;
	memcpy(&bv, buf + 512, 8);
	memcpy(&comp, buf + 520, 8);
	for (int i = 528; i < 576; i++)
		if (buf[i])
			raise_gp(cpu, 0);
	if (comp || (bv & ~cpu->s.xcr0))
		raise_gp(cpu, 0);
	uint32_t mx;
	memcpy(&mx, buf + 24, 4);
	if ((rfbm & 2) && (bv & 2))
		mxcsr_check(cpu, mx);
	if (rfbm & 1) {
		if (bv & 1) {
			memcpy(g, buf, 24);
			memcpy((uint8_t *)g + 32, buf + 32, 128);
		} else {
			fninit(g);
			memset(g->st, 0, sizeof(g->st));
		}
	}
	if (rfbm & 2) {
		if (bv & 2) {
			g->mxcsr = mx;
			memcpy(g->xmm, buf + 160, 256);
		} else {
			g->mxcsr = 0x1f80;
			memset(g->xmm, 0, sizeof(g->xmm));
		}
	}
	fpu_sanitize(g);
	update_es(g);
}

HANDLER(h_ldmxcsr)
{
	fpu_check(cpu, FK_SSE, false);
	uint32_t v = (uint32_t)d_read(cpu, d, 4);
	mxcsr_check(cpu, v);
	cpu->s.fpu.mxcsr = v;
}

HANDLER(h_stmxcsr)
{
	fpu_check(cpu, FK_SSE, false);
	d_write(cpu, d, 4, cpu->s.fpu.mxcsr);
}

/* What an MMX instruction does to the x87 state before it runs: TOP = 0,
 * every register valid. */
static void mmx_enter(struct x86_fxsave *g)
{
	x87_set_top(g, 0);
	g->ftw = 0xff;
}

/* MASKMOVQ mm, mm / MASKMOVDQU xmm, xmm: bytes whose mask byte has its top
 * bit set go to DS:rDI. r0/r1 hold the register numbers, cc the kind. */
HANDLER(h_maskmov)
{
	struct x86_fxsave *g = &cpu->s.fpu;
	bool mmx = d->cc == FK_MMX;
	unsigned n = mmx ? 8 : 16;
	const uint8_t *src = mmx ? g->st[d->r0] : g->xmm[d->r0];
	const uint8_t *mask = mmx ? g->st[d->r1] : g->xmm[d->r1];

	fpu_check(cpu, mmx ? FK_MMX : FK_SSE, true);
	if (mmx)
		mmx_enter(g);
	uint64_t ea = reg_get(cpu, RDI, d->asz);
	for (unsigned i = 0; i < n; i++) {
		if (!(mask[i] & 0x80))
			continue;
		uint64_t lin = seg_lin(cpu, d->seg, (ea + i) & amask(d->asz), 1, true);
		mem_write(cpu, lin, 1, src[i], seg_acc(d->seg));
	}
}

/* ---- decode ---------------------------------------------------------------------------------- */

/* FISTTP is SSE3 by extension but x87 by category (Zydis files the m32
 * form under the SSE3 set, the others under SSE3X87). */
static int insn_kind(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	if (in->meta.isa_ext == ZYDIS_ISA_EXT_X87 || in->meta.category == ZYDIS_CATEGORY_X87_ALU)
		return FK_X87;
	for (int i = 0; i < in->operand_count; i++)
		if (ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER &&
		    ZydisRegisterGetClass(ops[i].reg.value) == ZYDIS_REGCLASS_MMX)
			return FK_MMX;
	return in->meta.isa_ext == ZYDIS_ISA_EXT_MMX ? FK_MMX : FK_SSE;
}

/* Host features the SSE extensions need: leaf 1 ECX bits. */
static bool host_has_ext(const ZydisDecodedInstruction *in)
{
	switch (in->meta.isa_ext) {
	case ZYDIS_ISA_EXT_SSE3: return cpuid_host_has(1, 0);
	case ZYDIS_ISA_EXT_SSSE3: return cpuid_host_has(1, 9);
	case ZYDIS_ISA_EXT_SSE4: return cpuid_host_has(1, in->meta.isa_set == ZYDIS_ISA_SET_SSE42 ? 20 : 19);
	default: return true;
	}
}

bool fpu_decode(struct dbt_cpu *cpu, struct dinsn *d, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_FXSAVE:
	case ZYDIS_MNEMONIC_FXSAVE64: d->fn = h_fxsave; return true;
	case ZYDIS_MNEMONIC_FXRSTOR:
	case ZYDIS_MNEMONIC_FXRSTOR64: d->fn = h_fxrstor; return true;
	case ZYDIS_MNEMONIC_XSAVE:
	case ZYDIS_MNEMONIC_XSAVE64: d->fn = h_xsave; return true;
	case ZYDIS_MNEMONIC_XRSTOR:
	case ZYDIS_MNEMONIC_XRSTOR64: d->fn = h_xrstor; return true;
	case ZYDIS_MNEMONIC_LDMXCSR: d->fn = h_ldmxcsr; return true;
	case ZYDIS_MNEMONIC_STMXCSR: d->fn = h_stmxcsr; return true;
	case ZYDIS_MNEMONIC_FNSTSW: d->fn = h_fnstsw; return true;
	case ZYDIS_MNEMONIC_FNSTCW: d->fn = h_fnstcw; return true;
	case ZYDIS_MNEMONIC_FLDCW: d->fn = h_fldcw; return true;
	case ZYDIS_MNEMONIC_FNCLEX: d->fn = h_fnclex; return true;
	case ZYDIS_MNEMONIC_FNINIT: d->fn = h_fninit; return true;
	case ZYDIS_MNEMONIC_FWAIT: d->fn = h_fwait; return true;
	case ZYDIS_MNEMONIC_FNSTENV:
		d->cc = 0;
		d->fn = h_fenv;
		return true;
	case ZYDIS_MNEMONIC_FLDENV:
		d->cc = 1;
		d->fn = h_fenv;
		return true;
	case ZYDIS_MNEMONIC_FNSAVE:
		d->cc = 2;
		d->fn = h_fenv;
		return true;
	case ZYDIS_MNEMONIC_FRSTOR:
		d->cc = 3;
		d->fn = h_fenv;
		return true;
	case ZYDIS_MNEMONIC_MASKMOVQ:
	case ZYDIS_MNEMONIC_MASKMOVDQU:
		d->cc = in->mnemonic == ZYDIS_MNEMONIC_MASKMOVQ ? FK_MMX : FK_SSE;
		d->r0 = (uint8_t)ZydisRegisterGetId(ops[0].reg.value);
		d->r1 = (uint8_t)ZydisRegisterGetId(ops[1].reg.value);
		for (int i = 0; i < in->operand_count; i++)
			if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[i].mem.segment != ZYDIS_REGISTER_NONE)
				d->seg = (uint8_t)(ZydisRegisterGetId(ops[i].mem.segment));
		d->fn = h_maskmov;
		return true;
	case ZYDIS_MNEMONIC_XSAVEOPT:
	case ZYDIS_MNEMONIC_XSAVEOPT64:
	case ZYDIS_MNEMONIC_XSAVEC:
	case ZYDIS_MNEMONIC_XSAVEC64:
	case ZYDIS_MNEMONIC_XSAVES:
	case ZYDIS_MNEMONIC_XSAVES64:
	case ZYDIS_MNEMONIC_XRSTORS:
	case ZYDIS_MNEMONIC_XRSTORS64:
	case ZYDIS_MNEMONIC_MONITOR:
	case ZYDIS_MNEMONIC_MWAIT: return false;
	default: break;
	}
	if (in->meta.isa_ext == ZYDIS_ISA_EXT_XSAVE || !host_has_ext(in))
		return false;
	if (cpu->nstubs >= cpu->max_stubs)
		return false;
	struct fpu_stub *st = &cpu->stubs[cpu->nstubs];
	memset(st, 0, sizeof(*st));
	st->kind = (uint8_t)insn_kind(in, ops);
	if (st->kind == FK_X87) {
		uint8_t modrm = (uint8_t)((in->raw.modrm.mod << 6) | (in->raw.modrm.reg << 3) | in->raw.modrm.rm);
		st->fop = (uint16_t)(((in->opcode & 7) << 8) | modrm);
	}
	if (!build_stub(cpu, st, in, ops))
		return false;
	st->x87_mem = st->kind == FK_X87 && st->mem_size;
	d->aux = (uint16_t)cpu->nstubs++;
	d->fn = h_fpu;
	return true;
}
