/* ELF32/ELF64 segment loading, and plain ELF64 kernels. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "vmm/internal.h"

struct segment {
	uint64_t offset, filesz, paddr, memsz;
};

static int segment_load(struct vm *vm, const uint8_t *image, size_t size, const struct segment *s, char *err,
			size_t errlen)
{
	if (s->filesz > s->memsz || s->offset > size || s->filesz > size - s->offset) {
		snprintf(err, errlen, "segment at file offset 0x%llx (0x%llx bytes) lies outside the file",
			 (unsigned long long)s->offset, (unsigned long long)s->filesz);
		return -ENOEXEC;
	}
	uint8_t *dst = gpa_to_hva(vm, s->paddr, s->memsz);
	if (!dst || s->paddr < BOOT_INFO_END) {
		snprintf(err, errlen, "segment at guest address 0x%llx (0x%llx bytes) does not fit in guest RAM",
			 (unsigned long long)s->paddr, (unsigned long long)s->memsz);
		return -ENOEXEC;
	}
	memcpy(dst, image + s->offset, s->filesz);
	memset(dst + s->filesz, 0, s->memsz - s->filesz);
	return 0;
}

int elf_load(struct vm *vm, const uint8_t *image, size_t size, struct elf_image *out, char *err, size_t errlen)
{
	bool is64;
	uint64_t phoff, phnum, phentsize;

	if (size < EI_NIDENT || memcmp(image, ELFMAG, SELFMAG)) {
		snprintf(err, errlen, "not an ELF file");
		return -ENOEXEC;
	}
	is64 = image[EI_CLASS] == ELFCLASS64;
	if ((!is64 && image[EI_CLASS] != ELFCLASS32) || image[EI_DATA] != ELFDATA2LSB) {
		snprintf(err, errlen, "unsupported ELF class or byte order");
		return -ENOEXEC;
	}
	if (size < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
		snprintf(err, errlen, "truncated ELF header");
		return -ENOEXEC;
	}
	if (is64) {
		Elf64_Ehdr eh;
		memcpy(&eh, image, sizeof(eh));
		if (eh.e_machine != EM_X86_64) {
			snprintf(err, errlen, "ELF64 machine %u is not x86-64", eh.e_machine);
			return -ENOEXEC;
		}
		out->entry = eh.e_entry;
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf64_Phdr))
			goto bad_phdrs;
	} else {
		Elf32_Ehdr eh;
		memcpy(&eh, image, sizeof(eh));
		if (eh.e_machine != EM_386 && eh.e_machine != EM_X86_64) {
			snprintf(err, errlen, "ELF32 machine %u is not x86", eh.e_machine);
			return -ENOEXEC;
		}
		out->entry = eh.e_entry;
		phoff = eh.e_phoff;
		phnum = eh.e_phnum;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf32_Phdr))
			goto bad_phdrs;
	}
	if (phnum == 0 || phoff > size || phnum * phentsize > size - phoff)
		goto bad_phdrs;

	out->start = UINT64_MAX;
	out->end = 0;
	for (uint64_t i = 0; i < phnum; i++) {
		struct segment s;
		uint32_t type;
		const uint8_t *ph = image + phoff + i * phentsize;
		if (is64) {
			Elf64_Phdr p;
			memcpy(&p, ph, sizeof(p));
			type = p.p_type;
			s = (struct segment){p.p_offset, p.p_filesz, p.p_paddr, p.p_memsz};
		} else {
			Elf32_Phdr p;
			memcpy(&p, ph, sizeof(p));
			type = p.p_type;
			s = (struct segment){p.p_offset, p.p_filesz, p.p_paddr, p.p_memsz};
		}
		if (type != PT_LOAD || s.memsz == 0)
			continue;
		int ret = segment_load(vm, image, size, &s, err, errlen);
		if (ret < 0)
			return ret;
		if (s.paddr < out->start)
			out->start = s.paddr;
		if (s.paddr + s.memsz > out->end)
			out->end = s.paddr + s.memsz;
	}
	if (!out->end) {
		snprintf(err, errlen, "no loadable segment");
		return -ENOEXEC;
	}
	return 0;
bad_phdrs:
	snprintf(err, errlen, "program headers lie outside the file or are malformed");
	return -ENOEXEC;
}

/* A plain ELF64 kernel starts in 64-bit mode (x86_state_flat64) with RDI
 * pointing at a multiboot information structure: memory map, command line. */
int loader_elf64(struct vm *vm, const uint8_t *image, size_t size, const char *cmdline, struct boot_info *bi,
		 char *err, size_t errlen)
{
	struct elf_image elf;
	uint64_t info;
	int ret;

	if (size < sizeof(Elf32_Ehdr)) {
		snprintf(err, errlen, "truncated ELF header");
		return -ENOEXEC;
	}
	if (image[EI_CLASS] != ELFCLASS64) {
		snprintf(err, errlen, "an ELF32 image needs a multiboot header to say how to start it");
		return -ENOEXEC;
	}
	ret = elf_load(vm, image, size, &elf, err, errlen);
	if (ret < 0)
		return ret;
	ret = multiboot_info_build(vm, cmdline, NULL, elf.end, false, &info, err, errlen);
	if (ret < 0)
		return ret;
	x86_state_flat64(vm, &bi->bsp, elf.entry);
	bi->bsp.gpr[RDI] = info;
	bi->image_end = elf.end;
	return 0;
}
