/*
 * Symmetric multiprocessing: the application processors smp_start() wakes
 * with INIT-SIPI-SIPI against the processors the ACPI MADT lists, their
 * local APIC IDs, LOCK-prefixed read-modify-writes racing on shared memory,
 * and fixed IPIs from the BSP to each AP, back, and broadcast. Every wait on
 * the BSP is bounded in PIT time, so an AP or an interrupt that never comes
 * is a FAIL line, not a hang. Only the BSP prints.
 */
#include "guest.h"

#define MS_TICKS	 1193 /* PIT ticks in a millisecond */
#define ICR_ASSERT	 BIT(14)
#define ICR_PENDING	 BIT(12)
#define ICR_ALL_BUT_SELF (3u << 18)
#define APIC_BASE_BSP	 BIT(8)
#define LOCK_ROUNDS	 200000
#define SPIN_ROUNDS	 20000
#define RACE_MS		 20000 /* PIT time the race may take, generously */
#define MAX_APIC_IDS	 256
/* What the trampoline sets up, compared with the BSP's. */
#define CR0_BITS  (BIT64(0) | BIT64(1) | BIT64(2) | BIT64(3) | BIT64(5) | BIT64(16) | BIT64(29) | BIT64(30) | BIT64(31))
#define CR4_BITS  (BIT64(5) | BIT64(9) | BIT64(10))
#define EFER_BITS (EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)

enum {
	V_TO_AP = 0x50,	    /* BSP to one AP, physical destination */
	V_BROADCAST = 0x58, /* BSP to all excluding self */
	V_TO_BSP = 0x60,    /* AP n answers on V_TO_BSP + n, so the BSP knows who sent */
	V_SPURIOUS = 0xff,
};

/* ---- ACPI: RSDP, RSDT/XSDT, MADT ---------------------------------------- */

#define MADT_LAPIC	  0
#define MADT_X2APIC	  9
#define MADT_CPU_ENABLED  BIT(0)
#define MADT_HEADER_BYTES (sizeof(struct acpi_header) + 8) /* LAPIC address, flags */

struct madt_cpus {
	unsigned count;
	uint32_t apic_ids[MAX_APIC_IDS];
};

/* Fills cpus with the enabled processors' APIC IDs; false without a MADT. */
static bool madt_read(struct madt_cpus *cpus)
{
	const struct acpi_header *madt = acpi_find_table("APIC");

	cpus->count = 0;
	check(madt != NULL && madt->length >= MADT_HEADER_BYTES, "acpi madt found",
	      "no 'APIC' table with valid checksums on the way");
	if (!madt || madt->length < MADT_HEADER_BYTES)
		return false;
	const uint8_t *p = (const uint8_t *)madt;
	uint32_t lapic_address;
	memcpy(&lapic_address, p + sizeof(*madt), 4);
	check_eq("acpi madt local apic address", LAPIC_BASE, lapic_address);

	for (uint32_t off = MADT_HEADER_BYTES; off + 2 <= madt->length; off += p[off + 1]) {
		uint8_t type = p[off], len = p[off + 1];
		uint32_t flags, id;
		if (len < 2 || off + len > madt->length) {
			check(false, "acpi madt entries well-formed", "entry at +%u: type %u length %u", off, type,
			      len);
			return false;
		}
		if (type == MADT_LAPIC && len >= 8) {
			id = p[off + 3];
			memcpy(&flags, p + off + 4, 4);
		} else if (type == MADT_X2APIC && len >= 16) {
			memcpy(&id, p + off + 4, 4);
			memcpy(&flags, p + off + 8, 4);
		} else {
			continue;
		}
		if ((flags & MADT_CPU_ENABLED) && cpus->count < MAX_APIC_IDS)
			cpus->apic_ids[cpus->count++] = id;
	}
	return true;
}

static bool madt_has(const struct madt_cpus *cpus, uint32_t apic_id)
{
	for (unsigned i = 0; i < cpus->count; i++)
		if (cpus->apic_ids[i] == apic_id)
			return true;
	return false;
}

/* ---- what the APs record ------------------------------------------------- */

struct ap_record {
	volatile uint64_t ready; /* the fields below are written */
	uint32_t apic_id, cpuid_apic_id, svr;
	uint64_t apic_base, cr0, cr3, cr4, efer;
};

