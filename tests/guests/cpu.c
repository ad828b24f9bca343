/*
 * CPUID, MSRs and control registers. CPUID must advertise what the runtime
 * relies on; every advertised feature with an instruction is run against a
 * C model, and where the SDM says an instruction is #UD without its feature
 * bit, an unadvertised one must fault. MSRs are written, read back and
 * restored; control registers must hold what boot.S set.
 *
 * The guest is built with -mgeneral-regs-only, so the compiler never touches
 * x87, MMX or XMM state and the asm below needs no clobbers for them (GCC
 * refuses such clobbers in this mode anyway).
 */
#include "guest.h"

typedef unsigned __int128 u128;

#define CR0_PE	       BIT64(0)
#define CR0_MP	       BIT64(1)
#define CR0_EM	       BIT64(2)
#define CR0_TS	       BIT64(3)
#define CR0_NE	       BIT64(5)
#define CR0_WP	       BIT64(16)
#define CR0_PG	       BIT64(31)
#define CR4_PAE	       BIT64(5)
#define CR4_OSFXSR     BIT64(9)
#define CR4_OSXMMEXCPT BIT64(10)
#define CR4_OSXSAVE    BIT64(18)

#define TSC_AUX_VALUE 0x4e5a
#define NONCANONICAL  0x8000000000000000ull /* non-canonical at 48 and at 57 bits */

enum cpuid_word { L1_ECX, L1_EDX, L7_EBX, L7_ECX, X1_ECX, X1_EDX, NWORDS };
static const char *const word_names[NWORDS] = {"1.ecx", "1.edx", "7.ebx", "7.ecx", "80000001.ecx", "80000001.edx"};
static uint32_t feat[NWORDS];
static uint32_t max_leaf, max_ext_leaf;

static bool has(enum cpuid_word w, unsigned bit)
{
	return feat[w] & BIT(bit);
}

static bool printable(char c)
{
	return c >= 0x20 && c < 0x7f;
}

/* ---- CPUID leaves ---------------------------------------------------------- */

static void check_leaves(void)
{
	struct cpuid_regs r = cpuid(0, 0);
	char vendor[13];
	bool ok = true;

	max_leaf = r.eax;
	check(max_leaf >= 1, "cpuid.max_leaf", "leaf 0 says max leaf 0x%x", max_leaf);
	memcpy(vendor, &r.ebx, 4);
	memcpy(vendor + 4, &r.edx, 4);
	memcpy(vendor + 8, &r.ecx, 4);
	vendor[12] = 0;
	for (int i = 0; i < 12; i++)
		ok &= printable(vendor[i]);
	check(ok, "cpuid.vendor", "vendor bytes are not 12 printable characters");
	if (ok)
		printf("INFO vendor %s, max leaf 0x%x\n", vendor, max_leaf);

	max_ext_leaf = cpuid(0x80000000, 0).eax;
	check(max_ext_leaf >= 0x80000001 && max_ext_leaf < 0x80000100, "cpuid.max_ext_leaf", "extended max leaf 0x%x",
	      max_ext_leaf);

	r = cpuid(1, 0);
	feat[L1_ECX] = r.ecx;
	feat[L1_EDX] = r.edx;
	if (max_leaf >= 7) {
		r = cpuid(7, 0);
		feat[L7_EBX] = r.ebx;
		feat[L7_ECX] = r.ecx;
	}
	r = cpuid(0x80000001, 0);
	feat[X1_ECX] = r.ecx;
	feat[X1_EDX] = r.edx;

	if (max_ext_leaf >= 0x80000004) {
		char brand[49];
		for (uint32_t leaf = 0; leaf < 3; leaf++) {
			r = cpuid(0x80000002 + leaf, 0);
			memcpy(brand + 16 * leaf, &r, 16);
		}
		brand[48] = 1;
		int len = 0;
		while (len < 48 && brand[len] && printable(brand[len]))
			len++;
		/* The string ends with a NUL inside the 48 bytes; everything before is text. */
		check(len < 48 && brand[len] == 0, "cpuid.brand", "byte %d is 0x%x", len, (uint8_t)brand[len]);
		if (len < 48 && brand[len] == 0)
			printf("INFO brand \"%s\"\n", brand);
	} else {
		printf("INFO no brand string (max extended leaf 0x%x)\n", max_ext_leaf);
	}

	if (max_ext_leaf >= 0x80000008) {
		uint32_t sizes = cpuid(0x80000008, 0).eax;
		unsigned phys = sizes & 0xff, virt = (sizes >> 8) & 0xff;
		check(phys >= 36 && phys <= 52, "cpuid.phys_bits", "%u physical address bits", phys);
		/* LA57 is CPUID.7.ECX[16]. */
		unsigned want_virt = has(L7_ECX, 16) ? 57 : 48;
		check_eq("cpuid.virt_bits", want_virt, virt);
	} else {
		check(false, "cpuid.80000008", "a 64-bit CPU must have leaf 0x80000008 (max 0x%x)", max_ext_leaf);
	}

	/* CPUID exists iff software can toggle RFLAGS.ID. */
	uint64_t before, flipped, after;
	__asm__ volatile("pushfq; popq %0\n\t"
			 "movq %0, %%rax; xorq %3, %%rax; pushq %%rax; popfq\n\t"
			 "pushfq; popq %1\n\t"
			 "pushq %0; popfq\n\t"
			 "pushfq; popq %2"
			 : "=&r"(before), "=&r"(flipped), "=&r"(after)
			 : "i"(RFLAGS_ID)
			 : "rax", "cc");
	check(((before ^ flipped) & RFLAGS_ID) && after == before, "cpuid.eflags_id",
	      "ID before %lu after toggle %lu after restore %lu", (before >> 21) & 1, (flipped >> 21) & 1,
	      (after >> 21) & 1);
}

