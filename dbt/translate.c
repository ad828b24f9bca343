/*
 * One guest block into host code. Same ISA, identity memory: an instruction
 * is copied as it is unless it is control flow (branches become exits that
 * the code cache chains, indirect ones an inline lookup), SYSCALL (an inline
 * filter: host syscall or exit), or has a memory operand that must change
 * (RIP-relative: the displacement is retargeted, or the address comes from a
 * scratch register; FS/GS: the guest's segment base comes from the context).
 * docs/dbt-translator.md, "Translating a block".
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "dbt/translator.h"

#define CTX_OFF(f)    ((unsigned)offsetof(struct xlat_ctx, f))
#define CTX_GPR(r)    (CTX_OFF(gpr) + 8u * (r))
#define CTX_SPILL(i)  (CTX_OFF(spill) + 8u * (i))
#define BLOCK_EXITS   XLAT_BLOCK_EXITS

/* reg = its spilled value at gs:off. A load through gs: of what a store
 * through gs: just wrote is not forwarded on AMD Zen (about 5 ns instead
 * of under 1): the reload goes through the context's own address. */
static void emit_reload(struct emit *e, int reg, unsigned off)
{
	emit_load_ctx(e, reg, CTX_OFF(self));
	emit_load(e, reg, reg, (int32_t)off);
}

struct pending_exit {
	int32_t *branch; /* the rel32 that must reach the stub */
	uint64_t target;
	uint32_t kind, insn_len;
	bool chainable;
};

struct tblock {
	struct emit e;
	const struct xlat_env *env;
	struct pending_exit exits[BLOCK_EXITS];
	unsigned nexits;
	int spilled;	  /* the scratch register the current instruction spilled, or -1 */
	bool conditional; /* the block ends in a conditional branch */
};

static void add_exit(struct tblock *t, int32_t *branch, uint64_t target, enum xlat_exit_kind kind, bool chainable)
{
	if (!branch)
		return; /* the buffer is full: the block is retried elsewhere */
	t->exits[t->nexits++] = (struct pending_exit){branch, target, kind, 0, chainable};
}

/* An unconditional exit: jmp to a stub. */
static void exit_jmp(struct tblock *t, uint64_t target, enum xlat_exit_kind kind, bool chainable)
{
	add_exit(t, emit_jmp32(&t->e), target, kind, chainable);
}

/* The stubs, after the block's body: jmp [slot] (the slot holds the stub's
 * exit code until the branch is chained), then the exit code (save RAX, RAX
 * = the stub's data, jmp gs:[exit_code]), then the data. */
static void emit_stubs(struct tblock *t, struct xlat_succ *succ)
{
	succ->n = 0;
	succ->conditional = t->conditional;
	for (unsigned i = 0; i < t->nexits; i++) {
		struct pending_exit *x = &t->exits[i];
		struct emit *e = &t->e;
		uint8_t *stub = e->p;

		emit_bytes(e, "\xff\x25", 2); /* jmp qword [rip + rel32] */
		int32_t *slot_rel = (int32_t *)e->p;
		emit_u32(e, 0);
		uint8_t *exit_code = e->p;
		emit_store_ctx(e, CTX_GPR(XR_RAX), XR_RAX);
		emit_bytes(e, "\x48\x8d\x05", 3); /* lea rax, [rip + rel32] */
		int32_t *data_rel = (int32_t *)e->p;
		emit_u32(e, 0);
		emit_jmp_ctx(e, CTX_OFF(exit_code));
		emit_nops(e, (8 - ((uintptr_t)e->p & 7)) & 7);
		struct xlat_exit *data = (struct xlat_exit *)e->p;
		emit_bytes(e, &(struct xlat_exit){0}, sizeof(*data));
		if (e->full)
			return;
		*data = (struct xlat_exit){
		    .slot = (uintptr_t)exit_code,
		    .target = x->target,
		    .patch = x->chainable ? x->branch : NULL,
		    .kind = x->kind,
		    .unchained = (uintptr_t)exit_code,
		};
		rel32_set(slot_rel, &data->slot);
		rel32_set(data_rel, data);
		rel32_set(x->branch, stub);
		if (x->chainable && x->kind == XEXIT_BRANCH)
			succ->exit[succ->n++] = data;
	}
}

/* ---- registers an instruction uses ---- */

