/*
 * Segmentation: descriptors, segment register loads with their checks,
 * far JMP/CALL/RET, and the descriptor-table instructions (LGDT, LIDT,
 * LLDT, LTR and their stores, LAR, LSL, VERR, VERW, ARPL).
 */
#include "dbt/internal.h"

bool desc_read(struct dbt_cpu *cpu, uint16_t sel, struct desc *d)
{
	uint64_t base, limit, v;
	if (sel & 4) {
		if (cpu->s.ldtr.unusable || !cpu->s.ldtr.present)
			return false;
		base = cpu->s.ldtr.base;
		limit = cpu->s.ldtr.limit;
	} else {
		base = cpu->s.gdtr.base;
		limit = cpu->s.gdtr.limit;
	}
	if ((uint64_t)(sel & ~7u) + 7 > limit)
		return false;
	mem_read_buf(cpu, (base + (sel & ~7u)) & cpu->lin_mask, &v, 8, ACC_SYS);
	d->lo = (uint32_t)v;
	d->hi = (uint32_t)(v >> 32);
	return true;
}

/* The upper half of a 16-byte system descriptor (long mode). */
static bool desc_read_high(struct dbt_cpu *cpu, uint16_t sel, uint32_t *base_hi)
{
	uint64_t base = cpu->s.gdtr.base, v;
	if ((uint64_t)(sel & ~7u) + 15 > cpu->s.gdtr.limit)
		return false;
	mem_read_buf(cpu, (base + (sel & ~7u) + 8) & cpu->lin_mask, &v, 8, ACC_SYS);
	*base_hi = (uint32_t)v;
	return true;
}

static uint64_t desc_addr(struct dbt_cpu *cpu, uint16_t sel)
{
	uint64_t base = (sel & 4) ? cpu->s.ldtr.base : cpu->s.gdtr.base;
	return (base + (sel & ~7u)) & cpu->lin_mask;
}

void desc_set_accessed(struct dbt_cpu *cpu, uint16_t sel, struct desc *d)
{
	if (!(d->hi & (1u << 12)) || (d->hi & (1u << 8)))
		return;
	d->hi |= 1u << 8;
	mem_write(cpu, desc_addr(cpu, sel) + 4, 4, d->hi, ACC_SYS);
}

void seg_from_desc(struct x86_segment *s, uint16_t sel, struct desc d)
{
	uint32_t limit = (d.lo & 0xffff) | (d.hi & 0xf0000);
	s->selector = sel;
	s->base = (d.lo >> 16) | ((uint64_t)(d.hi & 0xff) << 16) | (d.hi & 0xff000000u);
	s->g = (d.hi >> 23) & 1;
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->type = (d.hi >> 8) & 0xf;
	s->s = (d.hi >> 12) & 1;
	s->dpl = (d.hi >> 13) & 3;
	s->present = (d.hi >> 15) & 1;
	s->avl = (d.hi >> 20) & 1;
	s->l = (d.hi >> 21) & 1;
	s->db = (d.hi >> 22) & 1;
	s->unusable = 0;
}

void seg_load_real(struct dbt_cpu *cpu, unsigned seg, uint16_t sel)
{
	struct x86_segment *s = &cpu->s.seg[seg];
	s->selector = sel;
	s->base = (uint64_t)sel << 4;
	s->present = 1;
	s->s = 1;
	s->unusable = 0;
	if (seg == SEG_CS)
		s->type |= 0x8 | 0x2;
	else
		s->type = (s->type & ~0x8u) | 0x2;
	cpu_update_mode(cpu);
}