static struct ap_record aps[SMP_MAX_CPUS];
static uint32_t bsp_apic_id;
static volatile uint8_t cpu_of_apic[MAX_APIC_IDS];
/* Interrupts counted by the receiving CPU's APIC ID, or by sender for V_TO_BSP. */
static volatile uint64_t to_ap_irqs[MAX_APIC_IDS], broadcast_irqs[MAX_APIC_IDS];
static volatile uint64_t to_bsp_irqs[SMP_MAX_CPUS];

/* The race: every CPU arrives, waits for go, runs its share, reports done. */
static volatile uint64_t race_arrived, race_go, race_done;
static volatile uint64_t inc_counter, xadd_counter, spin_counter;
static volatile uint32_t spin_lock_word;
static volatile uint64_t xadd_order_errors;
/* A lock that stays taken (a broken LOCK CMPXCHG) must not hang the BSP: past
 * this TSC value it abandons the race, and so does every AP. */
static uint64_t race_deadline;
static volatile uint64_t race_abandoned;

static void atomic_inc(volatile uint64_t *p)
{
	__asm__ volatile("lock incq %0" : "+m"(*p)::"memory");
}

static void send_ipi(uint32_t apic_id, uint32_t icr)
{
	for (unsigned i = 0; i < 1000000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
		cpu_pause();
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
}

/* False if the race was abandoned instead. */
static bool spin_lock(volatile uint32_t *lock, bool bsp)
{
	uint32_t old;
	do {
		while (*lock) {
			if (bsp && rdtsc() > race_deadline)
				race_abandoned = 1;
			if (race_abandoned)
				return false;
			cpu_pause();
		}
		old = 0;
		__asm__ volatile("lock cmpxchgl %2, %1" : "+a"(old), "+m"(*lock) : "r"(1u) : "memory", "cc");
	} while (old != 0);
	return true;
}

static void spin_unlock(volatile uint32_t *lock)
{
	__asm__ volatile("" ::: "memory");
	*lock = 0;
}

static void race(unsigned cpu)
{
	uint64_t add = cpu + 1, last = 0, errors = 0;

	atomic_inc(&race_arrived);
	while (!race_go)
		cpu_pause();
	for (unsigned i = 0; i < LOCK_ROUNDS; i++)
		atomic_inc(&inc_counter);
	for (unsigned i = 0; i < LOCK_ROUNDS; i++) {
		uint64_t old = add;
		__asm__ volatile("lock xaddq %0, %1" : "+r"(old), "+m"(xadd_counter)::"memory");
		/* Every CPU adds a positive amount, so this CPU's next old value is past its own add. */
		if (i && old < last + add)
			errors++;
		last = old;
	}
	for (unsigned i = 0; i < SPIN_ROUNDS; i++) {
		if (!spin_lock(&spin_lock_word, cpu == 0))
			break;
		spin_counter = spin_counter + 1; /* a plain load and store */
		spin_unlock(&spin_lock_word);
	}
	__atomic_fetch_add(&xadd_order_errors, errors, __ATOMIC_SEQ_CST);
	atomic_inc(&race_done);
}

/* ---- interrupt handlers, on whichever CPU takes them ---------------------- */

static void to_ap_irq(struct trap_frame *f)
{
	uint32_t id = lapic_id();

	(void)f;
	to_ap_irqs[id]++;
	send_ipi(bsp_apic_id, ICR_ASSERT | (V_TO_BSP + cpu_of_apic[id]));
	lapic_eoi();
}

static void broadcast_irq(struct trap_frame *f)
{
	(void)f;
	broadcast_irqs[lapic_id()]++;
	lapic_eoi();
}

static void to_bsp_irq(struct trap_frame *f)
{
	to_bsp_irqs[f->vector - V_TO_BSP]++;
	lapic_eoi();
}

/* SDM: a spurious interrupt takes no EOI. */
static void spurious_irq(struct trap_frame *f)
{
	(void)f;
}

/* Runs on each AP with interrupts off; returns to the runtime's STI; HLT loop. */
static void ap_main(unsigned cpu)
{
	struct ap_record *r = &aps[cpu];

	r->apic_id = lapic_id();
	r->cpuid_apic_id = cpuid(1, 0).ebx >> 24;
	r->svr = lapic_read(LAPIC_SVR);
	r->apic_base = rdmsr(MSR_APIC_BASE);
	r->cr0 = read_cr0();
	r->cr3 = read_cr3();
	r->cr4 = read_cr4();
	r->efer = rdmsr(MSR_EFER);
	cpu_of_apic[r->apic_id & (MAX_APIC_IDS - 1)] = cpu;
	__atomic_store_n(&r->ready, 1, __ATOMIC_SEQ_CST);
	race(cpu);
}

/* ---- the checks, on the BSP ---------------------------------------------- */

static void check_cpu(bool ok, unsigned cpu, const char *what, const char *why)
{
	char name[96];

	snprintf(name, sizeof(name), "cpu %u %s", cpu, what);
	check(ok, name, "%s", why);
}

/* Waits up to ms milliseconds of PIT time for *v to reach target. */
static bool wait_for(volatile uint64_t *v, uint64_t target, unsigned ms)
{
	for (unsigned i = 0; i < ms && *v < target; i++)
		pit_wait_ticks(MS_TICKS);
	return *v >= target;
}

static void wait_ms(unsigned ms)
{
	while (ms--)
		pit_wait_ticks(MS_TICKS);
}

static void check_identities(unsigned n, const struct madt_cpus *madt)
{
	bool seen[MAX_APIC_IDS] = {false};

	seen[bsp_apic_id & (MAX_APIC_IDS - 1)] = true;
	check(madt_has(madt, bsp_apic_id), "bsp apic id in madt", "APIC ID %u not among the enabled CPUs", bsp_apic_id);
	for (unsigned cpu = 1; cpu <= n; cpu++) {
		struct ap_record *r = &aps[cpu];
		if (!wait_for(&r->ready, 1, 1000)) {
			check_cpu(false, cpu, "ap_main ran", "checked in, but recorded nothing within 1 s");
			continue;
		}
		check_cpu(r->apic_id < MAX_APIC_IDS && !seen[r->apic_id], cpu, "apic id distinct",
			  "its APIC ID is another CPU's");
		if (r->apic_id < MAX_APIC_IDS)
			seen[r->apic_id] = true;
		check_cpu(madt_has(madt, r->apic_id), cpu, "apic id in madt", "not among the enabled CPUs");
		check_eqf(r->apic_id, r->cpuid_apic_id, "cpu %u cpuid 1 ebx[31:24] is its apic id", cpu);
		check_eqf(0, r->apic_base & APIC_BASE_BSP, "cpu %u apic base msr bsp flag clear", cpu);
		check_eqf(read_cr0() & CR0_BITS, r->cr0 & CR0_BITS, "cpu %u cr0 pe mp em ts ne wp nw cd pg as bsp",
			  cpu);
		check_eqf(read_cr3(), r->cr3, "cpu %u cr3 as bsp", cpu);
		check_eqf(read_cr4() & CR4_BITS, r->cr4 & CR4_BITS, "cpu %u cr4 pae osfxsr osxmmexcpt as bsp", cpu);
		check_eqf(rdmsr(MSR_EFER) & EFER_BITS, r->efer & EFER_BITS, "cpu %u efer sce lme lma nxe as bsp", cpu);
		check_eqf(BIT(8) | V_SPURIOUS, r->svr & 0x1ff, "cpu %u lapic enabled with bsp's spurious vector", cpu);
	}
}

static void check_race(unsigned n)
{
	uint64_t cpus = n + 1, add_sum = cpus * (cpus + 1) / 2;

	uint64_t t0 = rdtsc();
	pit_wait_ticks(10 * MS_TICKS);
	race_deadline = rdtsc() + (rdtsc() - t0) / 10 * RACE_MS;

	check(wait_for(&race_arrived, n, 1000), "race: every ap arrives", "%lu of %u within 1 s", race_arrived, n);
	race_go = 1;
	race(0);
	bool finished = wait_for(&race_done, cpus, RACE_MS);
	check(finished, "race: every cpu finishes", "%lu of %lu within %u ms", race_done, cpus, RACE_MS);
	check_eq("race: spinlock never stuck", 0, race_abandoned);
	race_abandoned = 1; /* frees an AP still spinning, for the IPI checks */
	check_eq("lock incq total", cpus * LOCK_ROUNDS, inc_counter);
	check_eq("lock xaddq total", add_sum * LOCK_ROUNDS, xadd_counter);
	check_eq("lock xaddq old values increase on each cpu", 0, xadd_order_errors);
	check_eq("lock cmpxchg spinlock counter total", cpus * SPIN_ROUNDS, spin_counter);
	check_eq("spinlock free at the end", 0, spin_lock_word);
}

static void check_ipis(unsigned n)
{
	for (unsigned cpu = 1; cpu <= n; cpu++)
		send_ipi(aps[cpu].apic_id, ICR_ASSERT | V_TO_AP); /* fixed, edge, physical */
	for (unsigned cpu = 1; cpu <= n; cpu++) {
		uint32_t id = aps[cpu].apic_id & (MAX_APIC_IDS - 1);
		check_cpu(wait_for(&to_ap_irqs[id], 1, 1000), cpu, "takes fixed ipi from bsp", "none within 1 s");
		check_cpu(wait_for(&to_bsp_irqs[cpu], 1, 1000), cpu, "fixed ipi reaches bsp", "none within 1 s");
	}
	wait_ms(10);
	for (unsigned cpu = 1; cpu <= n; cpu++) {
		uint32_t id = aps[cpu].apic_id & (MAX_APIC_IDS - 1);
		check_eqf(1, to_ap_irqs[id], "ipi bsp to cpu %u delivered once", cpu);
		check_eqf(1, to_bsp_irqs[cpu], "ipi cpu %u to bsp delivered once", cpu);
	}
	check_eq("ipi to ap not delivered to bsp", 0, to_ap_irqs[bsp_apic_id & (MAX_APIC_IDS - 1)]);
	lapic_write(LAPIC_ESR, 0); /* SDM: write before reading to update it */
	check_eq("bsp lapic esr clear after ipis", 0, lapic_read(LAPIC_ESR));
}

static void check_broadcast(unsigned n)
{
	send_ipi(0, ICR_ALL_BUT_SELF | ICR_ASSERT | V_BROADCAST);
	for (unsigned cpu = 1; cpu <= n; cpu++) {
		uint32_t id = aps[cpu].apic_id & (MAX_APIC_IDS - 1);
		check_cpu(wait_for(&broadcast_irqs[id], 1, 1000), cpu, "takes broadcast ipi", "none within 1 s");
	}
	wait_ms(10);
	for (unsigned cpu = 1; cpu <= n; cpu++)
		check_eqf(1, broadcast_irqs[aps[cpu].apic_id & (MAX_APIC_IDS - 1)],
			  "broadcast ipi delivered once to cpu %u", cpu);
	check_eq("broadcast ipi all-but-self skips the bsp", 0, broadcast_irqs[bsp_apic_id & (MAX_APIC_IDS - 1)]);
}

void main(void)
{
	static struct madt_cpus madt;
	bool have_madt = madt_read(&madt);

	trap_set_handler(V_TO_AP, to_ap_irq);
	trap_set_handler(V_BROADCAST, broadcast_irq);
	for (unsigned v = V_TO_BSP; v < V_TO_BSP + SMP_MAX_CPUS; v++)
		trap_set_handler(v, to_bsp_irq);
	trap_set_handler(V_SPURIOUS, spurious_irq);
	lapic_enable(V_SPURIOUS);
	bsp_apic_id = lapic_id();
	cpu_of_apic[bsp_apic_id & (MAX_APIC_IDS - 1)] = 0;
	irq_enable();

	unsigned n = smp_start(ap_main);
	printf("INFO %u application processors started, %u enabled CPUs in the MADT\n", n, madt.count);
	check(n >= 1, "smp at least one ap started", "none checked in (run with -smp 2 or more)");
	if (have_madt && madt.count > SMP_MAX_CPUS)
		printf("INFO the runtime starts at most %u of the %u CPUs\n", SMP_MAX_CPUS, madt.count);
	if (have_madt)
		check_eq("smp aps started = madt enabled cpus - 1",
			 (madt.count < SMP_MAX_CPUS ? madt.count : SMP_MAX_CPUS) - 1, n);
	if (n == 0)
		return;

	check_identities(n, &madt);
	check_race(n);
	check_ipis(n);
	check_broadcast(n);
	irq_disable();
}