static int gpr_number(ZydisRegister r)
{
	if (r == ZYDIS_REGISTER_NONE)
		return -1;
	ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
	if (big < ZYDIS_REGISTER_RAX || big > ZYDIS_REGISTER_R15)
		return -1;
	return big - ZYDIS_REGISTER_RAX;
}

static unsigned used_gprs(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	unsigned mask = 1u << XR_RSP;
	for (unsigned i = 0; i < in->operand_count; i++) {
		const ZydisDecodedOperand *o = &ops[i];
		int a = -1, b = -1;
		if (o->type == ZYDIS_OPERAND_TYPE_REGISTER) {
			a = gpr_number(o->reg.value);
		} else if (o->type == ZYDIS_OPERAND_TYPE_MEMORY) {
			a = gpr_number(o->mem.base);
			b = gpr_number(o->mem.index);
		}
		if (a >= 0)
			mask |= 1u << a;
		if (b >= 0)
			mask |= 1u << b;
	}
	return mask;
}

static int pick_scratch(unsigned used)
{
	for (int r = 0; r < 16; r++)
		if (!(used & (1u << r)))
			return r;
	return -1;
}

/* ---- memory operands ---- */

/* The memory operand that needs rewriting (RIP-relative, or FS/GS
 * relative), or -1. */
static int special_mem_operand(const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops)
{
	for (unsigned i = 0; i < in->operand_count; i++) {
		const ZydisDecodedOperand *o = &ops[i];
		if (o->type != ZYDIS_OPERAND_TYPE_MEMORY || o->mem.type == ZYDIS_MEMOP_TYPE_AGEN)
			continue;
		if (o->mem.base == ZYDIS_REGISTER_RIP || o->mem.base == ZYDIS_REGISTER_EIP ||
		    o->mem.segment == ZYDIS_REGISTER_FS ||
		    o->mem.segment == ZYDIS_REGISTER_GS)
			return (int)i;
	}
	/* LEA ignores the segment; only RIP-relative matters. */
	for (unsigned i = 0; i < in->operand_count; i++)
		if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
		    (ops[i].mem.base == ZYDIS_REGISTER_RIP || ops[i].mem.base == ZYDIS_REGISTER_EIP))
			return (int)i;
	return -1;
}

/* Puts the linear address of FS/GS operand o into register s, with MOV and
 * LEA only. */
static bool emit_segment_address(struct emit *e, int s, const ZydisDecodedOperand *o, uint64_t next_rip)
{
	int base = gpr_number(o->mem.base), index = gpr_number(o->mem.index);
	int64_t disp = o->mem.disp.value;

	if (o->mem.base == ZYDIS_REGISTER_RIP) {
		disp += (int64_t)next_rip;
		base = -1;
	} else if ((o->mem.base != ZYDIS_REGISTER_NONE && base < 0) || o->mem.type == ZYDIS_MEMOP_TYPE_VSIB ||
		   (o->mem.index != ZYDIS_REGISTER_NONE && index < 0)) {
		return false;
	}
	if (disp != (int32_t)disp)
		return false;
	emit_load_ctx(e, s, o->mem.segment == ZYDIS_REGISTER_FS ? CTX_OFF(fs_base) : CTX_OFF(gs_base));
	if (base >= 0)
		emit_lea(e, s, base, s, 1, 0); /* base may be RSP, which cannot be an index */
	if (index >= 0 || disp)
		emit_lea(e, s, s, index, o->mem.scale ? o->mem.scale : 1, (int32_t)disp);
	return true;
}

/* Re-encodes the instruction with memory operand k replaced by [s]. */
static bool emit_with_base(struct emit *e, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops,
			   unsigned k, int s)
{
	ZydisEncoderRequest req;
	uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
	ZyanUSize len = sizeof(buf);

	if (k >= in->operand_count_visible ||
	    !ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(in, ops, in->operand_count_visible, &req)))
		return false;
	req.prefixes &= ~ZYDIS_ATTRIB_HAS_SEGMENT;
	req.operands[k].mem.base = (ZydisRegister)(ZYDIS_REGISTER_RAX + s);
	req.operands[k].mem.index = ZYDIS_REGISTER_NONE;
	req.operands[k].mem.scale = 0;
	req.operands[k].mem.displacement = 0;
	if (in->address_width != 64)
		return false;
	if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len)))
		return false;
	emit_bytes(e, buf, len);
	return true;
}