void seg_load(struct dbt_cpu *cpu, unsigned seg, uint16_t sel)
{
	struct x86_segment *s = &cpu->s.seg[seg];
	struct desc d;
	uint32_t serr = sel & 0xfffc;
	unsigned rpl = sel & 3, dpl;

	if (!(sel & 0xfffc)) {
		if (seg == SEG_SS && !(cpu->mode == MODE_LONG64 && cpu->cpl < 3 && rpl == cpu->cpl))
			raise_gp(cpu, 0);
		*s = (struct x86_segment){.selector = sel, .unusable = 1};
		if (seg == SEG_SS)
			s->dpl = cpu->cpl & 3, s->db = 1, s->type = 3, s->s = 1;
		cpu_update_mode(cpu);
		return;
	}
	if (!desc_read(cpu, sel, &d))
		raise_gp(cpu, serr);
	dpl = (d.hi >> 13) & 3;
	bool sbit = (d.hi >> 12) & 1, code = (d.hi >> 11) & 1, conforming = code && ((d.hi >> 10) & 1);
	bool rw = (d.hi >> 9) & 1;
	if (seg == SEG_SS) {
		if (rpl != cpu->cpl || !sbit || code || !rw || dpl != cpu->cpl)
			raise_gp(cpu, serr);
		if (!((d.hi >> 15) & 1))
			dbt_raise(cpu, EXC_SS, serr);
	} else {
		if (!sbit || (code && !rw))
			raise_gp(cpu, serr);
		if (!conforming && (rpl > dpl || cpu->cpl > dpl))
			raise_gp(cpu, serr);
		if (!((d.hi >> 15) & 1))
			dbt_raise(cpu, EXC_NP, serr);
	}
	desc_set_accessed(cpu, sel, &d);
	seg_from_desc(s, sel, d);
	cpu_update_mode(cpu);
}

void load_cs(struct dbt_cpu *cpu, uint16_t sel, struct desc d, unsigned cpl)
{
	desc_set_accessed(cpu, sel, &d);
	seg_from_desc(&cpu->s.seg[SEG_CS], (uint16_t)((sel & 0xfffc) | cpl), d);
	cpu->cpl = (uint8_t)cpl;
	cpu_update_mode(cpu);
}

/* Checks a far JMP/CALL target segment; returns its descriptor. */
static struct desc far_target(struct dbt_cpu *cpu, uint16_t sel)
{
	struct desc d;
	uint32_t serr = sel & 0xfffc;
	if (!(sel & 0xfffc))
		raise_gp(cpu, 0);
	if (!desc_read(cpu, sel, &d))
		raise_gp(cpu, serr);
	if (!((d.hi >> 12) & 1))
		dbt_fatal(cpu,
			  "far transfer through system descriptor 0x%x (type %u): call gates and task switches "
			  "are not implemented",
			  sel, (d.hi >> 8) & 0xf);
	bool code = (d.hi >> 11) & 1, conforming = (d.hi >> 10) & 1;
	unsigned dpl = (d.hi >> 13) & 3;
	if (!code)
		raise_gp(cpu, serr);
	if (conforming ? dpl > cpu->cpl : ((sel & 3) > cpu->cpl || dpl != cpu->cpl))
		raise_gp(cpu, serr);
	if (mode_long(cpu) && ((d.hi >> 21) & 1) && ((d.hi >> 22) & 1))
		raise_gp(cpu, serr);
	if (!((d.hi >> 15) & 1))
		dbt_raise(cpu, EXC_NP, serr);
	return d;
}

static void check_offset(struct dbt_cpu *cpu, struct desc d, uint64_t off)
{
	if (mode_long(cpu) && ((d.hi >> 21) & 1)) {
		if ((uint64_t)((int64_t)(off << 16) >> 16) != off)
			raise_gp(cpu, 0);
		return;
	}
	uint32_t limit = (d.lo & 0xffff) | (d.hi & 0xf0000);
	if ((d.hi >> 23) & 1)
		limit = (limit << 12) | 0xfff;
	if (off > limit)
		raise_gp(cpu, 0);
}

void far_jump(struct dbt_cpu *cpu, uint16_t sel, uint64_t off, uint64_t ret)
{
	(void)ret;
	if (!mode_prot(cpu)) {
		if (off > cpu->s.seg[SEG_CS].limit)
			raise_gp(cpu, 0);
		seg_load_real(cpu, SEG_CS, sel);
		cpu->rip = off;
		return;
	}
	struct desc d = far_target(cpu, sel);
	check_offset(cpu, d, off);
	load_cs(cpu, sel, d, cpu->cpl);
	cpu->rip = off;
}

