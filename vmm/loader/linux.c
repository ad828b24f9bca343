/*
 * The Linux/x86 boot protocol (Documentation/arch/x86/boot.rst): a bzImage
 * entered through its 64-bit entry point. The real-mode setup code is not
 * run; Vireo does its job: the zero page (struct boot_params) gets the
 * image's setup header, the e820 map, the command line and the initrd, and
 * the kernel's own decompressor starts in long mode at load address + 0x200
 * with RSI pointing at the zero page.
 *
 * Everything in the image is untrusted: each header field is checked
 * against the file's size and guest RAM before it is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"

/* Where the loader puts the zero page and the command line, inside the
 * boot structures' area (BOOT_INFO..BOOT_INFO_END). */
#define LINUX_ZERO_PAGE	  BOOT_INFO
#define LINUX_CMDLINE	  (BOOT_INFO + 0x1000)
#define LINUX_CMDLINE_MAX (BOOT_INFO_END - LINUX_CMDLINE)

#define SETUP_HEADER_OFFSET 0x1f1
#define SETUP_HEADER_MAGIC  0x53726448 /* "HdrS" */
#define BOOT_FLAG	    0xaa55
#define SECTOR		    512
#define DEFAULT_SETUP_SECTS 4
#define ENTRY64_OFFSET	    0x200
#define LOW_LOAD_ADDR	    0x100000ull /* where a kernel that cannot move runs */

#define LOADED_HIGH	 (1u << 0)
#define CAN_USE_HEAP	 (1u << 7)
#define XLF_KERNEL_64	 (1u << 0)
#define LOADER_UNDEFINED 0xff
/* The real-mode heap ends at 0xe000 of a setup segment the 64-bit entry
 * never uses; set as boot.rst asks of a loader that enables the heap. */
#define HEAP_END_PTR (0xe000 - 0x200)

/* Selectors the 64-bit boot protocol requires: __BOOT_CS and __BOOT_DS. */
#define BOOT_CS 0x10
#define BOOT_DS 0x18

struct setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size, vid_mode, root_dev, boot_flag, jump;
	uint32_t header;
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg, kernel_version;
	uint8_t type_of_loader, loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start, ramdisk_image, ramdisk_size, bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver, ext_loader_type;
	uint32_t cmd_line_ptr, initrd_addr_max, kernel_alignment;
	uint8_t relocatable_kernel, min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size, hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset, payload_length;
	uint64_t setup_data, pref_address;
	uint32_t init_size, handover_offset, kernel_info_offset;
} __attribute__((packed));

#define HDR_END(field)                                                                                                 \
	(SETUP_HEADER_OFFSET + offsetof(struct setup_header, field) + sizeof(((struct setup_header *)0)->field))

struct boot_params {
	uint8_t screen_info[0x40];
	uint8_t apm_bios_info[0x14];
	uint8_t pad2[4];
	uint64_t tboot_addr;
	uint8_t ist_info[0x10];
	uint64_t acpi_rsdp_addr;
	uint8_t pad3[8];
	uint8_t hd0_info[16], hd1_info[16];
	uint8_t sys_desc_table[0x10];
	uint8_t olpc_ofw_header[0x10];
	uint32_t ext_ramdisk_image, ext_ramdisk_size, ext_cmd_line_ptr;
	uint8_t pad4[116];
	uint8_t edid_info[0x80];
	uint8_t efi_info[0x20];
	uint32_t alt_mem_k, scratch;
	uint8_t e820_entries, eddbuf_entries, edd_mbr_sig_buf_entries, kbd_status, secure_boot;
	uint8_t pad5[2];
	uint8_t sentinel;
	uint8_t pad6[1];
	struct setup_header hdr;
	uint8_t pad7[0x290 - SETUP_HEADER_OFFSET - sizeof(struct setup_header)];
	uint32_t edd_mbr_sig_buffer[16];
	struct e820_entry e820_table[128];
	uint8_t pad8[48];
	uint8_t eddbuf[0x1ec];
	uint8_t pad9[276];
} __attribute__((packed));

_Static_assert(sizeof(struct setup_header) == 0x7b, "setup_header layout");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HEADER_OFFSET, "boot_params layout");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "boot_params layout");
_Static_assert(sizeof(struct boot_params) == 4096, "the zero page is one page");

#define E820_MAX_ZERO_PAGE 128

