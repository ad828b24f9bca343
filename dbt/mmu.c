/*
 * Guest memory: the page walk (32-bit, PAE and 4-level paging with 2 MiB,
 * 4 MiB and 1 GiB pages, NX, A/D bits, reserved-bit checks), the soft TLB,
 * the slow paths of memory access (page-crossing, MMIO, writes to pages
 * that hold translated code) and segment limit checks.
 */
#include "dbt/internal.h"

/* ---- physical memory ----------------------------------------------------------- */

uint8_t *ram_ptr(struct dbt_cpu *cpu, uint64_t gpa, uint64_t len)
{
	if (unlikely(cpu->identity))
		return (uint8_t *)(uintptr_t)gpa; /* the host faults for the guest (usermode.c) */
	for (unsigned i = 0; i < cpu->env.ram_count; i++) {
		const struct dbt_ram_range *r = &cpu->env.ram[i];
		uint64_t off = gpa - r->gpa;
		if (gpa >= r->gpa && off < r->size && len <= r->size - off)
			return r->host + off;
	}
	return NULL;
}

static uint64_t mmio_read(struct dbt_cpu *cpu, uint64_t gpa, unsigned size)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_MMIO};
	e.mmio.addr = gpa;
	e.mmio.size = (uint8_t)size;
	e.mmio.write = false;
	cpu->env.io(cpu->env.opaque, &e);
	return e.mmio.data & size_mask(size);
}

static void mmio_write(struct dbt_cpu *cpu, uint64_t gpa, unsigned size, uint64_t v)
{
	struct vcpu_exit e = {.reason = VCPU_EXIT_MMIO};
	e.mmio.addr = gpa;
	e.mmio.size = (uint8_t)size;
	e.mmio.write = true;
	e.mmio.data = v & size_mask(size);
	cpu->env.io(cpu->env.opaque, &e);
}

uint64_t phys_read(struct dbt_cpu *cpu, uint64_t gpa, unsigned size)
{
	uint8_t *p = ram_ptr(cpu, gpa, size);
	return p ? ld_host(p, size) : mmio_read(cpu, gpa, size);
}

void phys_write(struct dbt_cpu *cpu, uint64_t gpa, unsigned size, uint64_t v)
{
	uint8_t *p = ram_ptr(cpu, gpa, size);
	if (p) {
		code_page_written(cpu, gpa);
		st_host(p, size, v);
	} else {
		mmio_write(cpu, gpa, size, v);
	}
}

/* Copies n bytes of one page between buf and guest-physical gpa; MMIO goes
 * out in naturally aligned pieces of at most 8 bytes. */
static void phys_copy(struct dbt_cpu *cpu, uint64_t gpa, uint8_t *buf, unsigned n, bool write)
{
	uint8_t *p = ram_ptr(cpu, gpa, n);
	if (p) {
		if (write) {
			code_page_written(cpu, gpa);
			memcpy(p, buf, n);
		} else {
			memcpy(buf, p, n);
		}
		return;
	}
	while (n) {
		unsigned c = (n >= 8 && !(gpa & 7)) ? 8 : (n >= 4 && !(gpa & 3)) ? 4 : (n >= 2 && !(gpa & 1)) ? 2 : 1;
		if (write) {
			uint64_t v = 0;
			memcpy(&v, buf, c);
			mmio_write(cpu, gpa, c, v);
		} else {
			uint64_t v = mmio_read(cpu, gpa, c);
			memcpy(buf, &v, c);
		}
		gpa += c;
		buf += c;
		n -= c;
	}
}

/* ---- the page walk ----------------------------------------------------------------- */

struct xlate {
	uint64_t gpa;			     /* of the 4 KiB page */
	bool readable, writable, executable; /* for the privilege walked */
	bool dirty, global;
	uint64_t large; /* size of a large mapping, or 0 */
};

__attribute__((noreturn)) static void page_fault(struct dbt_cpu *cpu, uint64_t lin, uint32_t err)
{
	cpu->s.cr2 = lin;
	dbt_raise(cpu, EXC_PF, err);
}

static uint64_t pte_read(struct dbt_cpu *cpu, uint64_t gpa, unsigned size, uint8_t **host)
{
	*host = ram_ptr(cpu, gpa, size);
	return *host ? ld_host(*host, size) : mmio_read(cpu, gpa, size);
}

