/* The fake machine of the dbt unit tests: see harness.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

static void io(void *opaque, struct vcpu_exit *e)
{
	struct harness *h = opaque;
	if (h->nlog < sizeof(h->log) / sizeof(h->log[0]))
		h->log[h->nlog++] = *e;
	switch (e->reason) {
	case VCPU_EXIT_PIO:
		if (!e->pio.write)
			e->pio.data = e->pio.port == 0x1234 ? 0xabcdef12u : 0xffffffffu;
		break;
	case VCPU_EXIT_MMIO: {
		uint64_t off = e->mmio.addr - MMIO_BASE;
		if (e->mmio.addr >= MMIO_BASE && off + e->mmio.size <= sizeof(h->mmio)) {
			if (e->mmio.write)
				memcpy(h->mmio + off, &e->mmio.data, e->mmio.size);
			else
				memcpy(&e->mmio.data, h->mmio + off, e->mmio.size);
		} else if (!e->mmio.write) {
			e->mmio.data = ~0ull;
		}
		break;
	}
	case VCPU_EXIT_MSR:
		if (e->msr.index == 0x1b && !e->msr.write)
			e->msr.data = 0xfee00900;
		else
			e->msr.fault = true;
		break;
	default: break;
	}
}

static int pending_interrupt(void *opaque)
{
	struct harness *h = opaque;
	return h->pending;
}

static void accept_interrupt(void *opaque, int vector)
{
	struct harness *h = opaque;
	if (vector == h->pending) {
		h->pending = -1;
		h->accepted++;
	}
}

static bool take_nmi(void *opaque)
{
	struct harness *h = opaque;
	if (!h->nmis)
		return false;
	h->nmis--;
	return true;
}

static void put64(uint8_t *ram, uint64_t gpa, uint64_t v)
{
	memcpy(ram + gpa, &v, 8);
}

/* GDT, IDT, TSS, exception stubs and page tables of layout.h. */
void h_build_tables(uint8_t *ram)
{
	static const uint64_t gdt[] = {
	    0,
	    0x00af9a000000ffff, /* 0x08 kernel code, 64-bit */
	    0x00cf92000000ffff, /* 0x10 kernel data */
	    0x00cffa000000ffff, /* 0x18 user code, 32-bit */
	    0x00cff2000000ffff, /* 0x20 user data */
	    0x00affa000000ffff, /* 0x28 user code, 64-bit */
	    0,
	    0,			/* 0x30 TSS */
	    0x00cf12000000ffff, /* 0x40 data, not present */
	    0x00cf9a000000ffff, /* 0x48 kernel code, 32-bit */
	};
	uint64_t tss_limit = 0x68 + 8192;
	memcpy(ram + GDT, gdt, sizeof(gdt));
	put64(ram, GDT + 0x30,
	      (tss_limit & 0xffff) | ((uint64_t)(TSS & 0xffffff) << 16) | (0x89ull << 40) | ((tss_limit >> 16) << 48) |
		  ((uint64_t)(TSS >> 24) << 56));
	put64(ram, GDT + 0x38, 0);
	uint16_t limit = sizeof(gdt) - 1;
	memcpy(ram + GDT_PTR, &limit, 2);
	uint64_t base = GDT;
	memcpy(ram + GDT_PTR + 2, &base, 8);

	for (unsigned v = 0; v < 256; v++) {
		uint64_t addr = v == 0x40 ? IRQ_HANDLER : EXC_STUBS + 16 * v;
		unsigned dpl = (v == 3 || v == 0x80) ? 3 : 0;
		uint64_t lo = (addr & 0xffff) | (0x08ull << 16) | ((uint64_t)(0x8e | (dpl << 5)) << 40) |
			      ((addr >> 16 & 0xffff) << 48);
		put64(ram, IDT + 16 * v, lo);
		put64(ram, IDT + 16 * v + 8, addr >> 32);
		uint8_t *stub = ram + EXC_STUBS + 16 * v;
		stub[0] = 0xb8; /* mov $v, %eax */
		stub[1] = (uint8_t)v;
		stub[2] = stub[3] = stub[4] = 0;
		stub[5] = 0xf4; /* hlt */
		stub[6] = 0xeb; /* jmp back to the hlt */
		stub[7] = 0xfd;
	}

	memset(ram + TSS, 0, 0x68 + 8192 + 1);
	put64(ram, TSS + 4, RSP0_TOP);
	put64(ram, TSS + 36, IST_TOP);
	uint16_t iomap = 0x68;
	memcpy(ram + TSS + 0x66, &iomap, 2);
	memset(ram + TSS + 0x68, 0xff, 8192 + 1);
	ram[TSS + 0x68 + 0x1234 / 8] &= (uint8_t) ~(1u << (0x1234 % 8)); /* ring 3 may use port 0x1234 */

	memset(ram + PML4, 0, 0x7000);
	put64(ram, PML4, PDPT | 7);
	for (uint64_t i = 0; i < 4; i++)
		put64(ram, PDPT + 8 * i, (PD + 0x1000 * i) | 7);
	for (uint64_t i = 0; i < 2048; i++)
		put64(ram, PD + 8 * i, (i << 21) | 0x87);
	put64(ram, PD + 8 * (FAULT_PAGE >> 21), PT | 7);
	for (uint64_t i = 0; i < 512; i++)
		put64(ram, PT + 8 * i, (FAULT_PAGE + (i << 12)) | 7);
	put64(ram, PT + 0, 0);					       /* not present */
	put64(ram, PT + 8, (FAULT_PAGE + 0x1000) | 5);		       /* read-only */
	put64(ram, PT + 16, (FAULT_PAGE + 0x2000) | 3);		       /* supervisor */
	put64(ram, PT + 24, (FAULT_PAGE + 0x3000) | 7 | (1ull << 63)); /* NX */
	put64(ram, PT + 32, (FAULT_PAGE + 0x4000) | 7 | (1ull << 51)); /* reserved bit */
}