/* Features the runtime (and any x86-64 kernel) cannot run without. */
static void check_required(void)
{
	static const struct {
		const char *name;
		enum cpuid_word word;
		unsigned bit;
	} req[] = {
	    {"fpu", L1_EDX, 0},	  {"tsc", L1_EDX, 4},	   {"msr", L1_EDX, 5},	 {"pae", L1_EDX, 6},
	    {"cx8", L1_EDX, 8},	  {"apic", L1_EDX, 9},	   {"fxsr", L1_EDX, 24}, {"sse", L1_EDX, 25},
	    {"sse2", L1_EDX, 26}, {"syscall", X1_EDX, 11}, {"nx", X1_EDX, 20},	 {"lm", X1_EDX, 29},
	};
	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		char name[40];
		snprintf(name, sizeof(name), "cpuid.has_%s", req[i].name);
		check(has(req[i].word, req[i].bit), name, "CPUID.%s bit %u is clear", word_names[req[i].word],
		      req[i].bit);
	}

	/* Initial APIC ID in CPUID.1.EBX[31:24] is the xAPIC's ID register. */
	uint64_t apic_base = rdmsr(MSR_APIC_BASE);
	if (has(L1_EDX, 9) && (apic_base & BIT(11)) && !(apic_base & BIT(10)))
		check_eq("cpuid.apic_id", cpuid(1, 0).ebx >> 24, lapic_id());
}

/* ---- advertised features run, unadvertised ones #UD ------------------------ */

struct probe {
	uint64_t want[2], got[2];
};

static void probe_fpu(void *arg)
{
	struct probe *p = arg;
	int32_t three = 3;
	p->want[0] = 4;
	__asm__ volatile("fld1; fiaddl %1; fistpl %0" : "=m"(p->got[0]) : "m"(three));
	p->got[0] &= 0xffffffff;
}

static void probe_cmov(void *arg)
{
	struct probe *p = arg;
	uint64_t a = 1, b = 2;
	p->want[0] = 2;
	p->want[1] = 2;
	__asm__ volatile("xorl %%eax, %%eax; cmovzq %2, %0" : "+r"(a) : "0"(a), "r"(b) : "rax", "cc");
	p->got[0] = a;
	a = 2;
	b = 3;
	__asm__ volatile("cmpq %0, %0; cmovnzq %1, %0" : "+r"(a) : "r"(b) : "cc");
	p->got[1] = a;
}

static void probe_cx8(void *arg)
{
	struct probe *p = arg;
	uint64_t mem = 0x1111222233334444;
	uint32_t lo = 0x33334444, hi = 0x11112222;
	uint8_t zf;

	__asm__ volatile("lock cmpxchg8b %0; setz %1"
			 : "+m"(mem), "=q"(zf), "+a"(lo), "+d"(hi)
			 : "b"(0x77778888), "c"(0x55556666)
			 : "cc");
	p->want[0] = 0x5555666677778888;
	p->got[0] = zf ? mem : 0;
	/* A mismatch loads EDX:EAX from memory. */
	lo = hi = 0;
	__asm__ volatile("lock cmpxchg8b %0; setz %1"
			 : "+m"(mem), "=q"(zf), "+a"(lo), "+d"(hi)
			 : "b"(0), "c"(0)
			 : "cc");
	p->want[1] = 0x5555666677778888;
	p->got[1] = zf ? 0 : ((uint64_t)hi << 32 | lo);
}