/* An instruction with a RIP-relative or FS/GS operand. */
static bool emit_rewritten(struct tblock *t, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops,
			   unsigned k, uint64_t pc)
{
	const ZydisDecodedOperand *o = &ops[k];
	uint64_t next = pc + in->length;
	struct emit *e = &t->e;

	bool ip_relative = o->mem.base == ZYDIS_REGISTER_RIP || o->mem.base == ZYDIS_REGISTER_EIP;
	if (o->mem.base == ZYDIS_REGISTER_EIP && in->mnemonic != ZYDIS_MNEMONIC_LEA)
		return false; /* EIP-relative memory: the interpreter's */
	if (ip_relative && o->mem.segment != ZYDIS_REGISTER_FS && o->mem.segment != ZYDIS_REGISTER_GS) {
		uint64_t abs = next + (uint64_t)o->mem.disp.value;
		if (in->address_width == 32)
			abs = (uint32_t)abs;
		if (in->mnemonic == ZYDIS_MNEMONIC_LEA) {
			int d = gpr_number(ops[0].reg.value);
			if (ops[0].size >= 32) {
				emit_mov_imm(e, d, ops[0].size == 32 ? (uint32_t)abs : abs);
			} else { /* mov r16, imm16 */
				emit_u8(e, 0x66);
				if (d >= 8)
					emit_u8(e, 0x41);
				emit_u8(e, (uint8_t)(0xb8 + (d & 7)));
				emit_u8(e, (uint8_t)abs);
				emit_u8(e, (uint8_t)(abs >> 8));
			}
			return true;
		}
		int64_t d = (int64_t)(abs - ((uintptr_t)e->p + in->length));
		if (d == (int32_t)d && in->raw.disp.size == 32) {
			uint8_t *at = e->p;
			emit_bytes(e, (const void *)(uintptr_t)pc, in->length);
			if (!e->full) {
				int32_t v = (int32_t)d;
				memcpy(at + in->raw.disp.offset, &v, 4);
			}
			return true;
		}
	}

	unsigned used = used_gprs(in, ops);
	/* mov reg, fs:[...]: the destination is the scratch register. */
	if (in->mnemonic == ZYDIS_MNEMONIC_MOV && k == 1 && ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
	    ops[0].size >= 32 && gpr_number(ops[0].reg.value) >= 0) {
		int d = gpr_number(ops[0].reg.value);
		unsigned addr_regs = 0;
		if (gpr_number(o->mem.base) >= 0)
			addr_regs |= 1u << gpr_number(o->mem.base);
		if (gpr_number(o->mem.index) >= 0)
			addr_regs |= 1u << gpr_number(o->mem.index);
		if (!(addr_regs & (1u << d))) {
			if (o->mem.base == ZYDIS_REGISTER_RIP && o->mem.segment != ZYDIS_REGISTER_FS &&
			    o->mem.segment != ZYDIS_REGISTER_GS)
				emit_mov_imm(e, d, next + (uint64_t)o->mem.disp.value);
			else if (!emit_segment_address(e, d, o, next))
				return false;
			return emit_with_base(e, in, ops, k, d);
		}
	}

	int s = pick_scratch(used);
	if (s < 0)
		return false;
	emit_store_ctx(e, CTX_SPILL(XS_A), s);
	t->spilled = s;
	if (o->mem.segment == ZYDIS_REGISTER_FS || o->mem.segment == ZYDIS_REGISTER_GS) {
		if (!emit_segment_address(e, s, o, next))
			return false;
	} else {
		emit_mov_imm(e, s, next + (uint64_t)o->mem.disp.value);
	}
	if (!emit_with_base(e, in, ops, k, s))
		return false;
	emit_reload(e, s, CTX_SPILL(XS_A));
	return true;
}

/* ---- control flow ---- */

/* push imm64 (a return address) as one 8-byte store: two 4-byte halves
 * would stall the RET that loads it (no store-to-load forwarding). scratch
 * is a register whose guest value is spilled already, or -1: then RAX is
 * spilled around the push (t->spilled says so to a fault handler). */
static void emit_push_imm64(struct tblock *t, uint64_t v, int scratch)
{
	struct emit *e = &t->e;

	if (v == (uint64_t)(int64_t)(int32_t)v) {
		emit_u8(e, 0x68); /* push imm32, sign-extended */
		emit_u32(e, (uint32_t)v);
		return;
	}
	if (scratch < 0) {
		emit_store_ctx(e, CTX_SPILL(XS_A), XR_RAX);
		t->spilled = XR_RAX;
	}
	emit_mov_imm(e, scratch < 0 ? XR_RAX : scratch, v);
	emit_u8(e, 0x50 + ((scratch < 0 ? XR_RAX : scratch) & 7)); /* push r64 (RAX or RDX: no REX) */
	if (scratch < 0)
		emit_reload(e, XR_RAX, CTX_SPILL(XS_A));
}

