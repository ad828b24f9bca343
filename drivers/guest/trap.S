/*
 * Interrupt entry stubs, the SYSCALL entry, the switch to ring 3 and back,
 * and trap_run's setjmp-like recovery point.
 */
#include "guest.h"

	.text
/* One 16-byte stub per vector: push a zero where the CPU pushes no error
 * code, then the vector number. trap.c computes stub addresses from this. */
	.align 16
	.globl trap_stubs
trap_stubs:
	vector = 0
	.rept 256
	.align 16
	.if vector == 8 || vector == 10 || vector == 11 || vector == 12 || vector == 13 || vector == 14 || vector == 17 || vector == 21 || vector == 29 || vector == 30
	.else
	pushq $0
	.endif
	pushq $vector
	jmp trap_common
	vector = vector + 1
	.endr

/* Builds struct trap_frame on the stack (16-byte aligned at the call). */
trap_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	cld
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* bool trap_run(void (*fn)(void *), void *arg, struct trap_record *rec) */
	.globl trap_run, trap_run_landing
trap_run:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	pushq trap_try_rsp(%rip) /* nested trap_run calls restore the outer one */
	pushq trap_try_rec(%rip)
	movq %rsp, trap_try_rsp(%rip)
	movq %rdx, trap_try_rec(%rip)
	movq %rdi, %rax
	movq %rsi, %rdi
	call *%rax
	xorl %eax, %eax
	jmp 1f
trap_run_landing: /* trap.c sends the faulting context here */
	movq trap_try_rsp(%rip), %rsp
	movl $1, %eax
1:	popq trap_try_rec(%rip)
	popq trap_try_rsp(%rip)
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

/*
 * SYSCALL entry. RCX holds the user RIP, R11 the user RFLAGS; IF is
 * already clear (FMASK), so one stack serves every call.
 */
	.globl syscall_entry
syscall_entry:
	movq %rsp, syscall_user_rsp(%rip)
	leaq syscall_stack_top(%rip), %rsp
	subq $8, %rsp /* keeps the call below 16-byte aligned */
	pushq $0 /* cs, filled in by C */
	pushq syscall_user_rsp(%rip)
	pushq %r11
	pushq %rcx
	pushq %r9
	pushq %r8
	pushq %r10
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rax
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call syscall_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	popq %rax
	popq %rdi
	popq %rsi
	popq %rdx
	popq %r10
	popq %r8
	popq %r9
	popq %rcx
	popq %r11
	popq %rsp
	sysretq

/* uint64_t user_run(uint64_t (*fn)(void *), void *arg) */
	.globl user_run, user_return
user_run:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq
	movq %rsp, user_kernel_rsp(%rip)
	pushq $(GDT_USER_DATA | 3)
	leaq user_stack_top(%rip), %rax
	pushq %rax
	pushq $0x202 /* IF on: interrupts reach the kernel through TSS.RSP0 */
	pushq $(GDT_USER_CODE | 3)
	leaq user_entry(%rip), %rax
	pushq %rax
	iretq
user_entry: /* ring 3 */
	movq %rdi, %rax
	movq %rsi, %rdi
	call *%rax
	movq %rax, %rdi
	movl $SYS_USER_EXIT, %eax
	syscall
	ud2
/* Called by syscall_dispatch on SYS_USER_EXIT with the user's result. */
user_return:
	movq user_kernel_rsp(%rip), %rsp
	movq %rdi, %rax
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.data
	.globl trap_try_rsp, trap_try_rec
trap_try_rsp: .quad 0
trap_try_rec: .quad 0
syscall_user_rsp: .quad 0
user_kernel_rsp: .quad 0

	.bss
	.align 16
	.skip 16384
syscall_stack_top:
	.skip 65536
user_stack_top:

	.section .note.GNU-stack, "", @progbits