static void probe_cx16(void *arg)
{
	struct probe *p = arg;
	struct {
		uint64_t lo, hi;
	} __attribute__((aligned(16))) mem = {0x0123456789abcdef, 0xfedcba9876543210};
	uint64_t lo = mem.lo, hi = mem.hi;
	uint8_t zf;

	__asm__ volatile("lock cmpxchg16b %0; setz %1"
			 : "+m"(mem), "=q"(zf), "+a"(lo), "+d"(hi)
			 : "b"(0x1111111111111111), "c"(0x2222222222222222)
			 : "cc");
	p->want[0] = 0x1111111111111111;
	p->want[1] = 0x2222222222222222;
	p->got[0] = zf ? mem.lo : 0;
	p->got[1] = zf ? mem.hi : 0;
}

static void probe_popcnt(void *arg)
{
	struct probe *p = arg;
	uint64_t v = 0xf0f00f0f12345678;
	p->want[0] = 0;
	for (int b = 0; b < 64; b++)
		p->want[0] += (v >> b) & 1;
	__asm__ volatile("popcntq %1, %0" : "=r"(p->got[0]) : "r"(v) : "cc");
}

static void probe_lzcnt(void *arg)
{
	struct probe *p = arg;
	uint32_t v = 0x00f00000, n = 0;
	while (!(v & (0x80000000u >> n)))
		n++;
	p->want[0] = n; /* BSR, what the encoding means without LZCNT, gives 23 */
	__asm__ volatile("lzcntl %1, %k0" : "=r"(p->got[0]) : "r"(v) : "cc");
}

static void probe_movbe(void *arg)
{
	struct probe *p = arg;
	uint64_t v = 0x0102030405060708, r;
	p->want[0] = 0;
	for (int b = 0; b < 8; b++)
		p->want[0] |= ((v >> (8 * b)) & 0xff) << (56 - 8 * b);
	__asm__ volatile("movbeq %1, %0" : "=r"(r) : "m"(v));
	p->got[0] = r;
}

static void probe_lahf(void *arg)
{
	struct probe *p = arg;
	uint64_t ax = 0xff00;
	/* SAHF loads SF ZF AF PF CF; LAHF reads them back with bit 1 set. */
	p->want[0] = 0xd7;
	__asm__ volatile("sahf; movb $0, %%ah; lahf" : "+a"(ax) : : "cc");
	p->got[0] = (ax >> 8) & 0xff;
}

static uint64_t tsc_aux_set;

static void probe_rdtscp(void *arg)
{
	struct probe *p = arg;
	uint64_t before = rdtsc(), after;
	uint32_t lo, hi, aux;
	__asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	after = rdtsc();
	uint64_t tsc = (uint64_t)hi << 32 | lo;
	p->want[0] = tsc_aux_set;
	p->got[0] = aux;
	p->want[1] = 1;
	p->got[1] = tsc >= before && tsc <= after;
}

static void probe_rdpid(void *arg)
{
	struct probe *p = arg;
	p->want[0] = tsc_aux_set;
	__asm__ volatile("rdpid %0" : "=r"(p->got[0]));
}

static void probe_clflush(void *arg)
{
	struct probe *p = arg;
	static volatile uint64_t line = 0x5a5a5a5a;
	p->want[0] = 0x5a5a5a5a;
	__asm__ volatile("clflush %0" ::"m"(line));
	p->got[0] = line;
}

static void probe_mmx(void *arg)
{
	struct probe *p = arg;
	uint64_t a = 0x7f01ff8000102030, b = 0x0101010180f0e0d0, r;
	p->want[0] = 0;
	for (int i = 0; i < 8; i++)
		p->want[0] |= (uint64_t)(uint8_t)((a >> (8 * i)) + (b >> (8 * i))) << (8 * i);
	__asm__ volatile("movq %1, %%mm0; paddb %2, %%mm0; movq %%mm0, %0; emms" : "=m"(r) : "m"(a), "m"(b));
	p->got[0] = r;
}

