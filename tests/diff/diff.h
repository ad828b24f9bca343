/*
 * Differential instruction tests: generated cases (instruction bytes, an
 * initial register state and a data buffer) run on several engines from
 * the same state, and every register, flag and byte is compared with the
 * host CPU's result. An engine is a "run this case" function; the driver
 * runs each engine in a child process, so a case that kills an engine is
 * reported instead of ending the test.
 */
#ifndef VIREO_TESTS_DIFF_H
#define VIREO_TESTS_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmm/vmm.h"

/*
 * The case's address space, the same for every engine: one code page, a
 * data page and a stack page with unmapped guard pages around each. Memory
 * operands reach the data page through a base register that points to its
 * middle, so displacements go both ways.
 */
#define DIFF_PAGE	 4096u
#define DIFF_CODE	 0x10000000ull
#define DIFF_DATA	 0x10002000ull
#define DIFF_STACK	 0x10004000ull
#define DIFF_REGION_SIZE 0x6000ull /* code, guard, data, guard, stack, guard */
#define DIFF_BASE	 (DIFF_DATA + DIFF_PAGE / 2)
#define DIFF_RSP	 (DIFF_STACK + DIFF_PAGE / 2)

#define DIFF_CODE_MAX  128 /* the case's bytes; each engine appends its own stop */
#define DIFF_MAX_INSNS 8

/* RFLAGS bits a case sets and the comparison looks at. */
#define DIFF_FLAGS_ARITH    0x8d5ull /* CF PF AF ZF SF OF */
#define DIFF_FLAG_DF	    0x400ull
#define DIFF_FLAGS_COMPARED (DIFF_FLAGS_ARITH | DIFF_FLAG_DF)

struct diff_state {
	uint64_t gpr[16];
	uint64_t rip, rflags;
	struct x86_fxsave fpu; /* FCW FSW abridged tag ST0-7 MXCSR XMM0-15 */
};

struct diff_case {
	uint32_t form;	/* index into the form table */
	uint32_t index; /* the case's number within its form */
	uint8_t code_len, ninsn;
	uint8_t insn_off[DIFF_MAX_INSNS + 1]; /* insn_off[ninsn] == code_len */
	/* RFLAGS and FSW bits undefined once the first k instructions ran. */
	uint32_t flags_undef[DIFF_MAX_INSNS + 1];
	uint16_t fsw_undef[DIFF_MAX_INSNS + 1];
	/* Data-page bytes [ignore_off, ignore_off + ignore_len) are not
	 * compared: a field whose value is the CPU model's, not the
	 * instruction's (FXSAVE's MXCSR_MASK). */
	uint16_t ignore_off, ignore_len;
	uint8_t code[DIFF_CODE_MAX];
	struct diff_state init;
	uint8_t data[DIFF_PAGE];
	uint8_t stack[DIFF_PAGE];
};

enum diff_status {
	DIFF_STOP,    /* ran to the end of its bytes */
	DIFF_FAULT,   /* an exception: vector, error code, fault address */
	DIFF_CRASH,   /* the engine's process died on this case */
	DIFF_TIMEOUT, /* the engine made no progress on this case */
	DIFF_ERROR,   /* the engine refused the case (message says why) */
};

struct diff_result {
	uint8_t status;
	uint8_t vector;
	uint32_t error_code;
	uint64_t fault_addr;
	char message[224];
	struct diff_state st;
	uint8_t data[DIFF_PAGE];
	uint8_t stack[DIFF_PAGE];
};

/*
 * An engine. open() runs once in the process that will run cases (a
 * forked child); run() executes one case from c->init with c->code at
 * DIFF_CODE (followed by whatever stop the engine appends), c->data at
 * DIFF_DATA and c->stack at DIFF_STACK, at CPL 3 in 64-bit mode, and fills
 * r: DIFF_STOP with RIP == DIFF_CODE + code_len when the case ran to its
 * end, or DIFF_FAULT with the vector, error code, CR2 and the state at the
 * exception (RIP of a fault, or after a trap), and in both cases the data
 * and stack pages. The native engine is the oracle; the others are
 * compared with it.
 */
struct diff_engine {
	const char *name;
	int (*open)(void **ctx, char *err, size_t errlen);
	void (*run)(void *ctx, const struct diff_case *c, struct diff_result *r);
	void (*close)(void *ctx);
};

extern const struct diff_engine diff_engine_native;
extern const struct diff_engine diff_engine_interp;
extern const struct diff_engine diff_engine_xlat;

/* gen.c: the form table and case generation. */
struct diff_form_info {
	const char *name;
	uint32_t ncases;
	bool skipped; /* needs a feature the interpreter does not advertise */
	const char *skip_why;
};

struct diff_cpuid {
	uint32_t ecx1, edx1, ebx7, ecx81, edx81;
};

struct diff_gen_options {
	uint64_t seed;
	bool full;		    /* every value combination (capped per form) */
	unsigned sample;	    /* cases per form otherwise */
	unsigned full_cap;	    /* cap per form with --full */
	const char *const *filters; /* substrings; a form runs if it matches any */
	unsigned nfilters;
};

/* Builds the form table; returns the number of forms. */
unsigned diff_forms_init(const struct diff_gen_options *o, const struct diff_cpuid *cpuid);
const struct diff_form_info *diff_form(unsigned i);
/* Generates case k (< ncases) of form i. Returns 0, or -1 with a message
 * in err when the form's template cannot be encoded (a test bug). */
int diff_generate(unsigned form, uint32_t k, struct diff_case *c, char *err, size_t errlen);
/* A CPUID case (EAX = leaf, ECX = 0) for asking an engine what it offers. */
void diff_cpuid_case(struct diff_case *c, uint32_t leaf);

/* pages.c: the data and stack pages of engines that run cases in their
 * own process. map: at DIFF_DATA and DIFF_STACK (the engine maps its code
 * page); load: the case's bytes in; save: the results out, after resetting
 * the host's FCW and MXCSR; unmap: code, data and stack. */
int diff_pages_map(char *err, size_t errlen);
void diff_pages_load(const struct diff_case *c);
void diff_pages_save(struct diff_result *r);
void diff_pages_unmap(void);

/* runner.c: an engine in a child process. */
struct runner;
void *diff_shared(size_t size);
/* cases: shared memory holding up to capacity cases. */
struct runner *runner_new(const struct diff_engine *e, const struct diff_case *cases, unsigned capacity);
struct diff_result *runner_results(struct runner *r);
/* Runs cases [0, n) on every runner, in parallel. */
void runner_run(struct runner **rs, unsigned nr, uint32_t n);
void runner_free(struct runner *r);

/* compare.c */
/* Compares an engine's result with the oracle's; returns the number of
 * differing fields and, if out is not NULL, prints them. */
unsigned diff_compare(const struct diff_case *c, const struct diff_result *oracle, const char *oracle_name,
		      const struct diff_result *r, const char *name, FILE *out);
/* Prints the case: instructions (Zydis formatter) and initial state. */
void diff_print_case(const struct diff_case *c, FILE *out);

#endif
