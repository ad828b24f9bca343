/*
 * Entering and leaving translated code. The guest's registers are the host's
 * while its code runs, so crossing over means saving one side's registers
 * and loading the other's; the context is reached through GS, which the
 * guest cannot see (docs/dbt-translator.md, "Exit protocol").
 */
#include <stddef.h>

#include "dbt/translator.h"

#define CTX(f)	  [f] "i"(offsetof(struct xlat_ctx, f))
#define GPR(n, i) [n] "i"(offsetof(struct xlat_ctx, gpr) + 8 * (i))

/* Saves the runtime's callee-saved registers on its stack, loads the guest's
 * x87/SSE/AVX state, RFLAGS and registers, and jumps to code. The matching
 * return is in xlat_exit_routine. */
__attribute__((naked)) void xlat_enter(__attribute__((unused)) struct xlat_ctx *ctx,
				       __attribute__((unused)) const void *code)
{
	__asm__ volatile("push %%rbp\n\t"
			 "push %%rbx\n\t"
			 "push %%r12\n\t"
			 "push %%r13\n\t"
			 "push %%r14\n\t"
			 "push %%r15\n\t"
			 "mov %%rsp, %%gs:%c[host_rsp]\n\t"
			 "mov %%rsi, %%gs:%c[jump]\n\t"
			 "mov %c[xsave_mask](%%rdi), %%eax\n\t"
			 "mov %c[xsave_mask]+4(%%rdi), %%edx\n\t"
			 "mov %c[xsave](%%rdi), %%rsi\n\t"
			 "xrstor64 (%%rsi)\n\t"
			 "lea %c[rflags](%%rdi), %%rsp\n\t"
			 "popfq\n\t"
			 "mov %%gs:%c[rax], %%rax\n\t"
			 "mov %%gs:%c[rcx], %%rcx\n\t"
			 "mov %%gs:%c[rdx], %%rdx\n\t"
			 "mov %%gs:%c[rbx], %%rbx\n\t"
			 "mov %%gs:%c[rbp], %%rbp\n\t"
			 "mov %%gs:%c[rsi], %%rsi\n\t"
			 "mov %%gs:%c[rdi], %%rdi\n\t"
			 "mov %%gs:%c[r8], %%r8\n\t"
			 "mov %%gs:%c[r9], %%r9\n\t"
			 "mov %%gs:%c[r10], %%r10\n\t"
			 "mov %%gs:%c[r11], %%r11\n\t"
			 "mov %%gs:%c[r12], %%r12\n\t"
			 "mov %%gs:%c[r13], %%r13\n\t"
			 "mov %%gs:%c[r14], %%r14\n\t"
			 "mov %%gs:%c[r15], %%r15\n\t"
			 "mov %%gs:%c[rsp], %%rsp\n\t"
			 "jmp *%%gs:%c[jump]\n\t"
			 :
			 : CTX(host_rsp), CTX(jump), CTX(xsave_mask), CTX(xsave), CTX(rflags), GPR(rax, 0),
			   GPR(rcx, 1), GPR(rdx, 2), GPR(rbx, 3), GPR(rsp, 4), GPR(rbp, 5), GPR(rsi, 6), GPR(rdi, 7),
			   GPR(r8, 8), GPR(r9, 9), GPR(r10, 10), GPR(r11, 11), GPR(r12, 12), GPR(r13, 13),
			   GPR(r14, 14), GPR(r15, 15));
}

/* Reached by jmp gs:[exit_code] from an exit stub, with the guest's RAX
 * already saved and RAX holding the stub's struct xlat_exit. Saves the rest
 * of the guest state and returns from xlat_enter with a clean RFLAGS (DF and
 * AC clear, as the C ABI expects). XSAVEOPT: the image is the one xlat_enter
 * restored from, so components the guest left alone (or in their initial
 * state) are not written again; readers of the image honour XSTATE_BV. */
