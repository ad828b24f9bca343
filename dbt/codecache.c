/*
 * The code cache: host memory for translations, the block hash (guest RIP ->
 * host code), chaining of direct branches, the per-thread lookup tables of
 * indirect branches, and invalidation. Translation is rare and takes one
 * lock; translated code never does.
 *
 * Code lives in zones of ZONE_SIZE bytes, each placed near the guest code it
 * holds, so that RIP-relative operands keep a 32-bit displacement.
 * docs/dbt-translator.md, "Code cache".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <asm/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>

#include "dbt/translator.h"

#define ZONE_SIZE  (64ull << 20)
#define ZONE_MAX   16
#define ZONE_REACH (1ull << 30) /* a zone serves guest code this near */
#define DEAD_MAX   (4ull << 20) /* invalidated code kept before a flush */
#define HASH_SIZE  (1u << 16)
#define PAGE_SET_SIZE (1u << 16)

struct code_page {
	uint64_t page1; /* the page number + 1; 0: a free entry */
	struct xlat_block *blocks;
};

struct zone {
	uint8_t *base, *next, *end;
	uint8_t *populated; /* [base, populated) is backed by memory already */
	/* The epoch a flush retired it at (0: in use): it is reused once
	 * every thread has been quiescent since (zone_reclaim). */
	uint64_t retired;
	/* Its blocks in code order (for host PC -> block). */
	struct xlat_block **blocks;
	size_t nblocks, cap;
};

#define CHAINED_MAX (1u << 20)
/* Code memory is faulted in this many bytes at a time: one page fault per
 * 4 KiB of code was a tenth of a short run (python3 -c pass). */
#define ZONE_POPULATE (1ull << 20)

static struct {
	pthread_mutex_t lock;
	struct xlat_env env;
	struct zone zones[ZONE_MAX];
	unsigned nzones;
	struct xlat_block *hash[HASH_SIZE];
	/* Guest pages translations were made from, each with its blocks. */
	struct code_page *pages;
	unsigned npages;
	uint8_t sysfilter[1u << 16];
	struct xlat_ctx *contexts;
	uint32_t xsave_size;
	uint64_t xsave_mask;
	/* Every stub chained since the last flush (xlat_unlink). */
	struct xlat_exit **chained;
	unsigned nchained;
	/* Reclamation: bumped by every flush; each context publishes the
	 * epoch it was last quiescent at (docs: "Reusing code memory"). */
	uint64_t epoch;
	uint64_t dead_bytes; /* code of blocks invalidated since the last flush */
	FILE *perf_map; /* VIREO_PERF_MAP: /tmp/perf-PID.map, for perf report */
} cc = {.lock = PTHREAD_MUTEX_INITIALIZER, .epoch = 1};

struct xlat_stats xlat_stats;

static unsigned hash_rip(uint64_t rip)
{
	return (unsigned)((rip ^ (rip >> 16)) * 0x9e3779b1u) & (HASH_SIZE - 1);
}

/* ---- the guest pages translations were made from ---- */

/* Open addressing by page number; an entry is never removed (its list
 * empties), so the table is reset only by flush_all. */
static struct code_page *page_find(uint64_t page, bool add)
{
	unsigned i = hash_rip(page) & (PAGE_SET_SIZE - 1);
	while (cc.pages[i].page1 && cc.pages[i].page1 != page + 1)
		i = (i + 1) & (PAGE_SET_SIZE - 1);
	if (cc.pages[i].page1)
		return &cc.pages[i];
	if (!add || cc.npages * 2 >= PAGE_SET_SIZE)
		return NULL; /* full: translate_block flushes everything */
	cc.pages[i].page1 = page + 1;
	cc.npages++;
	return &cc.pages[i];
}

static struct xlat_block **page_link(struct xlat_block *b, uint64_t page)
{
	return &b->pnext[(b->rip >> 12) == page ? 0 : 1];
}

/* Takes b out of the page's list; true when the list is now empty. The
 * caller gives write access back (code_page false) only once nothing can
 * reach b any more: out of the hash, the lookup tables and every chain
 * (docs: "Invalidation"). */
static bool page_unlink(struct code_page *p, uint64_t page, struct xlat_block *b)
{
	for (struct xlat_block **pp = &p->blocks; *pp; pp = page_link(*pp, page))
		if (*pp == b) {
			*pp = *page_link(b, page);
			break;
		}
	return !p->blocks;
}