static void pte_set_bits(uint8_t *host, unsigned size, uint64_t bits, uint64_t e)
{
	if (!host || (e & bits) == bits)
		return;
	if (size == 8)
		__atomic_fetch_or((uint64_t *)(void *)host, bits, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_or((uint32_t *)(void *)host, (uint32_t)bits, __ATOMIC_SEQ_CST);
}

#define PTE_P	 1ull
#define PTE_W	 2ull
#define PTE_U	 4ull
#define PTE_A	 0x20ull
#define PTE_D	 0x40ull
#define PTE_PS	 0x80ull
#define PTE_G	 0x100ull
#define PTE_NX	 (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

static void walk(struct dbt_cpu *cpu, uint64_t lin, unsigned acc, bool user, struct xlate *x)
{
	const struct x86_state *s = &cpu->s;
	bool write = acc & ACC_W, exec = acc & ACC_X, nxe = s->efer & EFER_NXE;
	bool wp = s->cr0 & CR0_WP;
	uint32_t err = (write ? PFE_W : 0) | (user ? PFE_U : 0);

	memset(x, 0, sizeof(*x));
	if (!(s->cr0 & CR0_PG)) {
		x->gpa = lin & PAGE_MASK;
		x->readable = x->writable = x->executable = x->dirty = true;
		return;
	}

	uint8_t *host[5];
	uint64_t ent[5];
	unsigned size = 8, n = 0, shift;
	uint64_t table, rsvd = ~DBT_PHYS_MASK & PTE_ADDR, e = 0;
	bool u = true, w = true, nx = false;
	int levels;

	if (!nxe)
		rsvd |= PTE_NX;
	if (s->efer & EFER_LMA) {
		if (exec && nxe)
			err |= PFE_I;
		table = s->cr3 & PTE_ADDR & DBT_PHYS_MASK;
		levels = 4;
		shift = 39;
	} else if (s->cr4 & CR4_PAE) {
		if (exec && nxe)
			err |= PFE_I;
		uint8_t *hp;
		uint64_t pdpte = pte_read(cpu, (s->cr3 & 0xffffffe0) + ((lin >> 30) & 3) * 8, 8, &hp);
		if (!(pdpte & PTE_P))
			page_fault(cpu, lin, err);
		if (pdpte & ((~DBT_PHYS_MASK & PTE_ADDR) | 0x1e6 | PTE_NX))
			page_fault(cpu, lin, err | PFE_P | PFE_RSVD);
		table = pdpte & PTE_ADDR;
		levels = 2;
		shift = 21;
	} else {
		table = s->cr3 & 0xfffff000;
		levels = 2;
		shift = 22;
		size = 4;
		rsvd = 0;
	}

	for (int level = levels; level >= 1; level--, shift -= (size == 8 ? 9 : 10)) {
		unsigned idx = (lin >> shift) & (size == 8 ? 511 : 1023);
		e = pte_read(cpu, table + idx * size, size, &host[n]);
		ent[n++] = e;
		if (!(e & PTE_P))
			page_fault(cpu, lin, err);
		if (e & rsvd)
			page_fault(cpu, lin, err | PFE_P | PFE_RSVD);
		u = u && (e & PTE_U);
		w = w && (e & PTE_W);
		if (nxe && (e & PTE_NX))
			nx = true;
		bool ps = e & PTE_PS;
		if (level == 4 && ps) /* PML4E.PS is reserved */
			page_fault(cpu, lin, err | PFE_P | PFE_RSVD);
		if (level == 1)
			break;
		if (ps && size == 8 && levels == 4 && level == 3) {
			if (e & 0x3fffe000ull)
				page_fault(cpu, lin, err | PFE_P | PFE_RSVD);
			x->large = 1ull << 30;
			break;
		}
		if (ps && size == 8 && level == 2) {
			if (e & 0x1fe000ull)
				page_fault(cpu, lin, err | PFE_P | PFE_RSVD);
			x->large = 1ull << 21;
			break;
		}
		if (ps && size == 4 && (s->cr4 & CR4_PSE)) {
			x->large = 1ull << 22;
			break;
		}
		table = e & (size == 8 ? PTE_ADDR : 0xfffff000);
	}

	if (x->large == 1ull << 22)
		x->gpa = ((e & 0xffc00000ull) | (((e >> 13) & 0xff) << 32)) + (lin & 0x3ff000);
	else if (x->large)
		x->gpa = (e & PTE_ADDR & ~(x->large - 1)) + (lin & (x->large - 1) & PAGE_MASK);
	else
		x->gpa = e & (size == 8 ? PTE_ADDR : 0xfffff000);

	x->readable = !user || u;
	x->writable = x->readable && (w || (!user && !wp));
	x->executable = x->readable && !nx;
	x->global = (s->cr4 & CR4_PGE) && (e & PTE_G);

	if (!x->readable || (write && !x->writable) || (exec && !x->executable))
		page_fault(cpu, lin, err | PFE_P);

	for (unsigned i = 0; i < n; i++)
		pte_set_bits(host[i], size, PTE_A | (i == n - 1 && write ? PTE_D : 0), ent[i]);
	x->dirty = (e & PTE_D) || write;
}

/* ---- the TLB ----------------------------------------------------------------------- */

static void tlb_entry_clear(struct tlb_entry *e)
{
	e->tag[0] = e->tag[1] = e->tag[2] = TLB_INVALID;
	e->global = 0;
}

void tlb_flush_all(struct dbt_cpu *cpu, bool keep_global)
{
	for (int set = 0; set < 2; set++) /* set 2 is never filled */
		for (int i = 0; i < TLB_SIZE; i++) {
			struct tlb_entry *e = &cpu->tlbs[set][i];
			if (!keep_global || !e->global)
				tlb_entry_clear(e);
		}
	if (!keep_global) {
		cpu->large_lo = ~0ull;
		cpu->large_hi = 0;
	}
	cache_flush_jumps(cpu);
}

void tlb_flush_page(struct dbt_cpu *cpu, uint64_t lin)
{
	if (lin >= cpu->large_lo && lin < cpu->large_hi) {
		tlb_flush_all(cpu, false);
		return;
	}
	for (int set = 0; set < 2; set++) {
		struct tlb_entry *e = &cpu->tlbs[set][(lin >> 12) & (TLB_SIZE - 1)];
		for (int k = 0; k < 3; k++)
			if ((e->tag[k] & PAGE_MASK) == (lin & PAGE_MASK) && e->tag[k] != TLB_INVALID)
				tlb_entry_clear(e);
	}
	cache_flush_jumps_page(cpu, lin);
}

void tlb_flush_writes(struct dbt_cpu *cpu)
{
	for (int set = 0; set < 2; set++)
		for (int i = 0; i < TLB_SIZE; i++)
			cpu->tlbs[set][i].tag[TLB_WRITE] = TLB_INVALID;
}

void tlb_select(struct dbt_cpu *cpu)
{
	if (cpu->cpl < 3)
		cpu->tlb = cpu->tlbs[0];
	else if ((cpu->s.cr0 & CR0_AM) && (cpu->rflags & FL_AC))
		cpu->tlb = cpu->tlbs[2]; /* never filled: every access checks alignment */
	else
		cpu->tlb = cpu->tlbs[1];
}

static struct tlb_entry *tlb_fill(struct dbt_cpu *cpu, bool user, uint64_t lin, unsigned acc)
{
	struct xlate x;
	uint64_t page = lin & PAGE_MASK;

	walk(cpu, lin, acc, user, &x);
	struct tlb_entry *e = &cpu->tlbs[user][(lin >> 12) & (TLB_SIZE - 1)];
	uint8_t *host = ram_ptr(cpu, x.gpa, PAGE_SIZE);
	e->gpa = x.gpa;
	e->global = x.global;
	e->mmio = !host;
	if (host) {
		e->addend = (uintptr_t)host - (uintptr_t)page;
		e->tag[TLB_READ] = x.readable ? page : TLB_INVALID;
		e->tag[TLB_EXEC] = x.executable ? page : TLB_INVALID;
		if (x.writable && x.dirty)
			e->tag[TLB_WRITE] = code_page_is_code(cpu->shared, code_page_index(cpu->shared, x.gpa))
						? page | TLB_SLOW
						: page;
		else
			e->tag[TLB_WRITE] = TLB_INVALID;
	} else {
		e->addend = 0;
		e->tag[TLB_READ] = x.readable ? page | TLB_SLOW : TLB_INVALID;
		e->tag[TLB_EXEC] = x.executable ? page | TLB_SLOW : TLB_INVALID;
		e->tag[TLB_WRITE] = x.writable && x.dirty ? page | TLB_SLOW : TLB_INVALID;
	}
	if (x.large) {
		uint64_t lo = lin & ~(x.large - 1);
		if (lo < cpu->large_lo)
			cpu->large_lo = lo;
		if (lo + x.large > cpu->large_hi)
			cpu->large_hi = lo + x.large;
	}
	return e;
}

static bool canonical(uint64_t lin)
{
	return (uint64_t)((int64_t)(lin << 16) >> 16) == lin;
}

/* The TLB entry for an access, walking the page tables if needed. */
static struct tlb_entry *tlb_resolve(struct dbt_cpu *cpu, uint64_t lin, unsigned acc)
{
	int kind = (acc & ACC_W) ? TLB_WRITE : (acc & ACC_X) ? TLB_EXEC : TLB_READ;
	bool user = !(acc & ACC_SYS) && cpu->cpl == 3;

	if ((cpu->s.efer & EFER_LMA) && !canonical(lin))
		dbt_raise(cpu, (acc & ACC_STACK) ? EXC_SS : EXC_GP, 0);
	struct tlb_entry *e = &cpu->tlbs[user][(lin >> 12) & (TLB_SIZE - 1)];
	if ((e->tag[kind] & ~TLB_SLOW) == (lin & PAGE_MASK))
		return e;
	return tlb_fill(cpu, user, lin, acc);
}

static void align_check(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc)
{
	if (unlikely(cpu->tlb == cpu->tlbs[2]) && !(acc & (ACC_SYS | ACC_X)) && (lin & (size - 1)) &&
	    (size & (size - 1)) == 0)
		dbt_raise(cpu, EXC_AC, 0);
}

/* ---- slow paths ---------------------------------------------------------------------- */

/* Host address of a resolved page for a write, after dropping any
 * translations made from it. */
static uint8_t *write_host(struct dbt_cpu *cpu, struct tlb_entry *e, uint64_t lin)
{
	if (e->tag[TLB_WRITE] & TLB_SLOW) {
		code_page_written(cpu, e->gpa);
		e->tag[TLB_WRITE] = lin & PAGE_MASK;
	}
	return (uint8_t *)(uintptr_t)(lin + e->addend);
}

/* An access that crosses a page boundary: both pages are translated (and
 * may fault) before any byte moves. */
static void access_split(struct dbt_cpu *cpu, uint64_t lin, uint8_t *buf, unsigned size, unsigned acc)
{
	unsigned n1 = PAGE_SIZE - (lin & 0xfff);
	uint64_t lin2 = (lin + n1) & cpu->lin_mask;
	struct tlb_entry e1 = *tlb_resolve(cpu, lin, acc);
	struct tlb_entry *e2 = tlb_resolve(cpu, lin2, acc);
	bool write = acc & ACC_W;

	phys_copy(cpu, e1.gpa | (lin & 0xfff), buf, n1, write);
	phys_copy(cpu, e2->gpa, buf + n1, size - n1, write);
}

uint64_t mem_read_slow(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc)
{
	align_check(cpu, lin, size, acc);
	if ((lin & 0xfff) + size > PAGE_SIZE) {
		uint64_t v = 0;
		access_split(cpu, lin, (uint8_t *)&v, size, acc | ACC_R);
		return v;
	}
	struct tlb_entry *e = tlb_resolve(cpu, lin, acc | ACC_R);
	if (e->mmio)
		return mmio_read(cpu, e->gpa | (lin & 0xfff), size);
	return ld_host((uint8_t *)(uintptr_t)(lin + e->addend), size);
}

void mem_write_slow(struct dbt_cpu *cpu, uint64_t lin, unsigned size, uint64_t v, unsigned acc)
{
	align_check(cpu, lin, size, acc);
	if ((lin & 0xfff) + size > PAGE_SIZE) {
		access_split(cpu, lin, (uint8_t *)&v, size, acc | ACC_W);
		return;
	}
	struct tlb_entry *e = tlb_resolve(cpu, lin, acc | ACC_W);
	if (e->mmio)
		mmio_write(cpu, e->gpa | (lin & 0xfff), size, v);
	else
		st_host(write_host(cpu, e, lin), size, v);
}

uint8_t *mem_translate(struct dbt_cpu *cpu, uint64_t lin, unsigned size, unsigned acc)
{
	align_check(cpu, lin, size, acc);
	if ((lin & 0xfff) + size > PAGE_SIZE) {
		tlb_resolve(cpu, lin, acc);
		tlb_resolve(cpu, (lin + size - 1) & cpu->lin_mask, acc);
		return NULL;
	}
	struct tlb_entry *e = tlb_resolve(cpu, lin, acc);
	if (e->mmio)
		return NULL;
	if (acc & ACC_W)
		return write_host(cpu, e, lin);
	return (uint8_t *)(uintptr_t)(lin + e->addend);
}

/* Resolves every page of [lin, lin + len) for acc, faulting as an access would. */
static void resolve_range(struct dbt_cpu *cpu, uint64_t lin, unsigned len, unsigned acc)
{
	while (len) {
		unsigned n = PAGE_SIZE - (lin & 0xfff);
		if (n > len)
			n = len;
		tlb_resolve(cpu, lin, acc);
		lin = (lin + n) & cpu->lin_mask;
		len -= n;
	}
}

void mem_probe_write(struct dbt_cpu *cpu, uint64_t lin, unsigned len, unsigned acc)
{
	resolve_range(cpu, lin, len, acc | ACC_W);
}

static void mem_buf(struct dbt_cpu *cpu, uint64_t lin, uint8_t *buf, unsigned len, unsigned acc)
{
	while (len) {
		unsigned n = PAGE_SIZE - (lin & 0xfff);
		if (n > len)
			n = len;
		struct tlb_entry *e = tlb_resolve(cpu, lin, acc);
		if (!e->mmio && (acc & ACC_W))
			memcpy(write_host(cpu, e, lin), buf, n);
		else if (!e->mmio)
			memcpy(buf, (uint8_t *)(uintptr_t)(lin + e->addend), n);
		else
			phys_copy(cpu, e->gpa | (lin & 0xfff), buf, n, acc & ACC_W);
		lin = (lin + n) & cpu->lin_mask;
		buf += n;
		len -= n;
	}
}

/* Every page is translated first, so a fault leaves nothing half done. */
void mem_read_buf(struct dbt_cpu *cpu, uint64_t lin, void *buf, unsigned len, unsigned acc)
{
	resolve_range(cpu, lin, len, acc | ACC_R);
	mem_buf(cpu, lin, buf, len, acc | ACC_R);
}

void mem_write_buf(struct dbt_cpu *cpu, uint64_t lin, const void *buf, unsigned len, unsigned acc)
{
	resolve_range(cpu, lin, len, acc | ACC_W);
	mem_buf(cpu, lin, (uint8_t *)buf, len, acc | ACC_W);
}

uint64_t mmu_translate_exec(struct dbt_cpu *cpu, uint64_t lin)
{
	struct tlb_entry *e = tlb_resolve(cpu, lin, ACC_X);
	return e->gpa | (lin & 0xfff);
}

/* ---- segments ------------------------------------------------------------------------ */

void seg_check(struct dbt_cpu *cpu, unsigned seg, uint64_t off, unsigned size, bool write)
{
	const struct x86_segment *g = &cpu->s.seg[seg];
	int vec = seg == SEG_SS ? EXC_SS : EXC_GP;
	uint64_t last = off + size - 1;

	if (cpu->mode == MODE_REAL) {
		if (last > g->limit)
			dbt_raise(cpu, vec, 0);
		return;
	}
	if (g->unusable || !g->present)
		dbt_raise(cpu, vec, 0);
	if (write && (!g->s || (g->type & 8) || !(g->type & 2)))
		dbt_raise(cpu, vec, 0);
	if (!write && g->s && (g->type & 8) && !(g->type & 2))
		dbt_raise(cpu, vec, 0);
	if (g->s && !(g->type & 8) && (g->type & 4)) {
		uint64_t upper = g->db ? 0xffffffffull : 0xffffull;
		if (off <= g->limit || last > upper)
			dbt_raise(cpu, vec, 0);
	} else if (last > g->limit) {
		dbt_raise(cpu, vec, 0);
	}
}
