/* Reads a kernel image and hands it to the loader for its format. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/internal.h"

/* Reads a whole file of at most max bytes. */
uint8_t *loader_read_file(const char *path, uint64_t max, size_t *size, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		snprintf(err, errlen, "%s is %lld bytes: it does not fit in guest RAM", path, (long long)st.st_size);
		goto out;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory reading %s", path);
		goto out;
	}
	for (size_t done = 0; done < (size_t)st.st_size;) {
		ssize_t n = read(fd, buf + done, st.st_size - done);
		if (n <= 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, n ? strerror(errno) : "file shrank");
			free(buf);
			buf = NULL;
			goto out;
		}
		done += n;
	}
	*size = st.st_size;
out:
	close(fd);
	return buf;
}

static void segment_flat(struct x86_segment *s, uint16_t selector, uint8_t type, bool code64)
{
	*s = (struct x86_segment){.base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .s = 1,
				  .present = 1, .g = 1, .db = !code64, .l = code64};
}

void x86_state_flat32(struct x86_state *s, uint64_t entry)
{
	memset(s, 0, sizeof(*s));
	s->rip = entry;
	s->rflags = 2;
	s->cr0 = 0x11; /* PE, ET */
	segment_flat(&s->seg[SEG_CS], 0x08, 11, false);
	for (int i = 0; i < SEG_COUNT; i++)
		if (i != SEG_CS)
			segment_flat(&s->seg[i], 0x10, 3, false);
	s->ldtr = (struct x86_segment){.limit = 0xffff, .type = 2, .present = 1};
	s->tr = (struct x86_segment){.limit = 0xffff, .type = 11, .present = 1};
	s->gdtr.limit = s->idtr.limit = 0xffff;
	s->pat = 0x0007040600070406ull;
	s->misc_enable = 1; /* fast strings, as firmware leaves it */
	s->apic_base = 0xfee00000 | (1 << 11) | (1 << 8);
	s->fpu.fcw = 0x37f;
	s->fpu.mxcsr = 0x1f80;
}

/* Flat 64-bit entry for plain ELF64 kernels: the first 4 GiB identity-mapped
 * with 2 MiB pages, a GDT with a 64-bit code segment, interrupts off. */
void x86_state_flat64(struct vm *vm, struct x86_state *s, uint64_t entry)
{
	uint64_t *gdt = gpa_to_hva(vm, BOOT_GDT, 4 * 8);
	uint64_t *pml4 = gpa_to_hva(vm, BOOT_PML4, 6 * 4096);
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;

	x86_state_flat32(s, entry);
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull; /* 0x08: 64-bit code */
	gdt[2] = 0x00cf93000000ffffull; /* 0x10: data */
	gdt[3] = 0x00cf9b000000ffffull; /* 0x18: 32-bit code */
	memset(pml4, 0, 6 * 4096);
	pml4[0] = (BOOT_PML4 + 4096) | 3;
	for (int i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PML4 + (2 + i) * 4096) | 3;
	for (int i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;
	s->gdtr = (struct x86_dtable){BOOT_GDT, 4 * 8 - 1};
	segment_flat(&s->seg[SEG_CS], 0x08, 11, true);
	s->cr0 = 0x80050033; /* PG, AM, WP, NE, ET, MP, PE */
	s->cr3 = BOOT_PML4;
	s->cr4 = 0x20 | 0x200 | 0x400; /* PAE, OSFXSR, OSXMMEXCPT */
	s->efer = 0x500;                /* LME, LMA */
}

static bool has_multiboot_header(const uint8_t *image, size_t size)
{
	for (size_t off = 0; off + 12 <= size && off < 8192; off += 4) {
		uint32_t h[3];
		memcpy(h, image + off, sizeof(h));
		if (h[0] == MULTIBOOT_MAGIC && h[0] + h[1] + h[2] == 0)
			return true;
	}
	return false;
}

int loader_load(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline, struct boot_info *bi,
		char *err, size_t errlen)
{
	size_t size = 0;
	int ret;

	if (!kernel) {
		snprintf(err, errlen, "no kernel given (--kernel PATH)");
		return -EINVAL;
	}
	uint8_t *image = loader_read_file(kernel, vm->mem.size, &size, err, errlen);
	if (!image)
		return -EINVAL;
	if (has_multiboot_header(image, size)) {
		ret = loader_multiboot(vm, image, size, cmdline, initrd, bi, err, errlen);
	} else if (linux_is_bzimage(image, size)) {
		ret = loader_linux(vm, image, size, cmdline, initrd, bi, err, errlen);
	} else if (size >= SELFMAG && !memcmp(image, ELFMAG, SELFMAG)) {
		if (initrd) {
			snprintf(err, errlen, "%s: a plain ELF64 kernel takes no initrd", kernel);
			ret = -EINVAL;
		} else {
			ret = loader_elf64(vm, image, size, cmdline, bi, err, errlen);
		}
	} else {
		snprintf(err, errlen, "%s: not a multiboot, Linux bzImage or ELF64 image", kernel);
		ret = -ENOEXEC;
	}
	free(image);
	if (ret < 0 && !strstr(err, kernel)) {
		char inner[256];
		snprintf(inner, sizeof(inner), "%s", err);
		snprintf(err, errlen, "%s: %s", kernel, inner);
	}
	return ret;
}