static void probe_fxsr(void *arg)
{
	struct probe *p = arg;
	static uint8_t area[512] __attribute__((aligned(16)));
	uint32_t mxcsr, saved;
	__asm__ volatile("stmxcsr %0; fxsave64 %1" : "=m"(mxcsr), "=m"(area));
	memcpy(&saved, area + 24, 4);
	p->want[0] = mxcsr;
	p->got[0] = saved;
}

static void probe_sse(void *arg)
{
	struct probe *p = arg;
	uint32_t a = 0x3fc00000, b = 0x40100000, r; /* 1.5f + 2.25f = 3.75f */
	p->want[0] = 0x40700000;
	__asm__ volatile("movss %1, %%xmm0; addss %2, %%xmm0; movss %%xmm0, %0" : "=m"(r) : "m"(a), "m"(b));
	p->got[0] = r;
}

static void probe_sse2(void *arg)
{
	struct probe *p = arg;
	uint64_t a[2] __attribute__((aligned(16))) = {~0ull, 5};
	uint64_t b[2] __attribute__((aligned(16))) = {1, 7};
	p->want[0] = 0; /* the carry stays inside the lane */
	p->want[1] = 12;
	__asm__ volatile("movdqa %1, %%xmm0; paddq %2, %%xmm0; movdqu %%xmm0, %0" : "=m"(p->got) : "m"(a), "m"(b));
}

static void probe_sse3(void *arg)
{
	struct probe *p = arg;
	/* {1.0, 2.0} addsub {0.5, 0.5} = {0.5, 2.5} */
	uint64_t a[2] __attribute__((aligned(16))) = {0x3ff0000000000000, 0x4000000000000000};
	uint64_t b[2] __attribute__((aligned(16))) = {0x3fe0000000000000, 0x3fe0000000000000};
	p->want[0] = 0x3fe0000000000000;
	p->want[1] = 0x4004000000000000;
	__asm__ volatile("movdqa %1, %%xmm0; addsubpd %2, %%xmm0; movdqu %%xmm0, %0" : "=m"(p->got) : "m"(a), "m"(b));
}

static void probe_ssse3(void *arg)
{
	struct probe *p = arg;
	uint8_t src[16] __attribute__((aligned(16))), idx[16] __attribute__((aligned(16))), want[16];
	for (int i = 0; i < 16; i++) {
		src[i] = 0x10 + i;
		idx[i] = i == 3 ? 0x80 : 15 - i;
	}
	for (int i = 0; i < 16; i++)
		want[i] = idx[i] & 0x80 ? 0 : src[idx[i] & 15];
	memcpy(p->want, want, 16);
	__asm__ volatile("movdqa %1, %%xmm0; pshufb %2, %%xmm0; movdqu %%xmm0, %0" : "=m"(p->got) : "m"(src), "m"(idx));
}

static void probe_sse41(void *arg)
{
	struct probe *p = arg;
	uint32_t a[4] __attribute__((aligned(16))) = {3, (uint32_t)-2, 0x10000, 7};
	uint32_t b[4] __attribute__((aligned(16))) = {5, 7, 0x10000, (uint32_t)-1};
	uint32_t want[4];
	for (int i = 0; i < 4; i++)
		want[i] = a[i] * b[i];
	memcpy(p->want, want, 16);
	__asm__ volatile("movdqa %1, %%xmm0; pmulld %2, %%xmm0; movdqu %%xmm0, %0" : "=m"(p->got) : "m"(a), "m"(b));
}

static void probe_sse42(void *arg)
{
	struct probe *p = arg;
	uint64_t crc = 0xffffffff, data = 0x0123456789abcdef;
	/* CRC-32C, reflected polynomial 0x82f63b78, no final inversion. */
	uint32_t c = crc;
	for (int i = 0; i < 64; i++)
		c = (c >> 1) ^ (0x82f63b78 & -(((c ^ (uint32_t)(data >> i)) & 1)));
	p->want[0] = c;
	__asm__ volatile("crc32q %1, %0" : "+r"(crc) : "r"(data));
	p->got[0] = crc;
}

static void probe_pclmul(void *arg)
{
	struct probe *p = arg;
	uint64_t a[2] __attribute__((aligned(16))) = {0x123456789abcdef0, 0};
	uint64_t b[2] __attribute__((aligned(16))) = {0, 0xfedcba9876543210};
	u128 prod = 0;
	for (int i = 0; i < 64; i++)
		if ((b[1] >> i) & 1)
			prod ^= (u128)a[0] << i;
	p->want[0] = (uint64_t)prod;
	p->want[1] = (uint64_t)(prod >> 64);
	/* imm 0x10: low qword of the destination times high qword of the source */
	__asm__ volatile("movdqa %1, %%xmm0; pclmulqdq $0x10, %2, %%xmm0; movdqu %%xmm0, %0"
			 : "=m"(p->got)
			 : "m"(a), "m"(b));
}

