/*
 * Exceptions and interrupts: raising a fault from deep inside a handler
 * (longjmp to the run loop), delivery through the real-mode IVT, 32-bit and
 * 64-bit IDT gates with stack switches (TSS, IST), the double-fault rules,
 * triple fault, and IRET in every mode.
 */
#include <stdarg.h>
#include <stdio.h>

#include "dbt/internal.h"

enum { EV_EXCEPTION, EV_INTERRUPT, EV_SOFTWARE };

void dbt_raise(struct dbt_cpu *cpu, int vector, uint32_t error)
{
	cpu->exc_vector = vector;
	cpu->exc_error = error;
	if (cpu->delivering < 0) {
		cpu->exc_rip = cpu->in_block ? cpu->cur->rip : cpu->rip;
		cpu->rip = cpu->exc_rip; /* what a triple fault leaves for the VMM to report */
	}
	if (cpu->in_block)
		cpu->icount += (uint64_t)(cpu->cur - cpu->cur_block->insn);
	longjmp(cpu->jb, 1);
}

void dbt_fatal(struct dbt_cpu *cpu, const char *fmt, ...)
{
	va_list ap;
	struct vcpu_exit *e = cpu->exit;

	memset(e, 0, sizeof(*e));
	e->reason = VCPU_EXIT_ERROR;
	e->error.rip = cpu->in_block ? cpu->cur->rip : cpu->rip;
	va_start(ap, fmt);
	vsnprintf(e->error.message, sizeof(e->error.message), fmt, ap);
	va_end(ap);
	cpu->exit_reason = VCPU_EXIT_ERROR;
	longjmp(cpu->jb, 1);
}

static bool contributory(int v)
{
	return v == EXC_DE || v == EXC_TS || v == EXC_NP || v == EXC_SS || v == EXC_GP;
}

bool dbt_handle_exception(struct dbt_cpu *cpu)
{
	int vec = cpu->exc_vector;
	uint32_t err = cpu->exc_error;

	if (cpu->delivering >= 0) {
		int first = cpu->delivering;
		bool first_exc = cpu->delivering_kind == EV_EXCEPTION;
		cpu->delivering = -1;
		if (first_exc && first == EXC_DF)
			return false; /* triple fault */
		if (first_exc && ((contributory(first) && contributory(vec)) ||
				  (first == EXC_PF && (vec == EXC_PF || contributory(vec))))) {
			vec = EXC_DF;
			err = 0;
		}
	}
	dbt_deliver(cpu, vec, err, cpu->exc_rip, false, false);
	return true;
}

/* ---- helpers ---------------------------------------------------------------------- */

static bool has_error_code(int v)
{
	return v == EXC_DF || v == EXC_TS || v == EXC_NP || v == EXC_SS || v == EXC_GP || v == EXC_PF || v == EXC_AC;
}

static uint64_t tss_read(struct dbt_cpu *cpu, unsigned off, unsigned size, uint32_t ext)
{
	const struct x86_segment *tr = &cpu->s.tr;
	if (tr->unusable || off + size - 1 > tr->limit)
		dbt_raise(cpu, EXC_TS, (tr->selector & 0xfffc) | ext);
	uint64_t v = 0;
	mem_read_buf(cpu, (tr->base + off) & cpu->lin_mask, &v, size, ACC_SYS);
	return v;
}

struct gate {
	uint16_t sel;
	uint64_t off;
	unsigned type, dpl, ist;
	bool present;
};

static struct gate gate_read(struct dbt_cpu *cpu, int vec, bool long_mode, uint32_t idt_err)
{
	unsigned size = long_mode ? 16 : 8;
	uint64_t g[2] = {0, 0};
	struct gate r;

	if ((uint64_t)vec * size + size - 1 > cpu->s.idtr.limit)
		raise_gp(cpu, idt_err);
	mem_read_buf(cpu, (cpu->s.idtr.base + (uint64_t)vec * size) & cpu->lin_mask, g, size, ACC_SYS);
	r.sel = (uint16_t)(g[0] >> 16);
	r.off = (g[0] & 0xffff) | ((g[0] >> 32) & 0xffff0000ull) | (long_mode ? g[1] << 32 : 0);
	r.type = (g[0] >> 40) & 0x1f; /* type and S */
	r.dpl = (g[0] >> 45) & 3;
	r.present = (g[0] >> 47) & 1;
	r.ist = long_mode ? (g[0] >> 32) & 7 : 0;
	return r;
}

