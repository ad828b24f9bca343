/*
 * The case generator's insides, shared by gen.c (the machinery) and the
 * form tables (forms_int.c, forms_x87.c, forms_sse.c).
 *
 * A form is one instruction form ("adc m64, r64", "cmpps x, m128") and a
 * builder that turns a choice of operand values into a case. Builders ask
 * for values through pick(): each call is one dimension of the form's
 * value space (an edge-value list). The generator probes a builder once to
 * learn the dimensions, then enumerates their product (or samples it with
 * every value of every dimension covered) to make the cases.
 */
#ifndef VIREO_TESTS_DIFF_GEN_H
#define VIREO_TESTS_DIFF_GEN_H

#include <Zydis/Zydis.h>

#include "diff.h"

/* Operand kinds of the generic builder. */
enum opk {
	O_NONE,
	O_GPR,	 /* a general register holding a value of bits */
	O_MEM,	 /* [base + ...] in the data page holding bits/8 bytes */
	O_IMM,	 /* an immediate of bits */
	O_CL,	 /* CL: a shift count */
	O_XMM,	 /* an XMM register, lanes of elem */
	O_MM,	 /* an MMX register, lanes of elem */
	O_ST0,	 /* x87 ST0 */
	O_STI,	 /* x87 ST(i), i = 1..7 */
	O_FIXED, /* a fixed register named in the form (AL, AX, ...) */
};

/* Value lists. */
enum vk {
	V_INT,	  /* integer edges of the operand's width */
	V_SHIFT,  /* shift and rotate counts */
	V_BITOFF, /* bit offsets for BT* on memory (may leave the page) */
	V_LIST,	  /* the form's own list (predicates, shuffle controls) */
	V_LANES,  /* vector or scalar lanes of the operand's elem */
	V_ANY,	  /* random bytes */
	V_F80,	  /* x87 extended values (m80) */
};

/* Lane types. */
enum elem { E_NONE, E_I8, E_I16, E_I32, E_I64, E_F32, E_F64 };

struct opnd {
	uint8_t kind, elem, vals;
	uint16_t bits;
	ZydisRegister fixed;
};

/* Features a form needs from CPUID (checked against both the interpreter
 * and the host). */
enum feature {
	FEAT_NONE,
	FEAT_SSE3,
	FEAT_SSSE3,
	FEAT_SSE41,
	FEAT_SSE42,
	FEAT_POPCNT,
	FEAT_LZCNT,
	FEAT_BMI1,
	FEAT_CX16,
	FEAT_MOVBE,
	FEAT_LAHF,
	FEAT_COUNT
};

/* Form flags. */
#define F_X87	 (1u << 0) /* set up the x87 stack: FCW, depth, ST0, ST(i) */
#define F_MXCSR	 (1u << 1) /* MXCSR is a dimension (rounding, DAZ/FTZ, masks) */
#define F_FWAIT	 (1u << 2) /* FWAIT after it: unmasked x87 exceptions fault */
#define F_ALIGN	 (1u << 3) /* the memory operand's alignment is a dimension */
#define F_MMX	 (1u << 4) /* MMX registers live in the x87 stack */
#define F_DIV	 (1u << 5) /* the implicit high half of a dividend stays small */
#define F_STRLEN (1u << 6) /* implicit RAX/RDX are string lengths (PCMPESTRx) */

#define MAX_DIMS 24
#define MAX_LIST 160

struct gen;
struct form;
typedef void (*form_builder)(struct gen *g, const struct form *f);

struct form {
	char name[80];
	form_builder build;
	ZydisMnemonic mnem;
	uint32_t prefixes;
	uint8_t nops;
	struct opnd op[4];
	uint32_t flags;
	uint8_t feature;
	int arg; /* builder-specific */
	const int64_t *list;
	uint16_t nlist;
	ZydisMachineMode mode; /* encoder mode (0: 64-bit) */
	/* Learned by probing. */
	uint16_t hidden;      /* GPRs the instruction names implicitly */
	uint16_t hidden_read; /* ... and reads */
	uint8_t hidden_bits[16];
	uint32_t tested; /* RFLAGS bits it reads */
	uint8_t ndims;
	uint16_t dims[MAX_DIMS];
	uint64_t product;
	uint32_t ncases;
	bool skipped;
	const char *skip_why;
};