static void probe_aes(void *arg)
{
	struct probe *p = arg;
	/* Uniform state: ShiftRows and MixColumns leave it alone; S(0x53) = 0xed (FIPS-197 5.1.1). */
	uint64_t s[2] __attribute__((aligned(16))) = {0x5353535353535353, 0x5353535353535353};
	uint64_t k[2] __attribute__((aligned(16))) = {0x0f0e0d0c0b0a0908, 0x0706050403020100};
	p->want[0] = 0xedededededededed ^ k[0];
	p->want[1] = 0xedededededededed ^ k[1];
	__asm__ volatile("movdqa %1, %%xmm0; aesenc %2, %%xmm0; movdqu %%xmm0, %0" : "=m"(p->got) : "m"(s), "m"(k));
}

static void probe_rdrand(void *arg)
{
	struct probe *p = arg;
	uint64_t v;
	uint8_t ok = 0;
	/* CF=0 means no value yet; the SDM suggests a few retries. */
	for (int i = 0; i < 100 && !ok; i++)
		__asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=q"(ok) : : "cc");
	p->want[0] = 1;
	p->got[0] = ok;
}

static void probe_rdseed(void *arg)
{
	struct probe *p = arg;
	uint64_t v;
	uint8_t ok = 0;
	for (int i = 0; i < 1000 && !ok; i++)
		__asm__ volatile("rdseed %0; setc %1" : "=r"(v), "=q"(ok) : : "cc");
	p->want[0] = 1;
	p->got[0] = ok;
}

static void probe_bmi1(void *arg)
{
	struct probe *p = arg;
	uint64_t a = 0xff00ff00f0f0f0f0, b = 0x123456789abcdef0;
	p->want[0] = ~a & b;
	__asm__ volatile("andnq %2, %1, %0" : "=r"(p->got[0]) : "r"(a), "r"(b) : "cc");
}

static void probe_bmi2(void *arg)
{
	struct probe *p = arg;
	uint64_t v = 0x123456789abcdef0, mask = 0xff00fff00000f00f, r = 0;
	for (int i = 0, k = 0; i < 64; i++)
		if ((mask >> i) & 1)
			r |= ((v >> i) & 1) << k++;
	p->want[0] = r;
	__asm__ volatile("pextq %2, %1, %0" : "=r"(p->got[0]) : "r"(v), "r"(mask));
}

static void probe_adx(void *arg)
{
	struct probe *p = arg;
	uint64_t a = ~0ull, b = 1;
	u128 sum = (u128)a + b + 1;
	uint8_t cf;
	p->want[0] = (uint64_t)sum;
	p->want[1] = (uint64_t)(sum >> 64);
	__asm__ volatile("stc; adcxq %2, %0; setc %1" : "+r"(a), "=q"(cf) : "r"(b) : "cc");
	p->got[0] = a;
	p->got[1] = cf;
}

struct feature {
	const char *name;
	enum cpuid_word word;
	unsigned bit;
	bool ud_if_absent; /* the SDM lists "CPUID bit clear" under #UD */
	void (*probe)(void *);
};

static const struct feature features[] = {
    {"fpu", L1_EDX, 0, false, probe_fpu},
    {"cx8", L1_EDX, 8, false, probe_cx8},
    {"cmov", L1_EDX, 15, false, probe_cmov},
    {"clflush", L1_EDX, 19, false, probe_clflush},
    {"mmx", L1_EDX, 23, false, probe_mmx},
    {"fxsr", L1_EDX, 24, false, probe_fxsr},
    {"sse", L1_EDX, 25, false, probe_sse},
    {"sse2", L1_EDX, 26, false, probe_sse2},
    {"sse3", L1_ECX, 0, true, probe_sse3},
    {"pclmulqdq", L1_ECX, 1, true, probe_pclmul},
    {"ssse3", L1_ECX, 9, true, probe_ssse3},
    {"cx16", L1_ECX, 13, true, probe_cx16},
    {"sse4.1", L1_ECX, 19, true, probe_sse41},
    {"sse4.2", L1_ECX, 20, true, probe_sse42},
    {"movbe", L1_ECX, 22, true, probe_movbe},
    {"popcnt", L1_ECX, 23, true, probe_popcnt},
    {"aes", L1_ECX, 25, true, probe_aes},
    {"rdrand", L1_ECX, 30, true, probe_rdrand},
    {"bmi1", L7_EBX, 3, true, probe_bmi1},
    {"bmi2", L7_EBX, 8, true, probe_bmi2},
    {"rdseed", L7_EBX, 18, false, probe_rdseed}, /* QEMU 7.2 TCG runs it anyway */
    {"adx", L7_EBX, 19, true, probe_adx},
    {"rdpid", L7_ECX, 22, true, probe_rdpid},
    {"lahf_lm", X1_ECX, 0, true, probe_lahf},
    {"lzcnt", X1_ECX, 5, false, probe_lzcnt}, /* without it the encoding is BSR */
    {"rdtscp", X1_EDX, 27, true, probe_rdtscp},
};

