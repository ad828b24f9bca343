/*
 * Guest code for the dbt unit tests. Each snippet lies between snip_NAME and
 * snip_NAME_end and is copied into guest RAM at the address the test
 * names, so it uses RIP-relative or absolute addresses from layout.h only.
 * The ALU operations (alu_*) are also called natively on the host: the
 * host CPU is the oracle for the interpreter's results and flags.
 */
#include "layout.h"

.macro SNIP name
	.globl snip_\name, snip_\name\()_end
snip_\name:
.endm
.macro END name
snip_\name\()_end:
.endm

	.section .rodata.snippets, "a"

/* ---- basics ------------------------------------------------------------------ */

	.code64
SNIP hlt
	mov $42, %rax
	hlt
	mov $43, %rax
	hlt
END hlt

SNIP cpuid
	xor %eax, %eax
	cpuid
	mov %rbx, DATA + 0
	mov %rdx, DATA + 8
	mov %rcx, DATA + 16
	mov $1, %eax
	cpuid
	mov %rbx, DATA + 24
	mov %rcx, DATA + 32
	mov %rdx, DATA + 40
	mov $0x80000001, %eax
	cpuid
	mov %rdx, DATA + 48
	hlt
END cpuid

/* Calls the function at DATA+40 with RAX/RBX/RCX/RDX/RFLAGS from DATA+0..32
 * and stores them back, as host_call() does natively. */
SNIP alu_driver
	mov $DATA, %r12
	mov 0(%r12), %rax
	mov 8(%r12), %rbx
	mov 16(%r12), %rcx
	mov 24(%r12), %rdx
	pushq 32(%r12)
	popfq
	call *40(%r12)
	pushfq
	popq 32(%r12)
	mov %rax, 0(%r12)
	mov %rbx, 8(%r12)
	mov %rcx, 16(%r12)
	mov %rdx, 24(%r12)
	hlt
END alu_driver

/* 32-bit protected mode to long mode, as a multiboot kernel does it. */
	.code32
SNIP to_long
	mov $PML4, %edi
	xor %eax, %eax
	mov $(3 * 4096 / 4), %ecx
	rep stosl
	movl $(PDPT | 7), PML4
	movl $(PD | 7), PDPT
	mov $PD, %edi
	mov $0x87, %eax /* P W U PS */
	mov $512, %ecx
1:	mov %eax, (%edi)
	movl $0, 4(%edi)
	add $0x200000, %eax
	add $8, %edi
	loop 1b
	mov $PML4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x620, %eax
	mov %eax, %cr4
	mov $0xc0000080, %ecx
	rdmsr
	or $0x901, %eax /* LME, SCE, NXE */
	wrmsr
	mov %cr0, %eax
	or $0x80010023, %eax
	mov %eax, %cr0
	lgdt GDT_PTR
	ljmp $0x08, $(CODE + 2f - snip_to_long)
	.code64
2:	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %ss
	mov $STACK_TOP, %rsp
	movq $0x1122334455667788, %rax
	movq %rax, DATA
	hlt
END to_long

/* ---- exceptions ---------------------------------------------------------------- */

SNIP div0
	xor %ecx, %ecx
	mov $5, %eax
	div %ecx
	hlt
END div0

SNIP ud2
	nop
	ud2
END ud2

SNIP noncanon
	movabs $0x8000000000000000, %rbx
	mov (%rbx), %rax
END noncanon

SNIP bad_sel
	mov $0x53, %eax
	mov %eax, %ds
END bad_sel

SNIP np_sel
	mov $0x40, %eax
	mov %eax, %es
END np_sel

/* Memory access at RBX; flags preset so that a fault can be seen to keep them. */
SNIP store_rbx
	mov $0x8d5, %eax
	push %rax
	popfq
	addq $1, (%rbx)
	hlt
END store_rbx

SNIP load_rbx
	mov (%rbx), %rax
	hlt
END load_rbx

SNIP jmp_rbx
	jmp *%rbx
END jmp_rbx

SNIP pop_fault
	mov %rbx, %rsp
	pop %rax
	hlt
END pop_fault

SNIP int3
	int3
	hlt
END int3

SNIP single_step
	pushfq
	orq $0x100, (%rsp)
	popfq
	mov $1, %eax
	mov $2, %eax
	hlt
END single_step

/* ---- rings ----------------------------------------------------------------------- */

/* Kernel: IRETQ to user code at USER_CODE, which makes a system call. */
SNIP to_user
	pushq $0x23
	pushq $USER_STACK
	pushq $0x202
	pushq $0x2b
	pushq $USER_CODE
	iretq
