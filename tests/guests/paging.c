/*
 * Paging: 4 KiB, 2 MiB and 1 GiB translations, NX, accessed and dirty bits,
 * INVLPG and CR3 flushes, CR0.WP, user/supervisor, reserved-bit and
 * not-present faults.
 * Every mapping under test lies above the runtime's 4 GiB identity map, so
 * what is written through it can be read back at its physical address (and
 * the other way round). Expected #PF error codes and CR2 values follow from
 * the SDM's rules for the access each check makes.
 */
#include "guest.h"

#define SIZE_4K 0x1000ull
#define SIZE_2M (1ull << 21)
#define SIZE_1G (1ull << 30)
#define CR0_WP	BIT64(16)

/* PML4 slot 1 holds most mappings; slot 2 is only the A/D test's, so every
 * table on its walk starts with A clear; slot 3 is the reserved-bit test's,
 * whose PML4E it breaks; slot 48 is never mapped. */
#define VA_4K		 0x8000000000ull /* 4 KiB pages, all in one page table */
#define VA_2M		 0x8040000000ull /* 2 MiB pages */
#define VA_1G		 0x8080000000ull /* the 1 GiB page */
#define VA_AD		 0x10000000000ull
#define VA_RSVD		 0x18000000000ull
#define VA_UNMAPPED_PML4 0x180000000abdull

/* Pages of the VA_4K table, one group per test. */
enum {
	SLOT_SCRAMBLE = 0x00,
	SLOT_ALIAS = 0x10,
	SLOT_NX = 0x20,
	SLOT_FLUSH = 0x30,
	SLOT_WP = 0x40,
	SLOT_USER = 0x50,
	SLOT_ABSENT = 0x60, /* never mapped */
	SLOT_UNMAP = 0x70,
};
#define VA_SLOT(s) (VA_4K + SIZE_4K * (s))

/* Physical target of the 2 MiB page: RAM well above the image. */
#define PHYS_2M (32ull << 20)

#define MULTIBOOT_HEADER_MAGIC	   0x1badb002
#define QEMU_DEFAULT_RAM	   (128ull << 20)

static const uint64_t marker = 0x6d61726b65722131; /* read back through the 1 GiB page */

static inline uint64_t rd64(uint64_t a)
{
	return *(volatile uint64_t *)a;
}
static inline void wr64(uint64_t a, uint64_t v)
{
	*(volatile uint64_t *)a = v;
}
static inline uint8_t rd8(uint64_t a)
{
	return *(volatile uint8_t *)a;
}
static inline void wr8(uint64_t a, uint8_t v)
{
	*(volatile uint8_t *)a = v;
}

/* Distinct, non-zero data per (tag, index), so a wrong page or offset shows. */
static uint64_t pattern(uint64_t tag, uint64_t i)
{
	return (tag << 56) ^ ((i + 1) * 0x9e3779b97f4a7c15ull);
}

static uint64_t alloc_phys(void)
{
	return (uint64_t)page_alloc();
}

/* ---- accesses run under trap_run ---------------------------------------- */

#define WRITE_BYTE 0x5a

static void touch_read(void *p)
{
	(void)*(volatile uint8_t *)p;
}

static void touch_write(void *p)
{
	*(volatile uint8_t *)p = WRITE_BYTE;
}

static void touch_exec(void *p)
{
	((void (*)(void))p)();
}

/* Ring 3 accesses: user_run inside trap_run, so a fault lands back here. */
struct user_access {
	uint64_t va, value;
};

static uint64_t user_read(void *p)
{
	return rd64(((struct user_access *)p)->va);
}

static uint64_t user_write(void *p)
{
	wr8(((struct user_access *)p)->va, WRITE_BYTE);
	return 0;
}

static void user_read_trap(void *p)
{
	((struct user_access *)p)->value = user_run(user_read, p);
}

static void user_write_trap(void *p)
{
	user_run(user_write, p);
}

/* fn(arg) must raise #PF with this error code and CR2. */
static struct trap_record expect_pf(const char *name, void (*fn)(void *), void *arg, uint64_t cr2, uint64_t error)
{
	struct trap_record r = {0};
	bool faulted = trap_run(fn, arg, &r);
	check(faulted && r.vector == VEC_PF && r.error == error && r.cr2 == cr2, name,
	      "expected #PF error 0x%lx CR2 0x%lx, got %s vector %lu error 0x%lx CR2 0x%lx", error, cr2,
	      faulted ? "a fault:" : "no fault", r.vector, r.error, r.cr2);
	return r;
}