static void check_fault(const char *name, bool trapped, const struct trap_record *rec, uint64_t vector)
{
	if (trapped)
		check(rec->vector == vector && rec->error == 0, name, "expected vector %lu, got vector %lu error 0x%lx",
		      vector, rec->vector, rec->error);
	else
		check(false, name, "expected vector %lu, got no fault", vector);
}

static void check_vector(const char *name, void (*fn)(void *), void *arg, uint64_t vector)
{
	struct trap_record rec;
	bool trapped = trap_run(fn, arg, &rec);
	check_fault(name, trapped, &rec, vector);
}

static void check_feature(const struct feature *f)
{
	struct probe p = {{0, 0}, {0, 0}};
	struct trap_record rec;
	char name[48];

	bool trapped = trap_run(f->probe, &p, &rec);
	if (has(f->word, f->bit)) {
		snprintf(name, sizeof(name), "feature.%s", f->name);
		if (trapped)
			check(false, name, "advertised, but raised vector %lu at RIP 0x%lx", rec.vector, rec.rip);
		else
			check(p.want[0] == p.got[0] && p.want[1] == p.got[1], name,
			      "expected 0x%lx:%016lx got 0x%lx:%016lx", p.want[1], p.want[0], p.got[1], p.got[0]);
	} else if (f->ud_if_absent) {
		snprintf(name, sizeof(name), "feature.%s.absent_ud", f->name);
		check_fault(name, trapped, &rec, VEC_UD);
	} else {
		printf("INFO %s not advertised\n", f->name);
	}
}

static void xgetbv0(void *arg)
{
	uint32_t lo, hi;
	(void)arg;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
}

static void vex_vpxor(void *arg)
{
	(void)arg;
	__asm__ volatile("vpxor %xmm1, %xmm2, %xmm3");
}

static void check_features(void)
{
	if (has(X1_EDX, 27) || has(L7_ECX, 22)) {
		tsc_aux_set = TSC_AUX_VALUE;
		wrmsr(MSR_TSC_AUX, tsc_aux_set);
	}
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++)
		check_feature(&features[i]);

	/* CPUID.1.ECX.OSXSAVE mirrors CR4.OSXSAVE, which boot.S leaves clear. */
	uint64_t cr4 = read_cr4();
	check(!(cr4 & CR4_OSXSAVE), "cr4.osxsave_clear", "CR4 0x%lx", cr4);
	check_eq("cpuid.osxsave_mirrors_cr4", 0, (cpuid(1, 0).ecx >> 27) & 1);
	/* Without CR4.OSXSAVE, XGETBV and every VEX instruction are #UD. */
	check_vector("xgetbv.ud_without_osxsave", xgetbv0, NULL, VEC_UD);
	check_vector("avx.ud_without_osxsave", vex_vpxor, NULL, VEC_UD);
	printf("INFO AVX %sadvertised\n", has(L1_ECX, 28) ? "" : "not ");
	if (cpu_has_xsave()) {
		write_cr4(cr4 | CR4_OSXSAVE);
		uint32_t on = (cpuid(1, 0).ecx >> 27) & 1;
		write_cr4(cr4);
		check_eq("cpuid.osxsave_follows_cr4", 1, on);
	}
}

/* ---- MSRs ------------------------------------------------------------------ */

static void check_roundtrip(const char *name, uint32_t msr, uint64_t value)
{
	uint64_t saved = rdmsr(msr);
	wrmsr(msr, value);
	uint64_t got = rdmsr(msr);
	wrmsr(msr, saved);
	check_eq(name, value, got);
}

struct msr_write {
	uint32_t msr;
	uint64_t value;
};

