/*
 * The instruction handlers, by file. decode.c picks one per instruction;
 * the tables are indexed by operation, operand form and size index
 * (0: 8-bit, 1: 16-bit, 2: 32-bit, 3: 64-bit).
 */
#ifndef VIREO_DBT_HANDLERS_H
#define VIREO_DBT_HANDLERS_H

/* Operand forms of two-operand instructions: operand 0 is r0 or memory,
 * operand 1 is r1, an immediate or memory. */
enum { FORM_RR, FORM_RI, FORM_RM, FORM_MR, FORM_MI, FORM_COUNT };
enum { ALU_ADD, ALU_OR, ALU_ADC, ALU_SBB, ALU_AND, ALU_SUB, ALU_XOR, ALU_CMP, ALU_TEST, ALU_OPS };
enum { UN_INC, UN_DEC, UN_NEG, UN_NOT, UNARY_OPS };

/* alu.c */
extern const dbt_handler h_alu[ALU_OPS][FORM_COUNT][4];
extern const dbt_handler h_unary[UNARY_OPS][2][4];
HANDLER(h_zero_idiom);
HANDLER(h_shift);
HANDLER(h_dshift);
HANDLER(h_mul1);
HANDLER(h_imul2);
HANDLER(h_imul3);
HANDLER(h_div);
HANDLER(h_bt);
HANDLER(h_bitscan);
HANDLER(h_bcd);
HANDLER(h_crc32);

/* atomic.c: LOCKed forms and the exchange family */
extern const dbt_handler h_alu_lock[ALU_CMP][2][4]; /* [op][0: MR, 1: MI][size] */
extern const dbt_handler h_unary_lock[UNARY_OPS][4];
HANDLER(h_xchg);
HANDLER(h_cmpxchg);
HANDLER(h_xadd);
HANDLER(h_cmpxchg8b);
HANDLER(h_cmpxchg16b);

/* move.c */
extern const dbt_handler h_mov[FORM_COUNT][4];
extern const dbt_handler h_cmov[16];
extern const dbt_handler h_setcc[16];
extern const dbt_handler h_movx32[2][2][2];
HANDLER(h_movzx);
HANDLER(h_movsx);
HANDLER(h_lea);
HANDLER(h_bswap);
HANDLER(h_cbw);
HANDLER(h_cwd);
HANDLER(h_lahf);
HANDLER(h_sahf);
HANDLER(h_flagop);
HANDLER(h_xlat);
HANDLER(h_nop);

/* stack.c */
HANDLER(h_push_r);
HANDLER(h_push_m);
HANDLER(h_push_i);
HANDLER(h_pop_r);
HANDLER(h_pop_m);
HANDLER(h_push_seg);
HANDLER(h_pop_seg);
HANDLER(h_pusha);
HANDLER(h_popa);
HANDLER(h_pushf);
HANDLER(h_popf);
HANDLER(h_enter);
HANDLER(h_leave);
HANDLER(h_push_r64);
HANDLER(h_pop_r64);

/* branch.c */
extern const dbt_handler h_jcc[16];
HANDLER(h_jmp_rel);
HANDLER(h_jmp_rel_checked);
HANDLER(h_jmp_ind);
HANDLER(h_jrcxz);
HANDLER(h_loop);
HANDLER(h_call_rel);
HANDLER(h_call_ind);
HANDLER(h_ret);
HANDLER(h_jmp_far);
HANDLER(h_call_far);
HANDLER(h_retf);
HANDLER(h_int);
HANDLER(h_int3);
HANDLER(h_into);
HANDLER(h_int1);
HANDLER(h_ud);
HANDLER(h_gp0);
HANDLER(h_bound);

/* segment.c */
HANDLER(h_mov_to_seg);
HANDLER(h_mov_from_seg);
HANDLER(h_lxs);
HANDLER(h_lgdt);
HANDLER(h_sgdt);
HANDLER(h_lldt);
HANDLER(h_sldt);
HANDLER(h_ltr);
HANDLER(h_str);
HANDLER(h_lar);
HANDLER(h_verr);
HANDLER(h_arpl);

/* syscall.c */
HANDLER(h_syscall);
HANDLER(h_sysret);
HANDLER(h_sysenter);
HANDLER(h_sysexit);
HANDLER(h_swapgs);

/* system.c */
HANDLER(h_mov_to_cr);
HANDLER(h_mov_from_cr);
HANDLER(h_mov_to_dr);
HANDLER(h_mov_from_dr);
HANDLER(h_clts);
HANDLER(h_lmsw);
HANDLER(h_smsw);
HANDLER(h_invlpg);
HANDLER(h_wbinvd);
HANDLER(h_rdmsr);
HANDLER(h_wrmsr);
HANDLER(h_rdtsc);
HANDLER(h_rdtscp);
HANDLER(h_rdpmc);
HANDLER(h_cpuid);
HANDLER(h_hlt);
HANDLER(h_cli);
HANDLER(h_sti);
HANDLER(h_xgetbv);
HANDLER(h_xsetbv);
HANDLER(h_clflush);
HANDLER(h_mfence);
HANDLER(h_pause);

/* string.c */
HANDLER(h_movs);
HANDLER(h_stos);
HANDLER(h_lods);
HANDLER(h_cmps);
HANDLER(h_scas);
HANDLER(h_ins);
HANDLER(h_outs);

/* io.c */
HANDLER(h_in);
HANDLER(h_out);

#endif
