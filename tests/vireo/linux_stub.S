/*
 * A stand-in Linux kernel for linux_protocol.py: the protected-mode part
 * of a bzImage (the script adds the setup header). Vireo enters it at
 * offset 0x200 in 64-bit mode; it prints on COM1 what the boot protocol
 * handed it, one "NAME hex" line each, and leaves through the debug-exit
 * port. Position-independent: it runs wherever it was loaded.
 */
	.code64
	.text
	.globl _start
_start:
	.fill 0x200, 1, 0xcc

entry64:
	mov %rsi, %r15			/* the zero page */
	lea stack_top(%rip), %rsp	/* the protocol leaves RSP undefined */
	pushfq
	pop %r14

	lea name_rsi(%rip), %rdi
	mov %r15, %rax
	call print_reg
	lea name_rflags(%rip), %rdi
	mov %r14, %rax
	call print_reg
	lea name_cs(%rip), %rdi
	mov %cs, %eax
	call print_reg
	lea name_ds(%rip), %rdi
	mov %ds, %eax
	call print_reg
	lea name_ss(%rip), %rdi
	mov %ss, %eax
	call print_reg
	lea name_cr0(%rip), %rdi
	mov %cr0, %rax
	call print_reg
	lea name_cr4(%rip), %rdi
	mov %cr4, %rax
	call print_reg
	lea name_efer(%rip), %rdi
	mov $0xc0000080, %ecx
	rdmsr
	shl $32, %rdx
	or %rdx, %rax
	call print_reg
	lea name_entry(%rip), %rdi
	lea entry64(%rip), %rax
	call print_reg

	/* The GDT's descriptors for CS and DS. */
	sub $16, %rsp
	sgdt (%rsp)
	mov 2(%rsp), %rbx
	add $16, %rsp
	mov %cs, %ecx
	and $~7, %ecx
	lea name_gdt_cs(%rip), %rdi
	mov (%rbx, %rcx), %rax
	call print_reg
	mov %ds, %ecx
	and $~7, %ecx
	lea name_gdt_ds(%rip), %rdi
	mov (%rbx, %rcx), %rax
	call print_reg

	/* The zero page, 8 bytes a line. */
	xor %r12d, %r12d
1:	lea name_zp(%rip), %rdi
	call puts
	mov %r12, %rax
	call put_hex
	mov $' ', %al
	call putc
	mov (%r15, %r12), %rax
	call put_hex
	mov $'\n', %al
	call putc
	add $8, %r12
	cmp $4096, %r12
	jb 1b

	/* The command line, up to its NUL, 8 bytes a line (little-endian). */
	mov 0x228(%r15), %r12d
2:	lea name_cmdline(%rip), %rdi
	mov (%r12), %rax
	call print_reg
	mov $8, %ecx
3:	cmpb $0, (%r12)
	je 4f
	inc %r12
	loop 3b
	jmp 2b

	/* The initrd: a 64-bit sum of its bytes. */
4:	mov 0x218(%r15), %esi
	mov 0x21c(%r15), %ecx
	xor %eax, %eax
	xor %edx, %edx
	jecxz 6f
5:	movzbl (%rsi), %edx
	add %rdx, %rax
	inc %rsi
	dec %ecx
	jnz 5b
6:	lea name_initrd_sum(%rip), %rdi
	call print_reg

	lea name_done(%rip), %rdi
	call puts
	mov $0x10, %eax
	out %eax, $0xf4		/* exit status (0x10 << 1) | 1 */
7:	hlt
	jmp 7b

/* "NAME hex\n" with the name at RDI and the value in RAX. */
print_reg:
	push %rax
	call puts
	mov $' ', %al
	call putc
	pop %rax
	call put_hex
	mov $'\n', %al
	jmp putc

puts:
	movzbl (%rdi), %eax
	test %al, %al
	jz 1f
	call putc
	inc %rdi
	jmp puts
1:	ret

/* RAX as 16 hex digits. */
put_hex:
	push %rbx
	push %rcx
	mov %rax, %rbx
	mov $16, %ecx
1:	rol $4, %rbx
	mov %ebx, %eax
	and $15, %eax
	cmp $10, %eax
	jb 2f
	add $'a' - '0' - 10, %eax
2:	add $'0', %eax
	call putc
	loop 1b
	pop %rcx
	pop %rbx
	ret

putc:
	push %rdx
	mov $0x3f8, %dx
	out %al, %dx
	pop %rdx
	ret

	.section .rodata
name_rsi: .asciz "RSI"
name_rflags: .asciz "RFLAGS"
name_cs: .asciz "CS"
name_ds: .asciz "DS"
name_ss: .asciz "SS"
name_cr0: .asciz "CR0"
name_cr4: .asciz "CR4"
name_efer: .asciz "EFER"
name_entry: .asciz "ENTRY"
name_gdt_cs: .asciz "GDT_CS"
name_gdt_ds: .asciz "GDT_DS"
name_zp: .asciz "ZP "
name_cmdline: .asciz "CMDLINE"
name_initrd_sum: .asciz "INITRD_SUM"
name_done: .asciz "DONE\n"

	.data /* in the image: the loader loads syssize bytes, no BSS */
	.align 16
	.skip 4096
stack_top:

	.section .note.GNU-stack, "", @progbits