/* fn(arg) must run to completion. */
static bool expect_runs(const char *name, void (*fn)(void *), void *arg)
{
	struct trap_record r = {0};
	bool faulted = trap_run(fn, arg, &r);
	check(!faulted, name, "vector %lu error 0x%lx at RIP 0x%lx CR2 0x%lx", r.vector, r.error, r.rip, r.cr2);
	return !faulted;
}

/* ---- translations ------------------------------------------------------- */

/* Eight virtual pages onto eight physical pages in a shuffled order, data
 * checked in both directions over every quadword. */
static void check_4k_scrambled(void)
{
	static const unsigned order[8] = {5, 2, 7, 0, 3, 6, 1, 4};
	uint64_t phys[8];

	for (unsigned i = 0; i < 8; i++)
		phys[i] = alloc_phys();
	for (unsigned i = 0; i < 8; i++)
		paging_map(VA_SLOT(SLOT_SCRAMBLE + i), phys[order[i]], SIZE_4K, PTE_P | PTE_W);

	for (unsigned i = 0; i < 8; i++)
		for (unsigned j = 0; j < 512; j++)
			wr64(VA_SLOT(SLOT_SCRAMBLE + i) + 8 * j, pattern(i + 1, j));
	for (unsigned i = 0; i < 8; i++) {
		char name[48];
		unsigned j = 0;
		while (j < 512 && rd64(phys[order[i]] + 8 * j) == pattern(i + 1, j))
			j++;
		snprintf(name, sizeof(name), "4k.write-va%u-read-phys%u", i, order[i]);
		check(j == 512, name, "quadword %u: expected 0x%lx got 0x%lx", j, pattern(i + 1, j),
		      rd64(phys[order[i]] + 8 * (j & 511)));
	}

	for (unsigned i = 0; i < 8; i++)
		for (unsigned j = 0; j < 512; j++)
			wr64(phys[i] + 8 * j, pattern(i + 0x11, j));
	for (unsigned i = 0; i < 8; i++) {
		char name[48];
		unsigned j = 0;
		while (j < 512 && rd64(VA_SLOT(SLOT_SCRAMBLE + i) + 8 * j) == pattern(order[i] + 0x11, j))
			j++;
		snprintf(name, sizeof(name), "4k.write-phys%u-read-va%u", order[i], i);
		check(j == 512, name, "quadword %u: expected 0x%lx got 0x%lx", j, pattern(order[i] + 0x11, j),
		      rd64(VA_SLOT(SLOT_SCRAMBLE + i) + 8 * (j & 511)));
	}
}

/* Two virtual pages on one physical page see each other's writes. */
static void check_4k_alias(void)
{
	uint64_t phys = alloc_phys(), a = VA_SLOT(SLOT_ALIAS), b = VA_SLOT(SLOT_ALIAS + 1);

	paging_map(a, phys, SIZE_4K, PTE_P | PTE_W);
	paging_map(b, phys, SIZE_4K, PTE_P | PTE_W);
	wr64(a + 0x18, pattern(0x31, 0));
	check_eq("4k.alias.write-a-read-b", pattern(0x31, 0), rd64(b + 0x18));
	wr64(b + 0xff0, pattern(0x32, 0));
	check_eq("4k.alias.write-b-read-a", pattern(0x32, 0), rd64(a + 0xff0));
	check_eq("4k.alias.phys", pattern(0x31, 0) ^ pattern(0x32, 0), rd64(phys + 0x18) ^ rd64(phys + 0xff0));
}

/* End of RAM from the multiboot memory fields, else QEMU's default. */
static uint64_t ram_end(void)
{
	const volatile uint32_t *info = (const volatile uint32_t *)(uint64_t)multiboot_info;

	if (multiboot_magic == MULTIBOOT_BOOT_MAGIC && info && (info[0] & 1))
		return (1ull << 20) + (uint64_t)info[2] * 1024;
	return QEMU_DEFAULT_RAM;
}