END to_user

/* Kernel: LRETQ to 32-bit compatibility-mode code in ring 3. */
SNIP to_compat
	pushq $0x23
	pushq $USER_STACK
	pushq $0x1b
	pushq $USER_CODE
	lretq
END to_compat

/* Kernel: call the code at RBX, then IRETQ to ring 3 at USER_CODE. */
SNIP call_then_user
	call *%rbx
	pushq $0x23
	pushq $USER_STACK
	pushq $0x202
	pushq $0x2b
	pushq $USER_CODE
	iretq
END call_then_user

SNIP user_syscall
	mov $7, %eax
	mov %rsp, %rbx
	syscall
	mov %rax, %rdi
	int $0x80
	hlt
END user_syscall

/* LSTAR: record CS and RSP, return with SYSRETQ. */
SNIP syscall_entry
	mov %cs, %r8
	mov %rsp, %r9
	add $100, %rax
	sysretq
END syscall_entry

SNIP user_cli
	cli
END user_cli

SNIP user_in
	mov $0x1234, %dx
	in %dx, %al
	mov $0x1235, %dx
	in %dx, %al
END user_in

SNIP user_touch_kernel
	mov (%rbx), %rax
END user_touch_kernel

/* ---- strings ------------------------------------------------------------------------ */

SNIP strings
	cld
	/* overlapping forward copy replicates the first byte */
	mov $DATA, %rsi
	lea 1(%rsi), %rdi
	mov $15, %ecx
	rep movsb
	/* fill 100 quadwords */
	mov $(DATA + 0x100), %rdi
	movabs $0x0102030405060708, %rax
	mov $100, %ecx
	rep stosq
	/* backwards copy of 4 dwords */
	std
	mov $(DATA + 0x10c), %rsi
	mov $(DATA + 0x80c), %rdi
	mov $4, %ecx
	rep movsl
	cld
	/* compare until the first difference */
	mov $(DATA + 0x1000), %rsi
	mov $(DATA + 0x1100), %rdi
	mov $32, %ecx
	repe cmpsb
	mov %rcx, DATA + 0x2000
	/* scan for a byte */
	mov $(DATA + 0x1000), %rdi
	mov $'x', %al
	mov $64, %ecx
	repne scasb
	mov %rcx, DATA + 0x2008
	mov %rdi, DATA + 0x2010
	mov $(DATA + 0x1000), %rsi
	lodsw
	mov %rax, DATA + 0x2018
	/* a long copy over several pages */
	mov $(DATA + 0x10003), %rsi
	mov $(DATA + 0x30001), %rdi
	mov $(3 * 4096 + 100), %ecx
	rep movsb
	hlt
END strings

SNIP movs_fault
	cld
	mov $(DATA + 0x1ff0), %rsi
	mov $(FAULT_PAGE - 8), %rdi
	mov $100, %ecx
	rep movsb
	hlt
END movs_fault

/* ---- atomics ------------------------------------------------------------------------- */

SNIP atomics
	mov $DATA, %rbx
	movq $10, (%rbx)
	mov $5, %eax
	lock xadd %rax, (%rbx)
	mov %rax, 0x100(%rbx)
	mov $15, %eax
	mov $99, %ecx
	lock cmpxchg %rcx, (%rbx)
	pushfq
	popq 0x108(%rbx)
	mov $1, %eax
	lock cmpxchg %rcx, (%rbx)
	mov %rax, 0x110(%rbx)
	lock incq 8(%rbx)
	lock btsq $3, 8(%rbx)
	mov $7, %eax
	xchg %rax, 16(%rbx)
	mov %rax, 0x118(%rbx)
	movq $1, 0x40(%rbx)
	movq $2, 0x48(%rbx)
	mov $1, %eax
	mov $2, %edx
	mov $3, %ebx
	mov $4, %ecx
	lock cmpxchg16b DATA + 0x40
	pushfq
	popq DATA + 0x120
	hlt
END atomics

SNIP lock_loop
	mov $COUNTER_N, %ecx
1:	lock incq DATA
	dec %ecx
	jnz 1b
	hlt
END lock_loop

/* The same RIP (RCX) in two address spaces (CR3 = RBX, then RDX) runs
 * different code; a global page (RSI) runs the same code in both. */
SNIP cr3_switch
	xor %eax, %eax
	call *%rcx
	call *%rsi
	mov %rbx, %cr3
	call *%rcx
	call *%rsi
	mov %rdx, %cr3
	call *%rcx
	hlt
END cr3_switch

