/*
 * CPUID: what this CPU implements, and nothing more. Guests (glibc, the
 * kernel's alternatives) choose code paths from it, so every bit set here
 * names something the interpreter executes. Features the interpreter runs
 * on the host CPU (SSE3..SSE4.2, POPCNT, LZCNT, CMPXCHG16B) are offered
 * only where the host has them.
 */
#include <cpuid.h>
#include <pthread.h>

#include "dbt/internal.h"

static uint32_t host_ecx1, host_ecx81;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_probe(void)
{
	unsigned a, b, c, d;
	if (__get_cpuid(1, &a, &b, &c, &d))
		host_ecx1 = c;
	if (__get_cpuid(0x80000001, &a, &b, &c, &d))
		host_ecx81 = c;
}

void cpuid_host_init(void)
{
	pthread_once(&host_once, host_probe);
}

bool cpuid_host_has(uint32_t leaf, unsigned ecx_bit)
{
	return ((leaf == 1 ? host_ecx1 : host_ecx81) >> ecx_bit) & 1;
}

/* Leaf 1 ECX bits executed on the host: SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT. */
#define HOST_ECX1 ((1u << 0) | (1u << 9) | (1u << 13) | (1u << 19) | (1u << 20) | (1u << 23))

static void put_str(uint32_t *regs, const char *s)
{
	memcpy(regs, s, 16);
}

void cpuid_query(struct dbt_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	static const char brand[48] = "Vireo dbt virtual CPU";
	unsigned ncpu = cpu->env.cpu_count ? cpu->env.cpu_count : 1;
	uint32_t *a = &out[0], *b = &out[1], *c = &out[2], *d = &out[3];

	*a = *b = *c = *d = 0;
	switch (leaf) {
	case 0:
		*a = 0xd;
		memcpy(b, "Genu", 4);
		memcpy(d, "ineI", 4);
		memcpy(c, "ntel", 4);
		break;
	case 1:
		*a = 0x000306a9; /* family 6, model 0x3a, stepping 9 */
		*b = (cpu->env.cpu_index << 24) | ((ncpu > 255 ? 255 : ncpu) << 16) | (8u << 8);
		*c = (HOST_ECX1 & host_ecx1) | (1u << 21) /* x2APIC */ | (1u << 24) /* TSC deadline */ |
		     (1u << 26) /* XSAVE */ | (1u << 31) /* hypervisor */;
		if (cpu->s.cr4 & CR4_OSXSAVE)
			*c |= 1u << 27;
		*d = (1u << 0) /* FPU */ | (1u << 3) /* PSE */ | (1u << 4) /* TSC */ | (1u << 5) /* MSR */ |
		     (1u << 6) /* PAE */ | (1u << 8) /* CX8 */ | (1u << 9) /* APIC */ | (1u << 11) /* SEP */ |
		     (1u << 12) /* MTRR */ | (1u << 13) /* PGE */ | (1u << 15) /* CMOV */ | (1u << 16) /* PAT */ |
		     (1u << 19) /* CLFSH */ | (1u << 23) /* MMX */ | (1u << 24) /* FXSR */ | (1u << 25) /* SSE */ |
		     (1u << 26) /* SSE2 */;
		if (ncpu > 1)
			*d |= 1u << 28; /* HTT: EBX[23:16] is meaningful */
		break;
	case 2:
		*a = 1; /* one round, no descriptors: caches are described by leaf 4 (none) */
		break;
	case 7:
		if (sub == 0) {
			*b = 1u << 9;  /* ERMS: REP MOVSB/STOSB are the fast way */
			*d = 1u << 29; /* IA32_ARCH_CAPABILITIES */
		}
		break;
	case 0xb: /* x2APIC topology: one thread per core, cpu_count cores */
		*d = cpu->env.cpu_index;
		if (sub == 0) {
			*a = 0;
			*b = 1;
			*c = (1u << 8) | sub;
		} else if (sub == 1) {
			unsigned shift = 0;
			while ((1u << shift) < ncpu)
				shift++;
			*a = shift;
			*b = ncpu;
			*c = (2u << 8) | sub;
		} else {
			*c = sub;
		}
		break;
	case 0xd:
		if (sub == 0) {
			*a = 3; /* x87 | SSE */
			*b = 512 + 64;
			*c = 512 + 64;
		} else if (sub == 1) {
			*a = 0; /* no XSAVEOPT, XSAVEC, XGETBV1, XSAVES */
		}
		break;
	case 0x40000000:
		*a = 0x40000000;
		memcpy(b, "Vire", 4);
		memcpy(c, "oDBT", 4);
		memcpy(d, "Vire", 4);
		break;
	case 0x80000000: *a = 0x80000008; break;
	case 0x80000001:
		*c = (1u << 0) /* LAHF in 64-bit mode */ | (host_ecx81 & (1u << 5)) /* LZCNT */ |
		     (1u << 8) /* PREFETCHW */;
		*d = (1u << 11) /* SYSCALL */ | (1u << 20) /* NX */ | (1u << 26) /* 1 GiB pages */ |
		     (1u << 27) /* RDTSCP */ | (1u << 29) /* LM */;
		break;
	case 0x80000002:
	case 0x80000003:
	case 0x80000004: put_str(out, brand + 16 * (leaf - 0x80000002)); break;
	case 0x80000007:
		*d = 1u << 8; /* invariant TSC: the host's, which is */
		break;
	case 0x80000008: *a = (48u << 8) | DBT_PHYS_BITS; break;
	default: break;
	}
}