/* The 2 MiB target must be RAM that the image does not use. */
static bool phys_2m_free(void)
{
	return (uint64_t)__image_end <= PHYS_2M && PHYS_2M + SIZE_2M <= ram_end();
}

static const uint64_t offsets_2m[] = {0, 0x1000, 0x123458, 0x1ff000 + 0xabd, SIZE_2M - 8};

static void check_2m(void)
{
	bool fits = phys_2m_free();

	check(fits, "2m.target-is-free-ram", "image ends at 0x%lx, RAM at 0x%lx; target 0x%llx..0x%llx",
	      (uint64_t)__image_end, ram_end(), PHYS_2M, PHYS_2M + SIZE_2M);
	if (!fits)
		return;
	paging_map(VA_2M, PHYS_2M, SIZE_2M, PTE_P | PTE_W);
	for (unsigned i = 0; i < sizeof(offsets_2m) / sizeof(offsets_2m[0]); i++) {
		uint64_t off = offsets_2m[i];
		wr64(PHYS_2M + off, pattern(0x21, off));
		check_eqf(pattern(0x21, off), rd64(VA_2M + off), "2m.read+0x%lx", off);
		wr64(VA_2M + off, pattern(0x22, off));
		check_eqf(pattern(0x22, off), rd64(PHYS_2M + off), "2m.write+0x%lx", off);
	}
}

/* MAXPHYADDR's lowest reserved address bit in an entry, or 0 if none. */
static uint64_t rsvd_addr_bit(void)
{
	unsigned bits = 36;

	if (cpuid(0x80000000, 0).eax >= 0x80000008)
		bits = cpuid(0x80000008, 0).eax & 0xff;
	return bits < 52 ? BIT64(bits) : 0;
}

/* The entries that translate va, PML4E first, down to the leaf or to the
 * first one not present; returns how many. */
static unsigned walk(uint64_t va, volatile uint64_t *e[4])
{
	uint64_t table = read_cr3() & PTE_ADDR_MASK;
	unsigned n = 0;

	for (int shift = 39; shift >= 12; shift -= 9) {
		e[n] = (volatile uint64_t *)table + ((va >> shift) & 511);
		uint64_t v = *e[n++];
		if (!(v & PTE_P) || (v & PTE_PS))
			break;
		table = v & PTE_ADDR_MASK;
	}
	return n;
}

/* Reading va must fault with P|RSVD. QEMU's TCG (7.2, the reference) leaves
 * P out of the error code, against the SDM, so P alone is not compared. */
static void expect_rsvd_read(const char *name, uint64_t va)
{
	struct trap_record r = {0};
	bool faulted = trap_run(touch_read, (void *)va, &r);

	check(faulted && r.vector == VEC_PF && (r.error | PF_P) == (PF_P | PF_RSVD) && r.cr2 == va, name,
	      "expected #PF error 0x%x (P may be missing) CR2 0x%lx, got %s vector %lu error 0x%lx CR2 0x%lx",
	      PF_P | PF_RSVD, va, faulted ? "a fault:" : "no fault", r.vector, r.error, r.cr2);
}

/* The same with bit set in *entry for the duration. */
static void expect_rsvd(const char *name, volatile uint64_t *entry, uint64_t bit, uint64_t va)
{
	uint64_t saved = *entry;

	*entry = saved | bit;
	invlpg(va); /* also drops cached upper-level entries */
	expect_rsvd_read(name, va);
	*entry = saved;
	invlpg(va);
}

/* A 1 GiB page onto physical 0 where the CPU has them. Without them the SDM
 * makes PS in a PDPTE reserved, but QEMU's TCG (the reference) maps the page
 * anyway, so that branch checks the PDPTE's other reserved bits instead. */
