/* Multiboot v1: the header (ELF or a.out-kludge address fields), modules,
 * and the information structure with the memory map. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

#define MB_PAGE_ALIGN (1u << 0)
#define MB_MEMORY_INFO (1u << 1)
#define MB_VIDEO_MODE (1u << 2)
#define MB_ADDRESS_FIELDS (1u << 16)

#define MBI_MEMORY (1u << 0)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)

#define MAX_MODULES 16

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name;
	uint32_t apm_table;
	uint8_t vbe_fb[36];
} __attribute__((packed));

struct mb_module {
	uint32_t start, end, string, reserved;
};

struct mb_mmap {
	uint32_t size;
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

/* Lays out the information area at BOOT_INFO: the structure, the memory
 * map, the module list, then strings. */
struct info_area {
	uint8_t *base;
	uint64_t used;
};

static uint32_t info_alloc(struct info_area *a, const void *data, uint64_t len)
{
	uint64_t at = (a->used + 7) & ~7ull;
	if (at + len > BOOT_INFO_END - BOOT_INFO)
		return 0;
	memcpy(a->base + at, data, len);
	a->used = at + len;
	return BOOT_INFO + at;
}

static int modules_load(struct vm *vm, struct info_area *a, const char *spec, uint64_t *next, bool page_align,
			struct mb_module *mods, unsigned *count, char *err, size_t errlen)
{
	char *list = strdup(spec), *save = NULL;
	int ret = 0;

	if (!list)
		return -ENOMEM;
	*count = 0;
	for (char *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
		char path[4096];
		size_t size = 0;

		if (*count == MAX_MODULES) {
			snprintf(err, errlen, "more than %d multiboot modules", MAX_MODULES);
			ret = -E2BIG;
			break;
		}
		snprintf(path, sizeof(path), "%.*s", (int)strcspn(m, " "), m);
		uint8_t *data = loader_read_file(path, vm->mem.low_size, &size, err, errlen);
		if (!data) {
			ret = -EINVAL;
			break;
		}
		uint64_t start = page_align ? (*next + 4095) & ~4095ull : *next;
		if (!gpa_to_hva(vm, start, size ? size : 1) || start + size > UINT32_MAX) {
			snprintf(err, errlen, "module %s (%zu bytes) does not fit in guest RAM", path, size);
			free(data);
			ret = -E2BIG;
			break;
		}
		guest_write(vm, start, data, size);
		free(data);
		uint32_t string = info_alloc(a, m, strlen(m) + 1);
		if (!string) {
			snprintf(err, errlen, "multiboot module strings are too long");
			ret = -E2BIG;
			break;
		}
		mods[(*count)++] = (struct mb_module){start, start + size, string, 0};
		*next = start + size;
	}
	free(list);
	return ret;
}

int multiboot_info_build(struct vm *vm, const char *cmdline, const char *modules, uint64_t image_end,
			 bool page_align_modules, uint64_t *info_addr, char *err, size_t errlen)
{
	struct info_area a = {gpa_to_hva(vm, BOOT_INFO, BOOT_INFO_END - BOOT_INFO), 0};
	struct mb_info info = {0};
	struct mb_module mods[MAX_MODULES];
	struct e820_entry e820[8];
	struct mb_mmap mmap[8];
	unsigned nmods = 0;
	int ret;

	a.used = sizeof(info); /* the structure itself comes first */
	info.flags = MBI_MEMORY | MBI_MMAP | MBI_LOADER_NAME;
	info.mem_lower = 639;
	info.mem_upper = (vm->mem.low_size - 0x100000) / 1024;

	int n = e820_map(vm, e820, 8);
	for (int i = 0; i < n; i++)
		mmap[i] = (struct mb_mmap){20, e820[i].addr, e820[i].size, e820[i].type};
	info.mmap_addr = info_alloc(&a, mmap, n * sizeof(mmap[0]));
	info.mmap_length = n * sizeof(mmap[0]);
	info.boot_loader_name = info_alloc(&a, "vireo", 6);

	if (cmdline) {
		info.cmdline = info_alloc(&a, cmdline, strlen(cmdline) + 1);
		if (!info.cmdline) {
			snprintf(err, errlen, "command line is longer than %d bytes", BOOT_INFO_END - BOOT_INFO - 1024);
			return -E2BIG;
		}
		info.flags |= MBI_CMDLINE;
	}
	if (modules && *modules) {
		uint64_t next = image_end;
		ret = modules_load(vm, &a, modules, &next, page_align_modules, mods, &nmods, err, errlen);
		if (ret < 0)
			return ret;
		info.mods_addr = info_alloc(&a, mods, nmods * sizeof(mods[0]));
		info.mods_count = nmods;
		info.flags |= MBI_MODS;
	}
	memcpy(a.base, &info, sizeof(info));
	*info_addr = BOOT_INFO;
	return 0;
}