/* Linux's check_tsc_warp: under a lock, read the last TSC any vCPU saw and
 * RDTSCP; count the times it went backwards (DATA+0x110). RDI iterations. */
SNIP tsc_warp
1:	mov $1, %eax
2:	xchg %eax, DATA + 0x100
	test %eax, %eax
	jz 3f
	pause
	jmp 2b
3:	mov DATA + 0x108, %rsi
	rdtscp
	shl $32, %rdx
	or %rax, %rdx
	mov %rdx, DATA + 0x108
	cmp %rsi, %rdx
	jae 4f
	lock incq DATA + 0x110
4:	movl $0, DATA + 0x100
	dec %rdi
	jnz 1b
	hlt
END tsc_warp

/* ---- x87 and SSE ------------------------------------------------------------------------ */

SNIP fpu
	fninit
	fldl DATA + 0
	faddl DATA + 8
	fstpl DATA + 0x100
	fildl DATA + 16
	fsqrt
	fistpl DATA + 0x108
	movupd DATA + 0x20, %xmm0
	addpd DATA + 0x30, %xmm0
	movupd %xmm0, DATA + 0x110
	mov $7, %eax
	cvtsi2sd %eax, %xmm1
	mulsd DATA + 0x30, %xmm1
	movsd %xmm1, DATA + 0x120
	movdqu DATA + 0x40, %xmm2
	pcmpeqb DATA + 0x50, %xmm2
	pmovmskb %xmm2, %ecx
	mov %ecx, DATA + 0x128
	movdqu DATA + 0x40, %xmm3
	pshufb DATA + 0x60, %xmm3
	movdqu %xmm3, DATA + 0x130
	fxsave DATA + 0x400
	hlt
END fpu

SNIP movaps_misaligned
	movaps DATA + 8, %xmm0
	hlt
END movaps_misaligned

SNIP sse_div0
	stmxcsr DATA + 0x200
	andl $~0x200, DATA + 0x200 /* unmask ZE */
	ldmxcsr DATA + 0x200
	xorps %xmm1, %xmm1
	mov $1, %eax
	cvtsi2ss %eax, %xmm0
	divss %xmm1, %xmm0
	hlt
END sse_div0

SNIP x87_div0
	fninit
	fnstcw DATA + 0x200
	andw $~4, DATA + 0x200 /* unmask ZE */
	fldcw DATA + 0x200
	fld1
	fdivl DATA + 0x208 /* 0.0 */
	mov $1, %eax
	fwait
	hlt
END x87_div0

SNIP fpu_ts
	fld1
	hlt
END fpu_ts

/* Calls the function at DATA+40 under the x87/SSE image at FPU_IMAGE with
 * RDI = FPU_MEM and saves the image at FPU_IMAGE + 0x200, as fpu_host_call()
 * does natively. */
SNIP fpu_driver
	fxrstor FPU_IMAGE
	mov $FPU_MEM, %edi
	call *DATA + 40
	fxsave FPU_IMAGE + 0x200
	hlt
END fpu_driver

/* FXSAVE and FXRSTOR outside 64-bit mode: XMM0-7 only. */
	.code32
SNIP fxsave32
	fxsave FPU_MEM
	fxrstor FPU_IMAGE
	hlt
END fxsave32
	.code64

/* ---- devices ------------------------------------------------------------------------------ */

SNIP mmio
	mov $MMIO_BASE, %esi
	movl $0xdeadbeef, 0x10(%rsi)
	mov 0x10(%rsi), %eax
	mov %eax, DATA
	movq $-1, 0x20(%rsi)
	mov $(RAM_END - 4), %rbx
	movabs $0x1122334455667788, %rax
	mov %rax, (%rbx)
	mov (%rbx), %rcx
	mov %rcx, DATA + 8
	mov $0x12, %al
	out %al, $0x80
	mov $0x1234, %dx
	in %dx, %eax
	mov %eax, DATA + 16
	hlt
END mmio

SNIP msrs
	mov $0xc0000080, %ecx
	rdmsr
	mov %eax, DATA
	mov $0x1b, %ecx
	rdmsr
	mov %eax, DATA + 8
	mov $0x10, %ecx
	xor %eax, %eax
	mov $1, %edx
	wrmsr
	rdtsc
	mov %edx, DATA + 16
	hlt
END msrs

SNIP bad_msr
	mov $0xc0000082, %ecx
	mov $0x80000000, %edx
	xor %eax, %eax
	wrmsr
END bad_msr

SNIP sti_loop
	sti
1:	inc %rbx
	jmp 1b