static unsigned desc_dpl(struct desc d)
{
	return (d.hi >> 13) & 3;
}
static bool desc_present(struct desc d)
{
	return (d.hi >> 15) & 1;
}
static bool desc_code(struct desc d)
{
	return (d.hi & (3u << 11)) == (3u << 11); /* S=1, code */
}
static bool desc_conforming(struct desc d)
{
	return (d.hi >> 10) & 1;
}
static bool desc_writable_data(struct desc d)
{
	return (d.hi & (3u << 11)) == (1u << 12) && (d.hi & (1u << 9));
}

/* The code segment an interrupt gate names; returns the new CPL. */
static unsigned gate_target(struct dbt_cpu *cpu, const struct gate *g, uint32_t ext, struct desc *cd)
{
	uint32_t serr = (g->sel & 0xfffc) | ext;
	if (!(g->sel & 0xfffc))
		raise_gp(cpu, ext);
	if (!desc_read(cpu, g->sel, cd) || !desc_code(*cd) || desc_dpl(*cd) > cpu->cpl)
		raise_gp(cpu, serr);
	if (mode_long(cpu) && (!((cd->hi >> 21) & 1) || ((cd->hi >> 22) & 1)))
		raise_gp(cpu, serr);
	if (!desc_present(*cd))
		dbt_raise(cpu, EXC_NP, serr);
	return desc_conforming(*cd) ? cpu->cpl : desc_dpl(*cd);
}

/* ---- delivery ----------------------------------------------------------------------- */

static void deliver_real(struct dbt_cpu *cpu, int vec, uint64_t ret_rip)
{
	if ((uint64_t)vec * 4 + 3 > cpu->s.idtr.limit)
		raise_gp(cpu, 0);
	uint32_t ent = (uint32_t)mem_read(cpu, (cpu->s.idtr.base + (uint64_t)vec * 4) & 0xffffffff, 4, ACC_SYS);
	uint64_t sp = cpu->gpr[RSP];
	mem_probe_write(cpu, stack_lin(cpu, sp - 6, 6, true), 6, ACC_STACK);
	push(cpu, cpu->rflags & 0xffff, 2);
	push(cpu, cpu->s.seg[SEG_CS].selector, 2);
	push(cpu, ret_rip & 0xffff, 2);
	cpu_set_rflags(cpu, cpu->rflags & ~(FL_IF | FL_TF | FL_AC | FL_RF));
	seg_load_real(cpu, SEG_CS, (uint16_t)(ent >> 16));
	cpu->rip = ent & 0xffff;
}

static void deliver_long(struct dbt_cpu *cpu, int vec, uint32_t error, uint64_t ret_rip, bool soft, uint32_t ext)
{
	uint32_t idt_err = ((uint32_t)vec << 3) | 2 | ext;
	struct gate g = gate_read(cpu, vec, true, idt_err);
	struct desc cd;

	if (g.type != 0xe && g.type != 0xf)
		raise_gp(cpu, idt_err);
	if (soft && g.dpl < cpu->cpl)
		raise_gp(cpu, idt_err);
	if (!g.present)
		dbt_raise(cpu, EXC_NP, idt_err);
	unsigned new_cpl = gate_target(cpu, &g, ext, &cd);
	uint64_t rsp;
	if (g.ist)
		rsp = tss_read(cpu, 36 + (g.ist - 1) * 8, 8, ext);
	else if (new_cpl < cpu->cpl)
		rsp = tss_read(cpu, 4 + new_cpl * 8, 8, ext);
	else
		rsp = cpu->gpr[RSP];
	rsp &= ~15ull;

	uint64_t frame[6];
	unsigned n = 0;
	if (error != NO_ERROR)
		frame[n++] = error;
	frame[n++] = ret_rip;
	frame[n++] = cpu->s.seg[SEG_CS].selector;
	frame[n++] = cpu->rflags;
	frame[n++] = cpu->gpr[RSP];
	frame[n++] = cpu->s.seg[SEG_SS].selector;
	uint64_t new_rsp = rsp - 8 * n;
	mem_write_buf(cpu, new_rsp, frame, 8 * n, ACC_STACK | (new_cpl < 3 ? ACC_SYS : 0));

	if (new_cpl != cpu->cpl) {
		struct x86_segment *ss = &cpu->s.seg[SEG_SS];
		*ss = (struct x86_segment){.selector = (uint16_t)new_cpl,
					   .unusable = 1,
					   .dpl = new_cpl & 3,
					   .type = 3,
					   .s = 1,
					   .db = 1,
					   .g = 1,
					   .limit = 0xffffffff};
	}
	uint64_t f = cpu->rflags & ~(FL_TF | FL_NT | FL_RF | FL_VM);
	if (g.type == 0xe)
		f &= ~FL_IF;
	cpu->rflags = f;
	cpu->gpr[RSP] = new_rsp;
	load_cs(cpu, g.sel, cd, new_cpl);
	cpu->rip = g.off;
}