static void check_1g(void)
{
	volatile uint64_t *e[4];

	if (cpu_has_1g_pages()) {
		uint64_t off = PHYS_2M + 0x1ff777; /* inside the free 2 MiB range */
		paging_map(VA_1G, 0, SIZE_1G, PTE_P | PTE_W);
		check_eq("1g[pdpe1gb].multiboot-header", MULTIBOOT_HEADER_MAGIC,
			 *(volatile uint32_t *)(VA_1G + (uint64_t)__image_start));
		check_eq("1g[pdpe1gb].rodata-marker", marker, rd64(VA_1G + (uint64_t)&marker));
		if (phys_2m_free()) {
			wr64(VA_1G + off, pattern(0x61, off));
			check_eq("1g[pdpe1gb].write-32m", pattern(0x61, off), rd64(off));
			wr64(off + 8, pattern(0x62, off));
			check_eq("1g[pdpe1gb].read-32m", pattern(0x62, off), rd64(VA_1G + off + 8));
		}
		check_eq("1g[pdpe1gb].walk-ends-at-pdpte", 2, walk(VA_1G, e));
		/* Bits 29:13 of a 1 GiB PDPTE are reserved (bit 12 is PAT). */
		expect_rsvd("1g[pdpe1gb].pdpte-bit13-rsvd", e[1], BIT64(13), VA_1G + 0x2345678);
		*e[1] = 0;
		invlpg(VA_1G);
	} else {
		uint64_t bit = rsvd_addr_bit(), va = VA_1G + 0x1234567;
		paging_map(va & ~(SIZE_4K - 1), alloc_phys(), SIZE_4K, PTE_P | PTE_W);
		check_eq("1g[no pdpe1gb].walk-has-4-levels", 4, walk(va, e));
		if (bit)
			expect_rsvd("1g[no pdpe1gb].pdpte-maxphyaddr-rsvd", e[1], bit, va);
		check_eq("1g[no pdpe1gb].restored", 0, rd64(va));
	}
}

/* Reserved bits at each level give P|RSVD, whatever the access rights. */
static void check_reserved(void)
{
	uint64_t bit = rsvd_addr_bit(), va = VA_RSVD + 0x5abd, va2m = VA_RSVD + SIZE_2M + 0x1234;
	volatile uint64_t *e[4];

	wr64(PHYS_2M + 0x1234, pattern(0x71, 0));
	paging_map(va & ~(SIZE_4K - 1), alloc_phys(), SIZE_4K, PTE_P | PTE_W);
	check_eq("rsvd.walk-has-4-levels", 4, walk(va, e));
	/* PS is reserved in a PML4E. */
	expect_rsvd("rsvd.pml4e-ps", e[0], PTE_PS, va);
	if (bit) {
		expect_rsvd("rsvd.pml4e-maxphyaddr", e[0], bit, va);
		expect_rsvd("rsvd.pde-maxphyaddr", e[2], bit, va);
		expect_rsvd("rsvd.pte-maxphyaddr", e[3], bit, va);
	}
	check_eq("rsvd.restored", 0, rd64(va));

	if (!phys_2m_free())
		return;
	paging_map(va2m & ~(SIZE_2M - 1), PHYS_2M, SIZE_2M, PTE_P | PTE_W);
	check_eq("rsvd.2m-walk-has-3-levels", 3, walk(va2m, e));
	/* Bits 20:13 of a 2 MiB PDE are reserved (bit 12 is PAT). */
	expect_rsvd("rsvd.2m-pde-bit13", e[2], BIT64(13), va2m);
	expect_rsvd("rsvd.2m-pde-bit20", e[2], BIT64(20), va2m);
	check_eq("rsvd.2m-restored", pattern(0x71, 0), rd64(va2m));
}

/* ---- NX ----------------------------------------------------------------- */

static void check_nx(void)
{
	uint64_t code = alloc_phys(), nx = VA_SLOT(SLOT_NX) + 0x10, x = VA_SLOT(SLOT_NX + 1) + 0x10;

	wr8(code + 0x10, 0xc3); /* ret */
	paging_map(nx & ~(SIZE_4K - 1), code, SIZE_4K, PTE_P | PTE_W | PTE_NX);
	if (!cpu_has_nx()) {
		/* Without EFER.NXE, bit 63 is reserved. */
		expect_rsvd_read("nx[no NX].read-is-rsvd-fault", nx);
		return;
	}
	check_eq("nx.efer-nxe", EFER_NXE, rdmsr(MSR_EFER) & EFER_NXE);
	check_eq("nx.data-read", 0xc3, rd8(nx));
	struct trap_record r = expect_pf("nx.exec-faults", touch_exec, (void *)nx, nx, PF_P | PF_I);
	check_eq("nx.exec-fault-rip", nx, r.rip);
	paging_map(x & ~(SIZE_4K - 1), code, SIZE_4K, PTE_P | PTE_W);
	expect_runs("nx.exec-without-nx-returns", touch_exec, (void *)x);
}

