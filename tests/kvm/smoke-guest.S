/*
 * Guest code for tests/kvm/smoke.c. It is assembled into the host program
 * as data; the test copies it into guest RAM or writes it out as a kernel
 * image. Only local labels are referenced inside a blob, so each one is
 * position independent or uses addresses computed from its load address.
 */
	.section .note.GNU-stack, "", @progbits

/*
 * Engine checks: 64-bit code entered through set_state (flat segments,
 * 4 GiB identity-mapped, IF = 0). In: r8 = the test device's port base,
 * r9 = its MMIO base, r10 = a data area. The device at r8: +0 logs writes,
 * +4 reads 0xcafef00d, +8 logs string writes, +10 reads 0x1000, 0x1001...,
 * +12 "stop" (logs and kicks the vCPU), +14 "interrupt" (logs the vector
 * and kicks).
 */
	.section .rodata.kvm_smoke_code64, "a"
	.code64
	.globl smoke_code64_start, smoke_code64_end
	.globl smoke_code64_after_stop1, smoke_code64_irq40, smoke_code64_irq41, smoke_code64_ud2
smoke_code64_start:
	/* Mask both 8259s: only the IOAPIC and MSIs deliver here. */
	mov $0xff, %al
	out %al, $0x21
	out %al, $0xa1

	mov %r8d, %edx
	mov $0x11, %al
	out %al, %dx
	mov $0x2233, %ax
	out %ax, %dx
	mov $0x44556677, %eax
	out %eax, %dx

	lea 4(%r8), %edx
	in %dx, %eax
	mov %eax, (%r10)

	lea 8(%r8), %edx
	lea 0x100(%r10), %rsi
	mov $5, %ecx
	cld
	rep outsb

	lea 10(%r8), %edx
	lea 0x200(%r10), %rdi
	mov $3, %ecx
	rep insw

	movb $0x5a, (%r9)
	movw $0x1234, 2(%r9)
	movl $0xdeadbeef, 4(%r9)
	movabs $0x0123456789abcdef, %rax
	mov %rax, 8(%r9)
	mov 0x10(%r9), %eax
	mov %eax, 8(%r10)
	mov 0x18(%r9), %rax
	mov %rax, 16(%r10)

	lea 12(%r8), %edx
	mov $1, %al
	out %al, %dx
smoke_code64_after_stop1:
	/* LAPIC on (SVR), IOAPIC pin 9 -> vector 0x41, fixed, edge, APIC 0. */
	mov $0xfee000f0, %eax
	movl $0x1ff, (%rax)
	mov $0xfec00000, %eax
	movl $0x23, (%rax)
	movl $0, 0x10(%rax)
	movl $0x22, (%rax)
	movl $0x41, 0x10(%rax)
	sti

	lea 12(%r8), %edx
	mov $2, %al
	out %al, %dx
1:	hlt
	jmp 1b

smoke_code64_irq40:
	push %rax
	mov $0x40, %al
	jmp 2f
smoke_code64_irq41:
	push %rax
	mov $0x41, %al
2:	push %rdx
	lea 14(%r8), %edx
	out %al, %dx
	mov $0xfee000b0, %edx /* EOI */
	movl $0, (%rdx)
	pop %rdx
	pop %rax
	iretq

smoke_code64_ud2:
	ud2
smoke_code64_end:

/*
 * A whole guest for the VMM core: a multiboot v1 image with the address
 * fields (no ELF), loaded at 1 MiB and entered in 32-bit protected mode.
 * It prints PASS/FAIL lines on COM1, starts the AP (APIC ID 1) with
 * INIT/SIPI into a real-mode trampoline at 0x10000 that sets a flag at
 * 0x11000, and leaves through the debug-exit port 0xf4 with the number of
 * failed checks.
 */