static void deliver_prot(struct dbt_cpu *cpu, int vec, uint32_t error, uint64_t ret_rip, bool soft, uint32_t ext)
{
	uint32_t idt_err = ((uint32_t)vec << 3) | 2 | ext;
	struct gate g = gate_read(cpu, vec, false, idt_err);
	struct desc cd;

	if (g.type == 0x5)
		dbt_fatal(cpu, "interrupt %d through a task gate: hardware task switching is not implemented", vec);
	if (g.type != 0x6 && g.type != 0x7 && g.type != 0xe && g.type != 0xf)
		raise_gp(cpu, idt_err);
	if (soft && g.dpl < cpu->cpl)
		raise_gp(cpu, idt_err);
	if (!g.present)
		dbt_raise(cpu, EXC_NP, idt_err);
	if (cpu->rflags & FL_VM)
		dbt_fatal(cpu, "virtual-8086 mode is not implemented");
	unsigned new_cpl = gate_target(cpu, &g, ext, &cd);
	unsigned gsz = (g.type & 8) ? 4 : 2;
	uint64_t off = gsz == 4 ? g.off & 0xffffffff : g.off & 0xffff;
	struct x86_segment nss = cpu->s.seg[SEG_SS];
	uint64_t esp = cpu->gpr[RSP];
	bool switch_stack = new_cpl < cpu->cpl;

	if (switch_stack) {
		bool tss32 = (cpu->s.tr.type & 8) != 0;
		uint16_t ss_sel;
		if (tss32) {
			esp = tss_read(cpu, 4 + 8 * new_cpl, 4, ext);
			ss_sel = (uint16_t)tss_read(cpu, 8 + 8 * new_cpl, 2, ext);
		} else {
			esp = tss_read(cpu, 2 + 4 * new_cpl, 2, ext);
			ss_sel = (uint16_t)tss_read(cpu, 4 + 4 * new_cpl, 2, ext);
		}
		struct desc sd;
		uint32_t serr = (ss_sel & 0xfffc) | ext;
		if (!(ss_sel & 0xfffc))
			dbt_raise(cpu, EXC_TS, ext);
		if ((ss_sel & 3) != new_cpl || !desc_read(cpu, ss_sel, &sd) || desc_dpl(sd) != new_cpl ||
		    !desc_writable_data(sd))
			dbt_raise(cpu, EXC_TS, serr);
		if (!desc_present(sd))
			dbt_raise(cpu, EXC_SS, serr);
		seg_from_desc(&nss, ss_sel, sd);
	}

	uint32_t frame[7];
	unsigned n = 0;
	if (error != NO_ERROR)
		frame[n++] = error;
	frame[n++] = (uint32_t)ret_rip;
	frame[n++] = cpu->s.seg[SEG_CS].selector;
	frame[n++] = (uint32_t)cpu->rflags;
	if (switch_stack) {
		frame[n++] = (uint32_t)cpu->gpr[RSP];
		frame[n++] = cpu->s.seg[SEG_SS].selector;
	}
	uint64_t smask = nss.db ? 0xffffffffull : 0xffffull;
	uint64_t new_esp = (esp - gsz * n) & smask;
	uint64_t lin = (nss.base + new_esp) & 0xffffffff;
	if (gsz == 4) {
		mem_write_buf(cpu, lin, frame, 4 * n, ACC_STACK | (new_cpl < 3 ? ACC_SYS : 0));
	} else {
		uint16_t f16[7];
		for (unsigned i = 0; i < n; i++)
			f16[i] = (uint16_t)frame[i];
		mem_write_buf(cpu, lin, f16, 2 * n, ACC_STACK | (new_cpl < 3 ? ACC_SYS : 0));
	}

	if (switch_stack) {
		nss.selector = (nss.selector & 0xfffc) | (uint16_t)new_cpl;
		cpu->s.seg[SEG_SS] = nss;
	}
	cpu->gpr[RSP] = (cpu->gpr[RSP] & ~smask) | new_esp;
	uint64_t f = cpu->rflags & ~(FL_TF | FL_NT | FL_RF | FL_VM);
	if (!(g.type & 1))
		f &= ~FL_IF;
	cpu->rflags = f;
	load_cs(cpu, g.sel, cd, new_cpl);
	cpu->rip = off;
}

