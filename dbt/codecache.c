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
#define HASH_SIZE  (1u << 16)
#define PAGE_SET_SIZE (1u << 16)

struct zone {
	uint8_t *base, *next, *end;
	/* Its blocks in code order (for host PC -> block). */
	struct xlat_block **blocks;
	size_t nblocks, cap;
};

#define CHAINED_MAX (1u << 20)

static struct {
	pthread_mutex_t lock;
	struct xlat_env env;
	struct zone zones[ZONE_MAX];
	unsigned nzones;
	struct xlat_block *hash[HASH_SIZE];
	/* Guest pages translations were made from (open addressing; 0 free). */
	uint64_t *pages;
	unsigned npages;
	uint8_t sysfilter[1u << 16];
	struct xlat_ctx *contexts;
	unsigned nthreads;
	uint32_t xsave_size;
	uint64_t xsave_mask;
	/* Every stub chained since the last flush (xlat_unlink). */
	struct xlat_exit **chained;
	unsigned nchained;
	FILE *perf_map; /* VIREO_PERF_MAP: /tmp/perf-PID.map, for perf report */
} cc = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct xlat_stats xlat_stats;

static unsigned hash_rip(uint64_t rip)
{
	return (unsigned)((rip ^ (rip >> 16)) * 0x9e3779b1u) & (HASH_SIZE - 1);
}

/* ---- the set of guest pages holding translated code ---- */

static void page_add(uint64_t page)
{
	if (cc.npages * 2 >= PAGE_SET_SIZE * 1u)
		return; /* full: invalidation then checks every block (see page_maybe) */
	unsigned i = hash_rip(page) & (PAGE_SET_SIZE - 1);
	while (cc.pages[i] && cc.pages[i] != page + 1)
		i = (i + 1) & (PAGE_SET_SIZE - 1);
	if (!cc.pages[i]) {
		cc.pages[i] = page + 1;
		cc.npages++;
	}
}

static bool page_has_code(uint64_t page)
{
	unsigned i = hash_rip(page) & (PAGE_SET_SIZE - 1);
	while (cc.pages[i]) {
		if (cc.pages[i] == page + 1)
			return true;
		i = (i + 1) & (PAGE_SET_SIZE - 1);
	}
	return false;
}

/* Might [first, last] (page numbers) hold translated code? */
static bool range_has_code(uint64_t first, uint64_t last)
{
	if (cc.npages * 2 >= PAGE_SET_SIZE)
		return true;
	if (last - first >= PAGE_SET_SIZE) {
		for (unsigned i = 0; i < PAGE_SET_SIZE; i++)
			if (cc.pages[i] && cc.pages[i] - 1 >= first && cc.pages[i] - 1 <= last)
				return true;
		return false;
	}
	for (uint64_t p = first; p <= last; p++)
		if (page_has_code(p))
			return true;
	return false;
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

/* Drops every translation. Other threads may be running translated code:
 * then the zones are abandoned, not reused (docs: "Invalidation"). */
static void flush_all(void)
{
	for (unsigned i = 0; i < HASH_SIZE; i++) {
		struct xlat_block *b = cc.hash[i];
		while (b) {
			struct xlat_block *n = b->hnext;
			free(b);
			b = n;
		}
		cc.hash[i] = NULL;
	}
	memset(cc.pages, 0, PAGE_SET_SIZE * sizeof(*cc.pages));
	cc.npages = 0;
	for (struct xlat_ctx *c = cc.contexts; c; c = c->next)
		lookup_clear(c->lookup);
	for (unsigned i = 0; i < cc.nzones; i++) {
		cc.zones[i].nblocks = 0;
		cc.zones[i].next = cc.zones[i].base;
	}
	if (cc.nthreads > 1)
		cc.nzones = 0; /* abandoned, not reused: see the comment above */
	__atomic_store_n(&cc.nchained, 0, __ATOMIC_RELEASE);
	xlat_stats.flushes++;
	__atomic_add_fetch(&xlat_flush_gen, 1, __ATOMIC_RELEASE);
}

void xlat_invalidate(uint64_t addr, uint64_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&cc.lock);
	if (range_has_code(addr >> 12, (addr + len - 1) >> 12))
		flush_all();
	pthread_mutex_unlock(&cc.lock);
}

/* ---- zones ---- */