static void do_wrmsr(void *arg)
{
	struct msr_write *w = arg;
	wrmsr(w->msr, w->value);
}

/* The SDM says #GP(0); QEMU 7.2 TCG, the reference, takes the write, so the
 * outcome is reported rather than checked. */
static void report_noncanonical(const char *name, uint32_t msr)
{
	uint64_t saved = rdmsr(msr);
	struct msr_write w = {msr, NONCANONICAL};
	struct trap_record rec;
	bool trapped = trap_run(do_wrmsr, &w, &rec);
	wrmsr(msr, saved);
	if (trapped && rec.vector == VEC_GP && rec.error == 0)
		printf("INFO wrmsr %s non-canonical: #GP(0), as the SDM says\n", name);
	else if (trapped)
		printf("INFO wrmsr %s non-canonical: vector %lu, not the SDM's #GP(0)\n", name, rec.vector);
	else
		printf("INFO wrmsr %s non-canonical: no fault, not the SDM's #GP(0)\n", name);
}

static uint64_t read_fs8(void)
{
	uint64_t v;
	__asm__ volatile("movq %%fs:8, %0" : "=r"(v));
	return v;
}

static uint64_t read_gs16(void)
{
	uint64_t v;
	__asm__ volatile("movq %%gs:16, %0" : "=r"(v));
	return v;
}

static void check_segment_bases(void)
{
	static uint64_t slots[4] = {0x1111, 0x2222, 0x3333, 0x4444};
	uint64_t fs = rdmsr(MSR_FS_BASE), gs = rdmsr(MSR_GS_BASE), kgs = rdmsr(MSR_KERNEL_GS_BASE);

	wrmsr(MSR_FS_BASE, (uint64_t)slots);
	check_eq("msr.fs_base", (uint64_t)slots, rdmsr(MSR_FS_BASE));
	check_eq("msr.fs_base_used", slots[1], read_fs8());
	wrmsr(MSR_GS_BASE, (uint64_t)slots);
	check_eq("msr.gs_base", (uint64_t)slots, rdmsr(MSR_GS_BASE));
	check_eq("msr.gs_base_used", slots[2], read_gs16());

	/* SWAPGS exchanges GS_BASE and KERNEL_GS_BASE. */
	wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)&slots[1]);
	check_eq("msr.kernel_gs_base", (uint64_t)&slots[1], rdmsr(MSR_KERNEL_GS_BASE));
	__asm__ volatile("swapgs" ::: "memory");
	uint64_t via_gs = read_gs16(), new_gs = rdmsr(MSR_GS_BASE), new_kgs = rdmsr(MSR_KERNEL_GS_BASE);
	__asm__ volatile("swapgs" ::: "memory");
	check(new_gs == (uint64_t)&slots[1] && new_kgs == (uint64_t)slots && via_gs == slots[3], "swapgs",
	      "GS_BASE 0x%lx KERNEL_GS_BASE 0x%lx %%gs:16 0x%lx", new_gs, new_kgs, via_gs);

	wrmsr(MSR_FS_BASE, fs);
	wrmsr(MSR_GS_BASE, gs);
	wrmsr(MSR_KERNEL_GS_BASE, kgs);
}

static void check_tsc(void)
{
	uint64_t prev = rdtsc();
	bool monotonic = true;
	for (int i = 0; i < 1000; i++) {
		uint64_t t = rdtsc();
		monotonic &= t >= prev;
		prev = t;
	}
	check(monotonic, "tsc.monotonic", "RDTSC went backwards");

	/* Writing IA32_TSC restarts the count from the value written. QEMU 7.2
	 * TCG ignores the write and reads the MSR as 0, so this is reported. */
	uint64_t target = rdtsc() + (1ull << 40);
	wrmsr(MSR_TSC, target);
	uint64_t got = rdmsr(MSR_TSC), via_rdtsc = rdtsc();
	bool sdm = got >= target && via_rdtsc >= got && via_rdtsc - target < (1ull << 36);
	printf("INFO IA32_TSC write 0x%lx: RDMSR 0x%lx RDTSC 0x%lx%s\n", target, got, via_rdtsc,
	       sdm ? "" : ", not counting on from the value written as the SDM says");
}