bool xlat_page_has_code(uint64_t addr)
{
	pthread_mutex_lock(&cc.lock);
	struct code_page *p = page_find(addr >> 12, false);
	bool has = p && p->blocks;
	pthread_mutex_unlock(&cc.lock);
	return has;
}

/* The guest may write page pg again if no block is made from it. */
static void page_release(uint64_t pg)
{
	struct code_page *p = page_find(pg, false);
	if ((!p || !p->blocks) && cc.env.code_page)
		cc.env.code_page(cc.env.opaque, pg << 12, false);
}

/* ---- lookup tables ---- */

/* An empty entry holds a guest address that the entry never serves: below
 * 65536 of neither its own set nor the set before (docs: "the lookup
 * table"). */
static uint64_t lookup_empty(unsigned i)
{
	return -(uint64_t)(i ^ 0x8000);
}

static void lookup_set_entry(struct xlat_lookup *l, unsigned i, uint64_t neg_guest, uint64_t host)
{
	/* Only the owning thread fills its table; a flush from another thread
	 * only ever makes an entry miss, so the entry is never seen half
	 * written with a matching address. */
	__atomic_store_n(&l->neg_guest, lookup_empty(i), __ATOMIC_RELAXED);
	__atomic_store_n(&l->host, host, __ATOMIC_RELAXED);
	__atomic_store_n(&l->neg_guest, neg_guest, __ATOMIC_RELEASE);
}

static void lookup_clear(struct xlat_lookup *table)
{
	for (unsigned i = 0; i < XLAT_LOOKUP_ENTRIES; i++) {
		__atomic_store_n(&table[i].neg_guest, lookup_empty(i), __ATOMIC_RELAXED);
		table[i].host = (uintptr_t)xlat_miss_routine;
	}
}

void xlat_quiesce(struct xlat_ctx *ctx)
{
	__atomic_store_n(&ctx->quiet, XLAT_QUIET_OUT, __ATOMIC_RELEASE);
}

void xlat_remember(struct xlat_ctx *ctx, uint64_t rip, const void *code)
{
	unsigned i = rip & (XLAT_LOOKUP_SETS - 1);
	struct xlat_lookup *l = &ctx->lookup[i];
	/* The newest in its own entry; the one it displaces goes to the next
	 * entry, which the lookup probes second. */
	if (l[0].neg_guest != -rip && l[0].neg_guest != lookup_empty(i))
		lookup_set_entry(&l[1], i + 1, l[0].neg_guest, l[0].host);
	lookup_set_entry(&l[0], i, -rip, (uintptr_t)code);
}

/* ---- flushing ---- */

static void unchain(struct xlat_exit *x)
{
	__atomic_store_n(&x->slot, x->unchained, __ATOMIC_RELEASE);
	if (x->patch)
		rel32_set(x->patch, (const void *)(uintptr_t)(x->unchained - 6)); /* the stub */
}

/* Every chained branch back to its stub (the lock held). */
static void unchain_all(void)
{
	for (unsigned i = 0; i < cc.nchained; i++)
		unchain(cc.chained[i]);
	__atomic_store_n(&cc.nchained, 0, __ATOMIC_RELEASE);
}

/* Drops every translation. Threads may be running translated code: nothing
 * reaches it any more (hash, lookup tables and chains emptied, so they
 * exit at their next block end), and its zones are retired, reused once
 * every thread was quiescent since (zone_reclaim). self: the calling
 * thread's context when it is in the runtime (quiescent), else NULL. */
static void flush_all(struct xlat_ctx *self)
{
	memset(cc.hash, 0, sizeof(cc.hash));
	for (struct xlat_ctx *c = cc.contexts; c; c = c->next)
		lookup_clear(c->lookup);
	unchain_all();
	uint64_t epoch = ++cc.epoch;
	for (unsigned i = 0; i < cc.nzones; i++)
		if (!cc.zones[i].retired && cc.zones[i].next != cc.zones[i].base)
			cc.zones[i].retired = epoch;
	if (self)
		__atomic_store_n(&self->quiet, epoch, __ATOMIC_RELEASE);
	cc.dead_bytes = 0;
	/* Write access back last: a thread that writes a page and jumps
	 * to it finds nothing stale. Pages an invalidation that ran out of
	 * memory emptied are among those without blocks. */
	for (unsigned i = 0; i < PAGE_SET_SIZE; i++)
		if (cc.pages[i].page1 && cc.env.code_page)
			cc.env.code_page(cc.env.opaque, (cc.pages[i].page1 - 1) << 12, false);
	memset(cc.pages, 0, PAGE_SET_SIZE * sizeof(*cc.pages));
	cc.npages = 0;
	xlat_stats.flushes++;
	__atomic_add_fetch(&xlat_flush_gen, 1, __ATOMIC_RELEASE);
}