void dbt_deliver(struct dbt_cpu *cpu, int vector, uint32_t error, uint64_t ret_rip, bool soft, bool ext)
{
	uint32_t extbit = soft ? 0 : 1;

	cpu->delivering = vector;
	cpu->delivering_kind = soft ? EV_SOFTWARE : ext ? EV_INTERRUPT : EV_EXCEPTION;
	cpu->exc_rip = soft ? cpu->cur->rip : ret_rip;
	if (soft || ext || !has_error_code(vector) || !mode_prot(cpu))
		error = NO_ERROR;
	else if (error == NO_ERROR)
		error = 0;
	if (!mode_prot(cpu))
		deliver_real(cpu, vector, ret_rip);
	else if (mode_long(cpu))
		deliver_long(cpu, vector, error, ret_rip, soft, extbit);
	else
		deliver_prot(cpu, vector, error, ret_rip, soft, extbit);
	cpu->delivering = -1;
	cpu->irq_shadow = false;
	cpu->s.halted = false;
	cpu->delivered = true;
}

/* ---- IRET -------------------------------------------------------------------------------- */

/* DS, ES, FS and GS that the new, less privileged CPL may not use become
 * null on a return to an outer level. */
void null_outer_segments(struct dbt_cpu *cpu, unsigned cpl)
{
	static const int segs[] = {SEG_ES, SEG_DS, SEG_FS, SEG_GS};
	for (int i = 0; i < 4; i++) {
		struct x86_segment *s = &cpu->s.seg[segs[i]];
		bool conforming_code = s->s && (s->type & 8) && (s->type & 4);
		if (s->unusable || conforming_code || s->dpl >= cpl)
			continue;
		uint64_t base = s->base;
		*s = (struct x86_segment){.unusable = 1};
		if (mode_long(cpu) && segs[i] >= SEG_FS)
			s->base = base;
	}
}

/* Checks the CS a return (IRET, RETF) goes to; returns its descriptor. */
struct desc return_cs(struct dbt_cpu *cpu, uint16_t sel)
{
	struct desc cd;
	uint32_t serr = sel & 0xfffc;
	unsigned rpl = sel & 3;
	if (!(sel & 0xfffc))
		raise_gp(cpu, 0);
	if (!desc_read(cpu, sel, &cd) || !desc_code(cd) || rpl < cpu->cpl)
		raise_gp(cpu, serr);
	if (mode_long(cpu) && ((cd.hi >> 21) & 1) && ((cd.hi >> 22) & 1))
		raise_gp(cpu, serr);
	if (desc_conforming(cd) ? desc_dpl(cd) > rpl : desc_dpl(cd) != rpl)
		raise_gp(cpu, serr);
	if (!desc_present(cd))
		dbt_raise(cpu, EXC_NP, serr);
	return cd;
}

/* Checks the SS a return to CPL cpl loads; a null SS is allowed when going
 * to 64-bit code below ring 3. */
void return_ss(struct dbt_cpu *cpu, uint16_t sel, unsigned cpl, bool to64, struct x86_segment *out)
{
	struct desc sd;
	uint32_t serr = sel & 0xfffc;
	if (!(sel & 0xfffc)) {
		if (!to64 || cpl == 3 || (sel & 3) != cpl)
			raise_gp(cpu, 0);
		*out = (struct x86_segment){.selector = sel,
					    .unusable = 1,
					    .dpl = cpl & 3,
					    .type = 3,
					    .s = 1,
					    .db = 1,
					    .g = 1,
					    .limit = 0xffffffff};
		return;
	}
	if ((sel & 3) != cpl || !desc_read(cpu, sel, &sd) || desc_dpl(sd) != cpl || !desc_writable_data(sd))
		raise_gp(cpu, serr);
	if (!desc_present(sd))
		dbt_raise(cpu, EXC_SS, serr);
	seg_from_desc(out, sel, sd);
	desc_set_accessed(cpu, sel, &sd);
}

