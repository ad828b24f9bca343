/*
 * The block cache. Blocks live in a per-vCPU arena and are found through a
 * hash keyed by guest-physical address, virtual RIP and decode mode; a jump
 * cache indexed by RIP makes the common lookup a load and three compares.
 * When the arena fills, everything is dropped at once.
 *
 * Self-modifying code: every page of guest RAM has a word shared by the
 * vCPUs of the guest (struct dbt_shared). Bit 0 says blocks were decoded from
 * the page; TLB entries of such a page send writes to the slow path, which
 * clears the bit and bumps the generation. A block is valid only while the
 * words of its pages equal what they were when it was decoded.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "dbt/internal.h"

#define ARENA_SIZE (64u << 20)

/* ---- shared code-page words --------------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dbt_shared *registry;

struct dbt_shared *shared_get(const struct dbt_env *env)
{
	uint8_t *key = env->ram_count ? env->ram[0].host : NULL;
	struct dbt_shared *sh;

	pthread_mutex_lock(&registry_lock);
	for (sh = registry; sh; sh = sh->next)
		if (key && sh->ram_host == key)
			break;
	if (sh) {
		sh->refs++;
		pthread_mutex_unlock(&registry_lock);
		return sh;
	}
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		goto out;
	sh->ram_host = key;
	sh->refs = 1;
	sh->ram_count = env->ram_count;
	for (unsigned i = 0; i < env->ram_count; i++) {
		sh->ram_gpa[i] = env->ram[i].gpa;
		sh->ram_size[i] = env->ram[i].size;
		sh->ram_first_page[i] = sh->pages;
		sh->pages += (env->ram[i].size + PAGE_SIZE - 1) / PAGE_SIZE;
	}
	sh->gen = calloc(sh->pages ? sh->pages : 1, sizeof(*sh->gen));
	if (!sh->gen) {
		free(sh);
		sh = NULL;
		goto out;
	}
	sh->next = registry;
	registry = sh;
out:
	pthread_mutex_unlock(&registry_lock);
	return sh;
}

void shared_put(struct dbt_shared *sh)
{
	pthread_mutex_lock(&registry_lock);
	if (--sh->refs == 0) {
		for (struct dbt_shared **p = &registry; *p; p = &(*p)->next)
			if (*p == sh) {
				*p = sh->next;
				break;
			}
		free((void *)sh->gen);
		free(sh);
	}
	pthread_mutex_unlock(&registry_lock);
}

int64_t code_page_index(const struct dbt_shared *sh, uint64_t gpa)
{
	for (unsigned i = 0; i < sh->ram_count; i++)
		if (gpa >= sh->ram_gpa[i] && gpa - sh->ram_gpa[i] < sh->ram_size[i])
			return (int64_t)(sh->ram_first_page[i] + ((gpa - sh->ram_gpa[i]) >> 12));
	return -1;
}

static void page_invalidate(struct dbt_shared *sh, int64_t idx)
{
	uint32_t w = atomic_load_explicit(&sh->gen[idx], memory_order_relaxed);
	while ((w & 1) && !atomic_compare_exchange_weak(&sh->gen[idx], &w, (w + 2) & ~1u))
		;
	atomic_fetch_add(&sh->inval, 1);
}

void code_page_written(struct dbt_cpu *cpu, uint64_t gpa)
{
	int64_t idx = code_page_index(cpu->shared, gpa);
	if (!code_page_is_code(cpu->shared, idx))
		return;
	page_invalidate(cpu->shared, idx);
	/* The rest of the running block may be what was just overwritten. */
	if (cpu->in_block && !cpu->stop)
		end_block(cpu, next_rip(cpu->cur));
}

void dbt_invalidate_range(struct dbt_cpu *cpu, uint64_t gpa, uint64_t len)
{
	if (!len)
		return;
	for (uint64_t p = gpa & PAGE_MASK; p < gpa + len && p >= (gpa & PAGE_MASK); p += PAGE_SIZE) {
		int64_t idx = code_page_index(cpu->shared, p);
		if (code_page_is_code(cpu->shared, idx))
			page_invalidate(cpu->shared, idx);
	}
}

/* Marks a page as holding code and returns its word. Writes to it must now
 * take the slow path: this vCPU drops its fast write entries for the page,
 * the others do so at their next block boundary (the epoch). */
static uint32_t code_page_mark(struct dbt_cpu *cpu, int64_t idx, uint64_t gpa_page)
{
	struct dbt_shared *sh = cpu->shared;
	uint32_t w = atomic_load(&sh->gen[idx]);
	if (w & 1)
		return w;
	w = atomic_fetch_or(&sh->gen[idx], 1) | 1;
	if (atomic_fetch_add(&sh->epoch, 1) == cpu->seen_epoch)
		cpu->seen_epoch++;
	for (int set = 0; set < 2; set++)
		for (int i = 0; i < TLB_SIZE; i++) {
			struct tlb_entry *e = &cpu->tlbs[set][i];
			if (e->gpa == gpa_page && !e->mmio && !(e->tag[TLB_WRITE] & TLB_SLOW))
				e->tag[TLB_WRITE] |= TLB_SLOW;
		}
	return w;
}