/* A builder's view of the case being made. */
struct gen {
	struct diff_case *c;
	const struct form *f;
	uint64_t rng;
	bool probe;
	unsigned ndims;
	uint16_t dims[MAX_DIMS];
	uint32_t idx[MAX_DIMS];
	uint16_t gpr_used; /* GPRs a builder may not hand out again */
	uint16_t xmm_used;
	uint8_t mm_used;
	int sti; /* i of the ST(i) operand, or 1 */
	unsigned ninsn;
	bool failed;
	char err[160];
};

/* ---- values (values.c) ---- */
void values_init(void);
unsigned int_vals(unsigned bits, const uint64_t **v);
unsigned shift_vals(const uint64_t **v);
unsigned bitoff_vals(const uint64_t **v);
unsigned imm_vals(unsigned bits, const uint64_t **v);
unsigned f32_vals(const uint64_t **v);
unsigned f64_vals(const uint64_t **v);
unsigned f80_vals(const uint8_t (**v)[10]);
unsigned fcw_vals(const uint64_t **v);
unsigned mxcsr_vals(const uint64_t **v);
unsigned x87_depth_vals(const uint64_t **v);
unsigned strlen_vals(const uint64_t **v);
unsigned divhigh_vals(const uint64_t **v);

/* ---- the machinery (gen.c) ---- */
uint64_t rnd(struct gen *g);
/* One dimension of n values: returns the index chosen for this case. */
unsigned pick(struct gen *g, unsigned n);
uint64_t pick_from(struct gen *g, unsigned n, const uint64_t *v);
uint64_t pick_int(struct gen *g, unsigned bits);
/* Registers: a free GPR (never RSP), XMM or MMX register. */
int alloc_gpr(struct gen *g);
int alloc_xmm(struct gen *g);
int alloc_mm(struct gen *g);
void reserve_gpr(struct gen *g, int id);
/* Sets the low bits of a GPR (the rest keep their random value). */
void set_gpr(struct gen *g, int id, unsigned bits, uint64_t v);
ZydisRegister gpr_name(int id, unsigned bits);
/* Fills a 16-byte (or 8-byte) vector of lanes from the elem's edge list;
 * lane 0 is the picked value, the others vary with the case. */
void fill_lanes(struct gen *g, uint8_t *dst, unsigned bytes, unsigned elem);
/* Memory operands: puts bytes at a fresh place in the data page and
 * returns an encoder operand addressing it (a random address form). The
 * offset is relative to DIFF_BASE; align is a power of two. */
ZydisEncoderOperand mem_at(struct gen *g, int off, unsigned size);
int mem_place(struct gen *g, unsigned size, unsigned align);
/* Encodes one instruction at the end of the case (a RIP-relative memory
 * operand's displacement is taken as an absolute target). */
void emit(struct gen *g, ZydisEncoderRequest *r);
ZydisEncoderRequest req(ZydisMnemonic m, unsigned nops, ...);
ZydisEncoderOperand op_reg(ZydisRegister r);
ZydisEncoderOperand op_imm(int64_t v);
void fail(struct gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* x87 stack: depth valid entries from ST0, with the given values for ST0
 * and ST(g->sti); other registers random. */
void x87_setup(struct gen *g);
void flags_setup(struct gen *g, uint32_t tested);

/* The generic builder: operands as the form's op[] describes them. */
void build_generic(struct gen *g, const struct form *f);

/* Adds a form; returns it for builders' extra fields. */
struct form *form_add(const char *name, form_builder build, ZydisMnemonic m, uint32_t prefixes, const char *ops,
		      uint32_t flags, uint8_t feature);
/* Parses an operand list: "r64, m64", "x.ps, m128.ps", "st0, sti",
 * "cl", "i8", "u8" (the form's list), "c8" (shift counts). */
bool parse_ops(struct form *f, const char *ops);

void forms_int(void);
void forms_x87(void);
void forms_sse(void);

#endif