void far_call(struct dbt_cpu *cpu, uint16_t sel, uint64_t off, unsigned osz, uint64_t ret)
{
	uint16_t old_cs = cpu->s.seg[SEG_CS].selector;
	uint64_t sp = cpu->gpr[RSP];

	if (!mode_prot(cpu)) {
		if (off > cpu->s.seg[SEG_CS].limit)
			raise_gp(cpu, 0);
		mem_probe_write(cpu, stack_lin(cpu, sp - 2 * osz, 2 * osz, true), 2 * osz, ACC_STACK);
		push(cpu, old_cs, osz);
		push(cpu, ret, osz);
		seg_load_real(cpu, SEG_CS, sel);
		cpu->rip = off;
		return;
	}
	struct desc d = far_target(cpu, sel);
	check_offset(cpu, d, off);
	mem_probe_write(cpu, stack_lin(cpu, sp - 2 * osz, 2 * osz, true), 2 * osz, ACC_STACK);
	push(cpu, old_cs, osz);
	push(cpu, ret & size_mask(osz), osz);
	load_cs(cpu, sel, d, cpu->cpl);
	cpu->rip = off;
}

void far_ret(struct dbt_cpu *cpu, unsigned osz, unsigned extra)
{
	uint64_t ip = stack_peek(cpu, 0, osz);
	uint16_t cs = (uint16_t)stack_peek(cpu, osz, 2);

	if (!mode_prot(cpu)) {
		if (ip > cpu->s.seg[SEG_CS].limit)
			raise_gp(cpu, 0);
		set_sp(cpu, cpu->gpr[RSP] + 2 * osz + extra);
		seg_load_real(cpu, SEG_CS, cs);
		cpu->rip = ip;
		return;
	}
	struct desc cd = return_cs(cpu, cs);
	unsigned new_cpl = cs & 3;
	bool outer = new_cpl > cpu->cpl;
	bool to64 = mode_long(cpu) && ((cd.hi >> 21) & 1);
	struct x86_segment nss;
	uint64_t new_sp = 0;
	if (outer) {
		new_sp = stack_peek(cpu, 2 * osz + extra, osz);
		return_ss(cpu, (uint16_t)stack_peek(cpu, 3 * osz + extra, 2), new_cpl, to64, &nss);
	}
	uint64_t sp = cpu->gpr[RSP];
	return_to(cpu, cs, cd, ip, new_cpl);
	if (outer) {
		cpu->s.seg[SEG_SS] = nss;
		cpu_update_mode(cpu);
		cpu->gpr[RSP] = sp;
		set_sp(cpu, new_sp + extra);
		null_outer_segments(cpu, new_cpl);
		cpu_update_mode(cpu);
	} else {
		set_sp(cpu, sp + 2 * osz + extra);
	}
}

/* ---- instructions -------------------------------------------------------------------- */

static uint16_t sel_operand(struct dbt_cpu *cpu, const struct dinsn *d)
{
	if (d->flags & DI_MEM)
		return (uint16_t)d_read(cpu, d, 2);
	return (uint16_t)reg_get(cpu, d->r0, 2);
}

HANDLER(h_mov_to_seg)
{
	uint16_t sel = (d->flags & DI_MEMSRC) ? (uint16_t)d_read(cpu, d, 2) : (uint16_t)reg_get(cpu, d->r1, 2);
	if (mode_prot(cpu))
		seg_load(cpu, d->cc, sel);
	else
		seg_load_real(cpu, d->cc, sel);
	if (d->cc == SEG_SS)
		cpu->irq_shadow = true;
}

HANDLER(h_mov_from_seg)
{
	uint16_t sel = cpu->s.seg[d->cc].selector;
	if (d->flags & DI_MEM)
		d_write(cpu, d, 2, sel);
	else
		reg_set(cpu, d->r0, d->osz, sel);
}

