/*
 * String instructions with REP/REPE/REPNE. A REP instruction runs at most
 * STRING_BUDGET elements per execution and then ends its block with RIP
 * still on itself, so interrupts and kicks are seen during long copies.
 * Forward REP MOVS/STOS within RAM copy whole page runs on the host.
 */
#include "dbt/hostop.h"
#include "dbt/internal.h"

#define STRING_BUDGET 65536

static inline bool is_rep(const struct dinsn *d)
{
	return d->flags & (DI_REP | DI_REPNE);
}

static inline int64_t str_step(const struct dbt_cpu *cpu, unsigned sz)
{
	return (cpu->rflags & FL_DF) ? -(int64_t)sz : (int64_t)sz;
}

static inline void str_advance(struct dbt_cpu *cpu, int reg, unsigned asz, int64_t delta)
{
	reg_set_idx(cpu, reg, asz, reg_get(cpu, reg, asz) + (uint64_t)delta);
}

/* After a REP run: if elements remain, come back to this instruction. */
static inline void rep_yield(struct dbt_cpu *cpu, const struct dinsn *d, uint64_t count)
{
	if (count)
		end_block(cpu, d->rip);
}

/* Elements of size sz that fit from lin to the end of its page, and before
 * the address-size wrap of off. */
static uint64_t run_len(uint64_t lin, uint64_t off, uint64_t am, unsigned sz)
{
	uint64_t page = (PAGE_SIZE - (lin & 0xfff)) / sz;
	uint64_t wrap = (am - off) / sz + 1;
	return page < wrap ? page : wrap;
}

