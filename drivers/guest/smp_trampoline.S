/*
 * Application-processor start-up, from the SIPI to smp_ap_start() in C.
 *
 * A start-up IPI with vector SMP_TRAMPOLINE >> 12 starts an AP in real mode
 * at CS:IP = (SMP_TRAMPOLINE >> 4):0000. smp_start() copies the bytes from
 * smp_trampoline to smp_trampoline_end there. They address memory through CS
 * only and jump out to absolute addresses in the image, so the copy runs
 * wherever it lands (any page below 1 MiB):
 *
 *   +0x00  16-bit code: cli, lgdtl of the pointer below, CR0.PE, far jump
 *          to ap_entry32 through ap_gdt's 32-bit code segment
 *   +N     ap_gdt_ptr: ap_gdt's limit and 32-bit linear base
 *
 * The rest runs in place in the image. The runtime's gdt has no 32-bit
 * ring-0 code segment (0x08 is 64-bit, which protected mode would read as
 * 16-bit), so ap_gdt is a three-entry GDT for the 32-bit step only. ap_entry32
 * enables PAE paging on boot_pml4 and long mode as boot.S does, loads the
 * runtime's gdt (its address fits in 32 bits) and jumps to ap_entry64 through
 * GDT_KERNEL_CODE. ap_entry64 takes a CPU index with LOCK XADD, switches to
 * that CPU's stack in smp_ap_stacks and calls smp_ap_start(index).
 *
 * Several APs run this at once: nothing here writes memory before the
 * XADD (ap_gdt's accessed bits are preset), and nothing needs a stack
 * before the switch.
 */
#include "guest.h"

#define AP_GDT_CODE32 0x08
#define AP_GDT_DATA 0x10

#define CR0_PE BIT(0)
#define CR0_MP BIT(1)
#define CR0_EM BIT(2)
#define CR0_TS BIT(3)
#define CR0_NE BIT(5)
#define CR0_WP BIT(16)
#define CR0_NW BIT(29)
#define CR0_CD BIT(30)
#define CR0_PG BIT(31)
#define CR4_PAE BIT(5)
#define CR4_OSFXSR BIT(9)
#define CR4_OSXMMEXCPT BIT(10)

	.text
	.code16
	.globl smp_trampoline, smp_trampoline_end
	.align 16
smp_trampoline:
	cli
	cld
	lgdtl %cs:(ap_gdt_ptr - smp_trampoline)
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $AP_GDT_CODE32, $ap_entry32
ap_gdt_ptr:
	.word ap_gdt_end - ap_gdt - 1
	.long ap_gdt
smp_trampoline_end:
	.if smp_trampoline_end - smp_trampoline > 4096
	.error "the real-mode trampoline must fit in one page"
	.endif

	.code32
ap_entry32:
	movl $AP_GDT_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs

	movl %cr4, %eax
	orl $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
	movl %eax, %cr4

	movl $boot_pml4, %eax
	movl %eax, %cr3

	/* LME and SCE, and NXE where the BSP has it: smp_start() copied its EFER. */
	movl $MSR_EFER, %ecx
	rdmsr
	orl smp_ap_efer, %eax
	wrmsr

	/* INIT leaves CD and NW set: turn caching on along with paging. */
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW | CR0_EM | CR0_TS), %eax
	orl $(CR0_PG | CR0_WP | CR0_NE | CR0_MP | CR0_PE), %eax
	movl %eax, %cr0

	lgdt runtime_gdt_ptr
	ljmp $GDT_KERNEL_CODE, $ap_entry64

	.code64
ap_entry64:
	movl $GDT_KERNEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs

	movl $1, %eax
	lock xaddl %eax, smp_next_cpu(%rip)
	cmpl $SMP_MAX_CPUS, %eax
	jae 1f
	/* CPU n (1..SMP_MAX_CPUS-1) owns smp_ap_stacks[n - 1]; its top is base + n * size. */
	movl %eax, %edi
	imull $SMP_STACK_SIZE, %eax, %eax
	leaq smp_ap_stacks(%rip), %rsp
	addq %rax, %rsp
	xorl %ebp, %ebp
	call smp_ap_start
	/* More CPUs than stacks: this one stays parked. */
1:	cli
	hlt
	jmp 1b

	.data
	.align 8
ap_gdt:
	.quad 0
	/* Accessed bits preset, so loading them writes nothing. */
	.quad 0x00cf9b000000ffff /* 0x08 code, 32-bit, flat */
	.quad 0x00cf93000000ffff /* 0x10 data, flat */
ap_gdt_end:
runtime_gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt

	.section .note.GNU-stack, "", @progbits