END sti_loop

SNIP sti_hlt
	sti
	hlt
	mov $77, %ecx
	hlt
END sti_hlt

SNIP cli_hlt
	cli
	hlt
END cli_hlt

/* Interrupt handler for vector 0x40: count and return. */
SNIP irq_handler
	incq DATA + 0x300
	mov %rsp, DATA + 0x308
	iretq
END irq_handler

SNIP smc
	lea 1f(%rip), %rbx
	movl $0x12345678, 1(%rbx)
1:	mov $0, %eax
	hlt
END smc

SNIP smc_dma
	mov $1, %eax
	hlt
END smc_dma

SNIP loop_bench
	mov $BENCH_N, %rcx
	xor %eax, %eax
	mov $DATA, %rsi
1:	add %rcx, %rax
	xor $0x55, %rax
	mov %rax, (%rsi)
	add (%rsi), %rdx
	dec %rcx
	jnz 1b
	hlt
END loop_bench

SNIP sse_bench
	mov $(BENCH_N / 10), %rcx
	mov $DATA, %rsi
	pxor %xmm3, %xmm3
1:	movdqu (%rsi), %xmm0
	pcmpeqb %xmm3, %xmm0
	pmovmskb %xmm0, %eax
	paddq %xmm0, %xmm1
	add %rax, %rdx
	dec %rcx
	jnz 1b
	hlt
END sse_bench

SNIP paging
	mov (%rbx), %rax
	mov %rax, DATA
	mov %rcx, (%rdi) /* remap the page behind the TLB's back */
	mov (%rbx), %rax
	mov %rax, DATA + 8
	invlpg (%rbx)
	mov (%rbx), %rax
	mov %rax, DATA + 16
	hlt
END paging

/* 32-bit paging (EBX = CR3, ECX = CR4 bits): read [EDI] through it. */
	.code32
SNIP paging32
	mov %ebx, %cr3
	mov %cr4, %eax
	or %ecx, %eax
	mov %eax, %cr4
	mov %cr0, %eax
	or $0x80000000, %eax
	mov %eax, %cr0
	mov (%edi), %eax
	mov %eax, DATA
	mov 4(%edi), %eax
	mov %eax, DATA + 4
	hlt
END paging32

SNIP int80_32
	int $0x80
	hlt
END int80_32
	.code64

/* ---- real mode: an SMP start-up trampoline, loaded at TRAMP ------------------------------- */

	.code16
SNIP tramp
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_ptr - snip_tramp
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $(TRAMP + tramp32 - snip_tramp)
	.code32
tramp32:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %ss
	movl $0xcafe, DATA
	hlt
	.align 8
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff /* 0x08 32-bit code */
	.quad 0x00cf92000000ffff /* 0x10 data */
tramp_gdt_ptr:
	.word tramp_gdt_ptr - tramp_gdt - 1
	.long TRAMP + tramp_gdt - snip_tramp
END tramp

/* ---- operations called on both sides (host_call / alu_driver) ----------------------------- */

	.text
	.code64
	.globl alu_ops_start, alu_ops_end
alu_ops_start:
#define OP(name, ...) .globl alu_##name; alu_##name: __VA_ARGS__; ret
OP(add64, add %rbx, %rax)
OP(add8, add %bl, %al)
OP(adc32, adc %ebx, %eax)
OP(sub16, sub %bx, %ax)
OP(sbb64, sbb %rbx, %rax)
OP(and32, and %ebx, %eax)
OP(or8, or %bl, %ah)
OP(xor64, xor %rbx, %rax)
OP(cmp32, cmp %ebx, %eax)
OP(test8, test %bl, %al)
OP(inc32, inc %eax)
OP(dec16, dec %ax)
OP(neg64, neg %rax)
OP(not32, not %eax)
OP(shl64, shl %cl, %rax)
OP(shr32, shr %cl, %eax)
OP(sar16, sar %cl, %ax)
OP(rol8, rol %cl, %al)
OP(ror64, ror %cl, %rax)
OP(rcl32, rcl %cl, %eax)
OP(rcr16, rcr %cl, %ax)
OP(shld32, shld %cl, %ebx, %eax)
OP(shrd64, shrd %cl, %rbx, %rax)
OP(imul64, imul %rbx, %rax)
OP(mul32, mul %ebx)
OP(imul1_64, imul %rbx)
OP(bsf64, bsf %rbx, %rax)
OP(bsr32, bsr %ebx, %eax)
OP(bsf32, bsf %ebx, %eax)
OP(popcnt64, popcnt %rbx, %rax)
OP(bt64, bt %rbx, %rax)
OP(btc32, btc %ebx, %eax)
OP(xadd32, xadd %ebx, %eax)
OP(cmpxchg64, cmpxchg %rcx, %rbx)
OP(cmpxchg32, cmpxchg %ecx, %ebx)
OP(bswap64, bswap %rax)
OP(cwde, cwde)
OP(cqo, cqo)
OP(movsx, movsx %bl, %rax)
OP(movzx, movzx %bx, %eax)
OP(lea, lea 8(%rax, %rbx, 4), %eax)
OP(setcc, setl %al; setbe %bl)
OP(cmov, cmovg %rbx, %rax; cmovs %ecx, %edx)
OP(lahf, lahf)
OP(sahf, sahf)
OP(adc8h, adc %bh, %ah)
OP(neg8, neg %bl)
OP(rcl64_1, rcl $1, %rax)
OP(sar8_imm, sar $3, %bl)
OP(enter_leave, enter $24, $1; mov %rbp, %rax; sub %rsp, %rax; mov -8(%rbp), %rcx; sub %rbp, %rcx; leave)
OP(crc32b, crc32b %bl, %eax)
OP(crc32q, crc32q %rbx, %rax)
OP(crc32w, crc32w %bx, %eax)
OP(div_ok, cmp $0, %rbx; je 1f; xor %edx, %edx; div %rbx; 1:)
alu_ops_end:

/* x87/SSE operations called on both sides (fpu_host_call / fpu_driver):
 * RDI points to their memory. An x87 operation ends with FWAIT, so an
 * exception it leaves pending is raised inside it. */
	.globl fpu_ops_start, fpu_ops_end
fpu_ops_start:
#define FOP(name, ...) .globl fpu_##name; fpu_##name: __VA_ARGS__; ret
FOP(addps, addps 16(%rdi), %xmm0)
FOP(mulss, mulss 16(%rdi), %xmm0)
FOP(cvtps2pi, cvtps2pi %xmm0, %mm1)
FOP(cvtpd2pi, cvtpd2pi 24(%rdi), %mm1)
FOP(fisttp32, fisttpl 16(%rdi); fwait)
FOP(fcom, fcoms 16(%rdi); fwait)
FOP(fcomi, fcomi %st(1), %st; pushfq; popq %rax; and $0x8d5, %eax; mov %rax, (%rdi); fwait)
FOP(fdiv, fdivs 16(%rdi); fwait)
FOP(fstp32, fstps 16(%rdi); fwait)
FOP(fninit, fninit; fwait)
FOP(fnsave, fnsave 16(%rdi); fwait)
FOP(fldenv, fldenv 16(%rdi); fwait)
FOP(fxrstor, fxrstor 16(%rdi); fwait)
FOP(fxsave, fxsave 16(%rdi); fwait)
fpu_ops_end:

/* void fpu_host_call(const void *fn, const struct x86_fxsave *in,
 * struct x86_fxsave *out, void *mem): fpu_driver on the host. */
	.globl fpu_host_call
fpu_host_call:
	push %rbx
	mov %rdx, %rbx
	fxrstor64 (%rsi)
	mov %rdi, %rax
	mov %rcx, %rdi
	call *%rax
	fxsave64 (%rbx)
	fninit
	ldmxcsr mxcsr_default(%rip)
	pop %rbx
	ret

/* uint64_t bench_loop_native(uint64_t n, uint64_t *buf): loop_bench on the host. */
	.globl bench_loop_native
bench_loop_native:
	mov %rdi, %rcx
	xor %eax, %eax
	xor %edx, %edx
1:	add %rcx, %rax
	xor $0x55, %rax
	mov %rax, (%rsi)
	add (%rsi), %rdx
	dec %rcx
	jnz 1b
	ret

/* void host_call(void *fn, uint64_t regs[5]) */
	.globl host_call
host_call:
	push %rbx
	push %r12
	mov %rsi, %r12
	mov %rdi, %r11
	mov 0(%r12), %rax
	mov 8(%r12), %rbx
	mov 16(%r12), %rcx
	mov 24(%r12), %rdx
	pushq 32(%r12)
	popfq
	call *%r11
	pushfq
	popq 32(%r12)
	mov %rax, 0(%r12)
	mov %rbx, 8(%r12)
	mov %rcx, 16(%r12)
	mov %rdx, 24(%r12)
	pop %r12
	pop %rbx
	ret

	.section .rodata
mxcsr_default:
	.long 0x1f80

	.section .note.GNU-stack, "", @progbits