/* ---- the cache ------------------------------------------------------------------------- */

int cache_init(struct dbt_cpu *cpu)
{
	cpu->arena = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (cpu->arena == MAP_FAILED) {
		cpu->arena = NULL;
		return -1;
	}
	cpu->arena_size = ARENA_SIZE;
	for (int set = 0; set < 3; set++)
		for (int i = 0; i < TLB_SIZE; i++)
			cpu->tlbs[set][i].tag[0] = cpu->tlbs[set][i].tag[1] = cpu->tlbs[set][i].tag[2] = TLB_INVALID;
	return 0;
}

void cache_destroy(struct dbt_cpu *cpu)
{
	if (cpu->arena)
		munmap(cpu->arena, cpu->arena_size);
	cpu->arena = NULL;
}

static inline unsigned bh_hash(uint64_t gpa, uint64_t rip)
{
	uint64_t h = (gpa ^ (rip << 7)) * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 50) & (BLOCK_HASH_SIZE - 1);
}

void cache_flush_jumps(struct dbt_cpu *cpu)
{
	memset(cpu->jcache, 0, sizeof(cpu->jcache));
}

void cache_flush_jumps_page(struct dbt_cpu *cpu, uint64_t lin)
{
	/* The RIPs of the linear page (the CS base need not be page aligned,
	 * so they may span two RIP pages), and the page before, whose blocks
	 * may run into it. */
	uint64_t r0 = (lin & PAGE_MASK) - cpu->segbase[SEG_CS];
	uint64_t p = (r0 & PAGE_MASK) - PAGE_SIZE, last = (r0 + PAGE_SIZE - 1) & PAGE_MASK;
	for (;; p += PAGE_SIZE) {
		memset(&cpu->jcache[jc_hash(p) & ~63u], 0, 64 * sizeof(cpu->jcache[0]));
		if (p == last)
			break;
	}
}

void cache_flush_all(struct dbt_cpu *cpu)
{
	cpu->arena_used = 0;
	memset(cpu->bhash, 0, sizeof(cpu->bhash));
	cache_flush_jumps(cpu);
	fpu_reset_stubs(cpu);
}

static inline bool block_valid(const struct dbt_shared *sh, const struct block *b)
{
	if (atomic_load_explicit(&sh->gen[b->page[0]], memory_order_relaxed) != b->gen[0])
		return false;
	return b->npages < 2 || atomic_load_explicit(&sh->gen[b->page[1]], memory_order_relaxed) == b->gen[1];
}

/* Space for one more block of the largest size, or NULL. */
void *cache_alloc(struct dbt_cpu *cpu, size_t size)
{
	size = (size + 63) & ~(size_t)63;
	if (cpu->arena_used + size > cpu->arena_size)
		return NULL;
	void *p = cpu->arena + cpu->arena_used;
	cpu->arena_used += size;
	return p;
}

bool cache_has_room(struct dbt_cpu *cpu)
{
	return cpu->arena_used + sizeof(struct block) + BLOCK_MAX_INSNS * sizeof(struct dinsn) + 64 <= cpu->arena_size;
}

/* Records the pages a new block was decoded from. */
uint32_t cache_mark_page(struct dbt_cpu *cpu, uint64_t gpa, uint32_t *index)
{
	int64_t idx = code_page_index(cpu->shared, gpa);
	if (idx < 0) { /* identity mode: no RAM ranges, nothing cached */
		*index = 0;
		return 0;
	}
	*index = (uint32_t)idx;
	return code_page_mark(cpu, idx, gpa & PAGE_MASK);
}

static struct block *lookup_slow(struct dbt_cpu *cpu, uint64_t rip, uint32_t key)
{
	if (cpu->mode != MODE_LONG64 && rip > cpu->s.seg[SEG_CS].limit)
		raise_gp(cpu, 0);
	uint64_t lin = (rip + cpu->segbase[SEG_CS]) & cpu->lin_mask;
	uint64_t gpa = mmu_translate_exec(cpu, lin);
	unsigned h = bh_hash(gpa, rip);
	struct block **pp = &cpu->bhash[h], *b;

	while ((b = *pp)) {
		if (b->gpa != gpa || b->rip != rip || b->key != key) {
			pp = &b->hnext;
			continue;
		}
		if (!block_valid(cpu->shared, b)) {
			*pp = b->hnext;
			continue;
		}
		if (b->npages == 2) {
			uint64_t gpa2 = mmu_translate_exec(cpu, ((lin & PAGE_MASK) + PAGE_SIZE) & cpu->lin_mask);
			if ((gpa2 & PAGE_MASK) != b->gpa2) {
				pp = &b->hnext;
				continue;
			}
		}
		break;
	}
	if (!b) {
		if (!cache_has_room(cpu) || !fpu_has_room(cpu))
			cache_flush_all(cpu);
		b = decode_block(cpu, gpa);
		h = bh_hash(gpa, rip);
		b->hnext = cpu->bhash[h];
		cpu->bhash[h] = b;
	}
	cpu->jcache[jc_hash(rip)] = b;
	return b;
}

struct block *cache_lookup_slow(struct dbt_cpu *cpu)
{
	return lookup_slow(cpu, cpu->rip, cpu->key);
}
