/*
 * What a multiboot v1 loader hands over: the magic, the memory fields, the
 * memory map, the command line and the modules. The test runs with
 *   -append "multiboot-test alpha=1 beta" -initrd "MOD1 one two,MOD2"
 * where MOD1 and MOD2 are files the build writes with known contents.
 */
#include "guest.h"

static const char module1_text[] = "vireo multiboot module one\n";
static const char module2_text[] = "module two\n";

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

static void check_memory(const struct multiboot_info *mbi)
{
	uint64_t image_start = (uint64_t)__image_start, image_end = (uint64_t)__image_end;
	uint64_t prev_end = 0, ram_from_1m = 0;
	bool sorted = true, image_in_ram = false, low_ram = false;
	unsigned entries = 0;

	check(mbi->flags & MBI_MEMORY, "memory-fields", "flags 0x%x lack MEMORY", mbi->flags);
	check(mbi->flags & MBI_MMAP, "mmap-present", "flags 0x%x lack MMAP", mbi->flags);
	if (!(mbi->flags & MBI_MMAP))
		return;
	for (uint64_t p = mbi->mmap_addr; p < (uint64_t)mbi->mmap_addr + mbi->mmap_length;) {
		const struct multiboot_mmap *e = (const void *)p;
		entries++;
		if (e->addr < prev_end)
			sorted = false;
		prev_end = e->addr + e->len;
		if (e->type == 1 && e->addr <= image_start && image_end <= e->addr + e->len)
			image_in_ram = true;
		if (e->type == 1 && e->addr == 0)
			low_ram = true;
		if (e->type == 1 && e->addr == 0x100000)
			ram_from_1m = e->len;
		p += e->size + 4;
		if (entries > 64)
			break;
	}
	check(entries >= 2 && entries <= 64, "mmap-entries", "%u entries", entries);
	check(sorted, "mmap-sorted", "entries overlap or are out of order");
	check(image_in_ram, "mmap-covers-image", "no RAM entry covers 0x%lx-0x%lx", image_start, image_end);
	check(low_ram, "mmap-low-ram", "no RAM entry at 0");
	/* mem_upper is the KiB of RAM from 1 MiB up to the first hole. */
	check_eq("mem-upper-matches-mmap", ram_from_1m / 1024, mbi->mem_upper);
	check(mbi->mem_lower >= 512 && mbi->mem_lower <= 640, "mem-lower", "mem_lower %u KiB", mbi->mem_lower);
}

static void check_modules(const struct multiboot_info *mbi)
{
	static const char *const texts[2] = {module1_text, module2_text};
	static const char *const args[2] = {"module1.txt one two", "module2.txt"};

	check(mbi->flags & MBI_MODS, "mods-present", "flags 0x%x lack MODS", mbi->flags);
	if (!(mbi->flags & MBI_MODS))
		return;
	check_eq("mods-count", 2, mbi->mods_count);
	const struct multiboot_module *m = (const void *)(uint64_t)mbi->mods_addr;
	for (unsigned i = 0; i < 2 && i < mbi->mods_count; i++) {
		char name[32];
		size_t len = strlen(texts[i]);
		snprintf(name, sizeof(name), "module%u-size", i + 1);
		check_eq(name, len, m[i].end - m[i].start);
		snprintf(name, sizeof(name), "module%u-data", i + 1);
		check(m[i].end - m[i].start == len && !memcmp((void *)(uint64_t)m[i].start, texts[i], len), name,
		      "contents differ");
		snprintf(name, sizeof(name), "module%u-string", i + 1);
		const char *s = (const char *)(uint64_t)m[i].string;
		check(ends_with(s, args[i]), name, "'%s' does not end with '%s'", s, args[i]);
		snprintf(name, sizeof(name), "module%u-after-image", i + 1);
		check(m[i].start >= (uint64_t)__image_end, name, "module at 0x%x overlaps the image", m[i].start);
	}
	if (mbi->mods_count >= 2)
		check(m[1].start >= m[0].end, "modules-disjoint", "0x%x-0x%x and 0x%x-0x%x", m[0].start, m[0].end,
		      m[1].start, m[1].end);
}

void main(void)
{
	check_eq("magic", MULTIBOOT_BOOT_MAGIC, multiboot_magic);
	if (multiboot_magic != MULTIBOOT_BOOT_MAGIC)
		return;
	const struct multiboot_info *mbi = (const void *)(uint64_t)multiboot_info;
	check_memory(mbi);
	check(mbi->flags & MBI_CMDLINE, "cmdline-present", "flags 0x%x lack CMDLINE", mbi->flags);
	if (mbi->flags & MBI_CMDLINE) {
		const char *cmdline = (const char *)(uint64_t)mbi->cmdline;
		check(ends_with(cmdline, "multiboot-test alpha=1 beta"), "cmdline", "got '%s'", cmdline);
	}
	check_modules(mbi);
}