/* The lookup entries of b, in every thread's table, miss from now on: its
 * own entry and the next, where a displaced entry goes. */
static void lookup_forget(const struct xlat_block *b)
{
	unsigned first = b->rip & (XLAT_LOOKUP_SETS - 1);
	for (struct xlat_ctx *c = cc.contexts; c; c = c->next)
		for (unsigned i = first; i <= first + 1; i++)
			if (__atomic_load_n(&c->lookup[i].neg_guest, __ATOMIC_RELAXED) == -b->rip)
				__atomic_store_n(&c->lookup[i].neg_guest, lookup_empty(i), __ATOMIC_RELEASE);
}

static bool dead_code(const struct xlat_block *const *dead, size_t n, uint64_t addr, bool inside)
{
	size_t lo = 0, hi = n;
	while (lo < hi) { /* the last block starting at or before addr */
		size_t mid = (lo + hi) / 2;
		if ((uintptr_t)dead[mid]->code <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return false;
	const struct xlat_block *b = dead[lo - 1];
	return inside ? addr - (uintptr_t)b->code < b->size : addr == (uintptr_t)b->code;
}

static int by_code(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)(*(struct xlat_block *const *)a)->code;
	uintptr_t y = (uintptr_t)(*(struct xlat_block *const *)b)->code;
	return x < y ? -1 : x > y;
}

/* Chained branches into the dead blocks, and out of them, go back to their
 * stubs (a thread inside a dead block, even one looping on itself, leaves
 * at its end), and leave the list. Other threads may be running
 * them: each store is atomic, and the dead code stays until its zone is
 * reclaimed after a flush, so a thread inside finishes its block and exits. */
static void unchain_dead(struct xlat_block **dead, size_t n)
{
	qsort(dead, n, sizeof(*dead), by_code);
	unsigned k = 0, total = cc.nchained;
	for (unsigned i = 0; i < total; i++) {
		struct xlat_exit *x = cc.chained[i];
		if (dead_code((const struct xlat_block *const *)dead, n, (uintptr_t)x, true) ||
		    dead_code((const struct xlat_block *const *)dead, n, x->slot, false)) {
			unchain(x);
			continue;
		}
		cc.chained[k++] = x;
	}
	__atomic_store_n(&cc.nchained, k, __ATOMIC_RELEASE);
	for (size_t i = 0; i < n; i++)
		cc.dead_bytes += dead[i]->size;
}

static void hash_remove(struct xlat_block *b)
{
	for (struct xlat_block **pp = &cc.hash[hash_rip(b->rip)]; *pp; pp = &(*pp)->hnext)
		if (*pp == b) {
			*pp = b->hnext;
			break;
		}
}

struct dead_list {
	struct xlat_block **b;
	size_t n, cap;
	uint64_t *emptied; /* pages left without blocks: writable again at the end */
	size_t nemptied, capemptied;
	bool failed;
};

static bool grow(void **array, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t c = *cap ? *cap * 2 : 64;
	void *a = realloc(*array, c * size);
	if (!a)
		return false;
	*array = a;
	*cap = c;
	return true;
}

static void page_emptied(struct dead_list *d, uint64_t pg)
{
	if (!grow((void **)&d->emptied, &d->capemptied, d->nemptied, sizeof(*d->emptied)))
		d->failed = true;
	else
		d->emptied[d->nemptied++] = pg;
}

/* Drops the blocks made from page pg into d; false when it held none. */
static bool invalidate_page(uint64_t pg, struct dead_list *d)
{
	struct code_page *p = page_find(pg, false);
	if (!p || !p->blocks)
		return false;
	while (p->blocks && !d->failed) {
		struct xlat_block *b = p->blocks;
		uint64_t other = (b->rip >> 12) == pg ? (b->end - 1) >> 12 : b->rip >> 12;
		if (!grow((void **)&d->b, &d->cap, d->n, sizeof(*d->b))) {
			d->failed = true;
			break;
		}
		if (page_unlink(p, pg, b))
			page_emptied(d, pg);
		if (other != pg && page_unlink(page_find(other, false), other, b))
			page_emptied(d, other);
		hash_remove(b);
		lookup_forget(b);
		b->dead = true;
		d->b[d->n++] = b;
		xlat_stats.invalidated++;
	}
	return true;
}

unsigned xlat_invalidate(uint64_t addr, uint64_t len)
{
	struct dead_list d = {0};
	unsigned pages = 0;

	if (!len || addr + len < addr)
		return 0;
	pthread_mutex_lock(&cc.lock);
	uint64_t first = addr >> 12, last = (addr + len - 1) >> 12;
	if (last - first >= PAGE_SET_SIZE) { /* a huge range: the pages in the set */
		for (unsigned i = 0; i < PAGE_SET_SIZE; i++) {
			uint64_t p = cc.pages[i].page1 - 1;
			if (cc.pages[i].blocks && p >= first && p <= last)
				pages += invalidate_page(p, &d);
		}
	} else {
		for (uint64_t pg = first; pg <= last && cc.npages; pg++)
			pages += invalidate_page(pg, &d);
	}
	if (d.failed) {
		flush_all(NULL); /* out of memory: the big hammer */
	} else if (d.n) {
		unchain_dead(d.b, d.n);
	}
	/* Only now, with the dead blocks unreachable from the hash, every
	 * lookup table and every chain, may the guest write the pages again:
	 * a thread that writes one and then jumps to it finds no stale code. */
	for (size_t i = 0; i < d.nemptied; i++)
		page_release(d.emptied[i]);
	pthread_mutex_unlock(&cc.lock);
	free(d.b);
	free(d.emptied);
	return pages;
}

/* ---- zones ---- */

static uint64_t distance(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

/* Can no thread be in code a flush retired at epoch? A flush leaves
 * nothing reachable (hash, lookup tables, chains), so a thread not
 * quiescent since can only finish the block it was in then; the code a
 * thread last quiescent at epoch - 1 was running is retired at epoch, but
 * one quiescent before that was already confined to code retired earlier,
 * and one quiescent since (or XLAT_QUIET_OUT) holds none. A thread
 * blocked in a system call made from translated code so pins one
 * generation of zones, not every later one. */
static bool all_quiet_since(uint64_t epoch)
{
	for (struct xlat_ctx *c = cc.contexts; c; c = c->next)
		if (__atomic_load_n(&c->quiet, __ATOMIC_ACQUIRE) + 1 == epoch)
			return false;
	return true;
}

/* Retired zones no thread can be in any more become empty zones. Their
 * blocks are freed: a signal handler looks only at the zone its own thread
 * runs in, and no thread runs in these. */
static void zone_reclaim(void)
{
	for (unsigned i = 0; i < cc.nzones; i++) {
		struct zone *z = &cc.zones[i];
		if (!z->retired || !all_quiet_since(z->retired))
			continue;
		size_t n = z->nblocks;
		__atomic_store_n(&z->nblocks, 0, __ATOMIC_RELEASE);
		for (size_t k = 0; k < n; k++)
			free(z->blocks[k]);
		z->next = z->base;
		z->retired = 0;
		xlat_stats.reclaimed++;
	}
}

/* The slot a new zone goes in: a free one or, when threads still pin every
 * zone (one blocked in a system call it made from translated code), the
 * oldest retired zone, abandoned: its memory and blocks stay (docs). */
static struct zone *zone_slot(void)
{
	struct zone *z = NULL;
	if (cc.nzones < ZONE_MAX)
		return &cc.zones[cc.nzones];
	for (unsigned i = 0; i < cc.nzones; i++)
		if (cc.zones[i].retired && (!z || cc.zones[i].retired < z->retired))
			z = &cc.zones[i];
	if (z) {
		__atomic_store_n(&z->base, NULL, __ATOMIC_RELEASE); /* handlers skip it */
		z->next = z->end = NULL;
		z->blocks = NULL;
		z->nblocks = z->cap = 0;
		z->retired = 0;
		xlat_stats.abandoned++;
	}
	return z;
}

/* A zone near rip with room for a block, else a new one near rip, else
 * any with room; NULL when the cache should rather be flushed: no room, or
 * more than half the code is dead (invalidated), which a flush gives back. */
static struct zone *zone_for(uint64_t rip)
{
	struct zone *any = NULL;
	uint64_t used = 0;
	zone_reclaim();
	for (unsigned i = 0; i < cc.nzones; i++)
		used += cc.zones[i].retired ? 0 : (uint64_t)(cc.zones[i].next - cc.zones[i].base);
	if (cc.dead_bytes > DEAD_MAX && cc.dead_bytes * 2 > used)
		return NULL; /* a JIT rewriting its code: memory stays bounded */
	for (unsigned i = 0; i < cc.nzones; i++) {
		struct zone *z = &cc.zones[i];
		if (z->retired)
			continue;
		if (z->end - z->next < 65536)
			continue;
		if (distance((uintptr_t)z->base, rip) < ZONE_REACH)
			return z;
		any = z;
	}
	if (cc.dead_bytes * 2 > used)
		return NULL;
	if (any && cc.nzones == ZONE_MAX)
		return any;
	struct zone *z = zone_slot();
	if (!z)
		return any;
	/* Below the guest code (its heap grows above it), or above it where
	 * low addresses leave no room. */
	uint64_t hint = rip > (1ull << 32) ? ((rip - (256ull << 20)) & ~(ZONE_SIZE - 1))
					   : ((rip + (1ull << 30)) & ~(ZONE_SIZE - 1));
	void *p = mmap((void *)(uintptr_t)hint, ZONE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return any;
	z->next = z->populated = p;
	z->end = z->next + ZONE_SIZE;
	z->retired = 0;
	z->nblocks = 0;
	/* Signal handlers read base alone (the zone is [base, base + ZONE_SIZE)). */
	__atomic_store_n(&z->base, (uint8_t *)p, __ATOMIC_RELEASE);
	if (z == &cc.zones[cc.nzones])
		__atomic_store_n(&cc.nzones, cc.nzones + 1, __ATOMIC_RELEASE);
	return z;
}

/* Backs the next ZONE_POPULATE bytes of z with memory in one system call
 * when a block may reach past what is backed (a failure leaves it to page
 * faults). */
static void zone_populate(struct zone *z)
{
	if (z->populated < z->next)
		z->populated = z->next;
	if (z->populated - z->next >= 65536 || z->populated >= z->end)
		return;
	size_t len = (size_t)(z->end - z->populated) < ZONE_POPULATE ? (size_t)(z->end - z->populated) : ZONE_POPULATE;
	if (madvise(z->populated, len, MADV_POPULATE_WRITE) == 0)
		z->populated += len;
	else
		z->populated = z->end; /* not supported: page faults do it */
}

static int zone_grow(struct zone *z)
{
	/* Signal handlers may be reading the old array: it is never freed
	 * while in use by them (it is kept until the zone is reused). */
	size_t cap = z->cap ? z->cap * 2 : 4096;
	struct xlat_block **b = malloc(cap * sizeof(*b));
	if (!b)
		return -ENOMEM;
	if (z->nblocks)
		memcpy(b, z->blocks, z->nblocks * sizeof(*b));
	z->blocks = b; /* the old array leaks: signal handlers may hold it */
	z->cap = cap;
	return 0;
}

/* ---- host PC -> guest RIP (signal handlers) ---- */

bool xlat_code_at(uint64_t pc)
{
	unsigned n = __atomic_load_n(&cc.nzones, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++) {
		uintptr_t base = (uintptr_t)__atomic_load_n(&cc.zones[i].base, __ATOMIC_ACQUIRE);
		if (base && pc - base < ZONE_SIZE)
			return true;
	}
	return false;
}

/* The block holding host pc and its instruction's index (async-signal-safe). */
static const struct xlat_block *block_at(uint64_t pc, uint32_t *insn)
{
	unsigned n = __atomic_load_n(&cc.nzones, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++) {
		struct zone *z = &cc.zones[i];
		uintptr_t base = (uintptr_t)__atomic_load_n(&z->base, __ATOMIC_ACQUIRE);
		if (!base || pc - base >= ZONE_SIZE)
			continue;
		struct xlat_block **blocks = z->blocks;
		size_t lo = 0, hi = __atomic_load_n(&z->nblocks, __ATOMIC_ACQUIRE);
		while (lo < hi) { /* the last block starting at or before pc */
			size_t mid = (lo + hi) / 2;
			if ((uintptr_t)blocks[mid]->code <= pc)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!lo)
			return NULL;
		const struct xlat_block *b = blocks[lo - 1];
		uint64_t off = pc - (uintptr_t)b->code;
		if (off >= b->size || !b->ninsns)
			return NULL;
		uint32_t k = 0;
		while (k + 1 < b->ninsns && b->map[k + 1].host_off <= off)
			k++;
		*insn = k;
		return b;
	}
	return NULL;
}

uint64_t xlat_guest_rip(uint64_t pc)
{
	uint32_t k;
	const struct xlat_block *b = block_at(pc, &k);
	return b ? b->rip + b->map[k].guest_off : 0;
}

bool xlat_insn_start(uint64_t pc)
{
	uint32_t k;
	const struct xlat_block *b = block_at(pc, &k);
	return b && (uintptr_t)b->code + b->map[k].host_off == pc;
}

int xlat_spilled_reg(uint64_t pc)
{
	uint32_t k;
	const struct xlat_block *b = block_at(pc, &k);
	/* At the instruction's first host instruction nothing is spilled yet. */
	if (!b || (uintptr_t)b->code + b->map[k].host_off == pc)
		return -1;
	return (int)b->map[k].spilled - 1;
}

void xlat_unlink(struct xlat_ctx *ctx)
{
	/* From a signal handler, but in translated code, which never holds
	 * the lock; under it, no flush reclaims a stub of the list meanwhile. */
	pthread_mutex_lock(&cc.lock);
	unchain_all();
	lookup_clear(ctx->lookup);
	pthread_mutex_unlock(&cc.lock);
}

uint32_t xlat_xsave_size(void)
{
	return cc.xsave_size;
}

uint64_t xlat_xsave_mask(void)
{
	return cc.xsave_mask;
}

/* ---- blocks ---- */

static struct xlat_block *find_block(uint64_t rip)
{
	for (struct xlat_block *b = cc.hash[hash_rip(rip)]; b; b = b->hnext)
		if (b->rip == rip)
			return b;
	return NULL;
}

/* Write protection of a page without blocks while one is being made from
 * it (hold true), and its end (hold false: protection stays if it now has
 * blocks). */
static void page_hold(uint64_t pg, bool hold)
{
	struct code_page *p = page_find(pg, false);
	if ((!p || !p->blocks) && cc.env.code_page)
		cc.env.code_page(cc.env.opaque, pg << 12, hold);
}

static struct xlat_block *translate_block(struct xlat_ctx *ctx, uint64_t rip, int *err, struct xlat_succ *succ)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct zone *z = zone_for(rip);
		if (!z) {
			flush_all(ctx);
			continue;
		}
		uint64_t end;
		uint32_t ninsns;
		struct xlat_insn_map map[XLAT_BLOCK_INSNS];
		/* The pages it may be made from are write-protected before its
		 * bytes are read, so no write slips in between. */
		page_hold(rip >> 12, true);
		page_hold((rip >> 12) + 1, true);
		zone_populate(z);
		int n = xlat_translate(&cc.env, rip, z->next, (size_t)(z->end - z->next), &end, map, &ninsns, succ);
		if (n < 0) {
			page_hold(rip >> 12, false);
			page_hold((rip >> 12) + 1, false);
		}
		if (n == -ENOSPC) {
			z->next = z->end;
			continue;
		}
		if (n < 0) {
			*err = n;
			return NULL;
		}
		struct xlat_block *b = malloc(sizeof(*b) + ninsns * sizeof(map[0]));
		if (!b || (z->nblocks == z->cap && zone_grow(z) < 0)) {
			free(b);
			*err = -ENOMEM;
			return NULL;
		}
		*b = (struct xlat_block){
		    .rip = rip, .end = end, .code = z->next, .size = (uint32_t)n, .ninsns = ninsns};
		memcpy(b->map, map, ninsns * sizeof(map[0]));
		z->blocks[z->nblocks] = b;
		__atomic_store_n(&z->nblocks, z->nblocks + 1, __ATOMIC_RELEASE);
		z->next += (n + 15) & ~15;
		unsigned h = hash_rip(rip);
		b->hnext = cc.hash[h];
		cc.hash[h] = b;
		uint64_t p0 = rip >> 12, p1 = (end - 1) >> 12;
		struct code_page *cp0 = page_find(p0, true), *cp1 = page_find(p1, true);
		if (!cp0 || !cp1) { /* the page set is full: start afresh */
			hash_remove(b);
			z->nblocks--;
			free(b);
			flush_all(ctx);
			page_hold(rip >> 12, false);
			page_hold((rip >> 12) + 1, false);
			continue;
		}
		b->pnext[0] = cp0->blocks;
		cp0->blocks = b;
		if (p1 != p0) {
			b->pnext[1] = cp1->blocks;
			cp1->blocks = b;
		}
		page_hold(p0, false);
		page_hold(p0 + 1, false);
		xlat_stats.blocks++;
		xlat_stats.bytes += (uint64_t)n;
		if (cc.perf_map)
			fprintf(cc.perf_map, "%lx %x guest_%lx\n", (unsigned long)(uintptr_t)b->code, n, (unsigned long)rip);
		return b;
	}
	*err = -ENOMEM;
	return NULL;
}

unsigned xlat_flush_gen;

/* Is the stub x in a block still alive (not invalidated since it exited)? */
static bool stub_alive(const struct xlat_exit *x)
{
	uint32_t k;
	const struct xlat_block *b = block_at((uintptr_t)x, &k);
	return b && !b->dead;
}

/* Points the stub x at b: its slot (always reaches), and the branch itself
 * where b is within 2 GiB. */
static void chain(struct xlat_exit *x, const struct xlat_block *b)
{
	if (cc.nchained >= CHAINED_MAX)
		return;
	__atomic_store_n(&x->slot, (uintptr_t)b->code, __ATOMIC_RELEASE);
	if (x->patch)
		rel32_set(x->patch, b->code);
	cc.chained[cc.nchained] = x;
	__atomic_store_n(&cc.nchained, cc.nchained + 1, __ATOMIC_RELEASE);
	xlat_stats.chained++;
}

/* How many blocks translate_ahead makes after one the run loop asked for. */
#define AHEAD_BLOCKS 8

/* A new block's direct successors are chained now where they exist, and its
 * last one (an unconditional successor or a conditional branch's
 * fall-through) is translated now when it does not, and so on for
 * AHEAD_BLOCKS blocks: a path run for the first time then leaves
 * translated code once, not once per block. Stops at a flush, which drops
 * every block succ points into. */
static void translate_ahead(struct xlat_ctx *ctx, struct xlat_succ *succ)
{
	unsigned gen = xlat_flush_gen;

	for (unsigned depth = 0; depth < AHEAD_BLOCKS && succ->n; depth++) {
		struct xlat_succ next;
		struct xlat_block *made = NULL;
		for (unsigned i = 0; i < succ->n; i++) {
			struct xlat_exit *x = succ->exit[i];
			struct xlat_block *b = find_block(x->target);
			if (!b && i == succ->n - 1 && !succ->conditional) {
				int err;
				b = made = translate_block(ctx, x->target, &err, &next);
				if (gen != xlat_flush_gen)
					return;
			}
			if (b)
				chain(x, b);
		}
		if (!made)
			return;
		*succ = next;
	}
}

const void *xlat_code_for(struct xlat_ctx *ctx, uint64_t rip, const struct xlat_exit *from, unsigned gen, int *err)
{
	pthread_mutex_lock(&cc.lock);
	/* The thread is in the runtime: quiescent. from, the stub it left
	 * through, is only chained when no flush came since (gen), so it may
	 * be in a zone retired before now. */
	__atomic_store_n(&ctx->quiet, cc.epoch, __ATOMIC_RELEASE);
	struct xlat_block *b = find_block(rip);
	if (!b) {
		struct xlat_succ succ;
		b = translate_block(ctx, rip, err, &succ);
		unsigned made = xlat_flush_gen;
		if (b)
			translate_ahead(ctx, &succ);
		if (b && made != xlat_flush_gen) /* flushed under it: b is gone */
			b = translate_block(ctx, rip, err, &succ);
	}
	if (b && from && from->kind == XEXIT_BRANCH && gen == xlat_flush_gen && stub_alive(from))
		chain((struct xlat_exit *)from, b);
	/* Under the lock: an invalidation empties the entries of the blocks it
	 * drops, so none may be filled with one after it. */
	if (b)
		xlat_remember(ctx, rip, b->code);
	pthread_mutex_unlock(&cc.lock);
	return b ? b->code : NULL;
}

/* ---- set-up ---- */

int xlat_init(const struct xlat_env *env, const uint16_t *syscalls, size_t nsyscalls)
{
	unsigned a, b, c, d;

	cc.env = *env;
	if (getenv("VIREO_PERF_MAP")) {
		char path[64];
		snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
		cc.perf_map = fopen(path, "w");
		if (cc.perf_map)
			setvbuf(cc.perf_map, NULL, _IOLBF, 0);
	}
	for (size_t i = 0; i < nsyscalls; i++)
		cc.sysfilter[syscalls[i]] = 1;
	cc.pages = calloc(PAGE_SET_SIZE, sizeof(*cc.pages));
	cc.chained = mmap(NULL, CHAINED_MAX * sizeof(*cc.chained), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!cc.pages || cc.chained == MAP_FAILED)
		return -ENOMEM;
	/* XSAVE of every state component the OS enabled (XCR0). */
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))
		return -ENOTSUP; /* no OSXSAVE */
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	cc.xsave_mask = ((uint64_t)hi << 32) | lo;
	__cpuid_count(0xd, 0, a, b, c, d);
	cc.xsave_size = b;
	__cpuid_count(0xd, 1, a, b, c, d);
	if (!(a & 1))
		return -ENOTSUP; /* no XSAVEOPT (xlat_exit_routine) */
	return 0;
}

