/*
 * Integer operations run on the host CPU, which is the same ISA as the
 * guest: the result and every flag (undefined ones included) are exactly
 * what the instruction produces. The guest's arithmetic flags are loaded
 * first (OF through an ADD, the rest through SAHF), so an instruction that
 * leaves a flag alone leaves the guest's value, never the host's.
 */
#ifndef VIREO_DBT_HOSTOP_H
#define VIREO_DBT_HOSTOP_H

#include <stdint.h>

/* AX holding the guest flags the way SAHF and the OF trick want them. */
static inline uint16_t flags_to_ax(uint64_t f)
{
	return (uint16_t)(((f & 0xd5) << 8) | ((f >> 11) & 1));
}

#define HOST_PRE  "add $0x7f, %%al\n\tsahf\n\t"
#define HOST_POST "\n\tlahf\n\tseto %%al"

/* a = a INSN b, for any integer type (the operand width follows the type). */
#define HOST_BINOP(INSN, a, b, f)                                                                                      \
	do {                                                                                                           \
		uint16_t ax_ = flags_to_ax(f);                                                                         \
		__asm__(HOST_PRE INSN " %[bb], %[aa]" HOST_POST : "+a"(ax_), [aa] "+q"(a) : [bb] "q"(b) : "cc");       \
		(f) = lahf_flags(ax_);                                                                                 \
	} while (0)

/* a = INSN a (INC, DEC, NEG, NOT). */
#define HOST_UNOP(INSN, a, f)                                                                                          \
	do {                                                                                                           \
		uint16_t ax_ = flags_to_ax(f);                                                                         \
		__asm__(HOST_PRE INSN " %[aa]" HOST_POST : "+a"(ax_), [aa] "+q"(a) : : "cc");                          \
		(f) = lahf_flags(ax_);                                                                                 \
	} while (0)

/* a = a INSN by CL (shifts and rotates); count already nonzero. */
#define HOST_SHIFT(INSN, a, count, f)                                                                                  \
	do {                                                                                                           \
		uint16_t ax_ = flags_to_ax(f);                                                                         \
		__asm__(HOST_PRE INSN " %%cl, %[aa]" HOST_POST                                                         \
			: "+a"(ax_), [aa] "+q"(a)                                                                      \
			: "c"((uint8_t)(count))                                                                        \
			: "cc");                                                                                       \
		(f) = lahf_flags(ax_);                                                                                 \
	} while (0)

/* Double shifts: a = SHLD/SHRD a, b, CL. */
#define HOST_DSHIFT(INSN, a, b, count, f)                                                                              \
	do {                                                                                                           \
		uint16_t ax_ = flags_to_ax(f);                                                                         \
		__asm__(HOST_PRE INSN " %%cl, %[bb], %[aa]" HOST_POST                                                  \
			: "+a"(ax_), [aa] "+r"(a)                                                                      \
			: [bb] "r"(b), "c"((uint8_t)(count))                                                           \
			: "cc");                                                                                       \
		(f) = lahf_flags(ax_);                                                                                 \
	} while (0)

#endif