/* The inline lookup: RDX holds the guest target, the guest's RAX, RCX and
 * RDX are in the spill slots. A hit in the target's entry or the next one
 * jumps to the host code with everything restored; a miss goes to
 * xlat_miss_routine. */
static void emit_lookup(struct emit *e)
{
	emit_bytes(e, "\x0f\xb7\xc2", 3);     /* movzx eax, dx */
	emit_bytes(e, "\x48\x8d\x04\x00", 4); /* lea rax, [rax + rax] */
	emit_load_ctx(e, XR_RCX, CTX_OFF(lookup));
	emit_bytes(e, "\x48\x8d\x04\xc1", 4); /* lea rax, [rcx + rax * 8] */
	emit_bytes(e, "\x48\x8b\x08", 3);     /* mov rcx, [rax]: -guest */
	emit_bytes(e, "\x48\x8d\x0c\x11", 4); /* lea rcx, [rcx + rdx] */
	emit_bytes(e, "\xe3\x15", 2);	      /* jrcxz hit */
	emit_bytes(e, "\x48\x8d\x40\x10", 4); /* lea rax, [rax + 16]: the next entry */
	emit_bytes(e, "\x48\x8b\x08", 3);     /* mov rcx, [rax] */
	emit_bytes(e, "\x48\x8d\x0c\x11", 4); /* lea rcx, [rcx + rdx] */
	emit_bytes(e, "\xe3\x08", 2);	      /* jrcxz hit */
	emit_jmp_ctx(e, CTX_OFF(miss_code));  /* 8 bytes */
	emit_bytes(e, "\x48\x8b\x40\x08", 4); /* hit: mov rax, [rax + 8] */
	emit_store_ctx(e, CTX_OFF(jump), XR_RAX);
	/* RCX is 0 here (JRCXZ): the spills come back as gs:[rcx + slot],
	 * which is forwarded from their gs:[slot] stores; gs:[slot] is not
	 * (docs: "Spilling"). */
	emit_u8(e, 0x65);
	emit_load(e, XR_RAX, XR_RCX, (int32_t)CTX_SPILL(XS_A));
	emit_u8(e, 0x65);
	emit_load(e, XR_RDX, XR_RCX, (int32_t)CTX_SPILL(XS_C));
	emit_u8(e, 0x65);
	emit_load(e, XR_RCX, XR_RCX, (int32_t)CTX_SPILL(XS_B));
	emit_jmp_ctx(e, CTX_OFF(jump));
}

static void emit_spill_lookup_regs(struct tblock *t)
{
	struct emit *e = &t->e;

	t->spilled = XR_RAX; /* a fault reading the target or pushing: RAX is in spill A */
	emit_store_ctx(e, CTX_SPILL(XS_A), XR_RAX);
	emit_store_ctx(e, CTX_SPILL(XS_B), XR_RCX);
	emit_store_ctx(e, CTX_SPILL(XS_C), XR_RDX);
}

/* RDX = the target of an indirect JMP or CALL (operand 0), read before
 * anything the guest can see changes. */
static bool emit_indirect_target(struct emit *e, const ZydisDecodedOperand *o, uint64_t next)
{
	if (o->type == ZYDIS_OPERAND_TYPE_REGISTER) {
		int r = gpr_number(o->reg.value);
		if (r < 0 || o->size != 64)
			return false;
		emit_lea(e, XR_RDX, r, -1, 1, 0);
		return true;
	}
	if (o->type != ZYDIS_OPERAND_TYPE_MEMORY || o->size != 64)
		return false;
	if (o->mem.segment == ZYDIS_REGISTER_FS || o->mem.segment == ZYDIS_REGISTER_GS) {
		/* RAX is free: its guest value is spilled. */
		if (!emit_segment_address(e, XR_RAX, o, next))
			return false;
		emit_load(e, XR_RDX, XR_RAX, 0);
		return true;
	}
	if (o->mem.base == ZYDIS_REGISTER_RIP) {
		emit_mov_imm(e, XR_RDX, next + (uint64_t)o->mem.disp.value);
		emit_load(e, XR_RDX, XR_RDX, 0);
		return true;
	}
	int base = gpr_number(o->mem.base), index = gpr_number(o->mem.index);
	if ((o->mem.base != ZYDIS_REGISTER_NONE && base < 0) || (o->mem.index != ZYDIS_REGISTER_NONE && index < 0))
		return false;
	if (o->mem.disp.value != (int32_t)o->mem.disp.value)
		return false;
	/* lea rdx, [address]; mov rdx, [rdx] */
	emit_lea(e, XR_RDX, base, index, o->mem.scale ? o->mem.scale : 1, (int32_t)o->mem.disp.value);
	emit_load(e, XR_RDX, XR_RDX, 0);
	return true;
}