/* ---- accessed and dirty ------------------------------------------------- */

/* Reads, writes and re-arms the A and D bits of one leaf entry. */
static void check_ad_leaf(const char *size, uint64_t va)
{
	volatile uint64_t *leaf = paging_leaf(va);
	char name[48];

	snprintf(name, sizeof(name), "ad.%s.fresh", size);
	check_eq(name, 0, *leaf & (PTE_A | PTE_D));
	(void)rd64(va);
	snprintf(name, sizeof(name), "ad.%s.read-sets-a-only", size);
	check_eq(name, PTE_A, *leaf & (PTE_A | PTE_D));
	wr64(va + 8, 1);
	snprintf(name, sizeof(name), "ad.%s.write-sets-d", size);
	check_eq(name, PTE_A | PTE_D, *leaf & (PTE_A | PTE_D));

	/* The TLB may keep A and D as they were: INVLPG makes the CPU set them anew. */
	*leaf &= ~(PTE_A | PTE_D);
	invlpg(va);
	wr64(va + 16, 2);
	snprintf(name, sizeof(name), "ad.%s.cleared-write-sets-a-d", size);
	check_eq(name, PTE_A | PTE_D, *leaf & (PTE_A | PTE_D));
	*leaf &= ~(PTE_A | PTE_D);
	invlpg(va);
	(void)rd64(va + 24);
	snprintf(name, sizeof(name), "ad.%s.cleared-read-sets-a-only", size);
	check_eq(name, PTE_A, *leaf & (PTE_A | PTE_D));
}

static void check_accessed_dirty(void)
{
	volatile uint64_t *e[4];

	paging_map(VA_AD, alloc_phys(), SIZE_4K, PTE_P | PTE_W);
	check_eq("ad.walk-has-4-levels", 4, walk(VA_AD, e));
	check_eq("ad.tables.fresh", 0, (*e[0] | *e[1] | *e[2]) & PTE_A);
	check_ad_leaf("4k", VA_AD);
	/* Every entry the walk used gets A. */
	check_eq("ad.tables.walk-sets-a", PTE_A, *e[0] & *e[1] & *e[2] & PTE_A);

	if (phys_2m_free()) {
		paging_map(VA_2M + SIZE_2M, PHYS_2M, SIZE_2M, PTE_P | PTE_W);
		check_ad_leaf("2m", VA_2M + SIZE_2M + 0x1abcd0);
	}
}

/* ---- TLB flushes -------------------------------------------------------- */

static void check_flush(void)
{
	uint64_t va = VA_SLOT(SLOT_FLUSH), phys[3];

	for (unsigned i = 0; i < 3; i++) {
		phys[i] = alloc_phys();
		wr64(phys[i] + 0x238, pattern(0x40 + i, 0));
	}
	paging_map(va, phys[0], SIZE_4K, PTE_P | PTE_W);
	check_eq("flush.first-mapping", pattern(0x40, 0), rd64(va + 0x238));

	volatile uint64_t *pte = paging_leaf(va);
	*pte = phys[1] | PTE_P | PTE_W;
	invlpg(va);
	check_eq("flush.invlpg-sees-new-page", pattern(0x41, 0), rd64(va + 0x238));
	*pte = phys[2] | PTE_P | PTE_W;
	write_cr3(read_cr3());
	check_eq("flush.cr3-reload-sees-new-page", pattern(0x42, 0), rd64(va + 0x238));
}

/* ---- protection --------------------------------------------------------- */

static void check_write_protect(void)
{
	uint64_t phys = alloc_phys(), va = VA_SLOT(SLOT_WP) + 0x321;
	uint64_t cr0 = read_cr0();

	wr8(phys + 0x321, 0x11);
	paging_map(va & ~(SIZE_4K - 1), phys, SIZE_4K, PTE_P);
	check_eq("wp.cr0-wp-set", CR0_WP, cr0 & CR0_WP);
	check_eq("wp.read-only-page-reads", 0x11, rd8(va));
	expect_pf("wp.supervisor-write-faults", touch_write, (void *)va, va, PF_P | PF_W);
	check_eq("wp.faulting-write-left-no-data", 0x11, rd8(phys + 0x321));

	write_cr0(cr0 & ~CR0_WP);
	expect_runs("wp.clear-allows-write", touch_write, (void *)va);
	write_cr0(cr0);
	check_eq("wp.write-landed", WRITE_BYTE, rd8(phys + 0x321));
	check_eq("wp.cr0-restored", cr0, read_cr0());
	expect_pf("wp.restored-write-faults", touch_write, (void *)(va + 1), va + 1, PF_P | PF_W);
}

