/*
 * Model-specific registers. The CPU owns most of them; those of the
 * interrupt controller (APIC base, TSC deadline, x2APIC) go to the VMM as
 * VCPU_EXIT_MSR. Anything else raises #GP(0), as on a CPU without it.
 */
#include "dbt/internal.h"

#define MSR_TSC		      0x10
#define MSR_PLATFORM_ID	      0x17
#define MSR_APIC_BASE	      0x1b
#define MSR_FEATURE_CONTROL   0x3a
#define MSR_UCODE_REV	      0x8b
#define MSR_ARCH_CAPABILITIES 0x10a
#define MSR_PLATFORM_INFO     0xce
#define MSR_MTRRCAP	      0xfe
#define MSR_SYSENTER_CS	      0x174
#define MSR_SYSENTER_ESP      0x175
#define MSR_SYSENTER_EIP      0x176
#define MSR_MISC_ENABLE	      0x1a0
#define MSR_DEBUGCTL	      0x1d9
#define MSR_MTRR_PHYS_FIRST   0x200
#define MSR_MTRR_PHYS_LAST    0x20f
#define MSR_MTRR_FIX64K	      0x250
#define MSR_MTRR_FIX16K_80000 0x258
#define MSR_MTRR_FIX16K_A0000 0x259
#define MSR_MTRR_FIX4K_FIRST  0x268
#define MSR_MTRR_FIX4K_LAST   0x26f
#define MSR_PAT		      0x277
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_TSC_DEADLINE      0x6e0
#define MSR_EFER	      0xc0000080
#define MSR_STAR	      0xc0000081
#define MSR_LSTAR	      0xc0000082
#define MSR_CSTAR	      0xc0000083
#define MSR_FMASK	      0xc0000084
#define MSR_FS_BASE	      0xc0000100
#define MSR_GS_BASE	      0xc0000101
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_TSC_AUX	      0xc0000103

/* The interpreter does not speculate, so none of the hardware
 * vulnerabilities these bits deny exist here: RDCL_NO (Meltdown), SSB_NO,
 * MDS_NO, PSCHANGE_MC_NO, TAA_NO, SBDR_SSDP_NO, FBSDP_NO, PSDP_NO, PBRSB_NO,
 * GDS_NO, RFDS_NO. Guests then skip page-table isolation and buffer
 * clearing, which would only cost time. */
#define ARCH_CAPABILITIES                                                                                              \
	((1ull << 0) | (1ull << 4) | (1ull << 5) | (1ull << 6) | (1ull << 8) | (1ull << 13) | (1ull << 14) |           \
	 (1ull << 15) | (1ull << 24) | (1ull << 26) | (1ull << 27))

bool msr_is_foreign(uint32_t index)
{
	return index == MSR_APIC_BASE || index == MSR_TSC_DEADLINE || (index >= 0x800 && index <= 0x8ff);
}

/* Slot in cpu->mtrr of an MTRR, or -1. */
static int mtrr_slot(uint32_t index)
{
	if (index >= MSR_MTRR_PHYS_FIRST && index <= MSR_MTRR_PHYS_LAST)
		return (int)(index - MSR_MTRR_PHYS_FIRST);
	if (index == MSR_MTRR_FIX64K)
		return 16;
	if (index == MSR_MTRR_FIX16K_80000 || index == MSR_MTRR_FIX16K_A0000)
		return 17 + (int)(index - MSR_MTRR_FIX16K_80000);
	if (index >= MSR_MTRR_FIX4K_FIRST && index <= MSR_MTRR_FIX4K_LAST)
		return 19 + (int)(index - MSR_MTRR_FIX4K_FIRST);
	if (index == MSR_MTRR_DEF_TYPE)
		return 27;
	return -1;
}

static bool canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

/* Memory types valid in PAT and MTRR fields: UC, WC, WT, WP, WB, UC-. */
static bool mem_type_ok(unsigned t, bool pat)
{
	return t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || (pat && t == 7);
}