void return_to(struct dbt_cpu *cpu, uint16_t cs_sel, struct desc cd, uint64_t rip, unsigned new_cpl)
{
	bool to64 = mode_long(cpu) && ((cd.hi >> 21) & 1);
	if (to64) {
		if ((uint64_t)((int64_t)(rip << 16) >> 16) != rip)
			raise_gp(cpu, 0);
	} else {
		uint32_t limit = (cd.lo & 0xffff) | (cd.hi & 0xf0000);
		if ((cd.hi >> 23) & 1)
			limit = (limit << 12) | 0xfff;
		if (rip > limit)
			raise_gp(cpu, 0);
	}
	load_cs(cpu, cs_sel, cd, new_cpl);
	cpu->rip = rip;
}

static void iret_real(struct dbt_cpu *cpu, unsigned sz)
{
	uint64_t ip = stack_peek(cpu, 0, sz);
	uint16_t cs = (uint16_t)stack_peek(cpu, sz, 2);
	uint64_t fl = stack_peek(cpu, 2 * sz, sz);
	if (ip > cpu->s.seg[SEG_CS].limit && sz == 2)
		raise_gp(cpu, 0);
	set_sp(cpu, cpu->gpr[RSP] + 3 * sz);
	uint64_t m = FL_ARITH | FL_TF | FL_DF | FL_NT | FL_IF | FL_IOPL | FL_AC | FL_ID;
	if (sz == 2)
		m &= 0xffff;
	cpu_set_rflags(cpu, (cpu->rflags & ~m & ~FL_RF) | (fl & m));
	seg_load_real(cpu, SEG_CS, cs);
	cpu->rip = ip;
}

HANDLER(h_iret)
{
	unsigned sz = d->osz;

	if (cpu->nmi_blocked) {
		cpu->nmi_blocked = false;
		cpu->nmi_check = true; /* one may have arrived meanwhile */
	}
	if (!mode_prot(cpu)) {
		iret_real(cpu, sz);
		return;
	}
	if (cpu->rflags & FL_NT) {
		if (mode_long(cpu))
			raise_gp(cpu, 0);
		dbt_fatal(cpu, "IRET with NT set: hardware task switching is not implemented");
	}
	bool long64 = cpu->mode == MODE_LONG64;
	uint64_t rip = stack_peek(cpu, 0, sz);
	uint16_t cs = (uint16_t)stack_peek(cpu, sz, 2);
	uint64_t fl = stack_peek(cpu, 2 * sz, sz);
	if (!mode_long(cpu) && (fl & FL_VM) && cpu->cpl == 0)
		dbt_fatal(cpu, "IRET to virtual-8086 mode is not implemented");
	struct desc cd = return_cs(cpu, cs);
	unsigned new_cpl = cs & 3;
	bool to64 = mode_long(cpu) && ((cd.hi >> 21) & 1);
	bool pop_stack = long64 || new_cpl > cpu->cpl;
	uint64_t new_sp = 0;
	struct x86_segment nss;
	if (pop_stack) {
		new_sp = stack_peek(cpu, 3 * sz, sz);
		uint16_t ss = (uint16_t)stack_peek(cpu, 4 * sz, 2);
		return_ss(cpu, ss, new_cpl, to64, &nss);
	}

	/* Everything checked: commit. */
	uint64_t m = popf_mask(cpu, sz) | FL_RF;
	if (cpu->cpl == 0)
		m |= FL_VIF | FL_VIP;
	uint64_t new_flags = (cpu->rflags & ~m) | (fl & m);
	unsigned old_cpl = cpu->cpl;
	uint64_t old_sp = cpu->gpr[RSP];
	return_to(cpu, cs, cd, rip & (sz == 2 ? 0xffff : sz == 4 ? 0xffffffff : ~0ull), new_cpl);
	cpu_set_rflags(cpu, new_flags);
	if (pop_stack) {
		cpu->s.seg[SEG_SS] = nss;
		if (sz == 8 || to64)
			cpu->gpr[RSP] = new_sp;
		else
			cpu->gpr[RSP] = new_sp & (nss.db ? 0xffffffffull : 0xffffull);
		cpu_update_mode(cpu);
	} else {
		cpu->gpr[RSP] = old_sp;
		set_sp(cpu, old_sp + 3 * sz);
	}
	if (new_cpl > old_cpl) {
		null_outer_segments(cpu, new_cpl);
		cpu_update_mode(cpu);
	}
	cpu->stop = true;
}
