/*
 * Entering and leaving a case on the host CPU. diff_native_enter loads a
 * struct diff_state (FXRSTOR, POPFQ, every GPR including RSP) and jumps to
 * the case; the case's stop jumps to diff_native_exit, which saves every
 * GPR, RFLAGS and the FXSAVE image and returns from diff_native_enter.
 * The offsets follow struct diff_state: gpr[16] at 0, rip at 128, rflags
 * at 136, the FXSAVE image at 144.
 */
	.set RFLAGS, 136
	.set FPU, 144

	.text
	.globl diff_native_enter
	.hidden diff_native_enter
	.type diff_native_enter, @function
/* void diff_native_enter(const struct diff_state *in) */
diff_native_enter:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, host_rsp(%rip)
	fxrstor64 FPU(%rdi)
	pushq RFLAGS(%rdi)
	popfq
	mov 0(%rdi), %rax
	mov 8(%rdi), %rcx
	mov 16(%rdi), %rdx
	mov 24(%rdi), %rbx
	mov 40(%rdi), %rbp
	mov 48(%rdi), %rsi
	mov 64(%rdi), %r8
	mov 72(%rdi), %r9
	mov 80(%rdi), %r10
	mov 88(%rdi), %r11
	mov 96(%rdi), %r12
	mov 104(%rdi), %r13
	mov 112(%rdi), %r14
	mov 120(%rdi), %r15
	mov 32(%rdi), %rsp
	mov 56(%rdi), %rdi
	jmp *case_entry(%rip)
	.size diff_native_enter, . - diff_native_enter

	.globl diff_native_exit
	.hidden diff_native_exit
	.type diff_native_exit, @function
diff_native_exit:
	mov %rax, diff_native_out+0(%rip)
	mov %rcx, diff_native_out+8(%rip)
	mov %rdx, diff_native_out+16(%rip)
	mov %rbx, diff_native_out+24(%rip)
	mov %rsp, diff_native_out+32(%rip)
	mov %rbp, diff_native_out+40(%rip)
	mov %rsi, diff_native_out+48(%rip)
	mov %rdi, diff_native_out+56(%rip)
	mov %r8, diff_native_out+64(%rip)
	mov %r9, diff_native_out+72(%rip)
	mov %r10, diff_native_out+80(%rip)
	mov %r11, diff_native_out+88(%rip)
	mov %r12, diff_native_out+96(%rip)
	mov %r13, diff_native_out+104(%rip)
	mov %r14, diff_native_out+112(%rip)
	mov %r15, diff_native_out+120(%rip)
	mov host_rsp(%rip), %rsp
	pushfq
	popq diff_native_out+RFLAGS(%rip)
	cld
	fxsave64 diff_native_out+FPU(%rip)
	fninit
	ldmxcsr mxcsr_default(%rip)
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret
	.size diff_native_exit, . - diff_native_exit

/* The stop appended to a case: an indirect jump through the 8 bytes that
 * follow it, which the runner fills with diff_native_exit's address. */
	.section .rodata
	.globl diff_native_stop, diff_native_stop_end
	.hidden diff_native_stop, diff_native_stop_end
diff_native_stop:
	jmp *0(%rip)
diff_native_stop_end:

	.data
	.balign 8
case_entry:
	.quad 0x10000000 /* DIFF_CODE */
mxcsr_default:
	.long 0x1f80

	.bss
	.balign 64
	.globl diff_native_out
	.hidden diff_native_out
diff_native_out:
	.skip 656 /* struct diff_state */
host_rsp:
	.skip 8

	.section .note.GNU-stack, "", @progbits
