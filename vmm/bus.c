/* Port-I/O and MMIO buses: sorted, non-overlapping regions found by binary
 * search. Registration is rare (start-up, hotplug); dispatch is hot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/internal.h"

int bus_init(struct bus *bus, const char *what)
{
	memset(bus, 0, sizeof(*bus));
	bus->what = what;
	return -pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->regions);
	pthread_rwlock_destroy(&bus->lock);
}

static struct bus *bus_of(struct vm *vm, enum bus_kind kind)
{
	return kind == BUS_PIO ? &vm->pio : &vm->mmio;
}

int bus_register(struct vm *vm, enum bus_kind kind, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	struct bus *bus = bus_of(vm, kind);
	int ret = 0;
	unsigned i;

	if (!len || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	for (i = 0; i < bus->count && bus->regions[i].base < base; i++)
		;
	if ((i > 0 && bus->regions[i - 1].base + bus->regions[i - 1].len > base) ||
	    (i < bus->count && base + len > bus->regions[i].base)) {
		vmm_log("%s %s at 0x%llx overlaps %s", bus->what, name, (unsigned long long)base,
			bus->regions[i < bus->count && base + len > bus->regions[i].base ? i : i - 1].name);
		ret = -EEXIST;
		goto out;
	}
	if (bus->count == bus->cap) {
		unsigned cap = bus->cap ? 2 * bus->cap : 16;
		struct bus_region *r = realloc(bus->regions, cap * sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		bus->regions = r;
		bus->cap = cap;
	}
	memmove(&bus->regions[i + 1], &bus->regions[i], (bus->count - i) * sizeof(bus->regions[0]));
	bus->regions[i] = (struct bus_region){base, len, ops, opaque, name};
	bus->count++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

void bus_unregister(struct vm *vm, enum bus_kind kind, uint64_t base)
{
	struct bus *bus = bus_of(vm, kind);

	pthread_rwlock_wrlock(&bus->lock);
	for (unsigned i = 0; i < bus->count; i++) {
		if (bus->regions[i].base == base) {
			memmove(&bus->regions[i], &bus->regions[i + 1], (bus->count - i - 1) * sizeof(bus->regions[0]));
			bus->count--;
			break;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
}

static struct bus_region *bus_find(struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->count;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		struct bus_region *r = &bus->regions[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

static void bus_unassigned(struct bus *bus, uint64_t addr, unsigned size, bool write)
{
	/* Guests probe for absent hardware all the time: say it once. */
	if (!bus->warned_unassigned && getenv("VIREO_TRACE_UNASSIGNED")) {
		bus->warned_unassigned = true;
		vmm_log("%s %s of %u bytes at unassigned 0x%llx", bus->what, write ? "write" : "read", size,
			(unsigned long long)addr);
	}
}

uint64_t bus_read(struct bus *bus, struct vcpu *vcpu, uint64_t addr, unsigned size)
{
	uint64_t value = size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;

	pthread_rwlock_rdlock(&bus->lock);
	struct bus_region *r = bus_find(bus, addr);
	if (r && r->ops->read && addr - r->base + size <= r->len)
		value = r->ops->read(r->opaque, vcpu, addr - r->base, size);
	else if (!r)
		bus_unassigned(bus, addr, size, false);
	pthread_rwlock_unlock(&bus->lock);
	return value;
}

void bus_write(struct bus *bus, struct vcpu *vcpu, uint64_t addr, unsigned size, uint64_t value)
{
	pthread_rwlock_rdlock(&bus->lock);
	struct bus_region *r = bus_find(bus, addr);
	if (r && r->ops->write && addr - r->base + size <= r->len)
		r->ops->write(r->opaque, vcpu, addr - r->base, size, value);
	else if (!r)
		bus_unassigned(bus, addr, size, true);
	pthread_rwlock_unlock(&bus->lock);
}

void vcpu_exit_io(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	struct vm *vm = vcpu->vm;

	switch (exit->reason) {
	case VCPU_EXIT_PIO:
		vcpu->exits[VCPU_EXIT_PIO]++;
		if (exit->pio.size != 1 && exit->pio.size != 2 && exit->pio.size != 4)
			return;
		if (exit->pio.write)
			bus_write(&vm->pio, vcpu, exit->pio.port, exit->pio.size, exit->pio.data);
		else
			exit->pio.data = bus_read(&vm->pio, vcpu, exit->pio.port, exit->pio.size);
		break;
	case VCPU_EXIT_MMIO:
		vcpu->exits[VCPU_EXIT_MMIO]++;
		if (exit->mmio.size != 1 && exit->mmio.size != 2 && exit->mmio.size != 4 && exit->mmio.size != 8)
			return;
		if (exit->mmio.write)
			bus_write(&vm->mmio, vcpu, exit->mmio.addr, exit->mmio.size, exit->mmio.data);
		else
			exit->mmio.data = bus_read(&vm->mmio, vcpu, exit->mmio.addr, exit->mmio.size);
		break;
	case VCPU_EXIT_MSR:
		vcpu->exits[VCPU_EXIT_MSR]++;
		exit->msr.fault = false;
		if (exit->msr.write)
			lapic_msr_write(vcpu, exit->msr.index, exit->msr.data, &exit->msr.fault);
		else
			exit->msr.data = lapic_msr_read(vcpu, exit->msr.index, &exit->msr.fault);
		break;
	default:
		break;
	}
}
