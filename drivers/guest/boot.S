/*
 * Multiboot v1 entry: the loader leaves us in 32-bit protected mode with
 * paging off. Zero .bss, identity-map the first 4 GiB with 2 MiB pages,
 * enable PAE, long mode and SSE, load a 64-bit GDT and jump to guest_start.
 */
#include "guest.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003 /* page-align modules, want a memory map */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .boot32, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	/* Keep the loader's handover outside .bss, which is zeroed next. */
	movl %eax, multiboot_magic
	movl %ebx, multiboot_info

	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $2, %ecx
	xorl %eax, %eax
	rep stosl

	movl $boot_stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> four page directories of 2 MiB pages. */
	movl $boot_pdpt, %eax
	orl $(PTE_P | PTE_W | PTE_U), %eax
	movl %eax, boot_pml4

	movl $boot_pd, %eax
	orl $(PTE_P | PTE_W | PTE_U), %eax
	xorl %ecx, %ecx
1:	movl %eax, boot_pdpt(, %ecx, 8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jne 1b

	movl $(PTE_P | PTE_W | PTE_U | PTE_PS), %eax
	xorl %edx, %edx /* high half of the physical address */
	xorl %ecx, %ecx
2:	movl %eax, boot_pd(, %ecx, 8)
	movl %edx, boot_pd + 4(, %ecx, 8)
	addl $0x200000, %eax
	incl %ecx
	cmpl $2048, %ecx
	jne 2b

	movl $boot_pml4, %eax
	movl %eax, %cr3

	/* CR4: PAE, OSFXSR, OSXMMEXCPT. */
	movl %cr4, %eax
	orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
	movl %eax, %cr4

	movl $MSR_EFER, %ecx
	rdmsr
	orl $(EFER_LME | EFER_SCE), %eax
	wrmsr

	/* CR0: PG, WP, NE, MP, PE; clear EM and TS. */
	movl %cr0, %eax
	andl $~((1 << 2) | (1 << 3)), %eax
	orl $((1 << 31) | (1 << 16) | (1 << 5) | (1 << 1) | 1), %eax
	movl %eax, %cr0

	lgdt boot_gdt_ptr
	ljmp $GDT_KERNEL_CODE, $long_mode

	.code64
	.text
/*
 * Vireo's plain ELF64 protocol (docs/running-guests.md): entered in 64-bit
 * mode on the loader's page tables with RDI pointing at a multiboot
 * information structure. Build the same tables and GDT as the 32-bit path.
 */
	.globl _start64
_start64:
	cli
	cld
	movl %edi, multiboot_info
	movl $MULTIBOOT_BOOT_MAGIC, multiboot_magic

	movq $__bss_start, %rdi
	movq $__bss_end, %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	movq $boot_stack_top, %rsp /* the protocol leaves RSP undefined */

	movq $boot_pdpt + (PTE_P | PTE_W | PTE_U), %rax
	movq %rax, boot_pml4
	movq $boot_pd + (PTE_P | PTE_W | PTE_U), %rax
	xorl %ecx, %ecx
4:	movq %rax, boot_pdpt(, %rcx, 8)
	addq $4096, %rax
	incl %ecx
	cmpl $4, %ecx
	jne 4b
	movq $(PTE_P | PTE_W | PTE_U | PTE_PS), %rax
	xorl %ecx, %ecx
5:	movq %rax, boot_pd(, %rcx, 8)
	addq $0x200000, %rax
	incl %ecx
	cmpl $2048, %ecx
	jne 5b
	movq $boot_pml4, %rax
	movq %rax, %cr3

	movq %cr4, %rax
	orq $((1 << 5) | (1 << 9) | (1 << 10)), %rax
	movq %rax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $(EFER_LME | EFER_SCE), %eax
	wrmsr
	movq %cr0, %rax
	andq $~((1 << 2) | (1 << 3)), %rax
	orq $((1 << 16) | (1 << 5) | (1 << 1)), %rax
	movq %rax, %cr0

	lgdt boot_gdt_ptr64
	pushq $GDT_KERNEL_CODE
	pushq $long_mode
	lretq

long_mode:
	movl $GDT_KERNEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movq $boot_stack_top, %rsp
	xorl %ebp, %ebp
	call guest_start
3:	hlt
	jmp 3b

	.data
	.globl multiboot_magic, multiboot_info
multiboot_magic: .long 0
multiboot_info: .long 0

	.align 8
	.globl gdt
gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff /* 0x10 kernel data */
	.quad 0x00cffa000000ffff /* 0x18 user code, 32-bit (SYSRET's base) */
	.quad 0x00cff2000000ffff /* 0x20 user data */
	.quad 0x00affa000000ffff /* 0x28 user code, 64-bit */
	.quad 0, 0               /* 0x30 TSS, filled in by trap.c */
	.quad 0
gdt_end:
boot_gdt_ptr:
	.word gdt_end - gdt - 1
	.long gdt
boot_gdt_ptr64:
	.word gdt_end - gdt - 1
	.quad gdt

	.bss
	.align 4096
	.globl boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd: .skip 4 * 4096
	.align 16
boot_stack: .skip 65536
	.globl boot_stack_top
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
