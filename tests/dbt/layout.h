/* Guest-physical layout of the dbt unit tests (identity-mapped). */
#ifndef VIREO_TESTS_DBT_LAYOUT_H
#define VIREO_TESTS_DBT_LAYOUT_H

#define GDT	    0x1000
#define GDT_PTR	    0x1ff0
#define IDT	    0x2000
#define TSS	    0x3000
#define EXC_STUBS   0x6000 /* vector v: mov $v, %eax; hlt */
#define IRQ_HANDLER 0x7000
#define TRAMP	    0x8000
#define PML4	    0x10000
#define PDPT	    0x11000
#define PD	    0x12000 /* four page directories: the first 4 GiB */
#define PT	    0x16000 /* 4 KiB pages for [FAULT_PAGE, FAULT_PAGE + 2 MiB) */
#define CODE	    0x100000
#define ALU_OPS	    0x180000
#define FPU_OPS	    0x190000
#define DATA	    0x200000
#define FPU_IMAGE   0x204000 /* fpu_driver: the image in; out at +0x200 */
#define FPU_MEM	    0x204800 /* fpu_driver: the operations' memory */
#define STACK_TOP   0x300000
#define IST_TOP	    0x310000
#define RSP0_TOP    0x320000
#define USER_CODE   0x400000
#define USER_STACK  0x480000
#define FAULT_PAGE                                                                                                     \
	0x600000 /* not present; +0x1000 read-only, +0x2000 supervisor, +0x3000 NX,                                    \
		    +0x4000 reserved bit, +0x5000 remapped by the paging test */
#define MMIO_BASE 0xfee00000
#define RAM_SIZE  0x4000000
#define RAM_END	  RAM_SIZE
#define COUNTER_N 200000
#define BENCH_N	  50000000

#endif
