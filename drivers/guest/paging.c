/* A page pool and a mapper over the live 4-level page tables. */
#include "guest.h"

#define POOL_PAGES 256

static uint8_t pool[POOL_PAGES][4096] __attribute__((aligned(4096)));
static unsigned pool_used;

void *page_alloc(void)
{
	if (pool_used == POOL_PAGES) {
		printf("FAIL page pool exhausted (%u pages)\n", POOL_PAGES);
		guest_checks_failed++;
		guest_finish();
	}
	void *p = pool[pool_used++];
	memset(p, 0, 4096);
	return p;
}

static uint64_t *table_of(uint64_t entry)
{
	return (uint64_t *)(entry & PTE_ADDR_MASK);
}

/* The table the entry points to, made if absent. A large page in the way is
 * split into a table of the next size down with the same contents. */
static uint64_t *next_table(uint64_t *entry, uint64_t child_size)
{
	if (!(*entry & PTE_P)) {
		*entry = (uint64_t)page_alloc() | PTE_P | PTE_W | PTE_U;
	} else if (*entry & PTE_PS) {
		uint64_t *t = page_alloc();
		uint64_t base = *entry & PTE_ADDR_MASK & ~(child_size * 512 - 1);
		uint64_t flags = *entry & ~PTE_ADDR_MASK;
		for (int i = 0; i < 512; i++)
			t[i] = (base + i * child_size) | (child_size == 4096 ? flags & ~PTE_PS : flags);
		*entry = (uint64_t)t | PTE_P | PTE_W | PTE_U;
	}
	return table_of(*entry);
}

void paging_map(uint64_t va, uint64_t pa, uint64_t size, uint64_t flags)
{
	uint64_t *pml4 = (uint64_t *)(read_cr3() & PTE_ADDR_MASK);
	uint64_t *pdpt = next_table(&pml4[(va >> 39) & 511], 1ull << 30);
	if (size == 1ull << 30) {
		pdpt[(va >> 30) & 511] = pa | flags | PTE_PS;
	} else {
		uint64_t *pd = next_table(&pdpt[(va >> 30) & 511], 1ull << 21);
		if (size == 1ull << 21) {
			pd[(va >> 21) & 511] = pa | flags | PTE_PS;
		} else {
			uint64_t *pt = next_table(&pd[(va >> 21) & 511], 4096);
			pt[(va >> 12) & 511] = pa | flags;
		}
	}
	invlpg(va);
}

uint64_t *paging_leaf(uint64_t va)
{
	uint64_t *table = (uint64_t *)(read_cr3() & PTE_ADDR_MASK);
	for (int shift = 39; shift >= 12; shift -= 9) {
		uint64_t *e = &table[(va >> shift) & 511];
		if (!(*e & PTE_P))
			return NULL;
		if (shift == 12 || (*e & PTE_PS))
			return e;
		table = table_of(*e);
	}
	return NULL;
}