HANDLER(h_movs)
{
	unsigned sz = d->osz, asz = d->asz;
	uint64_t am = amask(asz);
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = STRING_BUDGET;

	while (count && budget) {
		uint64_t si = reg_get(cpu, RSI, asz), di = reg_get(cpu, RDI, asz);
		if (is_rep(d) && step > 0) {
			uint64_t ls = seg_lin(cpu, d->seg, si, sz, false), ld = seg_lin(cpu, SEG_ES, di, sz, true);
			uint64_t n = run_len(ls, si, am, sz), nd = run_len(ld, di, am, sz);
			if (nd < n)
				n = nd;
			if (n > count)
				n = count;
			if (n > budget)
				n = budget;
			if (n > 1) {
				seg_lin(cpu, d->seg, si, (unsigned)(n * sz), false);
				seg_lin(cpu, SEG_ES, di, (unsigned)(n * sz), true);
				uint8_t *src = mem_translate(cpu, ls, (unsigned)(n * sz), ACC_R | seg_acc(d->seg));
				uint8_t *dst = src ? mem_translate(cpu, ld, (unsigned)(n * sz), ACC_W) : NULL;
				if (src && dst) {
					if (dst > src && dst < src + n * sz) {
						for (uint64_t i = 0; i < n; i++)
							st_host(dst + i * sz, sz, ld_host(src + i * sz, sz));
					} else {
						memmove(dst, src, n * sz);
					}
					str_advance(cpu, RSI, asz, (int64_t)(n * sz));
					str_advance(cpu, RDI, asz, (int64_t)(n * sz));
					count -= n;
					budget -= n;
					reg_set_idx(cpu, RCX, asz, count);
					continue;
				}
			}
		}
		uint64_t v = mem_read(cpu, seg_lin(cpu, d->seg, si, sz, false), sz, seg_acc(d->seg));
		mem_write(cpu, seg_lin(cpu, SEG_ES, di, sz, true), sz, v, 0);
		str_advance(cpu, RSI, asz, step);
		str_advance(cpu, RDI, asz, step);
		count--;
		budget--;
		if (is_rep(d))
			reg_set_idx(cpu, RCX, asz, count);
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

HANDLER(h_stos)
{
	unsigned sz = d->osz, asz = d->asz;
	uint64_t am = amask(asz), v = reg_get(cpu, RAX, sz);
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = STRING_BUDGET;

	while (count && budget) {
		uint64_t di = reg_get(cpu, RDI, asz);
		if (is_rep(d) && step > 0) {
			uint64_t ld = seg_lin(cpu, SEG_ES, di, sz, true);
			uint64_t n = run_len(ld, di, am, sz);
			if (n > count)
				n = count;
			if (n > budget)
				n = budget;
			if (n > 1) {
				seg_lin(cpu, SEG_ES, di, (unsigned)(n * sz), true);
				uint8_t *dst = mem_translate(cpu, ld, (unsigned)(n * sz), ACC_W);
				if (dst) {
					if (sz == 1)
						memset(dst, (int)v, n);
					else
						for (uint64_t i = 0; i < n; i++)
							st_host(dst + i * sz, sz, v);
					str_advance(cpu, RDI, asz, (int64_t)(n * sz));
					count -= n;
					budget -= n;
					reg_set_idx(cpu, RCX, asz, count);
					continue;
				}
			}
		}
		mem_write(cpu, seg_lin(cpu, SEG_ES, di, sz, true), sz, v, 0);
		str_advance(cpu, RDI, asz, step);
		count--;
		budget--;
		if (is_rep(d))
			reg_set_idx(cpu, RCX, asz, count);
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

HANDLER(h_lods)
{
	unsigned sz = d->osz, asz = d->asz;
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = STRING_BUDGET;

	while (count && budget) {
		uint64_t si = reg_get(cpu, RSI, asz);
		uint64_t v = mem_read(cpu, seg_lin(cpu, d->seg, si, sz, false), sz, seg_acc(d->seg));
		reg_set_idx(cpu, RAX, sz, v);
		str_advance(cpu, RSI, asz, step);
		count--;
		budget--;
		if (is_rep(d))
			reg_set_idx(cpu, RCX, asz, count);
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

static uint64_t cmp_flags(uint64_t a, uint64_t b, unsigned sz, uint64_t f)
{
	switch (sz) {
	case 1: {
		uint8_t x = (uint8_t)a, y = (uint8_t)b;
		HOST_BINOP("cmp", x, y, f);
		break;
	}
	case 2: {
		uint16_t x = (uint16_t)a, y = (uint16_t)b;
		HOST_BINOP("cmp", x, y, f);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)a, y = (uint32_t)b;
		HOST_BINOP("cmp", x, y, f);
		break;
	}
	default: {
		uint64_t x = a, y = b;
		HOST_BINOP("cmp", x, y, f);
		break;
	}
	}
	return f;
}

/* REPE stops when ZF is clear, REPNE when it is set. */
static bool rep_cond_done(const struct dinsn *d, uint64_t f)
{
	if (d->flags & DI_REPNE)
		return f & FL_ZF;
	if (d->flags & DI_REP)
		return !(f & FL_ZF);
	return false;
}

HANDLER(h_cmps)
{
	unsigned sz = d->osz, asz = d->asz;
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = STRING_BUDGET;

	while (count && budget) {
		uint64_t si = reg_get(cpu, RSI, asz), di = reg_get(cpu, RDI, asz);
		uint64_t a = mem_read(cpu, seg_lin(cpu, d->seg, si, sz, false), sz, seg_acc(d->seg));
		uint64_t b = mem_read(cpu, seg_lin(cpu, SEG_ES, di, sz, false), sz, 0);
		uint64_t f = cmp_flags(a, b, sz, cpu->rflags);
		set_arith(cpu, f);
		str_advance(cpu, RSI, asz, step);
		str_advance(cpu, RDI, asz, step);
		count--;
		budget--;
		if (is_rep(d)) {
			reg_set_idx(cpu, RCX, asz, count);
			if (rep_cond_done(d, f))
				return;
		}
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

HANDLER(h_scas)
{
	unsigned sz = d->osz, asz = d->asz;
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1, a = reg_get(cpu, RAX, sz);
	uint64_t budget = STRING_BUDGET;

	while (count && budget) {
		uint64_t di = reg_get(cpu, RDI, asz);
		uint64_t b = mem_read(cpu, seg_lin(cpu, SEG_ES, di, sz, false), sz, 0);
		uint64_t f = cmp_flags(a, b, sz, cpu->rflags);
		set_arith(cpu, f);
		str_advance(cpu, RDI, asz, step);
		count--;
		budget--;
		if (is_rep(d)) {
			reg_set_idx(cpu, RCX, asz, count);
			if (rep_cond_done(d, f))
				return;
		}
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

/* INS/OUTS: one port access, hence one exit, per element. */
HANDLER(h_ins)
{
	unsigned sz = d->osz, asz = d->asz;
	uint16_t port = (uint16_t)cpu->gpr[RDX];
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = 4096;

	if (!count)
		return;
	io_check(cpu, port, sz);
	while (count && budget) {
		uint64_t lin = seg_lin(cpu, SEG_ES, reg_get(cpu, RDI, asz), sz, true);
		mem_translate(cpu, lin, sz, ACC_W); /* fault before the port is read */
		mem_write(cpu, lin, sz, io_in(cpu, port, sz), 0);
		str_advance(cpu, RDI, asz, step);
		count--;
		budget--;
		if (is_rep(d))
			reg_set_idx(cpu, RCX, asz, count);
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}

HANDLER(h_outs)
{
	unsigned sz = d->osz, asz = d->asz;
	uint16_t port = (uint16_t)cpu->gpr[RDX];
	int64_t step = str_step(cpu, sz);
	uint64_t count = is_rep(d) ? reg_get(cpu, RCX, asz) : 1;
	uint64_t budget = 4096;

	if (!count)
		return;
	io_check(cpu, port, sz);
	while (count && budget) {
		uint64_t si = reg_get(cpu, RSI, asz);
		uint64_t v = mem_read(cpu, seg_lin(cpu, d->seg, si, sz, false), sz, seg_acc(d->seg));
		io_out(cpu, port, sz, (uint32_t)v);
		str_advance(cpu, RSI, asz, step);
		count--;
		budget--;
		if (is_rep(d))
			reg_set_idx(cpu, RCX, asz, count);
	}
	if (is_rep(d))
		rep_yield(cpu, d, count);
}