bool efer_write(struct dbt_cpu *cpu, uint64_t v)
{
	uint64_t old = cpu->s.efer;
	if (v & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
		return false;
	if ((cpu->s.cr0 & CR0_PG) && ((v ^ old) & EFER_LME))
		return false;
	v = (v & ~EFER_LMA) | (old & EFER_LMA);
	cpu->s.efer = v;
	if ((v ^ old) & EFER_NXE)
		tlb_flush_all(cpu, false);
	cpu_update_mode(cpu);
	return true;
}

bool msr_read(struct dbt_cpu *cpu, uint32_t index, uint64_t *v)
{
	struct x86_state *s = &cpu->s;
	int slot = mtrr_slot(index);

	if (slot >= 0) {
		*v = cpu->mtrr[slot];
		return true;
	}
	switch (index) {
	case MSR_TSC: *v = guest_tsc(cpu); return true;
	case MSR_PLATFORM_ID: *v = 0; return true;
	case MSR_FEATURE_CONTROL: *v = 1; return true; /* locked, VMX off */
	case MSR_UCODE_REV: *v = 0; return true;       /* no microcode to report */
	case MSR_ARCH_CAPABILITIES: *v = ARCH_CAPABILITIES; return true;
	case MSR_PLATFORM_INFO: *v = 0; return true;
	case MSR_MTRRCAP: *v = 0x508; return true; /* 8 variable, fixed, WC */
	case MSR_SYSENTER_CS: *v = s->sysenter_cs; return true;
	case MSR_SYSENTER_ESP: *v = s->sysenter_esp; return true;
	case MSR_SYSENTER_EIP: *v = s->sysenter_eip; return true;
	case MSR_MISC_ENABLE: *v = s->misc_enable; return true;
	case MSR_DEBUGCTL: *v = 0; return true;
	case MSR_PAT: *v = s->pat; return true;
	case MSR_EFER: *v = s->efer; return true;
	case MSR_STAR: *v = s->star; return true;
	case MSR_LSTAR: *v = s->lstar; return true;
	case MSR_CSTAR: *v = s->cstar; return true;
	case MSR_FMASK: *v = s->fmask; return true;
	case MSR_FS_BASE: *v = s->seg[SEG_FS].base; return true;
	case MSR_GS_BASE: *v = s->seg[SEG_GS].base; return true;
	case MSR_KERNEL_GS_BASE: *v = s->kernel_gs_base; return true;
	case MSR_TSC_AUX: *v = s->tsc_aux; return true;
	default: return false;
	}
}

bool msr_write(struct dbt_cpu *cpu, uint32_t index, uint64_t v)
{
	struct x86_state *s = &cpu->s;
	int slot = mtrr_slot(index);

	if (slot >= 0) {
		if (index == MSR_MTRR_DEF_TYPE) {
			if ((v & ~0xcffull) || !mem_type_ok(v & 0xff, false))
				return false;
		} else if (slot >= 16) {
			for (int i = 0; i < 8; i++)
				if (!mem_type_ok((v >> (8 * i)) & 0xff, false))
					return false;
		} else if (!(slot & 1) && (!mem_type_ok(v & 0xff, false) || (v & ~(DBT_PHYS_MASK & ~0xf00ull)))) {
			return false;
		} else if ((slot & 1) && (v & ~(DBT_PHYS_MASK & ~0x7ffull))) {
			return false;
		}
		cpu->mtrr[slot] = v;
		return true;
	}
	switch (index) {
	case MSR_TSC: cpu->tsc_offset = (int64_t)(v - host_tsc()); return true;
	case MSR_UCODE_REV: return true; /* writing 0 asks for the revision: it is always there */
	case MSR_SYSENTER_CS: s->sysenter_cs = v & 0xffff; return true;
	case MSR_SYSENTER_ESP:
		if (!canonical(v))
			return false;
		s->sysenter_esp = v;
		return true;
	case MSR_SYSENTER_EIP:
		if (!canonical(v))
			return false;
		s->sysenter_eip = v;
		return true;
	case MSR_MISC_ENABLE: s->misc_enable = v; return true;
	case MSR_DEBUGCTL: return v == 0; /* no LBR, no BTF */
	case MSR_PAT:
		for (int i = 0; i < 8; i++)
			if (!mem_type_ok((v >> (8 * i)) & 0xff, true))
				return false;
		s->pat = v;
		return true;
	case MSR_EFER: return efer_write(cpu, v);
	case MSR_STAR: s->star = v; return true;
	case MSR_LSTAR:
	case MSR_CSTAR:
	case MSR_FS_BASE:
	case MSR_GS_BASE:
	case MSR_KERNEL_GS_BASE:
		if (!canonical(v))
			return false;
		if (index == MSR_LSTAR)
			s->lstar = v;
		else if (index == MSR_CSTAR)
			s->cstar = v;
		else if (index == MSR_FS_BASE)
			s->seg[SEG_FS].base = v;
		else if (index == MSR_GS_BASE)
			s->seg[SEG_GS].base = v;
		else
			s->kernel_gs_base = v;
		cpu_update_mode(cpu);
		return true;
	case MSR_FMASK: s->fmask = v & 0xffffffff; return true;
	case MSR_TSC_AUX:
		if (v >> 32)
			return false;
		s->tsc_aux = v;
		return true;
	default: return false;
	}
}
