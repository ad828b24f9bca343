/* Guest RAM: one memfd, mapped once, split around the 32-bit PCI hole. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/internal.h"

int memory_init(struct vm *vm, uint64_t size, char *err, size_t errlen)
{
	struct guest_memory *m = &vm->mem;

	if (size < (2ull << 20) || size % 4096) {
		snprintf(err, errlen, "memory size %llu is not a multiple of 4 KiB of at least 2 MiB",
			 (unsigned long long)size);
		return -EINVAL;
	}
	m->fd = memfd_create("vireo-ram", MFD_CLOEXEC);
	if (m->fd < 0 || ftruncate(m->fd, size) < 0) {
		snprintf(err, errlen, "cannot create %llu bytes of guest RAM: %s", (unsigned long long)size,
			 strerror(errno));
		return -errno;
	}
	m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->fd, 0);
	if (m->host == MAP_FAILED) {
		snprintf(err, errlen, "cannot map guest RAM: %s", strerror(errno));
		close(m->fd);
		return -errno;
	}
	m->size = size;
	m->low_size = size < RAM_LOW_LIMIT ? size : RAM_LOW_LIMIT;
	m->high_size = size - m->low_size;
	return 0;
}

void memory_destroy(struct vm *vm)
{
	struct guest_memory *m = &vm->mem;
	if (m->host && m->host != MAP_FAILED)
		munmap(m->host, m->size);
	if (m->fd > 0)
		close(m->fd);
}

void *gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	struct guest_memory *m = &vm->mem;

	if (gpa < m->low_size && len <= m->low_size - gpa)
		return m->host + gpa;
	if (gpa >= RAM_HIGH_BASE && gpa - RAM_HIGH_BASE < m->high_size && len <= m->high_size - (gpa - RAM_HIGH_BASE))
		return m->host + m->low_size + (gpa - RAM_HIGH_BASE);
	return NULL;
}

int guest_write(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gpa_to_hva(vm, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	guest_memory_dirty(vm, gpa, len);
	return 0;
}

void guest_memory_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (len && vm->engine && vm->engine->memory_dirty)
		vm->engine->memory_dirty(vm, gpa, len);
}

int guest_read(struct vm *vm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gpa_to_hva(vm, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

/* Conventional memory below the EBDA, the BIOS area, RAM from 1 MiB, the
 * high RAM; the APIC/IOAPIC window is reserved. */
int e820_map(struct vm *vm, struct e820_entry *out, int max)
{
	struct guest_memory *m = &vm->mem;
	struct e820_entry e[5];
	int n = 0;

	e[n++] = (struct e820_entry){0, 0x9fc00, E820_RAM};
	e[n++] = (struct e820_entry){0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED};
	e[n++] = (struct e820_entry){0x100000, m->low_size - 0x100000, E820_RAM};
	e[n++] = (struct e820_entry){0xfec00000, 0x1400000, E820_RESERVED};
	if (m->high_size)
		e[n++] = (struct e820_entry){RAM_HIGH_BASE, m->high_size, E820_RAM};
	if (n > max)
		n = max;
	memcpy(out, e, n * sizeof(e[0]));
	return n;
}