/* LDS/LES/LFS/LGS/LSS r, m16:16/32/64 */
HANDLER(h_lxs)
{
	uint64_t ea = d_ea(cpu, d);
	uint64_t off = mem_read(cpu, seg_lin(cpu, d->seg, ea, d->osz, false), d->osz, seg_acc(d->seg));
	uint16_t sel =
	    (uint16_t)mem_read(cpu, seg_lin(cpu, d->seg, (ea + d->osz) & amask(d->asz), 2, false), 2, seg_acc(d->seg));
	if (mode_prot(cpu))
		seg_load(cpu, d->cc, sel);
	else
		seg_load_real(cpu, d->cc, sel);
	reg_set(cpu, d->r0, d->osz, off);
	if (d->cc == SEG_SS)
		cpu->irq_shadow = true;
}

static void need_cpl0(struct dbt_cpu *cpu)
{
	if (cpu->cpl != 0)
		raise_gp(cpu, 0);
}

/* LGDT/LIDT (cc 0/1) m16&32 or m16&64 */
HANDLER(h_lgdt)
{
	need_cpl0(cpu);
	uint64_t ea = d_ea(cpu, d);
	unsigned bsz = cpu->mode == MODE_LONG64 ? 8 : 4;
	uint16_t limit = (uint16_t)mem_read(cpu, seg_lin(cpu, d->seg, ea, 2, false), 2, seg_acc(d->seg));
	uint64_t base = mem_read(cpu, seg_lin(cpu, d->seg, (ea + 2) & amask(d->asz), bsz, false), bsz, seg_acc(d->seg));
	if (bsz == 8 && (uint64_t)((int64_t)(base << 16) >> 16) != base)
		raise_gp(cpu, 0);
	if (d->osz == 2 && bsz == 4)
		base &= 0xffffff;
	struct x86_dtable *t = d->cc ? &cpu->s.idtr : &cpu->s.gdtr;
	t->base = base;
	t->limit = limit;
}

HANDLER(h_sgdt)
{
	const struct x86_dtable *t = d->cc ? &cpu->s.idtr : &cpu->s.gdtr;
	unsigned bsz = cpu->mode == MODE_LONG64 ? 8 : 4;
	uint8_t buf[10];
	memcpy(buf, &t->limit, 2);
	memcpy(buf + 2, &t->base, bsz);
	uint64_t ea = d_ea(cpu, d);
	mem_write_buf(cpu, seg_lin(cpu, d->seg, ea, 2 + bsz, true), buf, 2 + bsz, seg_acc(d->seg));
}

HANDLER(h_lldt)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	need_cpl0(cpu);
	uint16_t sel = sel_operand(cpu, d);
	struct desc dd;
	uint32_t base_hi = 0;
	if (!(sel & 0xfffc)) {
		cpu->s.ldtr = (struct x86_segment){.selector = sel, .unusable = 1};
		return;
	}
	if ((sel & 4) || !desc_read(cpu, sel, &dd) || ((dd.hi >> 8) & 0x1f) != 0x2)
		raise_gp(cpu, sel & 0xfffc);
	if (!((dd.hi >> 15) & 1))
		dbt_raise(cpu, EXC_NP, sel & 0xfffc);
	if (mode_long(cpu) && !desc_read_high(cpu, sel, &base_hi))
		raise_gp(cpu, sel & 0xfffc);
	seg_from_desc(&cpu->s.ldtr, sel, dd);
	cpu->s.ldtr.base |= (uint64_t)base_hi << 32;
}

HANDLER(h_ltr)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	need_cpl0(cpu);
	uint16_t sel = sel_operand(cpu, d);
	struct desc dd;
	uint32_t base_hi = 0;
	if (!(sel & 0xfffc))
		raise_gp(cpu, 0);
	if ((sel & 4) || !desc_read(cpu, sel, &dd))
		raise_gp(cpu, sel & 0xfffc);
	unsigned type = (dd.hi >> 8) & 0x1f;
	if (type != 0x9 && (type != 0x1 || mode_long(cpu)))
		raise_gp(cpu, sel & 0xfffc);
	if (!((dd.hi >> 15) & 1))
		dbt_raise(cpu, EXC_NP, sel & 0xfffc);
	if (mode_long(cpu) && !desc_read_high(cpu, sel, &base_hi))
		raise_gp(cpu, sel & 0xfffc);
	dd.hi |= 1u << 9; /* busy */
	mem_write(cpu, desc_addr(cpu, sel) + 4, 4, dd.hi, ACC_SYS);
	seg_from_desc(&cpu->s.tr, sel, dd);
	cpu->s.tr.base |= (uint64_t)base_hi << 32;
}