bool linux_is_bzimage(const uint8_t *image, size_t size)
{
	uint32_t magic;

	if (size < HDR_END(header))
		return false;
	memcpy(&magic, image + SETUP_HEADER_OFFSET + offsetof(struct setup_header, header), sizeof(magic));
	return magic == SETUP_HEADER_MAGIC;
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

/* Where the protected-mode kernel goes and the span of RAM it needs: the
 * decompressor works in [span_start, span_start + init_size), which begins
 * at the load address rounded up to kernel_alignment, or at pref_address
 * (LOAD_PHYSICAL_ADDR) if that is higher. */
struct linux_layout {
	uint64_t load, kernel_size, span_start, span_end;
};

static int linux_layout(struct vm *vm, const struct setup_header *h, uint64_t kernel_size, struct linux_layout *l,
			char *err, size_t errlen)
{
	uint64_t low_end = vm->mem.low_size;
	uint64_t align = h->kernel_alignment, need = kernel_size * 4;

	l->kernel_size = kernel_size;
	l->load = LOW_LOAD_ADDR;
	l->span_start = LOW_LOAD_ADDR;
	if (align < 4096 || align > (1ull << 30) || (align & (align - 1))) {
		snprintf(err, errlen, "kernel_alignment 0x%x is not a power of two between 4 KiB and 1 GiB",
			 h->kernel_alignment);
		return -ENOEXEC;
	}
	if (h->version >= 0x20a) {
		/* Protocol 2.10 gives the decompressor's footprint; before it,
		 * assume four times the compressed kernel, as zImages needed. */
		need = h->init_size;
		if (need < kernel_size) {
			snprintf(err, errlen, "init_size 0x%x is smaller than the kernel (0x%llx bytes)", h->init_size,
				 (unsigned long long)kernel_size);
			return -ENOEXEC;
		}
		if (h->pref_address < LOW_LOAD_ADDR || h->pref_address >= RAM_LOW_LIMIT ||
		    (h->pref_address & (align - 1))) {
			snprintf(err, errlen, "pref_address 0x%llx is not an aligned address between 1 MiB and 3 GiB",
				 (unsigned long long)h->pref_address);
			return -ENOEXEC;
		}
		if (h->relocatable_kernel)
			l->load = h->pref_address;
		l->span_start = h->pref_address > align_up(l->load, align) ? h->pref_address : align_up(l->load, align);
	}
	l->span_end = l->span_start + need;
	if (l->load + kernel_size > low_end || l->span_end > low_end) {
		snprintf(err, errlen,
			 "the kernel needs guest RAM up to 0x%llx (%llu MiB) but RAM ends at 0x%llx: give more memory "
			 "(--memory)",
			 (unsigned long long)l->span_end, (unsigned long long)(l->span_end >> 20),
			 (unsigned long long)low_end);
		return -E2BIG;
	}
	return 0;
}

/* Reads the initrd straight into guest RAM: as high as it may go, page
 * aligned, below initrd_addr_max and the end of low RAM, above the kernel. */
static int linux_initrd_load(struct vm *vm, const char *path, const struct setup_header *h,
			     const struct linux_layout *l, uint32_t *addr, uint32_t *size, char *err, size_t errlen)
{
	uint64_t limit = vm->mem.low_size;
	struct stat st;
	int ret = 0, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open initrd %s: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "initrd %s is not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	if ((uint64_t)h->initrd_addr_max + 1 < limit)
		limit = (uint64_t)h->initrd_addr_max + 1;
	uint64_t len = st.st_size;
	if (len > limit || ((limit - len) & ~4095ull) < l->span_end) {
		snprintf(err, errlen,
			 "initrd %s (%llu bytes) does not fit in guest RAM between the kernel's end (0x%llx) and "
			 "0x%llx: give more memory (--memory)",
			 path, (unsigned long long)len, (unsigned long long)l->span_end, (unsigned long long)limit);
		ret = -E2BIG;
		goto out;
	}
	uint64_t start = (limit - len) & ~4095ull;
	uint8_t *dst = gpa_to_hva(vm, start, len);
	for (uint64_t done = 0; done < len;) {
		ssize_t n = read(fd, dst + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "cannot read initrd %s: %s", path, n ? strerror(errno) : "file shrank");
			ret = -EIO;
			goto out;
		}
		done += n;
	}
	*addr = start;
	*size = len;
out:
	close(fd);
	return ret;
}

/* The flat 64-bit state with the GDT the protocol names: __BOOT_CS (0x10)
 * a 64-bit code segment, __BOOT_DS (0x18) a flat data segment. */
static void linux_entry_state(struct vm *vm, struct x86_state *s, uint64_t entry, uint64_t zero_page)
{
	uint64_t *gdt = gpa_to_hva(vm, BOOT_GDT, 4 * 8);

	x86_state_flat64(vm, s, entry);
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffull;
	gdt[3] = 0x00cf93000000ffffull;
	s->seg[SEG_CS].selector = BOOT_CS;
	for (int i = 0; i < SEG_COUNT; i++)
		if (i != SEG_CS)
			s->seg[i].selector = BOOT_DS;
	s->gpr[RSI] = zero_page;
}

int loader_linux(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, const char *initrd,
		 struct boot_info *bi, char *err, size_t errlen)
{
	struct boot_params *bp = gpa_to_hva(vm, LINUX_ZERO_PAGE, sizeof(*bp));
	struct setup_header h = {0};
	struct linux_layout l;
	struct e820_entry e820[E820_MAX_ZERO_PAGE];
	int ret;