#define LOAD_ADDR 0x100000
#define ADDR(label) (LOAD_ADDR + (label) - mb_header)
#define AP_CODE 0x10000
#define AP_FLAG 0x11000
#define LAPIC 0xfee00000

	.section .rodata.kvm_smoke_boot, "a"
	.code32
	.globl smoke_boot_start, smoke_boot_end
	.balign 4
smoke_boot_start:
mb_header:
	.long 0x1badb002
	.long 0x00010000 /* the address fields below are valid */
	.long -(0x1badb002 + 0x00010000)
	.long LOAD_ADDR /* header_addr */
	.long LOAD_ADDR /* load_addr */
	.long 0 /* load_end_addr: the whole file */
	.long 0 /* bss_end_addr: no .bss */
	.long ADDR(boot_entry)

boot_entry:
	cli
	cld
	mov $0x80000, %esp
	xor %ebx, %ebx /* failed checks */
	mov $ADDR(msg_boot), %esi
	call puts

	movl $0, AP_FLAG
	mov $ADDR(ap_start), %esi
	mov $AP_CODE, %edi
	mov $(ap_end - ap_start), %ecx
	rep movsb
	movl $0x1ff, LAPIC + 0xf0 /* SVR: APIC on */
	movl $0x01000000, LAPIC + 0x310
	movl $0x00004500, LAPIC + 0x300 /* INIT */
	call delay
	movl $0x01000000, LAPIC + 0x310
	movl $(0x00004600 | (AP_CODE >> 12)), LAPIC + 0x300 /* SIPI */
	call delay
	movl $0x01000000, LAPIC + 0x310
	movl $(0x00004600 | (AP_CODE >> 12)), LAPIC + 0x300

	/* Wait up to 3 * 2^32 TSC cycles (seconds) for the AP. */
	rdtsc
	lea 3(%edx), %ebp
1:	cmpl $1, AP_FLAG
	je 2f
	pause
	rdtsc
	cmp %ebp, %edx
	jb 1b
	inc %ebx
	mov $ADDR(msg_smp_fail), %esi
	jmp 3f
2:	mov $ADDR(msg_smp), %esi
3:	call puts

	mov $ADDR(msg_done0), %esi
	test %ebx, %ebx
	jz 4f
	mov $ADDR(msg_done1), %esi
4:	call puts
	mov $0xf4, %dx
	mov %ebx, %eax
	out %eax, %dx
5:	cli
	hlt
	jmp 5b

/* About 2^24 TSC cycles: the pause SDM 8.4.4 asks between INIT and SIPI. */
delay:
	push %ebp
	rdtsc
	mov %eax, %ebp
	mov %edx, %ecx
6:	pause
	rdtsc
	sub %ebp, %eax
	sbb %ecx, %edx
	jnz 7f
	cmp $0x1000000, %eax
	jb 6b
7:	pop %ebp
	ret

/* Writes the NUL-terminated string at esi to COM1. */
puts:
	lodsb
	test %al, %al
	jz 10f
	mov %al, %ah
	mov $0x3fd, %dx /* LSR: wait for THR empty, boundedly */
	mov $100000, %ecx
8:	in %dx, %al
	test $0x20, %al
	jnz 9f
	pause
	loop 8b
9:	mov $0x3f8, %dx
	mov %ah, %al
	out %al, %dx
	jmp puts
10:	ret

	.code16
ap_start:
	mov $(AP_FLAG >> 4), %ax
	mov %ax, %ds
	movb $1, 0
11:	cli
	hlt
	jmp 11b
ap_end:
	.code32

msg_boot:
	.asciz "PASS kvm-boot\n"
msg_smp:
	.asciz "PASS kvm-smp\n"
msg_smp_fail:
	.asciz "FAIL kvm-smp: AP 1 did not start within about 3 * 2^32 TSC cycles\n"
msg_done0:
	.asciz "DONE 2 checks, 0 failed\n"
msg_done1:
	.asciz "DONE 2 checks, 1 failed\n"
	.balign 16
smoke_boot_end:
