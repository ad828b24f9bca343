/*
 * The guest's memory map as the translator needs it: which pages the guest
 * may execute (its mappings' protections, kept from the loader and from the
 * mmap/mprotect/munmap/mremap calls it makes), and its break.
 *
 * A sorted array of [start, end) ranges with one protection each; ranges
 * never overlap. The guest's mappings are few (hundreds), changes are rare
 * next to lookups, and lookups happen only when a block is translated.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dbt/translator.h"
#include "dbt/user/user.h"

struct range {
	uint64_t start, end;
	int prot;
};

static struct {
	pthread_mutex_t lock;
	struct range *r;
	size_t n, cap;
} maps = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Removes [start, end) from the array, splitting ranges that straddle it. */
static int cut(uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < maps.n; i++) {
		struct range *r = &maps.r[i];
		if (r->end <= start || r->start >= end)
			continue;
		if (r->start < start && r->end > end) { /* split in two */
			if (maps.n == maps.cap)
				return -1;
			memmove(r + 2, r + 1, (maps.n - i - 1) * sizeof(*r));
			r[1] = (struct range){end, r->end, r->prot};
			r->end = start;
			maps.n++;
			return 0;
		}
		if (r->start < start) {
			r->end = start;
		} else if (r->end > end) {
			r->start = end;
		} else {
			memmove(r, r + 1, (maps.n - i - 1) * sizeof(*r));
			maps.n--;
			i--;
		}
	}
	return 0;
}

void user_maps_set(uint64_t addr, uint64_t len, int prot)
{
	uint64_t end = addr + len;
	if (end < addr)
		return;
	pthread_mutex_lock(&maps.lock);
	if (maps.n + 2 > maps.cap) {
		size_t cap = maps.cap ? maps.cap * 2 : 256;
		struct range *r = realloc(maps.r, cap * sizeof(*r));
		if (!r) {
			pthread_mutex_unlock(&maps.lock);
			return;
		}
		maps.r = r;
		maps.cap = cap;
	}
	cut(addr, end);
	if (prot) {
		size_t i = 0;
		while (i < maps.n && maps.r[i].start < addr)
			i++;
		memmove(&maps.r[i + 1], &maps.r[i], (maps.n - i) * sizeof(*maps.r));
		maps.r[i] = (struct range){addr, end, prot};
		maps.n++;
	}
	pthread_mutex_unlock(&maps.lock);
}

static const struct range *find(uint64_t addr)
{
	size_t lo = 0, hi = maps.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (maps.r[mid].end <= addr)
			lo = mid + 1;
		else if (maps.r[mid].start > addr)
			hi = mid;
		else
			return &maps.r[mid];
	}
	return NULL;
}

int user_maps_prot(uint64_t addr)
{
	pthread_mutex_lock(&maps.lock);
	const struct range *r = find(addr);
	int prot = r ? r->prot : 0;
	pthread_mutex_unlock(&maps.lock);
	return prot;
}

size_t user_maps_fetchable(void *opaque, uint64_t addr, size_t len)
{
	size_t n = 0;
	(void)opaque;
	pthread_mutex_lock(&maps.lock);
	while (n < len) {
		const struct range *r = find(addr + n);
		if (!r || !(r->prot & PROT_EXEC) || !(r->prot & PROT_READ))
			break;
		n = r->end - addr >= len ? len : r->end - addr;
	}
	pthread_mutex_unlock(&maps.lock);
	return n;
}

/* Pages translations were made from are read-only on the host while the
 * guest may write them: its first write faults (user_smc_fault), which
 * drops their translations and gives the write access back. */
void user_maps_code_page(void *opaque, uint64_t page, bool code)
{
	(void)opaque;
	int prot = user_maps_prot(page);
	if ((prot & PROT_WRITE) && (prot & PROT_EXEC)) { /* no code comes from other pages */
		mprotect((void *)(uintptr_t)page, 4096, code ? prot & ~PROT_WRITE : prot);
		if (code)
			user_sysbuf_enable();
	}
}

unsigned user_maps_unprotect(uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;
	unsigned n = 0;

	if (!len || end < addr)
		return 0;
	addr &= ~4095ull;
	while (addr < end) {
		/* One writable and executable range at a time: the lock is not
		 * held while translations are dropped. */
		uint64_t lo = 0, hi = 0;
		pthread_mutex_lock(&maps.lock);
		for (size_t i = 0; i < maps.n; i++) {
			const struct range *r = &maps.r[i];
			if (r->end > addr && r->start < end && (r->prot & PROT_WRITE) && (r->prot & PROT_EXEC)) {
				lo = r->start > addr ? r->start : addr;
				hi = r->end < end ? r->end : end;
				break;
			}
		}
		pthread_mutex_unlock(&maps.lock);
		if (lo == hi)
			break;
		n += xlat_invalidate(lo, hi - lo);
		addr = hi;
	}
	return n;
}

bool user_smc_fault(uint64_t addr)
{
	uint64_t page = addr & ~4095ull;
	if (!(user_maps_prot(page) & PROT_WRITE))
		return false; /* a real fault: the guest may not write there */
	/* Write access comes back under the cache's lock when the page's
	 * last block goes (code_page false), so a block made from it at the
	 * same time by another thread keeps it protected. */
	return xlat_invalidate(page, 4096) > 0;
}

void user_maps_add_vdso(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			user_maps_set(lo, hi - lo, PROT_READ | PROT_EXEC);
	}
	fclose(f);
}

/* ---- the break ---- */

static struct {
	pthread_mutex_t lock;
	uint64_t start, cur, mapped; /* mapped: end of the pages we hold */
} heap = {.lock = PTHREAD_MUTEX_INITIALIZER};

void user_brk_init(uint64_t start)
{
	heap.start = heap.cur = heap.mapped = (start + 4095) & ~4095ull;
}

/* Grows or shrinks as Linux's brk does: the new break, or the old one
 * when the request cannot be met. */
uint64_t user_brk_set(uint64_t want)
{
	pthread_mutex_lock(&heap.lock);
	if (want < heap.start) {
		want = heap.cur;
		goto out;
	}
	uint64_t need = (want + 4095) & ~4095ull;
	if (need > heap.mapped) {
		void *p = mmap((void *)(uintptr_t)heap.mapped, need - heap.mapped, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED || p != (void *)(uintptr_t)heap.mapped) {
			if (p != MAP_FAILED)
				munmap(p, need - heap.mapped);
			want = heap.cur;
			goto out;
		}
		user_maps_set(heap.mapped, need - heap.mapped, PROT_READ | PROT_WRITE);
	} else if (need < heap.mapped) {
		munmap((void *)(uintptr_t)need, heap.mapped - need);
		user_maps_set(need, heap.mapped - need, 0);
	}
	heap.mapped = need;
	heap.cur = want;
out:
	pthread_mutex_unlock(&heap.lock);
	return want;
}