static uint64_t distance(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

/* A zone near rip with room for a block, or any zone with room. */
static struct zone *zone_for(uint64_t rip)
{
	struct zone *any = NULL;
	for (unsigned i = 0; i < cc.nzones; i++) {
		struct zone *z = &cc.zones[i];
		if (z->end - z->next < 65536)
			continue;
		if (distance((uintptr_t)z->base, rip) < ZONE_REACH)
			return z;
		any = z;
	}
	if (cc.nzones < ZONE_MAX) {
		/* Below the guest code (its heap grows above it), or above it
		 * where low addresses leave no room. */
		uint64_t hint = rip > (1ull << 32) ? ((rip - (256ull << 20)) & ~(ZONE_SIZE - 1))
						   : ((rip + (1ull << 30)) & ~(ZONE_SIZE - 1));
		void *p = mmap((void *)(uintptr_t)hint, ZONE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED) {
			struct zone *z = &cc.zones[cc.nzones];
			free(z->blocks);
			*z = (struct zone){.base = p, .next = p};
			__atomic_store_n(&cc.nzones, cc.nzones + 1, __ATOMIC_RELEASE);
			z->end = z->base + ZONE_SIZE;
			if (distance((uintptr_t)p, rip) < ZONE_REACH || !any)
				return z;
		}
	}
	return any;
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
	for (unsigned i = 0; i < n; i++)
		if (pc >= (uintptr_t)cc.zones[i].base && pc < (uintptr_t)cc.zones[i].end)
			return true;
	return false;
}

uint64_t xlat_guest_rip(uint64_t pc)
{
	unsigned n = __atomic_load_n(&cc.nzones, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++) {
		struct zone *z = &cc.zones[i];
		if (pc < (uintptr_t)z->base || pc >= (uintptr_t)z->end)
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
			return 0;
		struct xlat_block *b = blocks[lo - 1];
		uint64_t off = pc - (uintptr_t)b->code;
		if (off >= b->size || !b->ninsns)
			return 0;
		uint32_t k = 0;
		while (k + 1 < b->ninsns && b->map[k + 1].host_off <= off)
			k++;
		return b->rip + b->map[k].guest_off;
	}
	return 0;
}

void xlat_unlink(struct xlat_ctx *ctx)
{
	unsigned n = __atomic_load_n(&cc.nchained, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++) {
		struct xlat_exit *x = cc.chained[i];
		__atomic_store_n(&x->slot, x->unchained, __ATOMIC_RELEASE);
		if (x->patch)
			rel32_set(x->patch, (const void *)(uintptr_t)(x->unchained - 6)); /* the stub */
	}
	__atomic_store_n(&cc.nchained, 0, __ATOMIC_RELEASE);
	lookup_clear(ctx->lookup);
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

static struct xlat_block *translate_block(uint64_t rip, int *err)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct zone *z = zone_for(rip);
		if (!z) {
			flush_all();
			continue;
		}
		uint64_t end;
		uint32_t ninsns;
		struct xlat_insn_map map[XLAT_BLOCK_INSNS];
		int n = xlat_translate(&cc.env, rip, z->next, (size_t)(z->end - z->next), &end, map, &ninsns);
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
		for (uint64_t p = rip >> 12; p <= (end - 1) >> 12; p++)
			page_add(p);
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

const void *xlat_code_for(struct xlat_ctx *ctx, uint64_t rip, const struct xlat_exit *from, unsigned gen, int *err)
{
	pthread_mutex_lock(&cc.lock);
	struct xlat_block *b = find_block(rip);
	if (!b)
		b = translate_block(rip, err);
	if (b && from && from->kind == XEXIT_BRANCH && gen == xlat_flush_gen && cc.nchained < CHAINED_MAX) {
		/* Chain: the stub's slot always reaches; the branch itself
		 * where the target is within 2 GiB. */
		struct xlat_exit *x = (struct xlat_exit *)from;
		__atomic_store_n(&x->slot, (uintptr_t)b->code, __ATOMIC_RELEASE);
		if (x->patch)
			rel32_set(x->patch, b->code);
		cc.chained[cc.nchained] = x;
		__atomic_store_n(&cc.nchained, cc.nchained + 1, __ATOMIC_RELEASE);
		xlat_stats.chained++;
	}
	pthread_mutex_unlock(&cc.lock);
	if (b)
		xlat_remember(ctx, rip, b->code);
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
	return 0;
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
	ctx->next = cc.contexts;
	cc.contexts = ctx;
	cc.nthreads++;
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
			cc.nthreads--;
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
	cc.nthreads = 1;
}

void xlat_ctx_copy_fpu(struct xlat_ctx *dst, const struct xlat_ctx *src)
{
	memcpy(dst->xsave, src->xsave, cc.xsave_size);
}