void h_init(struct harness *h, uint8_t *shared_ram, unsigned cpu_index)
{
	memset(h, 0, sizeof(*h));
	h->ram = shared_ram;
	if (!h->ram) {
		h->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (h->ram == MAP_FAILED) {
			perror("mmap");
			exit(1);
		}
		h_build_tables(h->ram);
	}
	h->pending = -1;
	h->cpu_index = cpu_index;
	h->env = (struct dbt_env){
	    .ram = {{.gpa = 0, .size = RAM_SIZE, .host = h->ram}},
	    .ram_count = 1,
	    .io = io,
	    .pending_interrupt = pending_interrupt,
	    .accept_interrupt = accept_interrupt,
	    .take_nmi = take_nmi,
	    .interrupt_hint = &h->hint,
	    .kick = &h->kick,
	    .opaque = h,
	    .cpu_index = cpu_index,
	    .cpu_count = 2,
	};
	h->cpu = dbt_cpu_create(&h->env);
	if (!h->cpu) {
		fprintf(stderr, "dbt_cpu_create failed\n");
		exit(1);
	}
}

void h_destroy(struct harness *h)
{
	dbt_cpu_destroy(h->cpu);
}

void h_load(struct harness *h, uint64_t gpa, const uint8_t *start, const uint8_t *end)
{
	memcpy(h->ram + gpa, start, (size_t)(end - start));
	dbt_invalidate_range(h->cpu, gpa, (uint64_t)(end - start));
}

static struct x86_segment seg(uint16_t sel, uint32_t type, unsigned dpl, bool l, bool db)
{
	return (struct x86_segment){.base = 0,
				    .limit = 0xffffffff,
				    .selector = sel,
				    .type = (uint8_t)type,
				    .s = 1,
				    .dpl = dpl & 3,
				    .present = 1,
				    .l = l,
				    .db = db,
				    .g = 1};
}

void h_state_long(struct x86_state *s)
{
	memset(s, 0, sizeof(*s));
	s->seg[SEG_CS] = seg(0x08, 0xb, 0, true, false);
	s->seg[SEG_SS] = seg(0x10, 0x3, 0, false, true);
	s->seg[SEG_DS] = seg(0x10, 0x3, 0, false, true);
	s->seg[SEG_ES] = seg(0x10, 0x3, 0, false, true);
	s->seg[SEG_FS] = seg(0, 0x3, 0, false, true);
	s->seg[SEG_FS].unusable = 1;
	s->seg[SEG_GS] = s->seg[SEG_FS];
	s->ldtr = (struct x86_segment){.unusable = 1};
	s->tr = (struct x86_segment){.base = TSS, .limit = 0x68 + 8192, .selector = 0x30, .type = 0xb, .present = 1};
	s->gdtr = (struct x86_dtable){.base = GDT, .limit = 0x4f};
	s->idtr = (struct x86_dtable){.base = IDT, .limit = 0xfff};
	s->cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
	s->cr3 = PML4;
	s->cr4 = 0x6a0;	 /* OSXMMEXCPT OSFXSR PGE PAE */
	s->efer = 0xd01; /* NXE LMA LME SCE */
	s->gpr[RSP] = STACK_TOP;
	s->rip = CODE;
	s->rflags = 2;
	s->fpu.fcw = 0x37f;
	s->fpu.mxcsr = 0x1f80;
	s->xcr0 = 1;
	s->pat = 0x0007040600070406ull;
}

void h_state_prot32(struct x86_state *s)
{
	h_state_long(s);
	s->seg[SEG_CS] = seg(0x48, 0xb, 0, false, true);
	s->seg[SEG_FS].unusable = 0;
	s->seg[SEG_GS].unusable = 0;
	s->cr0 = 0x11; /* ET PE */
	s->cr3 = 0;
	s->cr4 = 0;
	s->efer = 0;
	s->gpr[RSP] = STACK_TOP;
}

void h_state_real(struct x86_state *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < SEG_COUNT; i++)
		s->seg[i] = (struct x86_segment){.limit = 0xffff, .type = 3, .s = 1, .present = 1};
	s->seg[SEG_CS] = (struct x86_segment){
	    .base = TRAMP, .limit = 0xffff, .selector = TRAMP >> 4, .type = 0xb, .s = 1, .present = 1};
	s->ldtr = (struct x86_segment){.limit = 0xffff, .type = 2, .present = 1};
	s->tr = (struct x86_segment){.limit = 0xffff, .type = 0xb, .present = 1};
	s->gdtr.limit = 0xffff;
	s->idtr.limit = 0xffff;
	s->cr0 = 0x10;
	s->rip = 0;
	s->rflags = 2;
	s->fpu.fcw = 0x37f;
	s->fpu.mxcsr = 0x1f80;
	s->xcr0 = 1;
}

struct vcpu_exit h_run(struct harness *h)
{
	struct vcpu_exit e;
	do
		dbt_cpu_run(h->cpu, &e);
	while (e.reason == VCPU_EXIT_KICK);
	return e;
}

void h_get(struct harness *h, struct x86_state *s)
{
	dbt_cpu_get_state(h->cpu, s);
}

void h_set(struct harness *h, const struct x86_state *s)
{
	dbt_cpu_set_state(h->cpu, s);
}

uint64_t h_rd64(struct harness *h, uint64_t gpa)
{
	uint64_t v;
	memcpy(&v, h->ram + gpa, 8);
	return v;
}

void h_wr64(struct harness *h, uint64_t gpa, uint64_t v)
{
	memcpy(h->ram + gpa, &v, 8);
}