	if (!linux_is_bzimage(image, size)) {
		snprintf(err, errlen, "not a Linux bzImage (no \"HdrS\" at 0x202)");
		return -ENOEXEC;
	}
	/* The header ends at 0x202 plus the jump's displacement (boot.rst);
	 * what lies past the fields Vireo knows goes to the zero page too, up
	 * to the fields that follow the header there. */
	size_t hdr_end = 0x202 + (size_t)image[0x201];
	if (hdr_end > size)
		hdr_end = size;
	if (hdr_end > offsetof(struct boot_params, edd_mbr_sig_buffer))
		hdr_end = offsetof(struct boot_params, edd_mbr_sig_buffer);
	if (hdr_end < HDR_END(version)) {
		snprintf(err, errlen, "setup header is truncated (ends at 0x%zx)", hdr_end);
		return -ENOEXEC;
	}
	size_t known_end = hdr_end < HDR_END(kernel_info_offset) ? hdr_end : HDR_END(kernel_info_offset);
	memcpy(&h, image + SETUP_HEADER_OFFSET, known_end - SETUP_HEADER_OFFSET);

	if (h.version < 0x206) {
		snprintf(err, errlen,
			 "Linux boot protocol %u.%02u is too old: Vireo needs 2.06 or later (Linux 2.6.22+)",
			 h.version >> 8, h.version & 0xff);
		return -ENOTSUP;
	}
	size_t need_end = h.version >= 0x20c ? HDR_END(kernel_info_offset) : HDR_END(cmdline_size);
	if (h.version >= 0x20a && need_end < HDR_END(init_size))
		need_end = HDR_END(init_size);
	if (hdr_end < need_end) {
		snprintf(err, errlen, "setup header of protocol %u.%02u is truncated (ends at 0x%zx, needs 0x%zx)",
			 h.version >> 8, h.version & 0xff, hdr_end, need_end);
		return -ENOEXEC;
	}
	if (h.boot_flag != BOOT_FLAG) {
		snprintf(err, errlen, "setup header has boot_flag 0x%x, not 0xaa55", h.boot_flag);
		return -ENOEXEC;
	}
	if (!(h.loadflags & LOADED_HIGH)) {
		snprintf(err, errlen, "a zImage (loaded low) is not supported: build a bzImage");
		return -ENOTSUP;
	}
	if (h.version >= 0x20c && !(h.xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "the kernel has no 64-bit entry point (a 32-bit kernel?)");
		return -ENOTSUP;
	}
	uint64_t setup_size = ((uint64_t)(h.setup_sects ? h.setup_sects : DEFAULT_SETUP_SECTS) + 1) * SECTOR;
	uint64_t kernel_size = (uint64_t)h.syssize * 16;
	if (setup_size < hdr_end || setup_size >= size) {
		snprintf(err, errlen, "setup code (%u sectors) does not fit in the file (%zu bytes)", h.setup_sects,
			 size);
		return -ENOEXEC;
	}
	if (kernel_size <= ENTRY64_OFFSET || kernel_size > size - setup_size) {
		snprintf(err, errlen,
			 "protected-mode kernel of 0x%llx bytes (syssize) does not fit in the file after 0x%llx "
			 "bytes of setup",
			 (unsigned long long)kernel_size, (unsigned long long)setup_size);
		return -ENOEXEC;
	}
	ret = linux_layout(vm, &h, kernel_size, &l, err, errlen);
	if (ret < 0)
		return ret;

	/* The zero page: the setup header as the image has it, then what a
	 * boot loader fills in. */
	memset(bp, 0, sizeof(*bp));
	memcpy((uint8_t *)bp + SETUP_HEADER_OFFSET, image + SETUP_HEADER_OFFSET, hdr_end - SETUP_HEADER_OFFSET);
	bp->hdr.type_of_loader = LOADER_UNDEFINED;
	bp->hdr.loadflags = h.loadflags | CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = HEAP_END_PTR;
	bp->hdr.code32_start = l.load;
	int n = e820_map(vm, e820, E820_MAX_ZERO_PAGE);
	memcpy(bp->e820_table, e820, n * sizeof(e820[0]));
	bp->e820_entries = n;
	bp->alt_mem_k = vm->mem.low_size / 1024 - 1024;

	const char *line = cmdline ? cmdline : "";
	size_t line_len = strlen(line);
	if (line_len > h.cmdline_size || line_len >= LINUX_CMDLINE_MAX) {
		snprintf(err, errlen, "command line is %zu bytes: this kernel takes at most %u", line_len,
			 h.cmdline_size < LINUX_CMDLINE_MAX - 1 ? h.cmdline_size : LINUX_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	guest_write(vm, LINUX_CMDLINE, line, line_len + 1);
	bp->hdr.cmd_line_ptr = LINUX_CMDLINE;

	if (initrd) {
		uint32_t addr = 0, len = 0;
		ret = linux_initrd_load(vm, initrd, &h, &l, &addr, &len, err, errlen);
		if (ret < 0)
			return ret;
		bp->hdr.ramdisk_image = addr;
		bp->hdr.ramdisk_size = len;
	}

	guest_write(vm, l.load, image + setup_size, kernel_size);
	linux_entry_state(vm, &bi->bsp, l.load + ENTRY64_OFFSET, LINUX_ZERO_PAGE);
	bi->image_end = l.span_end;
	return 0;
}
