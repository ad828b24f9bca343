/*
 * Loading an ELF64 x86-64 executable as execve does: its PT_LOAD segments at
 * their addresses (ET_EXEC) or anywhere the kernel picks (ET_DYN: PIE,
 * static-pie, ld.so), bss zeroed, and its PT_INTERP loaded beside it. The
 * file is hostile: every header field is checked before it is used.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dbt/user/user.h"

#define PAGE	     4096ull
#define PAGE_DOWN(x) ((x) & ~(PAGE - 1))
#define PAGE_UP(x)   (((x) + PAGE - 1) & ~(PAGE - 1))
#define MAX_PHNUM    512
#define USER_TOP     (1ull << 47)

struct loaded {
	uint64_t bias, entry, phdr, phnum, end;
	char interp[PATH_MAX];
};

static int elf_prot(uint32_t flags)
{
	return (flags & PF_R ? PROT_READ : 0) | (flags & PF_W ? PROT_WRITE : 0) | (flags & PF_X ? PROT_EXEC : 0);
}

static int read_exact(int fd, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(fd, buf, len, off);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -ENOEXEC;
}

/* Maps one PT_LOAD segment at bias + p_vaddr. */
static int map_segment(int fd, const Elf64_Phdr *ph, uint64_t bias)
{
	uint64_t start = bias + ph->p_vaddr, pageoff = ph->p_vaddr & (PAGE - 1);
	uint64_t map_start = start - pageoff, file_end = start + ph->p_filesz, mem_end = start + ph->p_memsz;
	int prot = elf_prot(ph->p_flags);

	if (ph->p_filesz) {
		/* bss shares the last file page: writable while it is zeroed. */
		int first = ph->p_memsz > ph->p_filesz ? prot | PROT_WRITE : prot;
		void *p = mmap((void *)(uintptr_t)map_start, ph->p_filesz + pageoff, first, MAP_PRIVATE | MAP_FIXED,
			       fd, (off_t)(ph->p_offset - pageoff));
		if (p == MAP_FAILED)
			return -errno;
		if (ph->p_memsz > ph->p_filesz) {
			memset((void *)(uintptr_t)file_end, 0, PAGE_UP(file_end) - file_end);
			if (first != prot && mprotect((void *)(uintptr_t)map_start, PAGE_UP(file_end) - map_start, prot))
				return -errno;
		}
	}
	uint64_t anon = ph->p_filesz ? PAGE_UP(file_end) : map_start;
	if (PAGE_UP(mem_end) > anon &&
	    mmap((void *)(uintptr_t)anon, PAGE_UP(mem_end) - anon, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) == MAP_FAILED)
		return -errno;
	user_maps_set(map_start, PAGE_UP(mem_end) - map_start, prot);
	return 0;
}

static int load_file(const char *path, struct loaded *out, bool is_interp, const char **why)
{
	Elf64_Ehdr eh;
	Elf64_Phdr *ph = NULL;
	struct stat st;
	int err, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	err = -EACCES;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
		goto out;
	err = -ENOEXEC;
	*why = "not an ELF file";
	if (read_exact(fd, &eh, sizeof(eh), 0) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG))
		goto out;
	*why = "not a 64-bit little-endian x86-64 executable";
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
	    (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
		goto out;
	*why = "bad program headers";
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > MAX_PHNUM ||
	    eh.e_phoff > (uint64_t)st.st_size)
		goto out;
	ph = malloc(eh.e_phnum * sizeof(*ph));
	if (!ph) {
		err = -ENOMEM;
		goto out;
	}
	if (read_exact(fd, ph, eh.e_phnum * sizeof(*ph), (off_t)eh.e_phoff) < 0)
		goto out;

	uint64_t lo = UINT64_MAX, hi = 0;
	out->interp[0] = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *p = &ph[i];
		if (p->p_type == PT_INTERP && !is_interp) {
			*why = "bad PT_INTERP";
			if (p->p_filesz < 2 || p->p_filesz > sizeof(out->interp) ||
			    read_exact(fd, out->interp, p->p_filesz, (off_t)p->p_offset) < 0 ||
			    out->interp[p->p_filesz - 1] || strlen(out->interp) + 1 != p->p_filesz)
				goto out;
		}
		if (p->p_type != PT_LOAD)
			continue;
		*why = "bad PT_LOAD segment";
		if (p->p_memsz < p->p_filesz || p->p_vaddr >= USER_TOP || p->p_memsz >= USER_TOP ||
		    p->p_vaddr + p->p_memsz > USER_TOP || p->p_offset > (uint64_t)st.st_size ||
		    (p->p_offset & (PAGE - 1)) != (p->p_vaddr & (PAGE - 1)) || (p->p_memsz == 0))
			goto out;
		if (PAGE_DOWN(p->p_vaddr) < lo)
			lo = PAGE_DOWN(p->p_vaddr);
		if (PAGE_UP(p->p_vaddr + p->p_memsz) > hi)
			hi = PAGE_UP(p->p_vaddr + p->p_memsz);
	}
	*why = "no loadable segment";
	if (hi == 0)
		goto out;

	/* Reserve the whole span first: segments then go into it with
	 * MAP_FIXED, never over anything else (this process's own memory). */
	void *want = eh.e_type == ET_EXEC ? (void *)(uintptr_t)lo : NULL;
	void *span = mmap(want, hi - lo, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (want ? MAP_FIXED_NOREPLACE : 0), -1, 0);
	*why = "its addresses are in use or unavailable";
	if (span == MAP_FAILED || (want && span != want)) {
		if (span != MAP_FAILED)
			munmap(span, hi - lo);
		err = -ENOMEM;
		goto out;
	}
	out->bias = (uintptr_t)span - lo;
	out->phdr = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_PHDR)
			out->phdr = out->bias + ph[i].p_vaddr;
		if (ph[i].p_type != PT_LOAD)
			continue;
		if ((err = map_segment(fd, &ph[i], out->bias)) < 0) {
			*why = "cannot map a segment";
			goto out;
		}
		if (!out->phdr && eh.e_phoff >= ph[i].p_offset && eh.e_phoff - ph[i].p_offset < ph[i].p_filesz)
			out->phdr = out->bias + ph[i].p_vaddr + (eh.e_phoff - ph[i].p_offset);
	}
	out->entry = out->bias + eh.e_entry;
	out->phnum = eh.e_phnum;
	out->end = out->bias + hi;
	err = 0;
out:
	free(ph);
	close(fd);
	return err;
}

int user_elf_load(const char *path, struct user_image *img, const char **why)
{
	static struct loaded prog, interp;
	int err;

	*why = NULL;
	if ((err = load_file(path, &prog, false, why)) < 0)
		return err;
	*img = (struct user_image){
	    .entry = prog.entry,
	    .start = prog.entry,
	    .phdr = prog.phdr,
	    .phnum = prog.phnum,
	    .phent = sizeof(Elf64_Phdr),
	    .brk = prog.end,
	};
	if (prog.interp[0]) {
		const char *iwhy = NULL;
		if ((err = load_file(prog.interp, &interp, true, &iwhy)) < 0) {
			*why = iwhy ? iwhy : "cannot load its interpreter";
			/* The kernel says ENOENT for a missing interpreter too. */
			return err == -ENOEXEC ? -ELIBBAD : err;
		}
		img->interp_base = interp.bias;
		img->start = interp.entry;
	}
	return 0;
}