static void store_selector(struct dbt_cpu *cpu, const struct dinsn *d, uint16_t sel)
{
	if (d->flags & DI_MEM)
		d_write(cpu, d, 2, sel);
	else
		reg_set(cpu, d->r0, d->osz, sel);
}

HANDLER(h_sldt)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	store_selector(cpu, d, cpu->s.ldtr.selector);
}

HANDLER(h_str)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	store_selector(cpu, d, cpu->s.tr.selector);
}

/* Is the descriptor visible at the current privilege for LAR/LSL/VERR/VERW? */
static bool desc_visible(struct dbt_cpu *cpu, uint16_t sel, struct desc dd)
{
	unsigned dpl = (dd.hi >> 13) & 3;
	bool conforming_code = ((dd.hi >> 12) & 1) && ((dd.hi >> 10) & 3) == 3;
	return conforming_code || (dpl >= cpu->cpl && dpl >= (sel & 3u));
}

/* LAR/LSL (cc 0/1) */
HANDLER(h_lar)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	uint16_t sel = (d->flags & DI_MEMSRC) ? (uint16_t)d_read(cpu, d, 2) : (uint16_t)reg_get(cpu, d->r1, 2);
	struct desc dd;
	bool ok = (sel & 0xfffc) && desc_read(cpu, sel, &dd);
	if (ok && !((dd.hi >> 12) & 1)) {
		unsigned type = (dd.hi >> 8) & 0xf;
		static const uint16_t lar_legacy = 0x1a3e, lar_long = 0x1a04; /* type bitmaps */
		static const uint16_t lsl_legacy = 0x0a0e, lsl_long = 0x0a04;
		uint16_t allowed =
		    d->cc ? (mode_long(cpu) ? lsl_long : lsl_legacy) : (mode_long(cpu) ? lar_long : lar_legacy);
		ok = (allowed >> type) & 1;
	}
	ok = ok && desc_visible(cpu, sel, dd);
	if (!ok) {
		cpu->rflags &= ~FL_ZF;
		return;
	}
	uint64_t v;
	if (d->cc) {
		uint32_t limit = (dd.lo & 0xffff) | (dd.hi & 0xf0000);
		v = ((dd.hi >> 23) & 1) ? (limit << 12) | 0xfff : limit;
	} else {
		v = dd.hi & 0x00f0ff00;
	}
	reg_set(cpu, d->r0, d->osz, v);
	cpu->rflags |= FL_ZF;
}

/* VERR/VERW (cc 0/1) */
HANDLER(h_verr)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	uint16_t sel = sel_operand(cpu, d);
	struct desc dd;
	bool ok = (sel & 0xfffc) && desc_read(cpu, sel, &dd) && ((dd.hi >> 12) & 1) && desc_visible(cpu, sel, dd);
	if (ok) {
		bool code = (dd.hi >> 11) & 1, rw = (dd.hi >> 9) & 1;
		ok = d->cc ? (!code && rw) : (!code || rw);
	}
	if (ok)
		cpu->rflags |= FL_ZF;
	else
		cpu->rflags &= ~FL_ZF;
}

HANDLER(h_arpl)
{
	if (!mode_prot(cpu))
		raise_ud(cpu);
	struct rmw m;
	uint64_t dst = rmw_begin(cpu, d, 2, &m);
	uint64_t src = reg_get(cpu, d->r1, 2);
	if ((dst & 3) < (src & 3)) {
		rmw_end(cpu, d, 2, &m, (dst & ~3ull) | (src & 3));
		cpu->rflags |= FL_ZF;
	} else {
		cpu->rflags &= ~FL_ZF;
	}
}