static void check_msrs(void)
{
	uint64_t efer = rdmsr(MSR_EFER);
	uint64_t want = EFER_LME | EFER_LMA | EFER_SCE | (has(X1_EDX, 20) ? EFER_NXE : 0);
	check(efer == want, "msr.efer", "expected 0x%lx got 0x%lx", want, efer);

	/* The runtime's SYSCALL MSRs come back afterwards (check_roundtrip restores). */
	check_roundtrip("msr.star", MSR_STAR, 0x001b000812345678);
	check_roundtrip("msr.lstar", MSR_LSTAR, 0xffff800012345678);
	check_roundtrip("msr.cstar", MSR_CSTAR, 0x00007fff87654321);
	check_roundtrip("msr.fmask", MSR_FMASK, 0x00047fd5);
	check_eq("msr.star_restored", ((uint64_t)(GDT_USER_CODE32 | 3) << 48) | ((uint64_t)GDT_KERNEL_CODE << 32),
		 rdmsr(MSR_STAR));
	check_eq("msr.fmask_restored", RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC, rdmsr(MSR_FMASK));

	check_roundtrip("msr.kernel_gs_base.upper_half", MSR_KERNEL_GS_BASE, 0xffffffff80001000);
	check_segment_bases();
	report_noncanonical("FS_BASE", MSR_FS_BASE);
	report_noncanonical("GS_BASE", MSR_GS_BASE);
	report_noncanonical("LSTAR", MSR_LSTAR);

	if (has(X1_EDX, 27) || has(L7_ECX, 22)) {
		check_roundtrip("msr.tsc_aux", MSR_TSC_AUX, 0x12345);
	} else {
		printf("INFO neither RDTSCP nor RDPID: IA32_TSC_AUX not checked\n");
	}
	/* SYSENTER_ESP/EIP: low 32 bits only, as AMD keeps no more. */
	if (has(L1_EDX, 11)) {
		check_roundtrip("msr.sysenter_cs", MSR_SYSENTER_CS, GDT_KERNEL_CODE);
		check_roundtrip("msr.sysenter_esp", MSR_SYSENTER_ESP, 0x12345678);
		check_roundtrip("msr.sysenter_eip", MSR_SYSENTER_EIP, 0x9abcdef0);
	}
	/* Keeps PA0 write-back, the entry the runtime's page tables select. */
	if (has(L1_EDX, 16))
		check_roundtrip("msr.pat", MSR_PAT, 0x0005010400070106);

	uint64_t apic = rdmsr(MSR_APIC_BASE);
	unsigned phys = max_ext_leaf >= 0x80000008 ? cpuid(0x80000008, 0).eax & 0xff : 36;
	check(apic & BIT(8), "msr.apic_base.bsp", "APIC_BASE 0x%lx", apic);
	check(apic & BIT(11), "msr.apic_base.enabled", "APIC_BASE 0x%lx", apic);
	check_eq("msr.apic_base.address", LAPIC_BASE, apic & ~0xfffull);
	check_eq("msr.apic_base.reserved", 0, (apic & 0xff) | (apic >> phys));

	check_tsc();
}

/* ---- control registers ---------------------------------------------------- */

static void check_crs(void)
{
	uint64_t cr0 = read_cr0(), cr4 = read_cr4();
	uint64_t set0 = CR0_PG | CR0_PE | CR0_WP | CR0_NE | CR0_MP, clear0 = CR0_EM | CR0_TS;
	uint64_t set4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;

	check((cr0 & (set0 | clear0)) == set0, "cr0.boot_bits", "CR0 0x%lx: want PG PE WP NE MP set, EM TS clear", cr0);
	check((cr4 & set4) == set4, "cr4.boot_bits", "CR4 0x%lx: want PAE OSFXSR OSXMMEXCPT", cr4);

	/* CR4 bits of advertised features can be set and cleared. */
	static const struct {
		const char *name;
		unsigned cr4_bit, edx_bit;
	} bits[] = {{"cr4.tsd", 2, 4}, {"cr4.de", 3, 2}, {"cr4.pse", 4, 3}, {"cr4.pge", 7, 13}};
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		if (!has(L1_EDX, bits[i].edx_bit))
			continue;
		uint64_t bit = BIT64(bits[i].cr4_bit);
		write_cr4(cr4 ^ bit);
		uint64_t flipped = read_cr4();
		write_cr4(cr4);
		uint64_t back = read_cr4();
		check(flipped == (cr4 ^ bit) && back == cr4, bits[i].name, "CR4 0x%lx -> 0x%lx -> 0x%lx", cr4, flipped,
		      back);
	}
}

void main(void)
{
	check_leaves();
	check_required();
	check_features();
	check_msrs();
	check_crs();
}