/* Control flow and SYSCALL; returns 1 when the block ends, 0 when it goes
 * on, 2 for an instruction of another kind, -1 for one the translator does
 * not run. */
static int translate_branch(struct tblock *t, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops,
			    uint64_t pc)
{
	struct emit *e = &t->e;
	uint64_t next = pc + in->length, target = 0;
	/* A relative branch target (not a RIP-relative memory operand). */
	bool relative = in->operand_count_visible && ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[0].imm.is_relative;

	if (in->meta.branch_type == ZYDIS_BRANCH_TYPE_FAR)
		return -1;
	if (relative && !ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(in, &ops[0], pc, &target)))
		return -1;

	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_JMP:
		if (relative) {
			exit_jmp(t, target, XEXIT_BRANCH, true);
			return 1;
		}
		emit_spill_lookup_regs(t);
		if (!emit_indirect_target(e, &ops[0], next))
			return -1;
		emit_lookup(e);
		return 1;
	case ZYDIS_MNEMONIC_CALL:
		if (relative) {
			emit_push_imm64(t, next, -1);
			exit_jmp(t, target, XEXIT_BRANCH, true);
			return 1;
		}
		emit_spill_lookup_regs(t);
		if (!emit_indirect_target(e, &ops[0], next))
			return -1;
		emit_push_imm64(t, next, XR_RAX); /* RAX: spilled, not used yet */
		emit_lookup(e);
		return 1;
	case ZYDIS_MNEMONIC_RET:
		emit_spill_lookup_regs(t);
		emit_load(e, XR_RDX, XR_RSP, 0);
		emit_lea(e, XR_RSP, XR_RSP, -1, 1, 8 + (in->operand_count_visible ? (int32_t)ops[0].imm.value.u : 0));
		emit_lookup(e);
		return 1;
	case ZYDIS_MNEMONIC_JCXZ:
	case ZYDIS_MNEMONIC_JECXZ:
	case ZYDIS_MNEMONIC_JRCXZ:
	case ZYDIS_MNEMONIC_LOOP:
	case ZYDIS_MNEMONIC_LOOPE:
	case ZYDIS_MNEMONIC_LOOPNE: {
		/* rel8 only: the original, aimed at a jmp to the taken stub. */
		if (in->raw.imm[0].size != 8)
			return -1;
		uint8_t *at = e->p;
		emit_bytes(e, (const void *)(uintptr_t)pc, in->length);
		uint8_t *after = e->p;
		exit_jmp(t, next, XEXIT_BRANCH, true);
		uint8_t *taken = e->p;
		exit_jmp(t, target, XEXIT_BRANCH, true);
		t->conditional = true;
		if (!e->full)
			at[in->length - 1] = (uint8_t)(taken - after);
		return 1;
	}
	case ZYDIS_MNEMONIC_SYSCALL:
		/* R11 and RCX are the kernel's to clobber: the filter uses them. */
		emit_bytes(e, "\x44\x0f\xb7\xd8", 4); /* movzx r11d, ax */
		emit_load_ctx(e, XR_RCX, CTX_OFF(sysfilter));
		emit_bytes(e, "\x42\x0f\xb6\x0c\x19", 5); /* movzx ecx, byte [rcx + r11] */
		emit_bytes(e, "\xe3\x00", 2);		  /* jrcxz host */
		uint8_t *rel8 = e->p - 1;
		exit_jmp(t, next, XEXIT_SYSCALL, false);
		if (!e->full)
			*rel8 = (uint8_t)(e->p - (rel8 + 1));
		emit_bytes(e, "\x0f\x05", 2); /* host: syscall */
		emit_mov_imm(e, XR_RCX, next);
		return 0;
	default:
		if (in->meta.category == ZYDIS_CATEGORY_COND_BR && relative && in->mnemonic != ZYDIS_MNEMONIC_XBEGIN) {
			unsigned cc = in->opcode & 0xf;
			add_exit(t, emit_jcc32(e, cc), target, XEXIT_BRANCH, true);
			exit_jmp(t, next, XEXIT_BRANCH, true);
			t->conditional = true;
			return 1;
		}
		return relative ? -1 : 2;
	}
}