__attribute__((naked)) void xlat_exit_routine(void)
{
	__asm__ volatile("mov %%rax, %%gs:%c[exit]\n\t"
			 "mov %%rsp, %%gs:%c[rsp]\n\t"
			 "mov %%gs:%c[rflags_top], %%rsp\n\t"
			 "pushfq\n\t"
			 "mov %%rcx, %%gs:%c[rcx]\n\t"
			 "mov %%rdx, %%gs:%c[rdx]\n\t"
			 "mov %%rbx, %%gs:%c[rbx]\n\t"
			 "mov %%rbp, %%gs:%c[rbp]\n\t"
			 "mov %%rsi, %%gs:%c[rsi]\n\t"
			 "mov %%rdi, %%gs:%c[rdi]\n\t"
			 "mov %%r8, %%gs:%c[r8]\n\t"
			 "mov %%r9, %%gs:%c[r9]\n\t"
			 "mov %%r10, %%gs:%c[r10]\n\t"
			 "mov %%r11, %%gs:%c[r11]\n\t"
			 "mov %%r12, %%gs:%c[r12]\n\t"
			 "mov %%r13, %%gs:%c[r13]\n\t"
			 "mov %%r14, %%gs:%c[r14]\n\t"
			 "mov %%r15, %%gs:%c[r15]\n\t"
			 "mov %%gs:%c[host_rsp], %%rsp\n\t"
			 "push $2\n\t"
			 "popfq\n\t"
			 "mov %%gs:%c[self], %%rdi\n\t"
			 "mov %c[xsave_mask](%%rdi), %%eax\n\t"
			 "mov %c[xsave_mask]+4(%%rdi), %%edx\n\t"
			 "mov %c[xsave](%%rdi), %%rsi\n\t"
			 "xsaveopt64 (%%rsi)\n\t"
			 "pop %%r15\n\t"
			 "pop %%r14\n\t"
			 "pop %%r13\n\t"
			 "pop %%r12\n\t"
			 "pop %%rbx\n\t"
			 "pop %%rbp\n\t"
			 "ret\n\t"
			 :
			 : CTX(exit), CTX(rflags_top), CTX(host_rsp), CTX(self), CTX(xsave_mask), CTX(xsave),
			   GPR(rcx, 1), GPR(rdx, 2), GPR(rbx, 3), GPR(rsp, 4), GPR(rbp, 5), GPR(rsi, 6), GPR(rdi, 7),
			   GPR(r8, 8), GPR(r9, 9), GPR(r10, 10), GPR(r11, 11), GPR(r12, 12), GPR(r13, 13),
			   GPR(r14, 14), GPR(r15, 15));
}

/* The exit data of a lookup miss: the target is in ctx->target. */
const struct xlat_exit xlat_miss_exit = {.kind = XEXIT_MISS};

/* Reached by jmp gs:[miss_code] from an inline lookup that missed, with the
 * target in RDX and the guest's RAX, RCX, RDX in the spill slots. */
__attribute__((naked)) void xlat_miss_routine(void)
{
	__asm__ volatile("mov %%rdx, %%gs:%c[target]\n\t"
			 "mov %%gs:%c[sa], %%rax\n\t"
			 "mov %%rax, %%gs:%c[rax]\n\t"
			 "mov %%gs:%c[sb], %%rcx\n\t"
			 "mov %%gs:%c[sc], %%rdx\n\t"
			 "lea xlat_miss_exit(%%rip), %%rax\n\t"
			 "jmp xlat_exit_routine\n\t"
			 :
			 : CTX(target), [sa] "i"(offsetof(struct xlat_ctx, spill) + 8 * XS_A),
			   [sb] "i"(offsetof(struct xlat_ctx, spill) + 8 * XS_B),
			   [sc] "i"(offsetof(struct xlat_ctx, spill) + 8 * XS_C), GPR(rax, 0));
}

const struct xlat_exit xlat_signal_exit = {.kind = XEXIT_SIGNAL};

/* Where a signal handler sends translated code it stopped at an exact
 * point (ctx->target holds the guest RIP): all registers are the guest's. */
__attribute__((naked)) void xlat_signal_routine(void)
{
	__asm__ volatile("mov %%rax, %%gs:%c[rax]\n\t"
			 "lea xlat_signal_exit(%%rip), %%rax\n\t"
			 "jmp xlat_exit_routine\n\t"
			 :
			 : GPR(rax, 0));
}