void xlat_filter_syscall(unsigned nr)
{
	__atomic_store_n(&cc.sysfilter[nr & 0xffff], 1, __ATOMIC_RELAXED);
}

int xlat_ctx_create(struct xlat_ctx **out, void *owner)
{
	struct xlat_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->lookup = malloc(XLAT_LOOKUP_ENTRIES * sizeof(*ctx->lookup));
	ctx->xsave = aligned_alloc(64, (cc.xsave_size + 63) & ~63u);
	if (!ctx->lookup || !ctx->xsave) {
		free(ctx->lookup);
		free(ctx->xsave);
		free(ctx);
		return -ENOMEM;
	}
	memset(ctx->xsave, 0, cc.xsave_size);
	/* The guest starts with the host's current x87/SSE state. */
	__asm__ volatile("xsave64 (%0)" : : "r"(ctx->xsave), "a"((uint32_t)cc.xsave_mask),
			 "d"((uint32_t)(cc.xsave_mask >> 32)) : "memory");
	lookup_clear(ctx->lookup);
	ctx->rflags = 0x202;
	ctx->rflags_top = (uintptr_t)(&ctx->rflags + 1);
	ctx->sysfilter = cc.sysfilter;
	ctx->exit_code = (const void *)xlat_exit_routine;
	ctx->miss_code = (const void *)xlat_miss_routine;
	ctx->self = ctx;
	ctx->xsave_mask = cc.xsave_mask;
	ctx->owner = owner;
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, ctx) < 0) {
		int err = -errno;
		xlat_ctx_destroy(ctx);
		return err;
	}
	pthread_mutex_lock(&cc.lock);
	ctx->quiet = cc.epoch;
	ctx->next = cc.contexts;
	cc.contexts = ctx;
	pthread_mutex_unlock(&cc.lock);
	*out = ctx;
	return 0;
}

void xlat_ctx_destroy(struct xlat_ctx *ctx)
{
	pthread_mutex_lock(&cc.lock);
	for (struct xlat_ctx **p = &cc.contexts; *p; p = &(*p)->next) {
		if (*p == ctx) {
			*p = ctx->next;
			break;
		}
	}
	pthread_mutex_unlock(&cc.lock);
	free(ctx->lookup);
	free(ctx->xsave);
	free(ctx);
}

void xlat_after_fork(struct xlat_ctx *ctx)
{
	pthread_mutex_init(&cc.lock, NULL);
	ctx->next = NULL;
	cc.contexts = ctx;
}

void xlat_ctx_copy_fpu(struct xlat_ctx *dst, const struct xlat_ctx *src)
{
	memcpy(dst->xsave, src->xsave, cc.xsave_size);
}