/* Does the instruction need its operands decoded (control flow, SYSCALL, a
 * RIP-relative or FS/GS-relative memory operand)? Most do not: they are
 * copied as they are, and decoding only the instruction (no operands) is
 * about half of Zydis' work. */
static bool needs_operands(const ZydisDecodedInstruction *in)
{
	if (in->meta.branch_type != ZYDIS_BRANCH_TYPE_NONE || in->mnemonic == ZYDIS_MNEMONIC_SYSCALL)
		return true;
	switch (in->meta.category) {
	case ZYDIS_CATEGORY_COND_BR:
	case ZYDIS_CATEGORY_UNCOND_BR:
	case ZYDIS_CATEGORY_CALL:
	case ZYDIS_CATEGORY_RET: return true;
	default: break;
	}
	if (in->attributes & (ZYDIS_ATTRIB_IS_RELATIVE | ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS))
		return true;
	/* mod 0, r/m 5: RIP- (or EIP-) relative in 64-bit mode */
	return (in->attributes & ZYDIS_ATTRIB_HAS_MODRM) && in->raw.modrm.mod == 0 && in->raw.modrm.rm == 5;
}

int xlat_translate(const struct xlat_env *env, uint64_t rip, uint8_t *buf, size_t cap, uint64_t *end,
		   struct xlat_insn_map *map, uint32_t *ninsns, struct xlat_succ *succ)
{
	struct tblock t = {.e = {buf, buf + cap, false}, .env = env};
	*ninsns = 0;
	ZydisDecoder dec;
	uint64_t pc = rip;

	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	for (unsigned n = 0;; n++) {
		ZydisDecodedInstruction in;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
		size_t avail = env->fetchable(env->opaque, pc, ZYDIS_MAX_INSTRUCTION_LENGTH);

		if (n == XLAT_BLOCK_INSNS || t.nexits + 3 > BLOCK_EXITS) {
			exit_jmp(&t, pc, XEXIT_BRANCH, true);
			break;
		}
		ZydisDecoderContext dctx;
		ZyanStatus st =
		    avail ? ZydisDecoderDecodeInstruction(&dec, &dctx, (const void *)(uintptr_t)pc, avail, &in)
			  : ZYDIS_STATUS_NO_MORE_DATA;
		bool full = ZYAN_SUCCESS(st) && needs_operands(&in);
		if (full)
			st = ZydisDecoderDecodeOperands(&dec, &dctx, &in, ops, ZYDIS_MAX_OPERAND_COUNT);
		if (!ZYAN_SUCCESS(st)) {
			if (n == 0)
				return st == ZYDIS_STATUS_NO_MORE_DATA ? -EFAULT : -EILSEQ;
			exit_jmp(&t, pc, XEXIT_BRANCH, true); /* the next block reports it */
			break;
		}

		uint8_t *mark = t.e.p; /* a failed rewrite leaves nothing behind */
		map[n] = (struct xlat_insn_map){(uint32_t)(mark - buf), (uint32_t)(pc - rip), 0};
		t.spilled = -1;
		*ninsns = n + 1;
		unsigned marked_exits = t.nexits;
		int r = full ? translate_branch(&t, &in, ops, pc) : 2;
		if (r == 2) {
			int k = full ? special_mem_operand(&in, ops) : -1;
			if (k < 0)
				emit_bytes(&t.e, (const void *)(uintptr_t)pc, in.length);
			else if (!emit_rewritten(&t, &in, ops, (unsigned)k, pc))
				r = -1;
			else
				r = 0;
		}
		map[n].spilled = (uint8_t)(r >= 0 ? t.spilled + 1 : 0);
		if (r < 0) {
			t.e.p = mark;
			t.nexits = marked_exits;
			exit_jmp(&t, pc, XEXIT_UNSUPPORTED, false);
			break;
		}
		pc += in.length;
		xlat_stats.insns++;
		if (r == 1)
			break;
	}
	emit_stubs(&t, succ);
	if (t.e.full)
		return -ENOSPC;
	*end = pc;
	return (int)(t.e.p - buf);
}