/* The runtime's intermediate tables all carry U, so the leaf decides. */
static void check_user(void)
{
	uint64_t phys = alloc_phys();
	uint64_t sup = VA_SLOT(SLOT_USER), usr = VA_SLOT(SLOT_USER + 1), usr_ro = VA_SLOT(SLOT_USER + 2);
	struct user_access a;

	wr64(phys + 0x100, pattern(0x50, 0));
	paging_map(sup, phys, SIZE_4K, PTE_P | PTE_W);
	paging_map(usr, phys, SIZE_4K, PTE_P | PTE_W | PTE_U);
	paging_map(usr_ro, phys, SIZE_4K, PTE_P | PTE_U);

	a = (struct user_access){.va = usr + 0x100};
	if (expect_runs("user.read-u-page-runs", user_read_trap, &a))
		check_eq("user.read-u-page-value", pattern(0x50, 0), a.value);

	a = (struct user_access){.va = sup + 0x101};
	struct trap_record r = expect_pf("user.read-s-page-faults", user_read_trap, &a, sup + 0x101, PF_P | PF_U);
	check_eq("user.fault-cpl", 3, r.cs & 3);

	a = (struct user_access){.va = usr_ro + 0x103};
	expect_pf("user.write-ro-u-page-faults", user_write_trap, &a, usr_ro + 0x103, PF_P | PF_W | PF_U);
	check_eq("user.faulting-write-left-no-data", pattern(0x50, 0), rd64(phys + 0x100));

	/* Without SMAP, supervisor reads of user pages are allowed. */
	check_eq("user.supervisor-reads-u-page", pattern(0x50, 0), rd64(usr + 0x100));
}

/* ---- not present -------------------------------------------------------- */

static void check_not_present(void)
{
	uint64_t va = VA_SLOT(SLOT_ABSENT) + 0xabd; /* its page table exists, the PTE is zero */
	struct user_access a;

	expect_pf("absent.pte.read", touch_read, (void *)va, va, 0);
	expect_pf("absent.pte.write", touch_write, (void *)(va + 0x100), va + 0x100, PF_W);
	expect_pf("absent.pml4e.read", touch_read, (void *)VA_UNMAPPED_PML4, VA_UNMAPPED_PML4, 0);
	expect_pf("absent.pml4e.write", touch_write, (void *)(VA_UNMAPPED_PML4 + 2), VA_UNMAPPED_PML4 + 2, PF_W);
	/* I is reported for fetches only with EFER.NXE (or SMEP) set. */
	expect_pf("absent.exec", touch_exec, (void *)(va + 0x200), va + 0x200, cpu_has_nx() ? PF_I : 0);

	a = (struct user_access){.va = va + 0x301};
	expect_pf("absent.user-read", user_read_trap, &a, va + 0x301, PF_U);
	a = (struct user_access){.va = va + 0x303};
	expect_pf("absent.user-write", user_write_trap, &a, va + 0x303, PF_U | PF_W);

	/* A page unmapped and flushed faults on the next access. */
	uint64_t gone = VA_SLOT(SLOT_UNMAP);
	paging_map(gone, alloc_phys(), SIZE_4K, PTE_P | PTE_W);
	check_eq("absent.unmap.before", 0, rd64(gone + 0x40));
	*paging_leaf(gone) = 0;
	invlpg(gone);
	expect_pf("absent.unmap.after-invlpg", touch_read, (void *)(gone + 0x41), gone + 0x41, 0);
}

void main(void)
{
	check_4k_scrambled();
	check_4k_alias();
	check_2m();
	check_1g();
	check_reserved();
	check_nx();
	check_accessed_dirty();
	check_flush();
	check_write_protect();
	check_user();
	check_not_present();
}