int loader_multiboot(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, const char *modules,
		     struct boot_info *bi, char *err, size_t errlen)
{
	struct mb_header h;
	struct elf_image elf;
	size_t off;
	uint64_t info;
	int ret;

	for (off = 0; off + 12 <= size && off < 8192; off += 4) {
		memcpy(&h, image + off, 12);
		if (h.magic == MULTIBOOT_MAGIC && h.magic + h.flags + h.checksum == 0)
			break;
	}
	if (off + 12 > size || off >= 8192) {
		snprintf(err, errlen, "no multiboot header in the first 8 KiB");
		return -ENOEXEC;
	}
	/* Bits 0-15 are requirements: refuse the ones we cannot meet. */
	if (h.flags & 0xffff & ~(MB_PAGE_ALIGN | MB_MEMORY_INFO)) {
		snprintf(err, errlen, "multiboot header requires features Vireo does not provide (flags 0x%x%s)",
			 h.flags, h.flags & MB_VIDEO_MODE ? ": video mode" : "");
		return -ENOTSUP;
	}
	if (h.flags & MB_ADDRESS_FIELDS) {
		if (off + sizeof(h) > size) {
			snprintf(err, errlen, "multiboot header is truncated");
			return -ENOEXEC;
		}
		memcpy(&h, image + off, sizeof(h));
		/* The file offset of load_addr is off - (header_addr - load_addr). */
		uint64_t load_end = h.load_end_addr ? h.load_end_addr : h.load_addr + (size - off) + (h.header_addr - h.load_addr);
		if (h.header_addr < h.load_addr || h.header_addr - h.load_addr > off || load_end < h.load_addr ||
		    (h.bss_end_addr && h.bss_end_addr < load_end) || h.entry_addr < h.load_addr ||
		    h.entry_addr >= (h.bss_end_addr ? h.bss_end_addr : load_end)) {
			snprintf(err, errlen, "multiboot address fields are inconsistent");
			return -ENOEXEC;
		}
		uint64_t file_off = off - (h.header_addr - h.load_addr);
		uint64_t len = load_end - h.load_addr;
		uint64_t bss_end = h.bss_end_addr ? h.bss_end_addr : load_end;
		if (len > size - file_off) {
			snprintf(err, errlen, "multiboot load range runs past the end of the file");
			return -ENOEXEC;
		}
		uint8_t *dst = gpa_to_hva(vm, h.load_addr, bss_end - h.load_addr);
		if (!dst || h.load_addr < BOOT_INFO_END) {
			snprintf(err, errlen, "multiboot image at 0x%x-0x%llx does not fit in guest RAM", h.load_addr,
				 (unsigned long long)bss_end);
			return -ENOEXEC;
		}
		memcpy(dst, image + file_off, len);
		memset(dst + len, 0, bss_end - load_end);
		elf = (struct elf_image){h.entry_addr, h.load_addr, bss_end};
	} else {
		ret = elf_load(vm, image, size, &elf, err, errlen);
		if (ret < 0)
			return ret;
		if (elf.entry > UINT32_MAX) {
			snprintf(err, errlen, "multiboot entry point 0x%llx is above 4 GiB", (unsigned long long)elf.entry);
			return -ENOEXEC;
		}
	}
	ret = multiboot_info_build(vm, cmdline, modules, elf.end, h.flags & MB_PAGE_ALIGN, &info, err, errlen);
	if (ret < 0)
		return ret;
	x86_state_flat32(&bi->bsp, elf.entry);
	bi->bsp.gpr[RAX] = MULTIBOOT_BOOT_MAGIC;
	bi->bsp.gpr[RBX] = info;
	bi->image_end = elf.end;
	return 0;
}
